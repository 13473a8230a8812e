"""Parts scanned in and out along their routes (docs/stations.md, "Routing
through county centres").

A pickup part's route is fixed when its farm ships it (`catalog.route`):
through the county centre of the buyer's village station when the farm is
in another county, else straight to the order's point. The staff of each
point on the route scan it in (received) and out (dispatched), many parts
at once; at the last point, the order's own, being received is arriving:
the order follows its parts, as when station staff receive a part one by
one (`service.receive_part`). A scan is all or nothing: any part scanned
at the wrong point or out of route order refuses the whole scan, with
each part's reason; a part scanned again where it was already scanned is
left as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import select

from market.auth import Actor
from market.catalog.models import FulfilmentPoint
from market.db import utcnow
from market.errors import DomainError, Invalid
from market.extensions import db
from market.orders import service
from market.orders.models import Order, OrderPart, PartHop, ScanOutOfOrder


@dataclass(frozen=True)
class ScannedPart:
    """A part as scanned at a point: where it stands on its route now."""

    order_id: int
    part_id: int
    farm_name: str
    part_status: str
    hop: PartHop
    next_point: FulfilmentPoint | None
    changed: bool  # False: it had been scanned so already


Scan = Callable[[Actor, Order, OrderPart, PartHop], bool]


def receive_parts(actor: Actor, point_id: int, part_ids: Sequence[int]) -> list[ScannedPart]:
    """Staff of a point scan shipped parts in there, after the point before
    on each one's route dispatched it; at the order's own point they have
    arrived (the last one in makes the order ready for pickup)."""
    return _scan(actor, point_id, part_ids, _receive)


def dispatch_parts(actor: Actor, point_id: int, part_ids: Sequence[int]) -> list[ScannedPart]:
    """Staff of a county centre scan parts received there out, on to the
    next point of each one's route."""
    return _scan(actor, point_id, part_ids, _dispatch)


def _receive(actor: Actor, order: Order, part: OrderPart, hop: PartHop) -> bool:
    if hop is not part.hops[-1]:
        return _moved(
            actor, order, part, part.receive_at(hop, actor.user_id), kind="part.received", detail=f"at {hop.point.name}"
        )
    if hop.received_at is not None:
        return part.receive_at(hop, actor.user_id)  # received already (or since cancelled: refused)

    def arrive() -> None:
        part.receive_at(hop, actor.user_id)

    service.changed(order, actor, lambda: service.advance(actor, order, part, arrive, "part.arrived"))
    return True


def _dispatch(actor: Actor, order: Order, part: OrderPart, hop: PartHop) -> bool:
    moved = part.dispatch_from(hop, actor.user_id)
    after = part.hops[part.hops.index(hop) + 1]
    return _moved(
        actor, order, part, moved, kind="part.dispatched", detail=f"from {hop.point.name} to {after.point.name}"
    )


def _moved(actor: Actor, order: Order, part: OrderPart, moved: bool, *, kind: str, detail: str) -> bool:
    """Record a part's move between points on the order's timeline; the
    order's version goes up, so a concurrent change of it is refused."""
    if moved:
        service.record_event(order, kind, actor, part=part, detail=detail)
        order.updated_at = utcnow()
    return moved


def _scan(actor: Actor, point_id: int, part_ids: Sequence[int], scan: Scan) -> list[ScannedPart]:
    point = service.point_of(actor, point_id)
    order_ids = db.session.scalars(select(OrderPart.order_id).where(OrderPart.id.in_(set(part_ids))))
    parts = {part.id: (order, part) for order in service.locked_orders(order_ids) for part in order.parts}

    def change() -> list[ScannedPart]:
        scanned: dict[int, ScannedPart] = {}
        refused: dict[str, list[str]] = {}
        elsewhere = False
        for index, part_id in enumerate(part_ids):
            if part_id in scanned:
                continue  # scanned twice in one go: once is enough
            order, part = parts.get(part_id, (None, None))
            hop = part.hop_at(point_id) if part is not None else None
            if order is not None and part is not None and hop is None and order.fulfilment_point_id == point.id:
                refused[f"part_ids.{index}"] = [f"Part {part_id} is {part.status}: it was not shipped."]
                continue
            if order is None or part is None or hop is None:
                refused[f"part_ids.{index}"] = [f"Part {part_id} is not on its way through {point.name}."]
                elsewhere = True
                continue
            try:
                changed = scan(actor, order, part, hop)
            except DomainError as error:
                refused[f"part_ids.{index}"] = [error.detail]
                continue
            after = part.hops[part.hops.index(hop) + 1].point if hop is not part.hops[-1] else None
            scanned[part_id] = ScannedPart(order.id, part.id, part.farm.name, part.status.value, hop, after, changed)
        if refused:
            detail = f"{len(refused)} of the parts cannot be scanned at {point.name}; nothing was scanned."
            raise Invalid(detail, refused) if elsewhere else ScanOutOfOrder(detail, refused)
        return list(scanned.values())

    return service.changing_many(change)
