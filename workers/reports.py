"""Report tasks: summing the impact report's closed days (beat, every
IMPACT_ROLLUP_INTERVAL_SECONDS). Idempotent: a day is summed once."""

from __future__ import annotations

from celery import shared_task

from market.reports import service


@shared_task(name="reports.roll_up_days")
def roll_up_days() -> int:
    return service.roll_up_days()
