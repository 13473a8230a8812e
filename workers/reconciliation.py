"""Reconciliation tasks: thin and idempotent, keyed by the run's id. A
gateway that stays unreachable after the retries fails the run, with why,
rather than leaving it pending for ever."""

from __future__ import annotations

from celery import Task, shared_task

from market.extensions import TransientError
from market.reconciliation import service


@shared_task(name="reconciliation.run", bind=True)
def run(self: Task, run_id: int) -> None:
    try:
        service.perform(run_id)
    except TransientError as error:
        if self.request.retries >= self.max_retries:
            service.fail(run_id, f"{self.name} gave up after {self.request.retries} retries: {error}")
        raise
