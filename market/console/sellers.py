"""What the console reads about sellers that the commissions service has no
question for: sellers' names for a run's lists, and the seller payouts
waiting for an operator's confirmation for Today. Read-only; every rule
and every change stays in market/commissions/service.py."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import func, select

from market.accounts.models import Role
from market.auth import Actor
from market.commissions.models import Seller, SellerPayout, SellerPayoutStatus
from market.extensions import db


def seller_names(ids: Iterable[int]) -> dict[int, str]:
    """The names of the sellers `ids` (for lists that show them by name)."""
    wanted = set(ids)
    if not wanted:
        return {}
    return dict(db.session.execute(select(Seller.id, Seller.name).where(Seller.id.in_(wanted))).tuples().all())


def payouts_awaiting(actor: Actor) -> tuple[int, int | None]:
    """How many seller payouts wait for an operator to confirm their bank
    transfer, and the oldest run holding one (the page to confirm them on)."""
    actor.require(Role.OPERATOR)
    count, run_id = db.session.execute(
        select(func.count(SellerPayout.id), func.min(SellerPayout.run_id)).where(
            SellerPayout.status == SellerPayoutStatus.AWAITING_CONFIRMATION
        )
    ).one()
    return int(count), run_id
