from __future__ import annotations

from datetime import timedelta
from typing import Any

from celery import bootsteps, shared_task
from flask import Flask, current_app

from market import outbox


@shared_task(name="outbox.relay", acks_late=False)
def relay_stuck() -> int:
    """Publish outbox rows that were committed but never reached the broker,
    batch after batch until none is left (after an outage the backlog drains
    at the broker's pace, not one batch per beat interval)."""
    return outbox.relay_all(older_than=timedelta(seconds=current_app.config["OUTBOX_RESEND_AFTER_SECONDS"]))


def listener_step(flask_app: Flask) -> type[bootsteps.StartStopStep]:
    """A worker step that runs the outbox listener (`outbox.Listener`) in a
    thread of the worker's main process while the worker runs
    (OUTBOX_RELAY = `workers`); stopping or terminating the worker stops it."""

    class OutboxListener(bootsteps.StartStopStep):
        label = "outbox listener"

        def create(self, worker: Any) -> outbox.Listener:
            return outbox.Listener(flask_app)

    return OutboxListener
