"""Payment tasks: thin, idempotent, keyed by our own ids. Transient provider
failures are retried with backoff; when the retries run out the payment is
flagged for operators instead of being dropped."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery import Task, shared_task

from market.extensions import TransientError
from market.payments import service


def _or_flag(task: Task, order_id: int, work: Callable[[], Any]) -> None:
    try:
        work()
    except TransientError as error:
        if task.request.retries >= task.max_retries:
            service.flag(order_id, f"{task.name} gave up after {task.request.retries} retries: {error}")
        raise


@shared_task(name="payments.open", bind=True)
def open_payment(self: Task, order_id: int, event: str = "") -> None:
    _or_flag(self, order_id, lambda: service.open_payment(order_id))


@shared_task(name="payments.capture", bind=True)
def capture(self: Task, order_id: int, event: str = "") -> None:
    _or_flag(self, order_id, lambda: service.capture(order_id))


@shared_task(name="payments.settle_closed_order", bind=True)
def settle_closed_order(self: Task, order_id: int, event: str = "") -> None:
    _or_flag(self, order_id, lambda: service.settle_closed_order(order_id))


@shared_task(name="payments.part_cancelled", bind=True)
def part_cancelled(self: Task, order_id: int, part_id: int, event: str = "") -> None:
    _or_flag(self, order_id, lambda: service.refund_cancelled_part(order_id, part_id))


@shared_task(name="payments.refund", bind=True)
def refund(self: Task, refund_id: int, order_id: int) -> None:
    _or_flag(self, order_id, lambda: service.process_refund(refund_id))


@shared_task(name="payments.read_hold", bind=True)
def read_hold(self: Task, order_id: int) -> None:
    _or_flag(self, order_id, lambda: service.read_hold(order_id))


@shared_task(name="payments.watch_holds")
def watch_holds() -> dict[str, int]:
    return service.watch_holds()
