"""Drill: Redis stops while buyers place orders. The orders still commit;
their tasks run after Redis returns, each exactly once."""

from __future__ import annotations

from typing import Any

import pytest
from celery import Celery
from celery.contrib.testing.worker import start_worker
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from market.extensions import db
from market.orders.models import Order
from market.outbox import OutboxMessage
from market.payments.models import Payment
from tests.fakes.stripe_server import FakeStripe, FakeStripeServer
from tests.payments.conftest import stripe_settings
from tests.shop import Shop, place
from tests.workers.conftest import RedisServer, wait_for
from workers.outbox import relay_stuck

ORDERS = 6


@pytest.fixture
def app_overrides(stripe_server: FakeStripeServer) -> dict[str, Any]:
    # One buyer places every order of the drill: more than the unpaid-orders cap.
    return stripe_settings(stripe_server) | {"OUTBOX_RESEND_AFTER_SECONDS": 0, "BUYER_MAX_UNPAID_ORDERS": ORDERS}


def test_orders_placed_while_redis_is_down_are_all_processed_once_it_returns(  # noqa: PLR0917 (fixtures)
    app: Flask,
    client: FlaskClient,
    shop: Shop,
    celery_app: Celery,
    private_redis: RedisServer,
    fake_stripe: FakeStripe,
) -> None:
    celery_app.conf.broker_url = private_redis.url  # the broker is not running
    placed = [place(client, shop, (shop.oranges, 1000))["id"] for _ in range(ORDERS)]
    assert db.session.scalar(select(func.count()).select_from(Order)) == ORDERS
    waiting = select(func.count()).select_from(OutboxMessage).where(OutboxMessage.sent_at.is_(None))
    unsent = db.session.scalar(waiting.where(OutboxMessage.task == "payments.open"))
    assert unsent == ORDERS  # nothing was lost: every task waits in the outbox
    assert fake_stripe.calls["POST /v1/payment_intents"] == 0

    private_redis.start()
    with start_worker(celery_app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        assert relay_stuck() >= ORDERS  # what the beat job does
        assert relay_stuck() == 0
        assert db.session.scalar(waiting) == 0

        def all_opened() -> bool:
            db.session.expire_all()
            opened = db.session.scalar(
                select(func.count())
                .select_from(Payment)
                .where(Payment.order_id.in_(placed), Payment.stripe_payment_intent_id.isnot(None))
            )
            return opened == ORDERS

        assert wait_for(all_opened, 60)
    assert fake_stripe.calls["POST /v1/payment_intents"] == ORDERS  # each task ran once
    assert len(fake_stripe.intents) == ORDERS
