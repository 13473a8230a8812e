"""Domain events to Celery tasks, through the outbox.

`publish()` writes one outbox row per task subscribed to the event, in the
caller's transaction: the tasks run only if the change that caused the event
commits, and each runs even if the broker was down at that moment.
"""

from __future__ import annotations

from market.outbox import enqueue

# Event type -> the Celery tasks (by name) that react to it. Each task takes
# the event's ids as keyword arguments and must be idempotent.
NOTIFY = "notifications.handle_event"
SUBSCRIBERS: dict[str, tuple[str, ...]] = {
    "account.confirmation": (NOTIFY,),
    "account.registration_attempted": (NOTIFY,),
    "cash_up.flagged": (NOTIFY,),
    "inventory.sale_refused": (NOTIFY,),
    "listing.stock_changed": ("inventory.queue_push",),
    "listing.stock_low": (NOTIFY,),
    "order.paid": (NOTIFY,),
    "order.confirmed": (NOTIFY,),
    "order.placed": ("payments.open", NOTIFY),
    # Capture follows packing; the later states subscribe too because a part
    # cancelled at the last moment can move an order past "packed" at once.
    "order.packed": ("payments.capture", NOTIFY),
    "order.shipped": ("payments.capture", NOTIFY),
    "order.ready_for_pickup": ("payments.capture", NOTIFY),
    "order.pickup_code_renewed": (NOTIFY,),
    "order.delivered": ("payments.capture",),
    "order.cancelled": ("payments.settle_closed_order", NOTIFY),
    "order.expired": ("payments.settle_closed_order", NOTIFY),
    "part.cancelled": ("payments.part_cancelled",),
    "payment.failed": (NOTIFY,),
    "payment.hold_expiring": (NOTIFY,),
    "payment.hold_lapsed": (NOTIFY,),
    "payment.renewed": (NOTIFY,),
    "refund.failed": (NOTIFY,),
    "payout.failed": (NOTIFY,),
    "payout.paid": (NOTIFY,),
}


def publish(event: str, **ids: int) -> None:
    for task in SUBSCRIBERS.get(event, ()):
        enqueue(task, event=event, **ids)
