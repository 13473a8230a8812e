"""What sellers earn and give back, decided where settlement records a
capture or a refund (market/settlement/service.py), in the same
transaction, as entries and ledger pairs (docs/commissions.md).

A seller's share of a captured line comes out of the platform's commission
on that line and never exceeds what is left of it: the host's first, then
the station's. A refund takes back a seller's share in proportion to the
produce it returns, and at least enough that what the sellers keep of the
line never exceeds what the platform keeps of its commission on it; the
last grams of a line take the rest.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

from flask import current_app
from sqlalchemy import case, func, select

from market.commissions.models import CommissionEntry, CommissionKind, Seller, SellerKind
from market.errors import Invalid
from market.extensions import db
from market.ledger import service as ledger
from market.money import prorate, share, spread
from market.orders.models import Order
from market.payments.models import CapturedLine, Refund
from market.premiums.models import LinePremium, PremiumProgramme

Pairs = list[tuple[str, int]]


def sellers_of(order: Order) -> list[Seller]:
    """Who sells `order`, in the order their shares are taken: the host it
    was placed with, then the station it is collected at, when active."""
    sellers = []
    if order.host_id is not None:
        host = db.session.get(Seller, order.host_id)
        if host is not None and host.active:
            sellers.append(host)
    if order.fulfilment_point_id is not None:
        station = db.session.scalar(
            select(Seller).where(Seller.fulfilment_point_id == order.fulfilment_point_id, Seller.active.is_(True))
        )
        if station is not None:
            sellers.append(station)
    return sellers


def host_for_code(code: str) -> Seller:
    """The active host whose attribution code is `code` (any case), for an order placed with it."""
    host = db.session.scalar(select(Seller).where(Seller.code == code.strip().upper(), Seller.kind == SellerKind.HOST))
    if host is None or not host.active:
        raise Invalid("No host has this attribution code.", {"attribution_code": ["No active host has this code."]})
    return host


def check_within_platform_commission(field: str, rate_bp: int | None) -> None:
    """A seller's rate is a share of the platform's commission: refuse one above it."""
    platform = current_app.config["COMMISSION_BP"]
    if rate_bp is not None and rate_bp > platform:
        message = f"A seller's share comes out of the platform's commission ({platform} basis points): at most that."
        raise Invalid(message, {field: [f"Must be at most {platform}."]})


def _programme_host_rates(lines: Sequence[CapturedLine]) -> dict[int, int]:
    """By line, the host rate of the premium programmes it was sold under
    that set one (the highest where several do)."""
    rows = db.session.execute(
        select(LinePremium.order_line_id, func.max(PremiumProgramme.host_commission_bp))
        .join(PremiumProgramme, PremiumProgramme.id == LinePremium.programme_id)
        .where(
            LinePremium.order_line_id.in_([line.order_line_id for line in lines]),
            PremiumProgramme.host_commission_bp.is_not(None),
        )
        .group_by(LinePremium.order_line_id)
    )
    return {line_id: int(rate) for line_id, rate in rows}


def _wanted(seller: Seller, lines: Sequence[CapturedLine]) -> list[int]:
    """What `seller` asks of each line: basis points of its produce (for a
    host, the rate of a programme the line was sold under where it sets
    one), or its fixed amount per order spread over the lines by produce,
    the shares adding up to exactly that amount."""
    if seller.rate_bp is not None:
        programme_rates = _programme_host_rates(lines) if seller.kind == SellerKind.HOST else {}
        return [share(line.amount, programme_rates.get(line.order_line_id, seller.rate_bp)) for line in lines]
    return spread(seller.per_order or 0, [line.amount for line in lines])


def record_earned(order: Order, captured: Sequence[CapturedLine]) -> Pairs:
    """Each seller's share of each captured line, as an earned entry; the
    ledger pairs that move it from the platform's commission to the
    seller's payable, for the capture's transaction."""
    left = {line.order_line_id: line.commission for line in captured}
    pairs: Pairs = []
    for seller in sellers_of(order):
        for line, wanted in zip(captured, _wanted(seller, captured), strict=True):
            amount = min(wanted, left[line.order_line_id])
            if amount <= 0:
                continue
            left[line.order_line_id] -= amount
            db.session.add(
                CommissionEntry(
                    reference=f"line:{line.order_line_id}:seller:{seller.id}:earned",
                    seller_id=seller.id,
                    kind=CommissionKind.EARNED,
                    order_id=order.id,
                    order_line_id=line.order_line_id,
                    produce=line.amount,
                    amount=amount,
                )
            )
            pairs += [(ledger.seller_payable(seller.id), -amount), (ledger.PLATFORM_COMMISSION, amount)]
    return pairs


def _shares(order_line_ids: Iterable[int]) -> dict[int, list[tuple[int, int, int]]]:
    """Each seller's share of each line, in the order they were taken: by
    line, (seller, earned, kept after what was reversed)."""
    earned = func.sum(case((CommissionEntry.kind == CommissionKind.EARNED, CommissionEntry.amount), else_=0))
    rows = db.session.execute(
        select(CommissionEntry.order_line_id, CommissionEntry.seller_id, earned, func.sum(CommissionEntry.amount))
        .where(
            CommissionEntry.order_line_id.in_(list(order_line_ids)),
            CommissionEntry.kind.in_((CommissionKind.EARNED, CommissionKind.REVERSED)),
        )
        .group_by(CommissionEntry.order_line_id, CommissionEntry.seller_id)
        .order_by(CommissionEntry.order_line_id, func.min(CommissionEntry.id))
    )
    shares: dict[int, list[tuple[int, int, int]]] = defaultdict(list)
    for line_id, seller_id, earned_amount, kept in rows:
        shares[line_id].append((seller_id, int(earned_amount), int(kept)))
    return shares


def record_reversed(refund: Refund, captured: dict[int, CapturedLine], commission_left: dict[int, int]) -> Pairs:
    """Take back from each seller what a succeeded `refund` returns of the
    lines it earned on. `commission_left` is what the platform's commission
    on each line comes to once this refund is counted: what the sellers
    keep of a line never exceeds it. Returns the ledger pairs that move it
    back to the platform's commission."""
    shares = _shares(line.order_line_id for line in refund.lines)
    pairs: Pairs = []
    for refund_line in refund.lines:
        line = captured[refund_line.order_line_id]
        room = commission_left[line.order_line_id]
        for seller_id, earned, kept in shares[line.order_line_id]:
            back = min(kept, max(prorate(earned, refund_line.amount, line.amount), kept - room))
            room -= kept - back
            if back <= 0:
                continue
            db.session.add(
                CommissionEntry(
                    reference=f"refund_line:{refund_line.id}:seller:{seller_id}",
                    seller_id=seller_id,
                    kind=CommissionKind.REVERSED,
                    order_id=refund.order_id,
                    order_line_id=line.order_line_id,
                    refund_id=refund.id,
                    produce=-refund_line.amount,
                    amount=-back,
                )
            )
            pairs += [(ledger.seller_payable(seller_id), back), (ledger.PLATFORM_COMMISSION, -back)]
    return pairs
