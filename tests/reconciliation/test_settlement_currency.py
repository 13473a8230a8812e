"""Reconciliation when Stripe settles in another currency than the
marketplace's: the ledger (CNY) is compared with what each charge, refund,
transfer and reversal was made for, never with the converted balance;
each item shows both sides' currencies, what the balance moved and at what
rate; fees are Stripe's, in the settlement currency, and booked in it."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from market.extensions import db
from market.ledger import service as ledger
from market.ledger.models import LedgerAccount
from market.payments.models import Payment
from market.payouts.models import PayoutTransfer
from market.settlement import checks
from tests.fakes.stripe_server import FakeStripe, FakeStripeServer, stripe_fee
from tests.payments.conftest import stripe_settings
from tests.reconciliation.conftest import CLEAN, ITEMS, busy_period, by_outcome, items, reconcile
from tests.shop import Shop

RATE = 0.138841  # USD for one CNY, as Stripe reports it


@pytest.fixture
def app_overrides(stripe_server: FakeStripeServer) -> dict[str, Any]:
    return {"PAYOUT_HOLD_DAYS": 0, "STRIPE_SETTLEMENT_CURRENCY": "USD", **stripe_settings(stripe_server)}


@pytest.fixture
def usd(fake: FakeStripe) -> FakeStripe:
    """The platform's Stripe account settles in US dollars."""
    fake.settlement_currency = "usd"
    fake.exchange_rates = {"cny": RATE, "eur": 1.05}
    return fake


def in_usd(fen: int) -> int:
    return int((Decimal(str(RATE)) * fen).quantize(Decimal(1), ROUND_HALF_UP))


def test_a_period_settled_in_dollars_matches_the_ledger_on_what_each_charge_was_made_for(
    client: FlaskClient, shop: Shop, usd: FakeStripe
) -> None:
    period = busy_period(client, shop, usd)
    assert {(t["currency"], t["exchange_rate"]) for t in usd.balance_transactions} == {("usd", RATE)}

    result = reconcile(client, shop, period.body())

    assert result["counts"] == CLEAN
    found = items(client, shop, result["id"])
    matched = by_outcome(found, "matched")
    assert {(i["gateway_currency"], i["ledger_currency"]) for i in matched} == {("CNY", "CNY")}
    assert {(i["settlement_currency"], i["exchange_rate"]) for i in matched} == {("USD", str(RATE))}
    assert all(i["gateway_amount"] == i["ledger_amount"] for i in matched)
    # A partly captured charge: what was captured, not what was authorised, in both currencies.
    payment = db.session.scalars(select(Payment).where(Payment.order_id == period.orders[1]["id"])).one()
    (charge,) = [i for i in matched if i["order_id"] == payment.order_id and i["object_type"] == "charge"]
    assert charge["gateway_amount"] == payment.amount_captured
    assert charge["settlement_amount"] == in_usd(payment.amount_captured)
    # A payout's transfers, each converted as Stripe moved it, together match what the ledger paid.
    transfer = next(i for i in matched if i["object_type"] == "transfer")
    payout_id = int(transfer["ledger_reference"].split(":")[1])
    made = db.session.scalars(select(PayoutTransfer.amount).where(PayoutTransfer.payout_id == payout_id)).all()
    assert transfer["gateway_amount"] == -sum(made)
    assert transfer["settlement_amount"] == sum(in_usd(-amount) for amount in made)

    fees = by_outcome(found, "fee")
    assert {(i["gateway_currency"], i["settlement_currency"]) for i in fees} == {("USD", "USD")}
    charged = [t for t in usd.balance_transactions if t["type"] == "charge"]
    assert sorted(i["fee"] for i in fees) == sorted(stripe_fee(t["amount"]) for t in charged)
    assert (result["fees_total"], result["settlement_currency"]) == (sum(i["fee"] for i in fees), "USD")


def test_a_fee_in_dollars_is_booked_in_dollars_and_matches_next_time(
    client: FlaskClient, shop: Shop, usd: FakeStripe
) -> None:
    period = busy_period(client, shop, usd)
    first = reconcile(client, shop, period.body())
    fee = by_outcome(items(client, shop, first["id"]), "fee")[0]
    url = f"/api/v1/reconciliations/{first['id']}/items/{fee['id']}/resolve"

    booked = client.post(url, json={"note": "card fees", "book_fee": True}, headers=shop.operator_h)

    assert booked.status_code == 200, booked.json
    assert ledger.balance("gateway_fees:USD") == fee["fee"]
    assert ledger.balance("gateway_cash:stripe:USD") == -fee["fee"]
    assert ledger.balance("gateway_fees") == 0  # nothing in yuan
    currencies = dict(db.session.execute(select(LedgerAccount.code, LedgerAccount.currency)).tuples().all())
    assert currencies["gateway_fees:USD"] == currencies["gateway_cash:stripe:USD"] == "USD"
    assert currencies["gateway_cash:stripe"] == "CNY"
    assert checks.check_ledger() == []
    balances = client.get("/api/v1/ledger/balances?limit=100", headers=shop.operator_h).json["items"]
    assert {"account": "gateway_fees:USD", "kind": "expense", "currency": "USD", "balance": fee["fee"]} in balances

    again = reconcile(client, shop, period.body())
    assert again["counts"]["fee"] == first["counts"]["fee"] - 1
    assert again["counts"]["missing_at_gateway"] == 0
    (rebooked,) = [
        i for i in items(client, shop, again["id"])
        if i["object_type"] == "fee" and i["balance_transaction_id"] == fee["balance_transaction_id"]
    ]  # fmt: skip
    assert (rebooked["outcome"], rebooked["ledger_amount"], rebooked["ledger_currency"]) == (
        "matched",
        -fee["fee"],
        "USD",
    )


def test_a_record_in_a_currency_that_cannot_be_compared_is_a_mismatch_that_says_why(
    client: FlaskClient, shop: Shop, usd: FakeStripe
) -> None:
    period = busy_period(client, shop, usd)
    payment = db.session.scalars(select(Payment).where(Payment.order_id == period.orders[2]["id"])).one()
    charge_id = usd.intents[payment.stripe_payment_intent_id or ""]["latest_charge"]
    usd.balance_transaction_of(charge_id)["currency"] = "eur"  # neither the marketplace's nor the settlement's
    euros = usd.add_unknown_charge(5000, currency="eur")  # settled in dollars, but charged in euros

    result = reconcile(client, shop, period.body())

    assert result["counts"]["currency_differs"] == 2
    assert result["counts"]["matched"] == ITEMS - 1
    assert result["counts"]["amount_differs"] == result["counts"]["missing_in_ledger"] == 0
    found = by_outcome(items(client, shop, result["id"]), "currency_differs")
    third = next(i for i in found if i["order_id"] == payment.order_id)
    assert (third["gateway_currency"], third["ledger_currency"]) == ("EUR", "CNY")
    assert third["ledger_amount"] == payment.amount_captured
    assert third["reason"] == (
        "Stripe settled this in EUR, neither the marketplace currency CNY nor the settlement currency USD "
        "(STRIPE_SETTLEMENT_CURRENCY)."
    )
    converted = next(i for i in found if i["object_id"] == euros)
    assert (converted["gateway_amount"], converted["gateway_currency"]) == (5000, "EUR")
    assert (converted["settlement_amount"], converted["settlement_currency"]) == (5250, "USD")
    assert converted["reason"] == "Converted from EUR, not from the marketplace currency CNY."
