"""Payments driven by real Celery workers on Redis against the fake Stripe:
the whole chain from the outbox, and a worker killed in the middle of a
capture that, restarted, captures once."""

from __future__ import annotations

import signal
import time
from typing import Any

import pytest
from celery import Celery
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from market.extensions import db
from market.ledger import service as ledger
from market.ledger.models import LedgerTransaction
from market.orders.models import Order, OrderStatus
from market.payments import service as payments
from market.payments.models import Payment, PaymentStatus
from tests.conftest import needs
from tests.fakes.stripe_server import FakeStripe, FakeStripeServer, sign
from tests.payments.conftest import WEBHOOK_SECRET, start_relay_process, start_worker_process, stripe_settings
from tests.shop import Shop, place
from tests.workers.conftest import wait_for


@pytest.fixture
def app_overrides(stripe_server: FakeStripeServer) -> dict[str, Any]:
    return stripe_settings(stripe_server)


def payment_of(order_id: int) -> Payment | None:
    db.session.expire_all()
    return db.session.scalars(select(Payment).where(Payment.order_id == order_id)).one_or_none()


def authorise_by_webhook(client: FlaskClient, fake: FakeStripe, intent_id: str) -> None:
    payload = fake.event("payment_intent.amount_capturable_updated", fake.authorise(intent_id))
    response = client.post(
        "/api/v1/webhooks/stripe",
        data=payload,
        headers={"Stripe-Signature": sign(payload, WEBHOOK_SECRET), "Content-Type": "application/json"},
    )
    assert response.status_code == 200


def pack(client: FlaskClient, shop: Shop, order: dict[str, Any], grams: int) -> None:
    part = order["parts"][0]
    body = {"weights": [{"line_id": part["lines"][0]["id"], "weighed_g": grams}]}
    response = client.post(f"/api/v1/orders/{order['id']}/parts/{part['id']}/pack", json=body, headers=shop.orchard_h)
    assert response.status_code == 200, response.json


def test_order_to_capture_through_the_outbox_and_a_worker(
    client: FlaskClient, shop: Shop, celery_app: Celery, worker: object, fake_stripe: FakeStripe
) -> None:
    order = place(client, shop, (shop.oranges, 2000))
    assert wait_for(lambda: (p := payment_of(order["id"])) is not None and p.stripe_payment_intent_id is not None)
    payment = payment_of(order["id"])
    assert payment is not None
    authorise_by_webhook(client, fake_stripe, payment.stripe_payment_intent_id or "")
    pack(client, shop, order, 2100)
    assert wait_for(lambda: (p := payment_of(order["id"])) is not None and p.status == PaymentStatus.CAPTURED)
    intent = fake_stripe.intents[payment.stripe_payment_intent_id or ""]
    assert intent["amount_received"] == 2098
    assert ledger.balance("gateway_cash:stripe") == 2098


def test_worker_killed_mid_capture_captures_once_after_restart(
    app: Flask, client: FlaskClient, shop: Shop, celery_app: Celery, stripe_server: FakeStripeServer
) -> None:
    needs("postgresql")
    fake = stripe_server.fake
    order = place(client, shop, (shop.oranges, 2000))
    payment = payments.open_payment(order["id"])
    intent_id = payment.stripe_payment_intent_id or ""
    authorise_by_webhook(client, fake, intent_id)
    pack(client, shop, order, 2000)
    celery_app.control.purge()  # only the capture below is to run

    capture_path = f"/v1/payment_intents/{intent_id}/capture"
    fake.hold[capture_path] = 4.0
    fake.received.clear()
    celery_app.send_task("payments.capture", kwargs={"order_id": order["id"]})
    first = start_worker_process(stripe_server)
    try:
        assert fake.received.wait(90), "the worker never called the provider"
        time.sleep(0.5)  # the capture is now in flight at the provider
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
    time.sleep(4.5)  # the held capture completes at the provider; nobody hears the answer
    assert fake.intents[intent_id]["status"] == "succeeded"
    assert payment_of(order["id"]).status == PaymentStatus.CAPTURING  # type: ignore[union-attr]
    del fake.hold[capture_path]

    second = start_worker_process(stripe_server)
    try:
        assert wait_for(lambda: payment_of(order["id"]).status == PaymentStatus.CAPTURED, 40)  # type: ignore[union-attr]
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=20)
    assert fake.intents[intent_id]["amount_received"] == 1998
    assert db.session.scalar(select(func.count()).select_from(LedgerTransaction)) == 1
    assert ledger.balance("gateway_cash:stripe") == 1998
    assert db.session.get(Order, order["id"]).status == OrderStatus.PACKED  # type: ignore[union-attr]


def test_with_a_relay_process_a_prefork_worker_opens_each_payment_once(
    app: Flask, client: FlaskClient, shop: Shop, celery_app: Celery, stripe_server: FakeStripeServer
) -> None:
    """OUTBOX_RELAY=listener as deployed: the API only writes outbox rows,
    `flask relay` publishes them on each commit's NOTIFY, and a prefork
    worker (a new pool process after every task) runs them. Every order's
    payment is opened once."""
    needs("postgresql")
    app.config |= {"OUTBOX_RELAY": "listener", "BUYER_MAX_UNPAID_ORDERS": 12}
    celery_app.control.purge()
    relay = start_relay_process(stripe_server, OUTBOX_POLL_SECONDS="60")
    worker = start_worker_process(stripe_server, "--concurrency=2", "--max-tasks-per-child=1")
    try:
        placed = [place(client, shop, (shop.oranges, 1000))["id"] for _ in range(12)]

        def all_opened() -> bool:
            return all((p := payment_of(o)) is not None and p.stripe_payment_intent_id for o in placed)

        assert wait_for(all_opened, 90)
    finally:
        for process in (relay, worker):
            process.send_signal(signal.SIGTERM)
        assert relay.wait(timeout=30) == 0  # SIGTERM stops the relay cleanly
        worker.wait(timeout=30)
    assert stripe_server.fake.calls["POST /v1/payment_intents"] == 12
    assert len(stripe_server.fake.intents) == 12
