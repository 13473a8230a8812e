"""A cancel racing the capture, with a real Celery worker on Redis and the
fake Stripe holding the capture request: whichever comes first, the money
the provider took is recorded and what was cancelled is refunded, once."""

from __future__ import annotations

from typing import Any

import pytest
from celery import Celery
from flask.testing import FlaskClient

from market.payments.models import PaymentStatus
from market.settlement.checks import check_ledger
from tests.conftest import needs
from tests.fakes.stripe_server import FakeStripeServer
from tests.orders.test_lifecycle import stock
from tests.payments.conftest import stripe_settings
from tests.payments.test_payment_workers import authorise_by_webhook, payment_of
from tests.payments.test_stripe_payments import pack_all
from tests.shop import Shop, part_of, place
from tests.workers.conftest import wait_for

HOLD_SECONDS = 3.0


@pytest.fixture
def app_overrides(stripe_server: FakeStripeServer) -> dict[str, Any]:
    return stripe_settings(stripe_server)


def capture_in_flight(client: FlaskClient, shop: Shop, server: FakeStripeServer, order: dict[str, Any]) -> str:
    """Pay and pack the order, and let the worker's capture reach the provider, which sits on it."""
    assert wait_for(lambda: (p := payment_of(order["id"])) is not None and p.stripe_payment_intent_id is not None)
    intent_id = payment_of(order["id"]).stripe_payment_intent_id or ""  # type: ignore[union-attr]
    authorise_by_webhook(client, server.fake, intent_id)
    capture = f"POST /v1/payment_intents/{intent_id}/capture"
    server.fake.hold[capture.removeprefix("POST ")] = HOLD_SECONDS
    pack_all(client, shop, order, {line["id"]: line["ordered_g"] for p in order["parts"] for line in p["lines"]})
    assert wait_for(lambda: server.fake.calls[capture] > 0, 30), "the worker never asked the provider to capture"
    assert payment_of(order["id"]).status == PaymentStatus.CAPTURING  # type: ignore[union-attr]
    return intent_id


def test_an_order_cancelled_while_the_provider_captures_is_refunded_in_full(
    client: FlaskClient, shop: Shop, celery_app: Celery, worker: object, stripe_server: FakeStripeServer
) -> None:
    needs("postgresql")
    needs("redis")
    order = place(client, shop, (shop.oranges, 2000))
    intent_id = capture_in_flight(client, shop, stripe_server, order)
    cancelled = client.post(f"/api/v1/orders/{order['id']}/cancel", json={"reason": "late"}, headers=shop.operator_h)
    assert cancelled.status_code == 200, cancelled.json
    assert wait_for(lambda: payment_of(order["id"]).amount_refunded == 1998, 40)  # type: ignore[union-attr]
    payment = payment_of(order["id"])
    assert payment is not None
    assert (payment.status, payment.amount_captured) == (PaymentStatus.CAPTURED, 1998)
    assert stripe_server.fake.intents[intent_id]["amount_received"] == 1998
    assert stripe_server.fake.total_refunded(intent_id) == 1998
    assert stock(shop.oranges) == 100_000
    assert check_ledger() == []


def test_a_part_cancelled_while_the_provider_captures_is_refunded(
    client: FlaskClient, shop: Shop, celery_app: Celery, worker: object, stripe_server: FakeStripeServer
) -> None:
    needs("postgresql")
    needs("redis")
    order = place(client, shop, (shop.oranges, 2000), (shop.nuts, 1000))
    intent_id = capture_in_flight(client, shop, stripe_server, order)
    nuts = part_of(order, shop.chestnuts)
    url = f"/api/v1/orders/{order['id']}/parts/{nuts['id']}/cancel"
    cancelled = client.post(url, json={"reason": "mould"}, headers=shop.chestnut_h)
    assert cancelled.status_code == 200, cancelled.json
    assert wait_for(lambda: payment_of(order["id"]).amount_refunded == 2400, 40)  # type: ignore[union-attr]
    payment = payment_of(order["id"])
    assert payment is not None
    assert payment.amount_captured == 1998 + 2400  # what was decided was taken...
    assert stripe_server.fake.total_refunded(intent_id) == 2400  # ...and the cancelled part given back
    assert stock(shop.nuts) == 100_000
    assert check_ledger() == []
