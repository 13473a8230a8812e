from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from flask import current_app

from market import outbox


@shared_task(name="outbox.relay", acks_late=False)
def relay_stuck() -> int:
    """Publish outbox rows that were committed but never reached the broker."""
    older_than = timedelta(seconds=current_app.config["OUTBOX_RESEND_AFTER_SECONDS"])
    return outbox.relay(older_than=older_than)
