"""Orders, their farm parts and lines, and the order's event timeline.

An order belongs to one buyer and holds lines from one or more farms; each
farm's lines form a part that its farmer packs and ships on their own. The
order's state follows its parts. Transitions are methods that refuse a move
from the wrong state with `InvalidTransition` (409 with the current state).
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from market.accounts.models import User
from market.catalog.models import Farm, FulfilmentPoint, Listing, Lot
from market.db import UTCDateTime, business_day, enum_column, utcnow
from market.errors import Conflict, InvalidTransition
from market.extensions import db
from market.premiums.models import LinePremium


class OrderStatus(StrEnum):
    PENDING_PAYMENT = "pending_payment"
    # Placed by station staff for a villager, who confirmed it with the code
    # sent to their phone; packed and shipped unpaid, paid in cash when the
    # villager collects it (docs/stations.md).
    CONFIRMED = "confirmed"
    PAID = "paid"
    PACKED = "packed"
    SHIPPED = "shipped"
    READY_FOR_PICKUP = "ready_for_pickup"
    COLLECTED = "collected"
    DELIVERED = "delivered"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class PartStatus(StrEnum):
    PENDING = "pending"  # the order is not paid yet
    TO_PACK = "to_pack"
    PACKED = "packed"
    SHIPPED = "shipped"
    ARRIVED = "arrived"  # at the buyer's fulfilment point
    DELIVERED = "delivered"
    CANCELLED = "cancelled"


class Fulfilment(StrEnum):
    PICKUP = "pickup"
    DELIVERY = "delivery"


def destination_problem(point_id: int | None, address: str | None) -> str | None:
    """What is wrong with where an order goes, if anything: it is picked up
    at a fulfilment point or delivered to an address, exactly one."""
    if point_id is None and address is None:
        return "Give fulfilment_point_id (to pick up at a station or centre) or delivery_address (to be delivered)."
    if point_id is not None and address is not None:
        return "Give fulfilment_point_id or delivery_address, not both."
    return None


OPEN_STATUSES = frozenset(
    {
        OrderStatus.PENDING_PAYMENT,
        OrderStatus.CONFIRMED,
        OrderStatus.PAID,
        OrderStatus.PACKED,
        OrderStatus.SHIPPED,
        OrderStatus.READY_FOR_PICKUP,
        OrderStatus.COLLECTED,
        OrderStatus.DELIVERED,
    }
)
# Parts whose produce has not left the farm: cancelling them returns stock.
AT_FARM = frozenset({PartStatus.PENDING, PartStatus.TO_PACK, PartStatus.PACKED})
# How far a part has come once paid, and the order state that follows when
# every live part has come at least that far.
PART_PROGRESS = {
    PartStatus.TO_PACK: 0,
    PartStatus.PACKED: 1,
    PartStatus.SHIPPED: 2,
    PartStatus.ARRIVED: 3,
    PartStatus.DELIVERED: 3,
}
FOLLOWS_PARTS = {0: OrderStatus.PAID, 1: OrderStatus.PACKED, 2: OrderStatus.SHIPPED}
# Orders whose state follows their parts: paid ones, and confirmed ones
# (paid in cash on collection), which stay confirmed until a part is packed.
FOLLOWING = frozenset({OrderStatus.CONFIRMED, *FOLLOWS_PARTS.values()})


def _refuse(what: str, current: str, action: str) -> InvalidTransition:
    return InvalidTransition(f"{what} is {current}; it cannot be {action}.", current_status=current)


class Order(db.Model):  # type: ignore[name-defined]
    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint("total >= 0", name="total_non_negative"),
        CheckConstraint(
            "(fulfilment = 'pickup' AND fulfilment_point_id IS NOT NULL) OR "
            "(fulfilment = 'delivery' AND delivery_address IS NOT NULL)",
            name="fulfilment_target",
        ),
        Index("ix_orders_status_expires_at", "status", "expires_at"),
        Index("ix_orders_point_status", "fulfilment_point_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # Every change to an order (its parts included) bumps the version, so two
    # concurrent changes cannot both pass: the second fails and is retried.
    version: Mapped[int] = mapped_column(Integer)
    buyer_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    placed_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id"), index=True, doc="The station staff who placed it for the buyer (a villager)."
    )
    host_id: Mapped[int | None] = mapped_column(
        ForeignKey("sellers.id"), index=True, doc="The livestream host it was placed with (docs/commissions.md)."
    )
    attribution_code: Mapped[str | None] = mapped_column(String(32), doc="The host's code it was placed with.")
    status: Mapped[OrderStatus] = mapped_column(
        enum_column(OrderStatus, "order_status"), default=OrderStatus.PENDING_PAYMENT
    )
    fulfilment: Mapped[Fulfilment] = mapped_column(enum_column(Fulfilment, "fulfilment"))
    fulfilment_point_id: Mapped[int | None] = mapped_column(ForeignKey("fulfilment_points.id"))
    delivery_address: Mapped[str | None] = mapped_column(String(500))
    notes: Mapped[str] = mapped_column(Text, default="")
    currency: Mapped[str] = mapped_column(String(3))
    total: Mapped[int] = mapped_column(BigInteger)
    max_total: Mapped[int] = mapped_column(
        BigInteger, doc="The most the order can reach within the weighing tolerance: what a payment authorises."
    )
    pickup_code: Mapped[str | None] = mapped_column(String(12))
    pickup_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    cancel_reason: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now(), index=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now(), onupdate=utcnow)

    __mapper_args__ = {"version_id_col": version}

    buyer: Mapped[User] = relationship(foreign_keys=[buyer_id])
    placed_by: Mapped[User | None] = relationship(foreign_keys=[placed_by_id])
    fulfilment_point: Mapped[FulfilmentPoint | None] = relationship()
    parts: Mapped[list[OrderPart]] = relationship(
        back_populates="order", order_by="OrderPart.farm_id", cascade="all, delete-orphan"
    )
    lines: Mapped[list[OrderLine]] = relationship(
        back_populates="order", order_by="OrderLine.id", cascade="all, delete-orphan"
    )
    events: Mapped[list[OrderEvent]] = relationship(
        back_populates="order", order_by="OrderEvent.id", cascade="all, delete-orphan"
    )

    @property
    def payment_deadline(self) -> datetime | None:
        """When the order expires unless paid: while it waits for payment,
        or (paid on collection) while it waits at its station for the cash.
        A paid, cancelled or expired order has no deadline left."""
        waiting = self.status == OrderStatus.PENDING_PAYMENT or self.uncollected_unpaid
        return self.expires_at if waiting else None

    @property
    def active_parts(self) -> list[OrderPart]:
        return [p for p in self.parts if p.status != PartStatus.CANCELLED]

    def recompute_total(self) -> None:
        """What the live lines charge now, and the most they can reach."""
        live = [line for line in self.lines if line.part.status != PartStatus.CANCELLED]
        self.total = sum(line.charged for line in live)
        self.max_total = sum(line.max_amount for line in live)

    def mark_paid(self) -> None:
        if self.status != OrderStatus.PENDING_PAYMENT:
            raise _refuse(f"Order {self.id}", self.status, "paid")
        self.status = OrderStatus.PAID
        self.paid_at = utcnow()
        for part in self.active_parts:  # a part cancelled while unpaid stays cancelled
            part.status = PartStatus.TO_PACK

    def confirm(self) -> None:
        """The villager confirmed an order placed for them: its farms pack it
        now, and it is paid in cash on collection."""
        if self.status != OrderStatus.PENDING_PAYMENT:
            raise _refuse(f"Order {self.id}", self.status, "confirmed")
        self.status = OrderStatus.CONFIRMED
        for part in self.active_parts:
            part.status = PartStatus.TO_PACK

    @property
    def uncollected_unpaid(self) -> bool:
        """Waiting at the station for cash that was never paid: only an order
        paid on collection is ever ready for pickup unpaid."""
        return self.status == OrderStatus.READY_FOR_PICKUP and self.paid_at is None

    def expire(self) -> None:
        """An order never paid for: not paid in time, or (paid on collection)
        never collected in time."""
        if self.status != OrderStatus.PENDING_PAYMENT and not self.uncollected_unpaid:
            raise _refuse(f"Order {self.id}", self.status, "expired")
        self.status = OrderStatus.EXPIRED
        self.closed_at = utcnow()
        for part in self.parts:
            part.status = PartStatus.CANCELLED

    def cancel(self, reason: str) -> None:
        if self.status not in OPEN_STATUSES:
            raise _refuse(f"Order {self.id}", self.status, "cancelled")
        self.status = OrderStatus.CANCELLED
        self.cancel_reason = reason
        self.closed_at = utcnow()
        for part in self.parts:
            part.status = PartStatus.CANCELLED

    def follow_parts(self) -> None:
        """Move the order on to the least progress among its live parts:
        all packed -> packed, all shipped -> shipped, all at the station ->
        ready_for_pickup, all delivered -> delivered. No live part -> cancelled."""
        parts = self.active_parts
        if not parts:
            self.status = OrderStatus.CANCELLED
            self.closed_at = utcnow()
            return
        if self.status not in FOLLOWING:
            return
        least = min(PART_PROGRESS[p.status] for p in parts)
        if least == 0:
            return  # nothing packed yet: still paid (or confirmed)
        self.status = (
            FOLLOWS_PARTS[least]
            if least < 3
            else (OrderStatus.READY_FOR_PICKUP if self.fulfilment == Fulfilment.PICKUP else OrderStatus.DELIVERED)
        )

    def collect(self, code: str) -> bool:
        """Hand the order over at the station if `code` is right."""
        if self.status != OrderStatus.READY_FOR_PICKUP:
            raise _refuse(f"Order {self.id}", self.status, "collected")
        if code != self.pickup_code:
            self.pickup_failures += 1
            return False
        self.status = OrderStatus.COLLECTED
        return True

    def complete(self) -> None:
        if self.status not in (OrderStatus.COLLECTED, OrderStatus.DELIVERED):
            raise _refuse(f"Order {self.id}", self.status, "completed")
        self.status = OrderStatus.COMPLETED
        self.closed_at = utcnow()


class OrderPart(db.Model):  # type: ignore[name-defined]
    """One farm's share of an order, packed and shipped by that farm."""

    __tablename__ = "order_parts"
    __table_args__ = (UniqueConstraint("order_id", "farm_id"), Index("ix_order_parts_farm_status", "farm_id", "status"))

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    farm_id: Mapped[int] = mapped_column(ForeignKey("farms.id"))
    status: Mapped[PartStatus] = mapped_column(enum_column(PartStatus, "part_status"), default=PartStatus.PENDING)
    subtotal: Mapped[int] = mapped_column(BigInteger)
    cancel_reason: Mapped[str | None] = mapped_column(String(500))
    packed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    shipped_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    shipped_on: Mapped[date | None] = mapped_column(Date)
    arrived_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    order: Mapped[Order] = relationship(back_populates="parts")
    farm: Mapped[Farm] = relationship()
    lines: Mapped[list[OrderLine]] = relationship(back_populates="part", order_by="OrderLine.id")
    # Where a pickup part goes once shipped, stop by stop: its last hop is
    # the order's fulfilment point (docs/stations.md, routing).
    hops: Mapped[list[PartHop]] = relationship(
        back_populates="part", order_by="PartHop.sequence", cascade="all, delete-orphan"
    )

    def mark_packed(self) -> None:
        if self.status != PartStatus.TO_PACK:
            raise _refuse(f"Part {self.id}", self.status, "packed")
        self.status = PartStatus.PACKED
        self.packed_at = utcnow()

    def mark_shipped(self) -> None:
        if self.status != PartStatus.PACKED:
            raise _refuse(f"Part {self.id}", self.status, "shipped")
        self.status = PartStatus.SHIPPED
        self.shipped_at = utcnow()
        self.shipped_on = business_day(self.shipped_at)

    def mark_arrived(self) -> None:
        if self.status != PartStatus.SHIPPED or self.order.fulfilment != Fulfilment.PICKUP:
            raise _refuse(f"Part {self.id}", self.status, "received at a station")
        self.status = PartStatus.ARRIVED
        self.arrived_at = utcnow()

    def set_route(self, points: list[FulfilmentPoint]) -> None:
        """The points the part passes, in order, the last the order's own."""
        self.hops = [PartHop(point=point, point_id=point.id, sequence=n) for n, point in enumerate(points, 1)]

    def hop_at(self, point_id: int) -> PartHop | None:
        return next((hop for hop in self.hops if hop.point_id == point_id), None)

    def _check_in_transit(self, hop: PartHop, action: str) -> None:
        if self.status != PartStatus.SHIPPED and not (self.status == PartStatus.ARRIVED and hop.received_at):
            raise _refuse(f"Part {self.id}", self.status, f"{action} at {hop.point.name}")

    def receive_at(self, hop: PartHop, user_id: int | None) -> bool:
        """Scan the part in at `hop` (by `user_id`): at its last hop it has
        arrived. Only after the hop before dispatched it; False, and
        nothing changed, when it was scanned in there already."""
        self._check_in_transit(hop, "received")
        if hop.received_at is not None:
            return False
        before = self.hops[self.hops.index(hop) - 1] if hop is not self.hops[0] else None
        if before is not None and before.dispatched_at is None:
            raise ScanOutOfOrder(
                f"Part {self.id} goes through {before.point.name} first, and was not dispatched from there.",
                at_point_id=before.point_id,
            )
        if hop is self.hops[-1]:
            self.mark_arrived()
        hop.received_at, hop.received_by_id = utcnow(), user_id
        return True

    def dispatch_from(self, hop: PartHop, user_id: int | None) -> bool:
        """Scan the part out of `hop` (by `user_id`) to the next one, after
        it was scanned in there; False, and nothing changed, when it was
        dispatched already. It leaves its last hop only in the buyer's hands."""
        self._check_in_transit(hop, "dispatched")
        if hop is self.hops[-1]:
            raise ScanOutOfOrder(
                f"Part {self.id} ends its route at {hop.point.name}: it is handed over with the pickup code there, "
                "not dispatched.",
                at_point_id=hop.point_id,
            )
        if hop.dispatched_at is not None:
            return False
        if hop.received_at is None:
            raise ScanOutOfOrder(
                f"Part {self.id} was not received at {hop.point.name}: scan it in before dispatching it.",
                at_point_id=hop.point_id,
            )
        hop.dispatched_at, hop.dispatched_by_id = utcnow(), user_id
        return True

    def mark_delivered(self) -> None:
        if self.status != PartStatus.SHIPPED or self.order.fulfilment != Fulfilment.DELIVERY:
            raise _refuse(f"Part {self.id}", self.status, "delivered")
        self.status = PartStatus.DELIVERED

    def check_cancellable(self) -> None:
        """Only a part whose goods are still at the farm can be cancelled."""
        if self.status not in AT_FARM:
            raise _refuse(f"Part {self.id}", self.status, "cancelled")

    def cancel(self, reason: str) -> None:
        self.check_cancellable()
        self.status = PartStatus.CANCELLED
        self.cancel_reason = reason

    def recompute_subtotal(self) -> None:
        self.subtotal = sum(line.charged for line in self.lines)


class ScanOutOfOrder(Conflict):
    slug = "scan-out-of-order"
    title = "Scanned out of route order"


class PartHop(db.Model):  # type: ignore[name-defined]
    """One stop on a shipped pickup part's route: the point, and when and by
    whom it was scanned in (received) and out (dispatched) there. The last
    hop is the order's fulfilment point, where it is received, never
    dispatched: it is handed over to the buyer."""

    __tablename__ = "part_hops"
    __table_args__ = (
        UniqueConstraint("part_id", "sequence"),
        UniqueConstraint("part_id", "point_id"),
        Index("ix_part_hops_point_dispatched", "point_id", "dispatched_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    part_id: Mapped[int] = mapped_column(ForeignKey("order_parts.id", ondelete="CASCADE"))
    point_id: Mapped[int] = mapped_column(ForeignKey("fulfilment_points.id"))
    sequence: Mapped[int] = mapped_column(Integer, doc="1 for the first stop after the farm.")
    received_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    received_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    dispatched_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))

    part: Mapped[OrderPart] = relationship(back_populates="hops")
    point: Mapped[FulfilmentPoint] = relationship()

    @property
    def state(self) -> str:
        """expected, received (there now) or dispatched (gone on)."""
        if self.dispatched_at is not None:
            return "dispatched"
        return "expected" if self.received_at is None else "received"


class OrderLine(db.Model):  # type: ignore[name-defined]
    """A listing bought by weight, with the price, lot and farm as they were."""

    __tablename__ = "order_lines"
    __table_args__ = (
        CheckConstraint("ordered_g > 0", name="ordered_positive"),
        CheckConstraint("weighed_g IS NULL OR weighed_g >= 0", name="weighed_non_negative"),
        CheckConstraint("amount >= 0", name="amount_non_negative"),
        CheckConstraint("premium_amount >= 0", name="premium_non_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    part_id: Mapped[int] = mapped_column(ForeignKey("order_parts.id", ondelete="CASCADE"), index=True)
    farm_id: Mapped[int] = mapped_column(ForeignKey("farms.id"), index=True)
    listing_id: Mapped[int] = mapped_column(ForeignKey("listings.id"), index=True)
    lot_id: Mapped[int | None] = mapped_column(ForeignKey("lots.id"), index=True)
    product_name: Mapped[str] = mapped_column(String(120))
    price_per_kg: Mapped[int] = mapped_column(BigInteger)
    ordered_g: Mapped[int] = mapped_column(BigInteger)
    weighed_g: Mapped[int | None] = mapped_column(BigInteger)
    amount: Mapped[int] = mapped_column(BigInteger, doc="The produce: price_per_kg x grams.")
    premium_amount: Mapped[int] = mapped_column(
        BigInteger, default=0, server_default="0", doc="Buyer-funded premiums on the same grams."
    )
    max_amount: Mapped[int] = mapped_column(BigInteger, doc="Produce and premiums at the top of the tolerance.")
    short_reason: Mapped[str | None] = mapped_column(String(500))

    order: Mapped[Order] = relationship(back_populates="lines")
    part: Mapped[OrderPart] = relationship(back_populates="lines")
    listing: Mapped[Listing] = relationship()
    lot: Mapped[Lot | None] = relationship()
    premiums: Mapped[list[LinePremium]] = relationship(order_by="LinePremium.programme_id")

    @property
    def charged(self) -> int:
        """What the buyer pays for the line."""
        return self.amount + self.premium_amount

    @property
    def billed_g(self) -> int:
        return self.ordered_g if self.weighed_g is None else self.weighed_g


class OrderEvent(db.Model):  # type: ignore[name-defined]
    """The order's timeline: one row per state change, only ever added."""

    __tablename__ = "order_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    part_id: Mapped[int | None] = mapped_column(ForeignKey("order_parts.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(40))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    detail: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now())

    order: Mapped[Order] = relationship(back_populates="events")


class StationStaff(db.Model):  # type: ignore[name-defined]
    """A user who works at a fulfilment point: receives parts, hands orders over."""

    __tablename__ = "station_staff"
    __table_args__ = (UniqueConstraint("user_id", "fulfilment_point_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    fulfilment_point_id: Mapped[int] = mapped_column(ForeignKey("fulfilment_points.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now())
