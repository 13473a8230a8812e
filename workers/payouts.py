"""Payout tasks: thin, idempotent, keyed by our own ids. Transient provider
failures are retried with backoff; when the retries run out the payout (or
payout account) is flagged for operators instead of being dropped."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery import Task, shared_task

from market.extensions import TransientError
from market.payouts import service


def _or_flag(task: Task, flag: Callable[[str], None], work: Callable[[], Any]) -> None:
    try:
        work()
    except TransientError as error:
        if task.request.retries >= task.max_retries:
            flag(f"{task.name} gave up after {task.request.retries} retries: {error}")
        raise


@shared_task(name="payouts.connect_account", bind=True)
def connect_account(self: Task, farm_id: int) -> None:
    _or_flag(self, lambda problem: service.flag_account(farm_id, problem), lambda: service.connect_account(farm_id))


@shared_task(name="payouts.dispatch_run")
def dispatch_run(run_id: int) -> int:
    return service.dispatch_run(run_id)


@shared_task(name="payouts.transfer", bind=True)
def transfer(self: Task, payout_id: int) -> None:
    _or_flag(self, lambda problem: service.flag(payout_id, problem), lambda: service.transfer(payout_id))


@shared_task(name="payouts.reverse", bind=True)
def reverse(self: Task, reversal_id: int) -> None:
    _or_flag(self, lambda problem: service.flag_reversal(reversal_id, problem), lambda: service.reverse(reversal_id))
