"""Celery tasks. Each is thin: load by id, call a market service, done.

`celery -A workers worker` and `celery -A workers beat` find the app in
`workers.celery`, which builds the Flask app from the environment.
"""

from __future__ import annotations

import importlib
from datetime import timedelta

from celery import Celery
from flask import Flask

TASK_MODULES = (
    "workers.inventory",
    "workers.notifications",
    "workers.orders",
    "workers.outbox",
    "workers.payments",
    "workers.payouts",
    "workers.reconciliation",
    "workers.reports",
)


def configure(celery: Celery, flask_app: Flask) -> Celery:
    """Register the task modules and the beat schedule on `celery`."""
    celery.conf.include = list(TASK_MODULES)
    for module in TASK_MODULES:
        importlib.import_module(module)
    celery.conf.beat_schedule = {
        "relay-outbox": {
            "task": "outbox.relay",
            "schedule": timedelta(seconds=flask_app.config["OUTBOX_RELAY_INTERVAL_SECONDS"]),
        },
        "expire-unpaid-orders": {
            "task": "orders.expire_unpaid",
            "schedule": timedelta(seconds=flask_app.config["ORDER_EXPIRY_INTERVAL_SECONDS"]),
        },
        "requeue-overdue-notifications": {
            "task": "notifications.requeue_overdue",
            "schedule": timedelta(seconds=flask_app.config["NOTIFY_REQUEUE_INTERVAL_SECONDS"]),
        },
        "watch-card-holds": {
            "task": "payments.watch_holds",
            "schedule": timedelta(seconds=flask_app.config["HOLD_WATCH_INTERVAL_SECONDS"]),
        },
        "roll-up-impact-days": {
            "task": "reports.roll_up_days",
            "schedule": timedelta(seconds=flask_app.config["IMPACT_ROLLUP_INTERVAL_SECONDS"]),
        },
        "sync-sales-channels": {
            "task": "inventory.run_due",
            "schedule": timedelta(seconds=flask_app.config["INVENTORY_SCHEDULER_INTERVAL_SECONDS"]),
        },
    }
    return celery
