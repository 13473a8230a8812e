"""Sponsors' money: deposits operators record against a sponsor-funded
programme, the sponsor's ledger account, and the programme's statement of
premiums earned and reversed, deposits and what the sponsor owes."""

from __future__ import annotations

import csv
import functools
import io
from collections import Counter
from datetime import timedelta
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from market.accounts.models import Role
from market.auth import Actor
from market.db import business_today
from market.extensions import db
from market.ledger import service as ledger
from market.ledger.models import LedgerTransaction
from market.premiums import deposits
from market.premiums.models import SponsorDeposit
from market.settlement.checks import check_ledger, sponsor_account_mismatches
from tests.factories import UserFactory
from tests.orders.test_concurrency import race
from tests.payouts.conftest import refund, settled_order
from tests.premiums.test_premiums import line_of, programme
from tests.shop import Shop


def day(offset: int = 0) -> str:
    return (business_today() + timedelta(days=offset)).isoformat()


def sponsored(client: FlaskClient, shop: Shop, **fields: Any) -> dict[str, Any]:
    return programme(client, shop, funded_by="sponsor", budget_cap=5000, **fields)


def deposit(client: FlaskClient, shop: Shop, programme_id: int, **fields: Any) -> Any:
    body = {"amount": 120, "bank_reference": "ICBC 2026113000017", "received_on": day()} | fields
    return client.post(f"/api/v1/premium-programmes/{programme_id}/deposits", json=body, headers=shop.operator_h)


def deposits_and_postings() -> tuple[int, int]:
    db.session.expire_all()
    rows = db.session.scalar(select(func.count(SponsorDeposit.id)))
    posted = db.session.scalar(
        select(func.count(LedgerTransaction.id)).where(LedgerTransaction.kind == "sponsor_deposit")
    )
    return int(rows or 0), int(posted or 0)


def statement(client: FlaskClient, shop: Shop, programme_id: int, **query: str) -> Any:
    return client.get(
        f"/api/v1/premium-programmes/{programme_id}/statement", query_string=query, headers=shop.operator_h
    )


def test_an_operator_records_a_deposit_and_the_ledger_credits_the_sponsor(client: FlaskClient, shop: Shop) -> None:
    funded = sponsored(client, shop)
    made = deposit(client, shop, funded["id"], note="First tranche\nper agreement")
    assert made.status_code == 201, made.json
    assert made.headers["Location"] == f"/api/v1/premium-programmes/{funded['id']}/deposits/{made.json['id']}"
    assert made.json["amount"] == 120
    assert made.json["bank_reference"] == "ICBC 2026113000017"
    assert made.json["received_on"] == day()
    shown = client.get(made.headers["Location"], headers=shop.operator_h)
    assert shown.status_code == 200
    assert shown.json == made.json
    listed = client.get(f"/api/v1/premium-programmes/{funded['id']}/deposits", headers=shop.operator_h).json
    assert listed == {"items": [made.json], "next_cursor": None}
    # The sponsor paid in before any premium was earned: a credit of 120.
    assert ledger.balance(f"sponsor_liability:{funded['id']}") == -120
    assert ledger.balance("gateway_cash:offline") == 120
    assert check_ledger() == []


def test_the_same_bank_reference_on_a_programme_is_recorded_once(client: FlaskClient, shop: Shop) -> None:
    funded = sponsored(client, shop)
    first = deposit(client, shop, funded["id"])
    assert first.status_code == 201
    again = deposit(client, shop, funded["id"], amount=999, bank_reference="  ICBC 2026113000017 ")
    assert again.status_code == 409
    assert again.mimetype == "application/problem+json"
    assert again.json["deposit_id"] == first.json["id"]
    assert deposits_and_postings() == (1, 1)
    assert ledger.balance(f"sponsor_liability:{funded['id']}") == -120
    # Another programme's deposit may carry the same reference.
    other = sponsored(client, shop, sponsor="Co-op")
    assert deposit(client, shop, other["id"]).status_code == 201
    assert deposits_and_postings() == (2, 2)


def test_operators_recording_one_transfer_at_once_record_it_once(app: Flask, pg_app: Flask, shop: Shop) -> None:
    funded = sponsored(app.test_client(), shop)
    operators = [Actor(UserFactory(roles=[Role.OPERATOR]).id, frozenset({Role.OPERATOR})) for _ in range(6)]
    record = functools.partial(
        deposits.record_deposit, amount=500, bank_reference="BOC-77", received_on=business_today()
    )
    outcomes = race(pg_app, [functools.partial(record, actor, funded["id"]) for actor in operators])
    assert outcomes == Counter({"ok": 1, "Conflict": 5})
    assert deposits_and_postings() == (1, 1)
    assert ledger.balance(f"sponsor_liability:{funded['id']}") == -500


def test_bad_deposits_are_refused_by_field_and_write_nothing(client: FlaskClient, shop: Shop) -> None:
    funded = sponsored(client, shop)
    refused = {
        "amount": [{"amount": 0}, {"amount": -5}, {"amount": "120"}, {"amount": 1.5}, {"amount": 10**16}],
        "received_on": [{"received_on": day(1)}, {"received_on": "1999-12-31"}, {"received_on": "30/11/2026"}],
        "bank_reference": [{"bank_reference": "   "}, {"bank_reference": ""}, {"bank_reference": "a\nb"}],
        "colour": [{"colour": "red"}],
    }
    for field, bodies in refused.items():
        for body in bodies:
            response = deposit(client, shop, funded["id"], **body)
            assert response.status_code == 422, (body, response.json)
            assert response.mimetype == "application/problem+json"
            assert field in response.json["errors"], (body, response.json)
    missing = client.post(
        f"/api/v1/premium-programmes/{funded['id']}/deposits", json={"amount": 5}, headers=shop.operator_h
    )
    assert missing.status_code == 422
    assert {"bank_reference", "received_on"} <= set(missing.json["errors"])
    buyers = programme(client, shop, funded_by="buyer", sponsor="Co-op")
    to_buyers = deposit(client, shop, buyers["id"])
    assert to_buyers.status_code == 422
    assert "programme_id" in to_buyers.json["errors"]
    assert deposit(client, shop, funded["id"] + 100).status_code == 404
    assert deposits_and_postings() == (0, 0)
    assert ledger.balance("gateway_cash:offline") == 0


def test_only_operators_see_or_record_a_sponsors_money(client: FlaskClient, shop: Shop) -> None:
    funded = sponsored(client, shop)
    base = f"/api/v1/premium-programmes/{funded['id']}"
    body = {"amount": 120, "bank_reference": "X1", "received_on": day()}
    for headers in (shop.buyer_h, shop.orchard_h, shop.staff_h):
        assert client.post(f"{base}/deposits", json=body, headers=headers).status_code == 403
        assert client.get(f"{base}/deposits", headers=headers).status_code == 403
        assert client.get(f"{base}/statement", headers=headers).status_code == 403
        # Not even whether a programme exists.
        assert client.get("/api/v1/premium-programmes/999999/statement", headers=headers).status_code == 403
    assert client.post(f"{base}/deposits", json=body).status_code == 401
    assert client.get(f"{base}/statement").status_code == 401
    assert deposits_and_postings() == (0, 0)
    unknown = "/api/v1/premium-programmes/999999"
    assert client.get(f"{unknown}/deposits", headers=shop.operator_h).status_code == 404
    assert client.get(f"{unknown}/statement", headers=shop.operator_h).status_code == 404
    made = deposit(client, shop, funded["id"]).json
    other = sponsored(client, shop, sponsor="Co-op")
    wrong = f"/api/v1/premium-programmes/{other['id']}/deposits/{made['id']}"
    assert client.get(wrong, headers=shop.operator_h).status_code == 404


def test_the_statement_shows_premiums_earned_reversed_deposits_and_what_is_owed(
    client: FlaskClient, shop: Shop
) -> None:
    funded = sponsored(client, shop)  # 100 fen a kg
    assert deposit(client, shop, funded["id"], amount=120, bank_reference="A-1", received_on=day(-1)).status_code == 201
    order = settled_order(client, shop, (shop.oranges, 2000))  # earns 200
    refund(order["id"], line_of(order)["id"], 500)  # 500 g back: 50 reversed
    assert deposit(client, shop, funded["id"], amount=100, bank_reference="B-2").status_code == 201

    whole = statement(client, shop, funded["id"])
    assert whole.status_code == 200, whole.json
    report = whole.json
    assert (report["programme_id"], report["sponsor"], report["currency"]) == (funded["id"], "Fresh Mart", "CNY")
    assert (report["period_from"], report["period_to"], report["opening_owed"]) == (None, None, 0)
    assert [(r["movement"], r["earned"], r["reversed"], r["deposited"], r["balance"]) for r in report["rows"]] == [
        ("deposit", 0, 0, 120, -120),
        ("premium_earned", 200, 0, 0, 80),
        ("premium_reversed", 0, 50, 0, 30),
        ("deposit", 0, 0, 100, -70),
    ]
    earned, reversed_ = report["rows"][1], report["rows"][2]
    assert earned["order_id"] == reversed_["order_id"] == order["id"]
    assert reversed_["refund_id"] is not None
    assert report["rows"][0]["bank_reference"] == "A-1"
    assert report["rows"][0]["day"] == day(-1)
    assert report["totals"] == {"earned": 200, "reversed": 50, "deposited": 220, "owed": -70}
    assert report["closing_owed"] == -70  # a credit: the sponsor paid in more than its farms earned
    assert ledger.balance(f"sponsor_liability:{funded['id']}") == -70
    assert check_ledger() == []

    before = statement(client, shop, funded["id"], to=day(-1)).json
    assert [r["movement"] for r in before["rows"]] == ["deposit"]
    assert (before["totals"]["owed"], before["closing_owed"]) == (-120, -120)
    today = statement(client, shop, funded["id"], **{"from": day(), "to": day()}).json
    assert today["opening_owed"] == -120
    assert today["totals"] == {"earned": 200, "reversed": 50, "deposited": 100, "owed": 50}
    assert today["closing_owed"] == -70
    later = statement(client, shop, funded["id"], **{"from": day(1)}).json
    assert (later["rows"], later["opening_owed"], later["closing_owed"]) == ([], -70, -70)


def test_the_statement_as_csv_names_its_units(client: FlaskClient, shop: Shop) -> None:
    funded = sponsored(client, shop)
    order = settled_order(client, shop, (shop.oranges, 2000))
    refund(order["id"], line_of(order)["id"], 500)
    deposit(client, shop, funded["id"], amount=100, bank_reference="=HYPERLINK(0012)")
    response = statement(client, shop, funded["id"], format="csv", **{"from": day()})
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert f"programme-{funded['id']}-statement-{day()}-now.csv" in response.headers["Content-Disposition"]
    text = response.get_data(as_text=True).lstrip("\ufeff")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == [
        "programme_id", "day", "movement", "order_id", "refund_id", "deposit_id", "bank_reference",
        "earned_yuan", "reversed_yuan", "deposited_yuan", "owed_yuan", "balance_yuan",
    ]  # fmt: skip
    money = ("earned_yuan", "reversed_yuan", "deposited_yuan", "balance_yuan")
    assert [(r["movement"], *(r[name] for name in money)) for r in rows] == [
        ("opening", "", "", "", "0.00"),
        ("premium_earned", "2.00", "0.00", "0.00", "2.00"),
        ("premium_reversed", "0.00", "0.50", "0.00", "1.50"),
        ("deposit", "0.00", "0.00", "1.00", "0.50"),
        ("total", "2.00", "0.50", "1.00", "0.50"),
    ]  # fmt: skip
    assert rows[-1]["owed_yuan"] == "0.50"
    assert rows[3]["bank_reference"] == "'=HYPERLINK(0012)"  # a formula neutralised, kept as text


def test_a_buyer_funded_programme_has_no_statement_and_periods_run_forwards(client: FlaskClient, shop: Shop) -> None:
    buyers = programme(client, shop, funded_by="buyer")
    refused = statement(client, shop, buyers["id"])
    assert refused.status_code == 422
    assert "programme_id" in refused.json["errors"]
    funded = sponsored(client, shop, sponsor="Co-op")
    backwards = statement(client, shop, funded["id"], **{"from": day(), "to": day(-1)})
    assert backwards.status_code == 422
    assert "to" in backwards.json["errors"]
    assert statement(client, shop, funded["id"], format="pdf").status_code == 422
    assert statement(client, shop, funded["id"], to="1999-01-01").status_code == 422


def test_ledger_check_finds_a_deposit_the_ledger_does_not_carry(client: FlaskClient, shop: Shop) -> None:
    funded = sponsored(client, shop)
    deposit(client, shop, funded["id"])
    assert sponsor_account_mismatches() == []
    db.session.add(
        SponsorDeposit(
            programme_id=funded["id"], amount=30, bank_reference="unposted", received_on=business_today(),
            recorded_by=shop.buyer.id,
        )
    )  # fmt: skip
    db.session.commit()
    (problem,) = sponsor_account_mismatches()
    assert f"programme {funded['id']}" in problem
    assert "holds -120" in problem and "owes -150" in problem
    assert problem in check_ledger()
