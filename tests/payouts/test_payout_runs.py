"""Payout runs over settled orders, paid by bank file: statements to the
fen, repeated and overlapping runs, the hold period, the bank file and its
confirmation, and bad input."""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import aliased

from market.catalog.models import Farm
from market.db import business_today, utcnow
from market.extensions import db
from market.ledger import service as ledger
from market.ledger.models import LedgerAccount, LedgerTransaction
from market.money import CurrencyMismatch
from market.orders.models import OrderEvent
from market.payments import service as payments
from market.payments.models import CapturedLine, Refund, RefundStatus
from market.payouts import service as payouts
from market.payouts.models import Payout, PayoutAccount, PayoutRun
from market.settlement import checks
from market.settlement.models import EntryKind, FarmEntry, PayoutCoverage, paid_by
from tests.payouts.conftest import bank_details, navel_bonus, operator, queued, refund, run, settled_order
from tests.shop import Shop


def two_orders(client: FlaskClient, shop: Shop) -> tuple[dict, dict]:  # type: ignore[type-arg]
    first = settled_order(client, shop, (shop.oranges, 2000), (shop.pomelos, 1500), weighed={shop.oranges.id: 2105})
    second = settled_order(client, shop, (shop.nuts, 750), (shop.oranges, 1000))
    pomelo_line = next(ln for p in first["parts"] for ln in p["lines"] if ln["listing_id"] == shop.pomelos.id)
    refund(first["id"], pomelo_line["id"], 500)
    return first, second


def test_statement_to_the_fen(client: FlaskClient, shop: Shop) -> None:
    bank_details(client, shop, shop.orchard.id)
    bank_details(client, shop, shop.chestnuts.id)
    first, second = two_orders(client, shop)

    response = run(client, shop)
    assert response.status_code == 201, response.json
    assert response.json["payouts_count"] == 2
    assert response.json["total"] == 3707 + 1710

    listed = client.get("/api/v1/payouts", query_string={"farm_id": shop.orchard.id}, headers=shop.operator_h).json
    (orchard,) = listed["items"]
    # Oranges 2105 g at 9.99 = 21.03 (5% = 1.05), pomelos 1500 g at 8.00 =
    # 12.00 (0.60), oranges 1000 g = 9.99 (0.50); 500 g of pomelos refunded:
    # 4.00 less its 0.20 commission.
    assert {k: orchard[k] for k in ("orders_count", "lines_count", "grams", "sales", "commission", "refunds")} == {
        "orders_count": 2,
        "lines_count": 3,
        "grams": 4605,
        "sales": 4302,
        "commission": 215,
        "refunds": 380,
    }
    assert (orchard["premiums"], orchard["adjustments"], orchard["amount"]) == (0, 0, 3707)
    assert orchard["status"] == "awaiting_confirmation"

    detail = client.get(f"/api/v1/payouts/{orchard['id']}", headers=shop.orchard_h).json
    assert [o["order_id"] for o in detail["orders"]] == [first["id"], second["id"]]
    assert [(ln["grams"], ln["amount"], ln["commission"], ln["net"]) for ln in detail["orders"][0]["lines"]] == [
        (2105, 2103, 105, 1998),
        (1500, 1200, 60, 1140),
    ]
    assert [(r["grams"], r["amount"], r["commission"], r["net"]) for r in detail["refunds"]] == [(500, 400, 20, 380)]
    assert detail["premiums"] == []
    assert detail["adjustments"] == []

    # Each farm's payable is now settled into the payout, in transit.
    assert ledger.balance(ledger.farm_payable(shop.orchard.id)) == 0
    assert ledger.balance(ledger.farm_payable(shop.chestnuts.id)) == 0
    assert ledger.balance(ledger.PAYOUTS_IN_TRANSIT) == -(3707 + 1710)
    assert checks.check_ledger() == []

    csv_response = client.get(f"/api/v1/payouts/{orchard['id']}/statement.csv", headers=shop.orchard_h)
    assert csv_response.status_code == 200
    assert csv_response.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(csv_response.get_data(as_text=True).lstrip("\ufeff"))))
    assert [(r["section"], r["weight_kg"], r["amount_yuan"], r["commission_yuan"], r["net_yuan"]) for r in rows] == [
        ("sale", "2.105", "21.03", "1.05", "19.98"),
        ("sale", "1.500", "12.00", "0.60", "11.40"),
        ("sale", "1.000", "9.99", "0.50", "9.49"),
        ("refund", "0.500", "-4.00", "-0.20", "-3.80"),
        ("total", "4.605", "43.02", "2.15", "37.07"),
    ]


def test_running_again_or_overlapping_pays_nobody_twice(client: FlaskClient, shop: Shop) -> None:
    bank_details(client, shop, shop.orchard.id)
    bank_details(client, shop, shop.chestnuts.id)
    two_orders(client, shop)
    assert run(client, shop).json["payouts_count"] == 2
    again = run(client, shop)
    assert again.status_code == 201
    assert (again.json["payouts_count"], again.json["total"]) == (0, 0)

    # A new order settles; an overlapping run (the same period) pays only it.
    settled_order(client, shop, (shop.nuts, 500))
    overlapping = run(client, shop)
    assert (overlapping.json["payouts_count"], overlapping.json["total"]) == (1, 1200 - 60)
    paid_sales = select(func.count()).where(FarmEntry.kind == EntryKind.SALE, paid_by(FarmEntry).isnot(None))
    assert db.session.scalar(paid_sales) == 5
    # Each order part was covered once, by the payout that paid it.
    assert db.session.scalar(select(func.count()).select_from(PayoutCoverage)) == 4
    assert db.session.scalar(select(func.sum(Payout.amount))) == 3707 + 1710 + 1140
    assert checks.check_ledger() == []


def test_every_payout_states_exactly_what_it_covers(client: FlaskClient, shop: Shop) -> None:
    bank_details(client, shop, shop.orchard.id)
    bank_details(client, shop, shop.chestnuts.id)
    first, _ = two_orders(client, shop)
    assert run(client, shop).json["payouts_count"] == 2
    # A refund of a line the first run paid is netted from the next payout.
    orange_line = next(ln for p in first["parts"] for ln in p["lines"] if ln["listing_id"] == shop.oranges.id)
    refund(first["id"], orange_line["id"], 1000)
    settled_order(client, shop, (shop.oranges, 3000), (shop.nuts, 500))
    assert run(client, shop).json["payouts_count"] == 2

    payer = paid_by(FarmEntry).label("payout_id")
    sales = {
        row.payout_id: row
        for row in db.session.execute(
            select(
                payer,
                func.count(func.distinct(FarmEntry.order_id)).label("orders_count"),
                func.count().label("lines_count"),
                func.sum(CapturedLine.grams).label("grams"),
                func.sum(CapturedLine.amount + CapturedLine.premium).label("sales"),
                func.sum(CapturedLine.commission).label("commission"),
            )
            .join(CapturedLine, CapturedLine.order_line_id == FarmEntry.order_line_id)
            .where(FarmEntry.kind == EntryKind.SALE)
            .group_by(payer)
        )
    }
    sale = aliased(FarmEntry)
    adjustment = paid_by(sale) != payer
    refunds = {
        (payout_id, adjustment): -total
        for payout_id, adjustment, total in db.session.execute(
            select(payer, adjustment, func.sum(FarmEntry.net))
            .join(sale, (sale.order_line_id == FarmEntry.order_line_id) & (sale.kind == EntryKind.SALE))
            .where(FarmEntry.kind == EntryKind.REFUND)
            .group_by(payer, adjustment)
        )
    }
    assert refunds, "the runs settled no refund"
    for payout in db.session.scalars(select(Payout)):
        covered = sales[payout.id]
        assert (payout.orders_count, payout.lines_count, payout.grams, payout.sales, payout.commission) == (
            covered.orders_count,
            covered.lines_count,
            covered.grams,
            covered.sales,
            covered.commission,
        )
        assert payout.refunds == refunds.get((payout.id, False), 0)
        assert payout.adjustments == refunds.get((payout.id, True), 0)
    assert checks.check_ledger() == []


def test_the_same_idempotency_key_replays_the_run(client: FlaskClient, shop: Shop) -> None:
    bank_details(client, shop, shop.orchard.id)
    settled_order(client, shop, (shop.oranges, 1000))
    first = run(client, shop, **{"Idempotency-Key": "run-2026-w48"})
    second = run(client, shop, **{"Idempotency-Key": "run-2026-w48"})
    assert first.status_code == second.status_code == 201
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.json == first.json
    assert db.session.scalar(select(func.count()).select_from(PayoutRun)) == 1


@pytest.mark.parametrize("period_end", [date(1999, 12, 31), None])
def test_a_future_or_ancient_period_is_refused_and_writes_nothing(
    client: FlaskClient, shop: Shop, period_end: date | None
) -> None:
    bank_details(client, shop, shop.orchard.id)
    settled_order(client, shop, (shop.oranges, 1000))
    before = db.session.scalar(select(func.count()).select_from(LedgerTransaction))
    response = run(client, shop, period_end or business_today() + timedelta(days=1))
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    assert "period_end" in response.json["errors"]
    assert db.session.scalar(select(func.count()).select_from(PayoutRun)) == 0
    assert db.session.scalar(select(func.count()).select_from(LedgerTransaction)) == before


def test_orders_settled_within_the_hold_period_wait(client: FlaskClient, shop: Shop) -> None:
    bank_details(client, shop, shop.orchard.id)
    order = settled_order(client, shop, (shop.oranges, 1000))
    client.application.config["PAYOUT_HOLD_DAYS"] = 3
    assert run(client, shop).json["payouts_count"] == 0
    # Delivered four days ago: past the hold, but not within a period that
    # ended five days ago.
    db.session.execute(
        update(OrderEvent).where(OrderEvent.order_id == order["id"]).values(created_at=utcnow() - timedelta(days=4))
    )
    db.session.commit()
    assert run(client, shop, business_today() - timedelta(days=5)).json["payouts_count"] == 0
    assert run(client, shop).json["payouts_count"] == 1


def test_farms_without_payout_details_are_left_for_later(client: FlaskClient, shop: Shop) -> None:
    bank_details(client, shop, shop.orchard.id)
    settled_order(client, shop, (shop.oranges, 1000), (shop.nuts, 500))
    first = run(client, shop).json
    assert first["payouts_count"] == 1
    assert first["skipped"] == [
        {
            "farm_id": shop.chestnuts.id,
            "reason": "no_payout_account",
            "detail": "The farm has not chosen how it is paid (no payout account).",
            "amount": 1140,
            "entries_count": 1,
        }
    ]
    assert client.get(f"/api/v1/payout-runs/{first['id']}", headers=shop.operator_h).json["skipped"] == first["skipped"]
    bank_details(client, shop, shop.chestnuts.id)
    later = run(client, shop).json
    assert (later["payouts_count"], later["total"], later["skipped"]) == (1, 1140, [])


def test_a_farm_owing_more_than_it_is_due_is_skipped_with_its_negative_net(client: FlaskClient, shop: Shop) -> None:
    bank_details(client, shop, shop.orchard.id)
    order = settled_order(client, shop, (shop.oranges, 1000))
    assert run(client, shop).json["payouts_count"] == 1
    refund(order["id"], order["parts"][0]["lines"][0]["id"], 500)
    netted = run(client, shop).json
    assert netted["payouts_count"] == 0
    ((skip),) = netted["skipped"]
    assert (skip["farm_id"], skip["reason"], skip["amount"]) == (shop.orchard.id, "negative_net", -(500 - 25))


def test_bank_file_and_confirmation(client: FlaskClient, shop: Shop) -> None:
    bank_details(client, shop, shop.orchard.id)
    settled_order(client, shop, (shop.oranges, 1000))
    run_id = run(client, shop).json["id"]
    payout = db.session.scalars(select(Payout)).one()

    response = client.get(f"/api/v1/payout-runs/{run_id}/bank-file.csv", headers=shop.operator_h)
    assert response.status_code == 200
    (row,) = csv.DictReader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff")))
    assert row == {
        "payout_id": str(payout.id),
        "reference": f"payout-{payout.id}",
        "farm": shop.orchard.name,
        "account_holder": "刘长生",
        "bank_name": "中国农业银行 寻乌支行",
        "account_number": "6228480012345678901",
        "amount_yuan": "9.49",
        "currency": "CNY",
    }
    account = client.get(f"/api/v1/farms/{shop.orchard.id}/payout-account", headers=shop.orchard_h).json
    assert account["bank_account_masked"] == "***************8901"
    assert "6228480012345678901" not in str(account)

    confirmed = client.post(
        f"/api/v1/payouts/{payout.id}/confirm", json={"bank_reference": "ABC-2026-0001"}, headers=shop.operator_h
    )
    assert confirmed.status_code == 200, confirmed.json
    assert (confirmed.json["status"], confirmed.json["bank_reference"]) == ("paid", "ABC-2026-0001")
    assert ledger.balance(ledger.PAYOUTS_IN_TRANSIT) == 0
    # The buyer paid 9.99 in, the farm was paid 9.49 out: the commission stays.
    assert ledger.balance("gateway_cash:offline") == 999 - 949
    assert checks.check_ledger() == []

    twice = client.post(
        f"/api/v1/payouts/{payout.id}/confirm", json={"bank_reference": "ABC-2026-0002"}, headers=shop.operator_h
    )
    assert twice.status_code == 409
    assert twice.mimetype == "application/problem+json"
    db.session.expire_all()
    assert db.session.get(Payout, payout.id).bank_reference == "ABC-2026-0001"  # type: ignore[union-attr]
    emptied = client.get(f"/api/v1/payout-runs/{run_id}/bank-file.csv", headers=shop.operator_h)
    assert len(list(csv.DictReader(io.StringIO(emptied.get_data(as_text=True).lstrip("\ufeff"))))) == 0


def test_a_payout_goes_to_the_bank_details_its_run_took(client: FlaskClient, shop: Shop) -> None:
    bank_details(client, shop, shop.orchard.id)
    settled_order(client, shop, (shop.oranges, 1000))
    first = run(client, shop).json["id"]
    moved = {
        "method": "bank_transfer",
        "account_holder": "刘长生",
        "bank_name": "赣州银行",
        "account_number": "6210 0000 0000 4444",
    }
    url = f"/api/v1/farms/{shop.orchard.id}/payout-account"
    assert client.post(url, json=moved, headers=shop.orchard_h).status_code == 200
    settled_order(client, shop, (shop.oranges, 2000))
    second = run(client, shop).json["id"]

    def bank_file(run_id: int) -> list[dict[str, str]]:
        response = client.get(f"/api/v1/payout-runs/{run_id}/bank-file.csv", headers=shop.operator_h)
        return list(csv.DictReader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff"))))

    # The details changed after the first run: its file still pays where the run decided.
    ((row,),) = [bank_file(first)]
    assert (row["bank_name"], row["account_number"], row["amount_yuan"]) == (
        "中国农业银行 寻乌支行",
        "6228480012345678901",
        "9.49",
    )
    ((row,),) = [bank_file(second)]
    assert (row["bank_name"], row["account_number"], row["amount_yuan"]) == ("赣州银行", "6210000000004444", "18.98")
    paid_to = [
        (p["run_id"], p["bank_name"], p["bank_account_masked"])
        for p in client.get(f"/api/v1/payouts?farm_id={shop.orchard.id}", headers=shop.orchard_h).json["items"]
    ]
    assert sorted(paid_to) == [
        (first, "中国农业银行 寻乌支行", "***************8901"),
        (second, "赣州银行", "************4444"),
    ]
    assert "6228480012345678901" not in str(paid_to)


def test_the_bank_file_is_in_yuan_and_a_short_account_number_stays_text(client: FlaskClient, shop: Shop) -> None:
    body = {"method": "bank_transfer", "account_holder": "刘长生", "bank_name": "农商行", "account_number": "0012 3456"}
    response = client.post(f"/api/v1/farms/{shop.orchard.id}/payout-account", json=body, headers=shop.orchard_h)
    assert response.status_code == 200, response.json
    settled_order(client, shop, (shop.oranges, 2000))
    run_id = run(client, shop).json["id"]

    text = client.get(f"/api/v1/payout-runs/{run_id}/bank-file.csv", headers=shop.operator_h).get_data(as_text=True)
    header, line = text.lstrip("\ufeff").splitlines()
    assert header.endswith(",account_number,amount_yuan,currency")
    assert line.endswith(',"00123456",18.98,"CNY"')


def test_a_run_queues_its_dispatch_through_the_outbox(client: FlaskClient, shop: Shop) -> None:
    bank_details(client, shop, shop.orchard.id)
    settled_order(client, shop, (shop.oranges, 1000))
    run_id = run(client, shop).json["id"]
    assert {"run_id": run_id} in queued("payouts.dispatch_run")


def test_unknown_payouts_runs_and_farms_are_404(client: FlaskClient, shop: Shop) -> None:
    for method, url in (
        ("get", "/api/v1/payouts/999"),
        ("get", "/api/v1/payouts/999/statement.csv"),
        ("get", "/api/v1/payout-runs/999"),
        ("get", "/api/v1/payout-runs/999/bank-file.csv"),
    ):
        response = getattr(client, method)(url, headers=shop.operator_h)
        assert response.status_code == 404, url
        assert response.mimetype == "application/problem+json"
    missing = client.post("/api/v1/payouts/999/confirm", json={"bank_reference": "X"}, headers=shop.operator_h)
    assert missing.status_code == 404
    unknown_farm = client.post("/api/v1/farms/999/payout-account", json={"method": "stripe"}, headers=shop.orchard_h)
    assert unknown_farm.status_code == 404


def test_stripe_is_refused_as_the_payout_method_when_it_is_not_configured(client: FlaskClient, shop: Shop) -> None:
    url = f"/api/v1/farms/{shop.orchard.id}/payout-account"
    refused = client.post(url, json={"method": "stripe"}, headers=shop.orchard_h)
    assert refused.status_code == 422
    assert refused.mimetype == "application/problem+json"
    assert refused.json["type"] == "/problems/stripe-cannot-pay-farm"
    assert "bank_transfer" in refused.json["errors"]["method"][0]
    assert refused.json["payout_method"] == "bank_transfer"
    assert db.session.scalar(select(func.count()).select_from(PayoutAccount)) == 0  # not left "connecting"
    assert queued("payouts.connect_account") == []
    patched = client.patch(f"/api/v1/farms/{shop.orchard.id}", json={"payout_method": "stripe"}, headers=shop.orchard_h)
    assert patched.status_code == 422
    assert "payout_method" in patched.json["errors"]
    db.session.expire_all()
    assert db.session.get(Farm, shop.orchard.id).payout_method is None  # type: ignore[union-attr]
    # Without a choice, the farm gets the bank file.
    bank = {"account_holder": "刘长生", "bank_name": "农行", "account_number": "62284800"}
    chosen = client.post(url, json=bank, headers=shop.orchard_h)
    assert (chosen.status_code, chosen.json["method"]) == (200, "bank_transfer")


def test_bank_details_are_required_for_bank_transfers(client: FlaskClient, shop: Shop) -> None:
    response = client.post(
        f"/api/v1/farms/{shop.orchard.id}/payout-account",
        json={"method": "bank_transfer", "bank_name": "农行"},
        headers=shop.orchard_h,
    )
    assert response.status_code == 422
    assert set(response.json["errors"]) == {"account_holder", "account_number"}
    assert client.get(f"/api/v1/farms/{shop.orchard.id}/payout-account", headers=shop.orchard_h).status_code == 404


def test_a_farm_paid_more_than_a_32_bit_integer_of_fen(app: Flask, client: FlaskClient, shop: Shop) -> None:
    """County-scale volume: 1,800 t of citrus in two orders pays one farm
    over 21,474,836.47 yuan (2^31 - 1 fen); the payout, the run and the
    ledger hold it (in a marketplace whose buyers may hold that much unpaid)."""
    app.config["BUYER_MAX_UNPAID_G"] = 1_800_000_000
    for listing in (shop.oranges, shop.pomelos):
        listing.stock_g = 1_800_000_000
    db.session.commit()
    bank_details(client, shop, shop.orchard.id)
    for _ in range(2):
        settled_order(client, shop, (shop.oranges, 900_000_000), (shop.pomelos, 900_000_000))

    response = run(client, shop)
    assert response.status_code == 201, response.json
    # Per order: 900,000 kg at 9.99 + 900,000 kg at 8.00 = 1,619,100,000 fen.
    sales = 2 * 1_619_100_000
    commission = sales * 5 // 100
    assert response.json["total"] == sales - commission == 3_076_290_000
    (payout,) = client.get("/api/v1/payouts", headers=shop.operator_h).json["items"]
    assert (payout["grams"], payout["sales"], payout["amount"]) == (3_600_000_000, sales, sales - commission)
    assert ledger.balance(ledger.PAYOUTS_IN_TRANSIT) == -(sales - commission)
    assert checks.check_ledger() == []


def test_a_statement_with_sponsor_premiums_and_a_reversal_after_payout_as_csv(client: FlaskClient, shop: Shop) -> None:
    """The premium section's sums come back from PostgreSQL as numerics; the
    CSV still formats them. A sponsor premium taken back after the farm was
    paid (the order cancelled by an operator) is netted from the next payout."""
    navel_bonus(client, shop)
    bank_details(client, shop, shop.orchard.id)
    order = settled_order(client, shop, (shop.oranges, 2000))
    first = run(client, shop).json
    (paid,) = client.get("/api/v1/payouts", query_string={"run_id": first["id"]}, headers=shop.operator_h).json["items"]
    assert (paid["premiums"], paid["amount"]) == (200, 1998 - 100 + 200)
    statement = client.get(f"/api/v1/payouts/{paid['id']}/statement.csv", headers=shop.orchard_h)
    assert statement.status_code == 200
    rows = list(csv.DictReader(io.StringIO(statement.get_data(as_text=True).lstrip("\ufeff"))))
    premium = next(row for row in rows if row["section"] == "premium")
    assert (premium["item"], premium["net_yuan"]) == ("Navel bonus", "2.00")

    cancelled = client.post(f"/api/v1/orders/{order['id']}/cancel", json={"reason": "recall"}, headers=shop.operator_h)
    assert cancelled.status_code == 200, cancelled.json
    payments.settle_closed_order(order["id"])
    for refund_id in db.session.scalars(select(Refund.id).where(Refund.status == RefundStatus.PENDING)).all():
        payments.process_refund(refund_id)
    settled_order(client, shop, (shop.oranges, 3000))
    second = run(client, shop).json
    (netted,) = client.get("/api/v1/payouts", query_string={"run_id": second["id"]}, headers=shop.operator_h).json[
        "items"
    ]
    # 3 kg sold (29.97 less 1.50, plus 3.00 premium), less the first order's
    # produce (19.98 less 1.00) and its premium (2.00) given back.
    assert netted["premiums"] == 300 - 200
    assert netted["amount"] == (2997 - 150 + 300) - (1998 - 100) - 200
    assert checks.check_ledger() == []


def test_a_farm_whose_payable_holds_another_currency_stops_the_run_and_nothing_is_paid(
    client: FlaskClient, shop: Shop
) -> None:
    """Amounts in two currencies do not add up: a run that would post a
    payout to a farm account in dollars refuses, and writes nothing."""
    bank_details(client, shop, shop.orchard.id)
    settled_order(client, shop, (shop.oranges, 1000))
    code = ledger.farm_payable(shop.orchard.id)
    db.session.execute(update(LedgerAccount).where(LedgerAccount.code == code).values(currency="USD"))
    db.session.commit()
    with pytest.raises(CurrencyMismatch, match=f"posting CNY, but {code} holds USD"):
        payouts.create_run(operator(), period_end=business_today())
    assert db.session.scalar(select(func.count()).select_from(Payout)) == 0
    assert db.session.scalar(select(func.count()).select_from(PayoutCoverage)) == 0
