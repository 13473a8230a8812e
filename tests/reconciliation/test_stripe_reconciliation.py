"""Reconciliation against the local fake Stripe: a clean period matches
in full; every mismatch injected at the gateway is found; more balance
transactions than one page are all read."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from market.db import utcnow
from market.extensions import TransientError, db
from market.ledger import service as ledger
from market.payments.models import Payment
from market.payouts.models import PayoutTransfer
from market.reconciliation import service as reconciliation
from market.reconciliation.models import ReconciliationRun, RunStatus
from tests.fakes.stripe_server import FakeStripe, FakeStripeServer, stripe_fee
from tests.payments.conftest import stripe_settings
from tests.reconciliation.conftest import CLEAN, ITEMS, RECORDS, busy_period, by_outcome, items, reconcile
from tests.shop import Shop

PAGE = 3  # RECORDS take more than three pages


@pytest.fixture
def app_overrides(stripe_server: FakeStripeServer) -> dict[str, Any]:
    return {"PAYOUT_HOLD_DAYS": 0, "RECONCILIATION_PAGE_SIZE": PAGE, **stripe_settings(stripe_server)}


def test_a_clean_period_matches_every_record_over_several_pages(
    client: FlaskClient, shop: Shop, fake: FakeStripe
) -> None:
    period = busy_period(client, shop, fake)
    assert len(fake.balance_transactions) == RECORDS

    result = reconcile(client, shop, period.body())

    assert result["status"] == "completed"
    assert result["gateway_records"] == RECORDS
    assert result["counts"] == CLEAN
    assert fake.calls["GET /v1/balance_transactions"] == -(-RECORDS // PAGE)  # every page, once
    found = items(client, shop, result["id"])
    assert {item["object_type"] for item in by_outcome(found, "matched")} == {
        "charge",
        "refund",
        "transfer",
        "transfer_reversal",
    }
    charges = [t for t in fake.balance_transactions if t["type"] == "charge"]
    assert result["fees_total"] == sum(stripe_fee(t["amount"]) for t in charges)
    assert sorted(item["fee"] for item in by_outcome(found, "fee")) == sorted(t["fee"] for t in charges)
    # Stripe settled in the charges' own currency: nothing converted, one currency throughout.
    matched = by_outcome(found, "matched")
    sides = {(i["gateway_currency"], i["ledger_currency"], i["exchange_rate"]) for i in matched}
    assert sides == {("CNY", "CNY", None)}
    assert all(i["settlement_amount"] == i["gateway_amount"] for i in found)
    assert result["settlement_currency"] == "CNY"
    reversal = next(item for item in found if item["object_type"] == "transfer_reversal")
    assert reversal["ledger_reference"] == f"reversal:{period.reversal.id}"
    assert reversal["gateway_amount"] == reversal["ledger_amount"] == period.reversal.amount
    # Fees are reported, never posted on their own.
    assert ledger.balance("gateway_fees") == 0


def test_every_mismatch_injected_at_the_gateway_is_found(client: FlaskClient, shop: Shop, fake: FakeStripe) -> None:
    period = busy_period(client, shop, fake)
    dropped = db.session.scalars(
        select(PayoutTransfer.stripe_transfer_id).where(PayoutTransfer.payout_id == period.payouts[0].id)
    ).all()
    for transfer_id in dropped:  # every transfer of the first payout
        fake.drop_balance_transaction(transfer_id or "")
    payment = db.session.scalars(select(Payment).where(Payment.order_id == period.orders[2]["id"])).one()
    charge_id = fake.intents[payment.stripe_payment_intent_id or ""]["latest_charge"]
    fake.change_amount(charge_id, payment.amount_captured - 100)
    unknown = fake.add_unknown_charge(5000)

    result = reconcile(client, shop, period.body())

    assert result["counts"] | {"fee": 0, "unresolved": 0} == {
        "matched": ITEMS - 2,
        "missing_at_gateway": 1,
        "missing_in_ledger": 1,
        "amount_differs": 1,
        "currency_differs": 0,
        "fee": 0,
        "unresolved": 0,
    }
    found = items(client, shop, result["id"])
    (missing_there,) = by_outcome(found, "missing_at_gateway")
    assert missing_there["object_type"] == "transfer"
    assert missing_there["object_id"] in dropped
    assert missing_there["ledger_reference"] == f"payout:{period.payouts[0].id}:paid"
    assert (missing_there["gateway_amount"], missing_there["ledger_amount"]) == (None, -period.payouts[0].amount)
    (differs,) = by_outcome(found, "amount_differs")
    assert differs["order_id"] == period.orders[2]["id"]
    assert (differs["gateway_amount"], differs["ledger_amount"]) == (
        payment.amount_captured - 100,
        payment.amount_captured,
    )
    (missing_here,) = by_outcome(found, "missing_in_ledger")
    assert (missing_here["object_type"], missing_here["object_id"]) == ("charge", unknown)
    assert (missing_here["gateway_amount"], missing_here["ledger_amount"]) == (5000, None)
    # Filtering by outcome gives the same items.
    assert items(client, shop, result["id"], outcome="amount_differs") == [differs]


def test_resolving_items_and_booking_a_fee(client: FlaskClient, shop: Shop, fake: FakeStripe) -> None:
    period = busy_period(client, shop, fake)
    fake.add_unknown_charge(5000)
    first = reconcile(client, shop, period.body())
    found = items(client, shop, first["id"])
    url = f"/api/v1/reconciliations/{first['id']}/items"

    matched = by_outcome(found, "matched")[0]
    refused = client.post(f"{url}/{matched['id']}/resolve", json={"note": "fine"}, headers=shop.operator_h)
    assert refused.status_code == 422
    assert refused.mimetype == "application/problem+json"

    unknown = by_outcome(found, "missing_in_ledger")[0]
    not_a_fee = client.post(
        f"{url}/{unknown['id']}/resolve", json={"note": "x", "book_fee": True}, headers=shop.operator_h
    )
    assert not_a_fee.status_code == 422
    body = {"note": "A test charge made in the dashboard; refunded there."}
    resolved = client.post(f"{url}/{unknown['id']}/resolve", json=body, headers=shop.operator_h)
    assert resolved.status_code == 200, resolved.json
    assert resolved.json["resolution_note"] == body["note"]
    assert resolved.json["resolved_at"] is not None
    again = client.post(f"{url}/{unknown['id']}/resolve", json=body, headers=shop.operator_h)
    assert again.status_code == 409

    fee = by_outcome(found, "fee")[0]
    # A second run of the same period, made before the fee is booked, reports it too.
    second = reconcile(client, shop, period.body())
    (same_fee,) = [
        i for i in by_outcome(items(client, shop, second["id"]), "fee")
        if i["balance_transaction_id"] == fee["balance_transaction_id"]
    ]  # fmt: skip
    book = {"note": "card fees", "book_fee": True}
    booked = client.post(f"{url}/{fee['id']}/resolve", json=book, headers=shop.operator_h)
    assert booked.status_code == 200, booked.json
    assert booked.json["fee_booked"] == f"gateway_fee:{fee['balance_transaction_id']}"
    assert ledger.balance("gateway_fees") == fee["fee"]
    shown = client.get(f"/api/v1/reconciliations/{first['id']}", headers=shop.operator_h).json
    assert shown["counts"]["unresolved"] == first["counts"]["unresolved"] - 2
    # Booking it again from the other run would count the fee twice.
    twice = client.post(
        f"/api/v1/reconciliations/{second['id']}/items/{same_fee['id']}/resolve", json=book, headers=shop.operator_h
    )
    assert twice.status_code == 409
    assert ledger.balance("gateway_fees") == fee["fee"]

    # The booked fee matches in the next run, and its cash entry is no mismatch.
    third = reconcile(client, shop, period.body())
    assert third["counts"]["fee"] == first["counts"]["fee"] - 1
    assert third["counts"]["missing_at_gateway"] == 0
    (rebooked,) = [
        i for i in items(client, shop, third["id"])
        if i["balance_transaction_id"] == fee["balance_transaction_id"] and i["object_type"] == "fee"
    ]  # fmt: skip
    assert (rebooked["outcome"], rebooked["ledger_amount"]) == ("matched", -fee["fee"])


def test_items_export_as_csv(client: FlaskClient, shop: Shop, fake: FakeStripe) -> None:
    period = busy_period(client, shop, fake)
    result = reconcile(client, shop, period.body())
    response = client.get(f"/api/v1/reconciliations/{result['id']}/items.csv", headers=shop.operator_h)
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff"))))
    assert len(rows) == ITEMS + 4
    assert rows[0]["outcome"] in ("matched", "fee")
    # The same amounts as the JSON items, in yuan: CNY is the settlement currency here.
    by_id = {item["id"]: item for item in items(client, shop, result["id"])}
    for row in rows:
        item = by_id[int(row["id"])]
        for name in ("gateway_amount", "ledger_amount", "settlement_amount", "fee"):
            expected = "" if item[name] is None else f"{Decimal(item[name]) / 100:.2f}"
            assert row[f"{name}_major"] == expected, (name, row)
        assert row["fee_currency"] == "CNY"
    only_fees = client.get(
        f"/api/v1/reconciliations/{result['id']}/items.csv", query_string={"outcome": "fee"}, headers=shop.operator_h
    )
    assert len(list(csv.DictReader(io.StringIO(only_fees.get_data(as_text=True).lstrip("\ufeff"))))) == 4


def test_a_gateway_that_refuses_fails_the_run_and_one_that_is_down_is_retried(
    client: FlaskClient, shop: Shop, fake: FakeStripe
) -> None:
    body = {"period_start": (utcnow() - timedelta(days=1)).isoformat(), "period_end": utcnow().isoformat()}
    run_id = client.post("/api/v1/reconciliations", json=body, headers=shop.operator_h).json["id"]
    # Stripe's client retries a 500 twice by itself; the third one is the task's to retry.
    fake.fail_next.extend([("/v1/balance_transactions", 500)] * 3)
    with pytest.raises(TransientError):
        reconciliation.perform(run_id)
    assert db.session.get(ReconciliationRun, run_id).status == RunStatus.PENDING  # type: ignore[union-attr]

    fake.fail_next.append(("/v1/balance_transactions", 400))
    failed = reconciliation.perform(run_id)
    assert failed.status == RunStatus.FAILED
    assert failed.error is not None and "refused" in failed.error
    assert reconciliation.perform(run_id).status == RunStatus.FAILED  # a redelivered task changes nothing
