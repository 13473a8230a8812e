"""Payouts paid by real Celery workers on Redis against the fake Stripe,
including a worker killed in the middle of a transfer: restarted, each farm
is paid exactly once."""

from __future__ import annotations

import signal
import time
from typing import Any

import pytest
from celery import Celery
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from market.extensions import db
from market.payouts.models import Payout, PayoutStatus
from market.settlement import checks
from tests.conftest import needs
from tests.fakes.stripe_server import FakeStripeServer
from tests.payments.conftest import start_worker_process
from tests.payouts.conftest import connect_stripe, run, settled_order, stripe_overrides
from tests.shop import Shop
from tests.workers.conftest import wait_for


@pytest.fixture
def app_overrides(stripe_server: FakeStripeServer) -> dict[str, Any]:
    return stripe_overrides(stripe_server)


def statuses() -> list[PayoutStatus]:
    db.session.expire_all()
    return [p.status for p in db.session.scalars(select(Payout).order_by(Payout.id))]


def test_worker_killed_mid_transfer_pays_each_farm_once_after_restart(
    app: Flask, client: FlaskClient, shop: Shop, celery_app: Celery, stripe_server: FakeStripeServer
) -> None:
    needs("postgresql")
    fake = stripe_server.fake
    orchard = connect_stripe(client, shop, fake, shop.orchard.id)
    chestnuts = connect_stripe(client, shop, fake, shop.chestnuts.id)
    settled_order(client, shop, (shop.oranges, 2000), (shop.nuts, 1000), fake=fake)
    celery_app.control.purge()  # only the run's own tasks are to run

    fake.hold["/v1/transfers"] = 4.0
    fake.received.clear()
    response = run(client, shop)
    assert response.status_code == 201
    assert response.json["payouts_count"] == 2
    first = start_worker_process(stripe_server, OUTBOX_RESEND_AFTER_SECONDS="1")
    try:
        assert fake.received.wait(90), "the worker never called the provider"
        time.sleep(0.5)  # the first transfer is now in flight at the provider
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
    time.sleep(4.5)  # the held transfer completes at the provider; nobody hears the answer
    assert len(fake.transfers) == 1
    assert PayoutStatus.PAID not in statuses()
    del fake.hold["/v1/transfers"]

    second = start_worker_process(stripe_server, OUTBOX_RESEND_AFTER_SECONDS="1")
    try:
        assert wait_for(lambda: statuses() == [PayoutStatus.PAID, PayoutStatus.PAID], 60), statuses()
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=20)
    assert len(fake.transfers) == 2
    assert fake.transferred_to(orchard.stripe_account_id or "") == 1998 - 100
    assert fake.transferred_to(chestnuts.stripe_account_id or "") == 2400 - 120
    assert checks.check_ledger() == []
