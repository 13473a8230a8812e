from __future__ import annotations

from celery import shared_task

from market.inventory import service


@shared_task(name="inventory.queue_push")
def queue_push(event: str, listing_id: int) -> int:
    """A listing's stock changed: queue its new stock for the push channels."""
    return service.queue_push(listing_id)


@shared_task(name="inventory.push_channel")
def push_channel(channel_id: int) -> int:
    return service.push_channel(channel_id)


@shared_task(name="inventory.pull_channel")
def pull_channel(channel_id: int) -> int:
    return service.pull_channel(channel_id)


@shared_task(name="inventory.run_due", acks_late=False)
def run_due() -> int:
    """Queue the feeds due for a read and the pushes due for a retry."""
    return service.run_due()
