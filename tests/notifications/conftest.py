from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from flask import Flask

from market.catalog.models import PayoutMethod
from market.db import utcnow
from market.extensions import db
from market.payouts.models import Payout, PayoutRun, PayoutStatus
from tests.notifications.receivers import HttpReceiver, SmtpInbox

# The real Celery worker on Redis, shared with the other worker tests.
from tests.workers.conftest import celery_app, worker  # noqa: F401

SMS_PATH = "/sms"


@pytest.fixture
def smtp() -> Iterator[SmtpInbox]:
    inbox = SmtpInbox()
    inbox.controller.start()
    yield inbox
    inbox.controller.stop()


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    server = HttpReceiver()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def channels(app: Flask, smtp: SmtpInbox, receiver: HttpReceiver, tmp_path: Path) -> Flask:
    """Email to the local SMTP server, SMS to the local gateway, webhooks
    allowed to reach loopback, and retries fast enough for a test."""
    app.config.update(
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=smtp.port,
        SMTP_TLS=False,
        SMS_GATEWAY_URL=receiver.url(SMS_PATH),
        SMS_API_KEY="sms-test-key",
        NOTIFICATION_MAILBOX=str(tmp_path / "outbox.mbox"),
        WEBHOOK_ALLOW_PRIVATE_NETWORKS=["127.0.0.0/8"],
        WEBHOOK_RETRY_BASE_SECONDS=0.2,
        NOTIFY_RETRY_BASE_SECONDS=0.2,
        INVENTORY_PUSH_RETRY_BASE_SECONDS=0,
    )
    return app


def make_payout(farm_id: int, amount: int, *, failed_because: str | None = None) -> int:
    """A payout as the payouts domain leaves it before publishing
    payout.paid or payout.failed."""
    run = PayoutRun(period_end=date(2026, 11, 1), cutoff=utcnow(), currency="CNY")
    payout = Payout(
        run=run,
        farm_id=farm_id,
        method=PayoutMethod.STRIPE,
        status=PayoutStatus.FAILED if failed_because else PayoutStatus.PAID,
        currency="CNY",
        sales=amount,
        amount=amount,
        failure_reason=failed_because,
    )
    db.session.add(payout)
    db.session.commit()
    return payout.id
