from __future__ import annotations

from typing import Any

from celery import Task, shared_task

from market.notifications import service


@shared_task(name="notifications.handle_event", bind=True)
def handle_event(self: Task[Any, Any], event: str, **ids: int) -> int:
    """Write and queue the notifications for one event. The task id (the
    outbox message's) names the occurrence, so a redelivery adds nothing."""
    return service.handle_event(str(self.request.id), event, **ids)


@shared_task(name="notifications.send", bind=True)
def send(self: Task[Any, Any], notification_id: int) -> None:
    retry_in = service.send_notification(notification_id)
    if retry_in is not None:
        raise self.retry(countdown=retry_in, max_retries=None)


@shared_task(name="notifications.deliver_webhook", bind=True)
def deliver_webhook(self: Task[Any, Any], delivery_id: int) -> None:
    retry_in = service.deliver_webhook(delivery_id)
    if retry_in is not None:
        raise self.retry(countdown=retry_in, max_retries=None)


@shared_task(name="notifications.requeue_overdue", acks_late=False)
def requeue_overdue() -> int:
    """Queue again what waited far too long for its retry."""
    return service.requeue_overdue()
