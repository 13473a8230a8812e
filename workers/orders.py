from __future__ import annotations

from celery import shared_task

from market.orders import service


@shared_task(name="orders.expire_unpaid", acks_late=False)
def expire_unpaid() -> int:
    """Expire orders unpaid past their deadline; their stock comes back."""
    return service.expire_unpaid()
