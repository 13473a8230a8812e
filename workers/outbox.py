from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from flask import current_app

from market import outbox


@shared_task(name="outbox.relay", acks_late=False)
def relay_stuck() -> int:
    """Publish outbox rows that were committed but never reached the broker,
    batch after batch until none is left (after an outage the backlog drains
    at the broker's pace, not one batch per beat interval)."""
    return outbox.relay_all(older_than=timedelta(seconds=current_app.config["OUTBOX_RESEND_AFTER_SECONDS"]))
