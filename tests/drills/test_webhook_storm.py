"""Drill: the same Stripe events replayed ten times, shuffled, leave the
same end state as each delivered once."""

from __future__ import annotations

import random
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from market.extensions import db
from market.ledger.models import LedgerTransaction
from market.orders.models import Order, OrderEvent, OrderStatus
from market.payments import service as payments
from market.payments.models import Payment, PaymentStatus, StripeEvent
from tests.fakes.stripe_server import FakeStripe, FakeStripeServer, sign
from tests.payments.conftest import WEBHOOK_SECRET, stripe_settings
from tests.shop import Shop, place


@pytest.fixture
def app_overrides(stripe_server: FakeStripeServer) -> dict[str, Any]:
    return stripe_settings(stripe_server)


def deliver(client: FlaskClient, payload: bytes) -> None:
    response = client.post(
        "/api/v1/webhooks/stripe",
        data=payload,
        headers={"Stripe-Signature": sign(payload, WEBHOOK_SECRET), "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.json


def test_replayed_shuffled_events_change_state_once(client: FlaskClient, shop: Shop, fake_stripe: FakeStripe) -> None:
    events: list[bytes] = []
    expected: dict[int, OrderStatus] = {}
    for index in range(4):
        order = place(client, shop, (shop.oranges, 1000 + 500 * index))
        intent_id = payments.open_payment(order["id"]).stripe_payment_intent_id or ""
        failed = dict(fake_stripe.intents[intent_id], last_payment_error={"message": "Your card was declined."})
        events.append(fake_stripe.event("payment_intent.payment_failed", failed))
        if index == 3:  # this buyer never manages to pay
            expected[order["id"]] = OrderStatus.PENDING_PAYMENT
            continue
        events.append(fake_stripe.event("payment_intent.amount_capturable_updated", fake_stripe.authorise(intent_id)))
        expected[order["id"]] = OrderStatus.PAID
    events.append(fake_stripe.event("customer.created", {"id": "cus_1"}))

    storm = events * 10
    random.Random(20261125).shuffle(storm)
    for payload in storm:
        deliver(client, payload)

    db.session.expire_all()
    assert db.session.scalar(select(func.count()).select_from(StripeEvent)) == len(events)
    for order_id, status in expected.items():
        order = db.session.get(Order, order_id)
        assert order is not None
        assert order.status == status
        paid_events = db.session.scalar(
            select(func.count()).where(OrderEvent.order_id == order_id, OrderEvent.type == "order.paid")
        )
        assert paid_events == (1 if status == OrderStatus.PAID else 0)
        payment = db.session.scalars(select(Payment).where(Payment.order_id == order_id)).one()
        # A failure that arrives after the authorisation does not undo it.
        assert payment.status == (PaymentStatus.AUTHORISED if status == OrderStatus.PAID else PaymentStatus.FAILED)
    assert db.session.scalar(select(func.count()).select_from(LedgerTransaction)) == 0
