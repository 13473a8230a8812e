"""Order rules: placing (no oversell), packing by weight, shipping, station
pickup, cancellation and expiry, and who may see and do what.

Visibility: a buyer sees their own orders; a farmer sees the orders with
lines from their farms, and only those parts and lines, the buyer's name and
the fulfilment point (no totals of other farms, no pickup code); station
staff see the orders at their points; operators see everything.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, TypeVar

from flask import current_app
from sqlalchemy import ColumnElement, Select, and_, bindparam, exists, false, func, or_, select
from sqlalchemy.orm import contains_eager, joinedload, lazyload, selectinload
from sqlalchemy.orm.exc import StaleDataError

from market.accounts import service as accounts
from market.accounts.models import Role, User
from market.auth import Actor
from market.catalog import service as catalog
from market.catalog.models import Farm, FarmStatus, FulfilmentPoint, Listing, ListingStatus
from market.commissions import earning as commissions
from market.csv_export import kg, yuan
from market.db import (
    business_day_range,
    commit_keeping_state,
    holds_text,
    insert_new,
    local_time,
    unit_of_work,
    utcnow,
)
from market.errors import Conflict, DomainError, Invalid, NotFound
from market.events import publish
from market.extensions import db
from market.money import tolerance_bounds
from market.orders.models import (
    OPEN_STATUSES,
    Fulfilment,
    Order,
    OrderEvent,
    OrderLine,
    OrderPart,
    OrderStatus,
    PartHop,
    PartStatus,
    StationStaff,
    destination_problem,
)
from market.orders.pricing import PricedLine, price_line
from market.pagination import Page, SortKey, count_rows, keyset_page
from market.premiums import service as premiums
from market.settlement import service as settlement

log = logging.getLogger(__name__)

T = TypeVar("T")
PICKUP_CODE_DIGITS = 6
PART_ARRIVED = "part.arrived"  # the event of a part taken in at its station


class Shortfall(Conflict):
    slug = "out-of-stock"
    title = "Not enough stock"


class UnpaidOrdersLimit(Conflict):
    slug = "unpaid-orders-limit"
    title = "Too many unpaid orders"


class UnpaidGramsLimit(Conflict):
    slug = "unpaid-grams-limit"
    title = "Too much produce in unpaid orders"


class TooManyAttempts(DomainError):
    status = 429
    slug = "too-many-attempts"
    title = "Too many wrong codes"


class ConcurrentChange(Conflict):
    slug = "concurrent-change"
    title = "Changed at the same time"


@dataclass(frozen=True)
class LineRequest:
    listing_id: int
    grams: int


@dataclass(frozen=True)
class Weighing:
    line_id: int
    weighed_g: int
    short_reason: str | None = None


@dataclass(frozen=True)
class Unpriced:
    """A part or line as station staff see it: the goods to take in and hand
    over, with its money (`hidden`) as null."""

    row: OrderPart | OrderLine
    hidden: dict[str, Any]

    def __getattr__(self, name: str) -> Any:
        return self.hidden[name] if name in self.hidden else getattr(self.row, name)


LINE_MONEY = ("price_per_kg", "amount", "premium_amount", "premiums")


def _unpriced(part: OrderPart) -> Unpriced:
    lines = [Unpriced(line, dict.fromkeys(LINE_MONEY)) for line in part.lines]
    return Unpriced(part, {"subtotal": None, "lines": lines})


@dataclass
class OrderView:
    """An order as one caller may see it."""

    order: Order
    parts: list[OrderPart] | list[OrderPart | Unpriced]
    total: int | None
    max_total: int | None
    pickup_code: str | None
    events: list[OrderEvent] = field(default_factory=list)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.order, name)


@dataclass(frozen=True)
class OrderRow:
    """An order as an operator's list of orders shows it: what a row needs,
    without the parts, lines, premiums and events of an `OrderView`."""

    id: int
    status: OrderStatus
    created_at: datetime
    buyer_email: str
    fulfilment_point: str | None
    farms: list[str]  # in the order of its parts, as an OrderView's
    total: int
    currency: str


# --- helpers ----------------------------------------------------------------


def _is_operator(actor: Actor) -> bool:
    return actor.has(Role.OPERATOR)


def _station_ids(actor: Actor) -> set[int]:
    return set(
        db.session.scalars(select(StationStaff.fulfilment_point_id).where(StationStaff.user_id == actor.user_id))
    )


def _visible(actor: Actor) -> ColumnElement[bool]:
    """Orders the actor may read at all."""
    if _is_operator(actor):
        return and_(Order.id.isnot(None))
    clauses: list[ColumnElement[bool]] = []
    if actor.has(Role.BUYER):
        clauses.append(Order.buyer_id == actor.user_id)
    if actor.has(Role.FARMER):
        clauses.append(
            exists().where(OrderPart.order_id == Order.id, OrderPart.farm_id == Farm.id, Farm.owner_id == actor.user_id)
        )
    clauses.append(_at_own_station(actor))
    return or_(*clauses) if clauses else false()


def _at_own_station(actor: Actor) -> ColumnElement[bool]:
    return Order.fulfilment_point_id.in_(
        select(StationStaff.fulfilment_point_id).where(StationStaff.user_id == actor.user_id)
    )


def _part_seen(actor: Actor) -> ColumnElement[bool]:
    """Whether `actor` is shown an OrderPart of an order it may read (as
    `_view`): every part to an operator, the order's buyer and its station's
    staff; to a farmer, its own farms' parts only."""
    if _is_operator(actor):
        return and_(OrderPart.id.isnot(None))
    return or_(
        Order.buyer_id == actor.user_id,
        _at_own_station(actor),
        OrderPart.farm_id.in_(select(Farm.id).where(Farm.owner_id == actor.user_id)),
    )


def _load(actor: Actor, order_id: int, *, lock: bool = False) -> Order:
    stmt = select(Order).where(Order.id == order_id, _visible(actor)).options(*_order_options())
    if lock:
        stmt = stmt.with_for_update(of=Order)
    order = db.session.scalars(stmt).unique().one_or_none()
    if order is None:
        raise NotFound(f"Order {order_id} not found.")
    return order


def _order_options() -> list[Any]:
    return [
        selectinload(Order.parts).selectinload(OrderPart.farm),
        selectinload(Order.parts).selectinload(OrderPart.hops).selectinload(PartHop.point),
        selectinload(Order.parts).selectinload(OrderPart.lines).selectinload(OrderLine.lot),
        selectinload(Order.parts).selectinload(OrderPart.lines).selectinload(OrderLine.premiums),
        selectinload(Order.lines),
        selectinload(Order.fulfilment_point),
        selectinload(Order.buyer),
        # A view carries the order's events: loaded with the page, not one query per order.
        selectinload(Order.events),
    ]


def _part(order: Order, part_id: int) -> OrderPart:
    for part in order.parts:
        if part.id == part_id:
            return part
    raise NotFound(f"Order {order.id} has no part {part_id}.")


def _own_part(actor: Actor, order: Order, part_id: int) -> OrderPart:
    """A part the actor's farm packs and ships (operators: any part)."""
    part = _part(order, part_id)
    if _is_operator(actor):
        return part
    actor.require(Role.FARMER)
    if part.farm.owner_id != actor.user_id:
        raise NotFound(f"Order {order.id} has no part {part_id} of yours.")
    return part


def _require_station(actor: Actor, order: Order) -> None:
    if _is_operator(actor):
        return
    if order.fulfilment_point_id is None or order.fulfilment_point_id not in _station_ids(actor):
        raise NotFound(f"Order {order.id} is not at a station of yours.")


def record_event(
    order: Order, kind: str, actor: Actor | None, *, part: OrderPart | None = None, detail: str = ""
) -> None:
    _add_event(order, kind, actor, part=part, detail=detail)
    publish(kind, order_id=order.id, **({"part_id": part.id} if part else {}))


def _add_event(
    order: Order, kind: str, actor: Actor | None, *, part: OrderPart | None = None, detail: str = ""
) -> OrderEvent:
    event = OrderEvent(
        type=kind, part_id=part.id if part else None, actor_id=actor.user_id if actor else None, detail=detail
    )
    order.events.append(event)
    return event


@contextmanager
def _order_change() -> Iterator[None]:
    """The unit of work of a change to a locked order; an order a concurrent
    request changed first (a stale version) is a ConcurrentChange."""
    try:
        with unit_of_work():
            yield
    except StaleDataError:
        raise ConcurrentChange("The order changed while this request ran; fetch it and try again.") from None


def changing(order: Order, actor: Actor | None, change: Callable[[], T]) -> T:
    """Apply `change` to `order`, record the state events it caused, and
    commit with whatever the caller wrote since locking it, or roll all of
    it back when `change` raises."""
    with _order_change():
        result = changed(order, actor, change)
    return result


def changing_many(change: Callable[[], T]) -> T:
    """`changing` for a change of several locked orders (each through
    `changed`), committed as one or rolled back as one."""
    with _order_change():
        return change()


def changed(order: Order, actor: Actor | None, change: Callable[[], T]) -> T:
    """Apply `change` to a locked `order` and record the state events it
    caused, in the caller's unit of work."""
    before = order.status
    result = change()
    order.updated_at = utcnow()
    if order.status != before:
        record_event(order, f"order.{order.status.value}", actor)
    return result


def _view(actor: Actor, order: Order, stations: set[int]) -> OrderView:
    """What `actor` may see of `order`; `stations` are the actor's points."""
    if _is_operator(actor) or order.buyer_id == actor.user_id:
        return OrderView(order, list(order.parts), order.total, order.max_total, order.pickup_code, list(order.events))
    if order.fulfilment_point_id in stations and order.placed_by_id is not None:
        # Placed at the station for a villager: its staff take the cash, so
        # they see what it costs; the pickup code stays the villager's.
        return OrderView(order, list(order.parts), order.total, order.max_total, None, list(order.events))
    if order.fulfilment_point_id in stations:
        # Staff see what to take in and hand over, not what it cost (a part
        # of their own farm's excepted).
        parts = [p if p.farm.owner_id == actor.user_id else _unpriced(p) for p in order.parts]
        return OrderView(order, parts, None, None, None)
    return OrderView(order, [p for p in order.parts if p.farm.owner_id == actor.user_id], None, None, None)


# --- placing ----------------------------------------------------------------


# The statements placing runs on every order, built once: building each
# with its cache key cost as much CPU as running it.
# The buyer, locked; shown by name only on the order: its roles are not needed.
# The order's fulfilment point is read in the same statement: no lock on it.
_BUYER_LOCKED = (
    select(User, FulfilmentPoint)
    .outerjoin(FulfilmentPoint, FulfilmentPoint.id == bindparam("point_id"))
    .where(User.id == bindparam("buyer_id"))
    .options(lazyload(User.roles))
    .with_for_update(of=User)
)
# Unpaid: an open order not yet paid for. One paid in cash on collection is
# packed, shipped and waits at the station unpaid, holding its produce for
# the villager as long. Each unpaid order of the buyer with the grams its
# parts not cancelled hold, counted and summed in one statement, on the
# tables' columns: a Core select (see market.auth._TOKEN).
_ORDER, _PART, _LINE = Order.__table__.c, OrderPart.__table__.c, OrderLine.__table__.c
_HELD_BY_ORDER = (
    select(func.coalesce(func.sum(_LINE.ordered_g), 0))
    .select_from(OrderLine.__table__.join(OrderPart.__table__, _LINE.part_id == _PART.id))
    .where(_LINE.order_id == _ORDER.id, _PART.status != PartStatus.CANCELLED)
    .scalar_subquery()
)
_UNPAID_ORDERS = (
    select(_ORDER.id, _HELD_BY_ORDER.label("held"))
    .where(
        _ORDER.buyer_id == bindparam("buyer_id"),
        _ORDER.status.in_(sorted(OPEN_STATUSES)),
        _ORDER.paid_at.is_(None),
    )
    .subquery()
)
_UNPAID = select(func.count(_UNPAID_ORDERS.c.id), func.coalesce(func.sum(_UNPAID_ORDERS.c.held), 0))
# Listings with their farms and lots in one statement: a listing has a few lots.
_LISTINGS = (
    select(Listing)
    .join(Listing.farm)
    .where(Listing.id.in_(bindparam("listing_ids", expanding=True)))
    .options(joinedload(Listing.lots), contains_eager(Listing.farm))
)


def _shortfall(requests: Sequence[LineRequest]) -> Shortfall:
    ids = [r.listing_id for r in requests]
    available: dict[int, int] = {
        row.id: row.stock_g
        for row in db.session.execute(
            select(Listing.id, Listing.stock_g).where(Listing.id.in_(ids), catalog.purchasable_listing_filter())
        )
    }
    short = []
    errors: dict[str, list[str]] = {}
    for index, request in enumerate(requests):
        left = available.get(request.listing_id, 0)
        if left < request.grams:
            short.append({"listing_id": request.listing_id, "requested_g": request.grams, "available_g": left})
            errors[f"lines.{index}.grams"] = [f"Only {left} g left."]
    detail = "Not enough stock for: " + ", ".join(
        f"listing {s['listing_id']} ({s['available_g']} g left)" for s in short
    )
    return Shortfall(detail, errors, short_lines=short)


def _check_lines(requests: Sequence[LineRequest]) -> dict[int, Listing]:
    seen: dict[int, int] = {}
    errors: dict[str, list[str]] = {}
    for index, request in enumerate(requests):
        if request.listing_id in seen:
            errors[f"lines.{index}.listing_id"] = [f"Listing already ordered in line {seen[request.listing_id]}."]
        seen.setdefault(request.listing_id, index)
    listings = {listing.id: listing for listing in db.session.scalars(_LISTINGS, {"listing_ids": list(seen)}).unique()}
    for index, request in enumerate(requests):
        listing = listings.get(request.listing_id)
        refusal = _not_on_sale(listing)
        if refusal:
            errors.setdefault(f"lines.{index}.listing_id", [refusal])
        elif listing is not None and not listing.accepts_grams(request.grams):
            errors[f"lines.{index}.grams"] = [
                f"{request.grams} g cannot be ordered: order at least {listing.min_order_g} g, "
                f"in steps of {listing.step_g} g."
            ]
    if errors:
        raise Invalid("Some lines cannot be ordered; nothing was ordered.", errors)
    return listings


def _not_on_sale(listing: Listing | None) -> str | None:
    """Why a buyer cannot order `listing` now, if they cannot. A listing a
    buyer may not read (a draft, or on a farm never verified) is "no such
    listing", as it is when they ask for it by id."""
    if listing is None or listing.status == ListingStatus.DRAFT or listing.farm.verified_at is None:
        return "No such listing."
    if listing.status == ListingStatus.ARCHIVED:
        return "This listing is withdrawn for good; it cannot be ordered."
    if listing.status == ListingStatus.PAUSED:
        return "The farm has paused this listing; it cannot be ordered until they put it on sale again."
    if listing.farm.status != FarmStatus.VERIFIED:
        return "The farm is suspended; its listings cannot be ordered now."
    return None  # active, or sold out: a stock problem, told as one when stock is taken


def _lock_buyer(buyer_id: int, point_id: int | None) -> tuple[User, FulfilmentPoint | None]:
    """The buyer, locked until the order commits (see
    `_check_unpaid_allowance`), and the fulfilment point `point_id` if given."""
    buyer, point = db.session.execute(_BUYER_LOCKED, {"buyer_id": buyer_id, "point_id": point_id}).one()
    if point_id is not None and point is None:
        db.session.rollback()
        raise Invalid(
            f"There is no fulfilment point {point_id}; see /api/v1/fulfilment-points.",
            {"fulfilment_point_id": [f"No fulfilment point {point_id}."]},
        )
    return buyer, point


def _check_unpaid_allowance(buyer_id: int, requests: Sequence[LineRequest]) -> None:
    """Refuse an order that would leave the buyer holding more unpaid orders
    (BUYER_MAX_UNPAID_ORDERS) or more grams in them (BUYER_MAX_UNPAID_G)
    than allowed: stock taken by an unpaid order is blocked for everyone
    until it expires. The buyer's row is locked first (`_lock_buyer`) and
    stays locked until the order commits, so the buyer's concurrent orders
    are counted one after the other and cannot pass the caps together. Lock
    order: buyer, listings, programmes."""
    config = current_app.config
    max_orders, max_g = config["BUYER_MAX_UNPAID_ORDERS"], config["BUYER_MAX_UNPAID_G"]
    grams = sum(r.grams for r in requests)
    if grams > max_g:
        db.session.rollback()
        raise Invalid(
            f"An order waiting for payment may hold at most {max_g} g; this one holds {grams} g. "
            "Order less, or split it and pay each part before the next.",
            {"lines": [f"At most {max_g} g in all."]},
        )
    orders, held_sum = db.session.execute(_UNPAID, {"buyer_id": buyer_id}).one()
    # PostgreSQL sums a bigint as a numeric: back to an int for the problem document.
    held = int(held_sum)
    if orders >= max_orders:
        db.session.rollback()
        raise UnpaidOrdersLimit(
            f"You have {orders} unpaid orders, as many as allowed; pay or cancel one before placing another.",
            unpaid_orders=orders,
            max_unpaid_orders=max_orders,
        )
    if held + grams > max_g:
        db.session.rollback()
        raise UnpaidGramsLimit(
            f"Your unpaid orders hold {held} g; with this order's {grams} g that is more than the {max_g} g "
            "allowed. Pay or cancel an order first, or order less.",
            {"lines": [f"At most {max_g - held} g more until an order is paid."]},
            unpaid_g=held,
            max_unpaid_g=max_g,
        )


def place_order(
    actor: Actor,
    *,
    lines: Sequence[LineRequest],
    fulfilment_point_id: int | None = None,
    delivery_address: str | None = None,
    notes: str = "",
    attribution_code: str | None = None,
) -> OrderView:
    """Place an order: within the buyer's unpaid allowance, price each line,
    take all stock or none, split by farm; with a host's attribution code,
    attributed to the host."""
    actor.require(Role.BUYER)
    order = placed(
        actor.user_id, actor, lines=lines, fulfilment_point_id=fulfilment_point_id,
        delivery_address=delivery_address, notes=notes, attribution_code=attribution_code,
    )  # fmt: skip
    # The response shows what this transaction wrote: no need to load it again.
    commit_keeping_state()
    return _view(actor, order, stations=set())


def placed(
    buyer_id: int,
    actor: Actor,
    *,
    lines: Sequence[LineRequest],
    fulfilment_point_id: int | None = None,
    delivery_address: str | None = None,
    notes: str = "",
    placed_by_id: int | None = None,
    attribution_code: str | None = None,
) -> Order:
    """The order `actor` places for `buyer_id` (themself, or a villager
    station staff order for), written and flushed, not committed: within the
    buyer's unpaid allowance, each line priced, all stock taken or none,
    split by farm."""
    problem = destination_problem(fulfilment_point_id, delivery_address)
    if problem:
        raise Invalid(problem, {"fulfilment_point_id": [problem]})
    host = commissions.host_for_code(attribution_code) if attribution_code else None
    listings = _check_lines(lines)
    buyer, point = _lock_buyer(buyer_id, fulfilment_point_id)
    _check_unpaid_allowance(buyer_id, lines)
    tolerance = current_app.config["WEIGHT_TOLERANCE_BP"]
    programmes = premiums.active_programmes()
    priced = [
        price_line(
            listings[r.listing_id],
            r.grams,
            tolerance_bp=tolerance,
            premiums=premiums.quotes(programmes, listings[r.listing_id], buyer_id, r.grams),
        )
        for r in lines
    ]

    order = Order(
        buyer_id=buyer.id,
        buyer=buyer,
        placed_by_id=placed_by_id,
        host_id=host.id if host else None,
        attribution_code=host.code if host else None,
        fulfilment=Fulfilment.DELIVERY if point is None else Fulfilment.PICKUP,
        fulfilment_point_id=fulfilment_point_id,
        fulfilment_point=point,
        delivery_address=delivery_address,
        notes=notes,
        currency=current_app.config["MARKET_CURRENCY"],
        total=sum(p.amount + p.premium_amount for p in priced),
        max_total=sum(p.max_amount for p in priced),
        expires_at=utcnow() + timedelta(minutes=current_app.config["ORDER_PAYMENT_MINUTES"]),
        events=[],
    )
    # Parts in farm order and lines in request order, as a reload shows them.
    farms = {line.listing.farm_id: line.listing.farm for line in priced}
    # A new part has no route until it ships: an empty one, not a lookup.
    parts = {farm_id: OrderPart(farm_id=farm_id, farm=farms[farm_id], subtotal=0, hops=[]) for farm_id in sorted(farms)}
    order.parts.extend(parts.values())
    for line in priced:
        part = parts[line.listing.farm_id]
        part.subtotal += line.amount + line.premium_amount
        order.lines.append(_line(part, line))
    try:
        # The outbox rows each line's stock move adds are written in one batch at the end.
        with db.session.no_autoflush:
            catalog.take_stock(catalog.StockLine(r.listing_id, r.grams) for r in lines)
    except catalog.OutOfStock:
        db.session.rollback()
        raise _shortfall(lines) from None
    # Budgets are reserved after stock, so every order locks listings first
    # and programmes second, each in id order: concurrent orders cannot deadlock.
    reserved = premiums.premiums_for_lines([(line.premiums, line.listing.farm_id) for line in priced])
    for order_line, line_premiums in zip(order.lines, reserved, strict=True):
        order_line.premiums = line_premiums
    _write_new(order, actor)
    return order


def _write_new(order: Order, actor: Actor) -> None:
    """Write a new order with its parts, lines, premiums and "placed" event,
    one Core INSERT a table, and make them the session's: flushing them was
    a fifth of the request's CPU (docs/performance.md)."""
    order.version = 1  # the first version, as a flush numbers it
    # Added before the order is written, so the written order holds no change
    # to flush: a change would put the whole new graph through the unit of
    # work at commit.
    placed_event = _add_event(order, "order.placed", actor)
    insert_new([order])
    for part in order.parts:
        part.order_id = order.id
    insert_new(order.parts)
    for line in order.lines:
        line.order_id, line.part_id = order.id, line.part.id
    insert_new(order.lines)
    for line in order.lines:
        for premium in line.premiums:
            premium.order_line_id = line.id
    insert_new([premium for line in order.lines for premium in line.premiums])
    placed_event.order_id = order.id
    insert_new([placed_event])
    publish("order.placed", order_id=order.id)
    # Written: added with all it cascades to, they are the session's as if loaded.
    db.session.add(order)


def _line(part: OrderPart, priced: PricedLine) -> OrderLine:
    lot = priced.listing.current_lot
    return OrderLine(
        part=part,
        farm_id=priced.listing.farm_id,
        listing_id=priced.listing.id,
        lot_id=lot.id if lot else None,
        lot=lot,
        product_name=priced.listing.product_name,
        price_per_kg=priced.price_per_kg,
        ordered_g=priced.grams,
        amount=priced.amount,
        premium_amount=priced.premium_amount,
        max_amount=priced.max_amount,
        premiums=[],
    )


# --- reading ----------------------------------------------------------------


def get_order(actor: Actor, order_id: int) -> OrderView:
    return _view(actor, _load(actor, order_id), _station_ids(actor))


def _filtered(
    actor: Actor,
    *,
    status: OrderStatus | None = None,
    farm_id: int | None = None,
    buyer_id: int | None = None,
    fulfilment_point_id: int | None = None,
    created_from: date | None = None,
    created_to: date | None = None,
    overdue_for_pickup: bool | None = None,
    buyer: str | None = None,
    farm: str | None = None,
) -> Select[tuple[Order]]:
    """The orders the caller may see that pass the filters, each matched on
    what the caller is shown: an operator finds buyers by name, email or
    phone, anyone else by name only (the order shows no more of them); and
    a farm matches only a part the caller sees (a farmer's own farms' parts
    of an order other farms share)."""
    stmt = select(Order).where(_visible(actor))
    if buyer:
        matching = accounts.user_matching(buyer) if _is_operator(actor) else holds_text(User.name, buyer)
        stmt = stmt.where(Order.buyer_id.in_(select(User.id).where(matching)))
    if farm:
        named = select(Farm.id).where(holds_text(Farm.name, farm))
        stmt = stmt.where(
            exists().where(OrderPart.order_id == Order.id, OrderPart.farm_id.in_(named), _part_seen(actor))
        )
    if overdue_for_pickup is not None:
        stmt = stmt.where(_overdue_for_pickup() if overdue_for_pickup else ~_overdue_for_pickup())
    if status is not None:
        stmt = stmt.where(Order.status == status)
    if farm_id is not None:
        stmt = stmt.where(
            exists().where(OrderPart.order_id == Order.id, OrderPart.farm_id == farm_id, _part_seen(actor))
        )
    if buyer_id is not None:
        stmt = stmt.where(Order.buyer_id == buyer_id)
    if fulfilment_point_id is not None:
        stmt = stmt.where(Order.fulfilment_point_id == fulfilment_point_id)
    if created_from is not None:
        stmt = stmt.where(Order.created_at >= business_day_range(created_from)[0])
    if created_to is not None:
        stmt = stmt.where(Order.created_at < business_day_range(created_to)[1])
    return stmt


def _overdue_for_pickup(now: datetime | None = None) -> ColumnElement[bool]:
    """Overdue for pickup: waiting at its station, its last part arrived
    there more than STATION_COLLECT_DAYS days ago (the time an order paid in
    cash on collection is given before it expires; a paid order does not
    expire, so someone must call the buyer)."""
    since = (now or utcnow()) - timedelta(days=current_app.config["STATION_COLLECT_DAYS"])
    arrived_since = exists().where(
        OrderEvent.order_id == Order.id, OrderEvent.type == PART_ARRIVED, OrderEvent.created_at > since
    )
    return (Order.status == OrderStatus.READY_FOR_PICKUP) & ~arrived_since


def list_orders(actor: Actor, *, limit: int, cursor: str | None = None, **filters: Any) -> Page[OrderView]:
    """Orders the caller may see, newest first, with an operator's filters
    (`status`, `farm_id`, `buyer_id`, `fulfilment_point_id`, `created_from`,
    `created_to`, `overdue_for_pickup`; `buyer`: text in the buyer's name, email
    or phone; `farm`: text in a farm's name)."""
    stmt = _filtered(actor, **filters).options(*_order_options())
    page = keyset_page(stmt, [SortKey(Order.id, "id", descending=True)], limit=limit, cursor=cursor)
    stations = _station_ids(actor)
    return Page([_view(actor, order, stations) for order in page.items], page.next_cursor)


def count_orders(actor: Actor, **filters: Any) -> int:
    """How many orders `list_orders` would list, over all its pages."""
    return count_rows(_filtered(actor, **filters))


def list_order_rows(actor: Actor, *, limit: int, cursor: str | None = None, **filters: Any) -> Page[OrderRow]:
    """The orders `list_orders` lists (the same filters, order and cursor)
    as rows of a list, for operators: two statements a page (the orders with
    their buyers and points, then their farms' names) rather than each
    order's full view, which an order's own page reads."""
    actor.require(Role.OPERATOR)
    stmt = _filtered(actor, **filters).options(joinedload(Order.buyer), joinedload(Order.fulfilment_point))
    page = keyset_page(stmt, [SortKey(Order.id, "id", descending=True)], limit=limit, cursor=cursor)
    farms: dict[int, list[str]] = {order.id: [] for order in page.items}
    for order_id, name in db.session.execute(
        select(OrderPart.order_id, Farm.name)
        .join(Farm, Farm.id == OrderPart.farm_id)
        .where(OrderPart.order_id.in_(farms))
        .order_by(OrderPart.farm_id, OrderPart.id)  # as Order.parts
    ):
        farms[order_id].append(name)
    rows = [
        OrderRow(
            id=order.id,
            status=order.status,
            created_at=order.created_at,
            buyer_email=order.buyer.email,
            fulfilment_point=order.fulfilment_point.name if order.fulfilment_point else None,
            farms=farms[order.id],
            total=order.total,
            currency=order.currency,
        )
        for order in page.items
    ]
    return Page(rows, page.next_cursor)


def count_orders_by_status(actor: Actor, statuses: Iterable[OrderStatus]) -> dict[OrderStatus, int]:
    """`count_orders(status=...)` for each of `statuses`, in one statement."""
    wanted = list(statuses)
    counted: dict[OrderStatus, int] = {
        status: count
        for status, count in db.session.execute(
            _filtered(actor)
            .with_only_columns(Order.status, func.count())
            .where(Order.status.in_(wanted))
            .group_by(Order.status)
        )
    }
    return {status: counted.get(status, 0) for status in wanted}


# --- paying, packing, shipping, pickup --------------------------------------


def mark_paid(order_id: int) -> bool:
    """Record that the order's payment arrived; False when the order can no
    longer take it (expired or cancelled), and the payment must go back.
    Flushes only: the payment that caused it commits both as one fact."""
    order = db.session.scalars(select(Order).where(Order.id == order_id).with_for_update()).one_or_none()
    if order is None:
        raise NotFound(f"Order {order_id} not found.")
    if order.status != OrderStatus.PENDING_PAYMENT:
        return False
    order.mark_paid()
    order.updated_at = utcnow()
    record_event(order, "order.paid", None)
    db.session.flush()
    return True


def pack_part(actor: Actor, order_id: int, part_id: int, weighings: Sequence[Weighing]) -> OrderView:
    """Record the weighed grams of every line of a part and mark it packed.

    Each weight must lie within the tolerance of the ordered grams, or be 0
    with a reason (the line is short). Amounts follow the weighed grams; the
    order total with them, for the payment to capture. A part whose every
    line is short has nothing to ship: it closes itself (cancelled, with the
    reasons), and the order follows its live parts.
    """
    order = _load(actor, order_id, lock=True)
    part = _own_part(actor, order, part_id)
    part.mark_packed()
    tolerance = current_app.config["WEIGHT_TOLERANCE_BP"]
    lines = {line.id: line for line in part.lines}
    errors: dict[str, list[str]] = {}
    given: set[int] = set()
    for index, weighing in enumerate(weighings):
        line = lines.get(weighing.line_id)
        if line is None or weighing.line_id in given:
            errors[f"weights.{index}.line_id"] = ["Not a line of this part, or given twice."]
            continue
        given.add(line.id)
        low, high = tolerance_bounds(line.ordered_g, tolerance)
        if weighing.short_reason:
            if weighing.weighed_g != 0:
                errors[f"weights.{index}.weighed_g"] = ["A line marked short weighs 0 g."]
        elif not low <= weighing.weighed_g <= high:
            errors[f"weights.{index}.weighed_g"] = [
                f"Must be between {low} and {high} g for {line.ordered_g} g ordered, or 0 with a short_reason."
            ]
    missing = sorted(set(lines) - given)
    if missing:
        errors["weights"] = [f"Weigh every line of the part; missing line(s) {', '.join(map(str, missing))}."]
    if errors:
        db.session.rollback()
        raise Invalid("The weights cannot be recorded; nothing was changed.", errors)
    _restock_by_weighing([(lines[w.line_id], w.weighed_g) for w in weighings])
    premiums.lock_budgets(premium for line in lines.values() for premium in line.premiums)
    for weighing in weighings:
        line = lines[weighing.line_id]
        line.short_reason = weighing.short_reason
        settlement.weigh(line, weighing.weighed_g)
    part.recompute_subtotal()
    order.recompute_total()
    if any(weighing.weighed_g for weighing in weighings):
        _advance_part(actor, order, part, lambda: None, "part.packed")
    else:
        _close_short_part(actor, order, part)
    return _view(actor, order, set())


def _close_short_part(actor: Actor, order: Order, part: OrderPart) -> None:
    """Close a packed part whose every line weighed 0 g (docs/settlement.md):
    packing gave all its grams back to stock and its sponsor premiums back
    to the budgets, no capture takes any of it, and the order moves on with
    its other parts, or is cancelled when it has none left."""
    reasons = sorted({line.short_reason for line in part.lines if line.short_reason})
    reason = ("Every line was short at packing: " + "; ".join(reasons))[:500]  # the column's length

    def close() -> None:
        record_event(order, "part.packed", actor, part=part)
        money_taken = settlement.close_parts(order, [part])
        part.cancel(reason)
        if not money_taken:
            order.recompute_total()

    _advance_part(actor, order, part, close, "part.cancelled", detail=reason)


def _restock_by_weighing(weighed: Sequence[tuple[OrderLine, int]]) -> None:
    """Stock follows the goods: the ordered grams left stock at placing, so
    packing takes what was weighed over the order and gives back what was
    weighed under it (a short line gives back all it ordered). Weighing
    over takes from any listing not archived, paused ones included; when
    even that stock is short the packing is refused and nothing changes."""
    moves = [(line.listing_id, grams - line.ordered_g) for line, grams in weighed]
    more = [catalog.StockLine(listing_id, grams) for listing_id, grams in moves if grams > 0]
    less = [catalog.StockLine(listing_id, -grams) for listing_id, grams in moves if grams < 0]
    try:
        catalog.take_stock(more, purchasable_only=False)
    except catalog.OutOfStock as error:
        db.session.rollback()
        raise Shortfall(
            f"Weighing over the order takes the extra grams from stock, and {error.detail} "
            "Add the harvest to the listing's stock, or weigh less.",
            {"weights": [error.detail]},
        ) from None
    catalog.add_stock(less)


def _advance_part(
    actor: Actor, order: Order, part: OrderPart, mark: Callable[[], None], kind: str, *, detail: str = ""
) -> None:
    """Move one part on (`mark`), record it, and let the order follow, committed."""
    changing(order, actor, lambda: advance(actor, order, part, mark, kind, detail=detail))


def advance(
    actor: Actor, order: Order, part: OrderPart, mark: Callable[[], None], kind: str, *, detail: str = ""
) -> None:
    """Move one part of a locked order on (`mark`), record it, and let the
    order follow, in the caller's unit of work; the order becoming ready
    for pickup gives the buyer a pickup code."""
    was_ready = order.status == OrderStatus.READY_FOR_PICKUP
    mark()
    record_event(order, kind, actor, part=part, detail=detail)
    _follow_parts(order, was_ready)


def _follow_parts(order: Order, was_ready: bool) -> None:
    """Let the order follow its parts; one becoming ready for pickup (its
    last part arrived, or the last one not arrived was cancelled) gives the
    buyer a pickup code."""
    order.follow_parts()
    if order.status == OrderStatus.READY_FOR_PICKUP and not was_ready:
        _new_pickup_code(order)
        if order.paid_at is None:  # paid on collection: it waits so long, then expires
            order.expires_at = utcnow() + timedelta(days=current_app.config["STATION_COLLECT_DAYS"])


def ship_part(actor: Actor, order_id: int, part_id: int) -> OrderView:
    """The farm ships its packed part: to the buyer's address, or to be
    picked up at the order's point along the route fixed now (through the
    county centre when the farm is in another county, docs/stations.md)."""
    order = _load(actor, order_id, lock=True)
    part = _own_part(actor, order, part_id)
    point = order.fulfilment_point
    route = [] if point is None else catalog.route(part.farm, point)

    def ship() -> None:
        part.mark_shipped()
        if route:
            part.set_route(route)

    _advance_part(actor, order, part, ship, "part.shipped", detail=" -> ".join(stop.name for stop in route))
    return _view(actor, order, set())


def deliver_part(actor: Actor, order_id: int, part_id: int) -> OrderView:
    """The farmer (or an operator) hands a delivery part to the buyer."""
    order = _load(actor, order_id, lock=True)
    part = _own_part(actor, order, part_id)
    _advance_part(actor, order, part, part.mark_delivered, "part.delivered")
    return _view(actor, order, set())


def receive_part(actor: Actor, order_id: int, part_id: int) -> OrderView:
    """Station staff take a shipped part in at the order's point, after any
    hop before it dispatched it; when the last part is in, the order is
    ready for pickup and the buyer gets a pickup code."""
    order = _load(actor, order_id, lock=True)
    _require_station(actor, order)
    part = _part(order, part_id)
    hop = part.hop_at(order.fulfilment_point_id or 0)

    def arrive() -> None:
        if hop is None or not part.receive_at(hop, actor.user_id):
            part.mark_arrived()  # refuses: not shipped yet, or received already

    _advance_part(actor, order, part, arrive, PART_ARRIVED)
    return _view(actor, order, _station_ids(actor))


def _new_pickup_code(order: Order) -> None:
    order.pickup_code = f"{secrets.randbelow(10**PICKUP_CODE_DIGITS):0{PICKUP_CODE_DIGITS}d}"
    order.pickup_failures = 0


def renew_pickup_code(actor: Actor, order_id: int) -> OrderView:
    """The buyer asks for a new code (after too many wrong tries, say), or
    staff of the order's station do for them at the counter: a villager
    has no login to ask with. The code goes to the buyer alone; staff
    never see it."""
    order = _load(actor, order_id, lock=True)
    if order.buyer_id != actor.user_id:
        _require_station(actor, order)
    if order.status != OrderStatus.READY_FOR_PICKUP:
        raise Conflict(f"Order {order_id} is {order.status}; only an order ready for pickup has a code.")

    def change() -> None:
        _new_pickup_code(order)
        publish("order.pickup_code_renewed", order_id=order.id)  # the buyer hears the new code

    changing(order, actor, change)
    return view(actor, order)


def collect_order(actor: Actor, order_id: int, code: str) -> OrderView:
    """Station staff hand the order over when the buyer's code matches.
    Wrong codes are counted; past the limit the order takes no more until
    the buyer renews the code."""
    order = station_order(actor, order_id)
    if order.uncollected_unpaid:
        raise Conflict(
            f"Order {order_id} is paid in cash on collection: record the cash with the pickup code "
            f"(POST /api/v1/orders/{order_id}/cash-collection).",
            current_status=order.status.value,
        )
    hand_over(actor, order, code, lambda: None)
    return view(actor, order)


def station_order(actor: Actor, order_id: int) -> Order:
    """An order at one of the actor's stations (any, for operators), locked for a change."""
    order = _load(actor, order_id, lock=True)
    _require_station(actor, order)
    return order


def view(actor: Actor, order: Order) -> OrderView:
    """What `actor` may see of `order`."""
    return _view(actor, order, _station_ids(actor))


def hand_over(actor: Actor, order: Order, code: str, then: Callable[[], None]) -> None:
    """Hand a locked order ready for pickup over when the buyer's code
    matches, and `then` do what is done at the counter (take the cash of an
    order paid on collection), all committed as one. Wrong codes are counted
    (and committed); past PICKUP_CODE_MAX_FAILURES the order takes no more
    until the buyer renews the code."""
    if order.pickup_failures >= current_app.config["PICKUP_CODE_MAX_FAILURES"]:
        raise TooManyAttempts("Too many wrong pickup codes; the buyer must renew the code in the app.")

    def change() -> bool:
        collected = order.collect(code)
        if collected:
            then()
        return collected

    if not changing(order, actor, change):
        raise Invalid("The pickup code is wrong.", {"code": ["Does not match this order's pickup code."]})


def complete_order(actor: Actor, order_id: int) -> OrderView:
    """The buyer (or an operator) confirms the order is done."""
    order = _load(actor, order_id, lock=True)
    if order.buyer_id != actor.user_id and not _is_operator(actor):
        raise NotFound(f"Order {order_id} not found.")
    changing(order, actor, order.complete)
    return _view(actor, order, set())


# --- cancelling and expiry --------------------------------------------------


def cancel_order(actor: Actor, order_id: int, reason: str) -> OrderView:
    """The buyer cancels before anything is packed; an operator at any time
    before completion. Stock that has not left the farms comes back once."""
    order = _load(actor, order_id, lock=True)
    if not _is_operator(actor):
        if order.buyer_id != actor.user_id:
            raise NotFound(f"Order {order_id} not found.")
        if any(p.status not in (PartStatus.PENDING, PartStatus.TO_PACK, PartStatus.CANCELLED) for p in order.parts):
            raise Conflict(
                f"Order {order_id} is already being packed; ask the farm or an operator to cancel it.",
                current_status=order.status.value,
            )

    def change() -> None:
        settlement.close_parts(order, order.parts)
        order.cancel(reason)

    changing(order, actor, change)
    return _view(actor, order, set())


def cancel_part(actor: Actor, order_id: int, part_id: int, reason: str) -> OrderView:
    """A farmer cancels their part of an order (before it ships), with a reason."""
    order = _load(actor, order_id, lock=True)
    part = _own_part(actor, order, part_id)

    def change() -> None:
        part.check_cancellable()  # before anything moves
        was_ready = order.status == OrderStatus.READY_FOR_PICKUP
        money_taken = settlement.close_parts(order, [part])
        part.cancel(reason)
        record_event(order, "part.cancelled", actor, part=part, detail=reason)
        if not money_taken:  # else the capture stands and the part is refunded
            order.recompute_total()
        _follow_parts(order, was_ready)
        settlement.ask_for_what_is_left(order)

    changing(order, actor, change)
    return _view(actor, order, set())


def cancel_unpaid(order_id: int, reason: str) -> bool:
    """The marketplace cancels an open order whose money did not come (its
    buyer did not pay again after the card hold lapsed), in the caller's
    transaction; stock that has not left the farms comes back once. False
    when the order is closed already."""
    order = db.session.scalars(
        select(Order).where(Order.id == order_id).options(*_order_options()).with_for_update(of=Order)
    ).one()
    if order.status not in OPEN_STATUSES:
        db.session.rollback()
        return False

    def change() -> None:
        settlement.close_parts(order, order.parts)
        order.cancel(reason)

    changing(order, None, change)
    return True


def expire_unpaid(now: datetime | None = None, batch: int = 200) -> int:
    """Expire orders left unpaid past their deadline and give their stock
    back: orders not paid in time (ORDER_PAYMENT_MINUTES), and orders paid
    on collection and not collected in time (STATION_COLLECT_DAYS after they
    became ready for pickup), whose goods have left the farms (as for any
    order cancelled after shipping, nothing goes back to stock). Safe to
    run twice at once: each order is expired by whichever run locks it
    first, and the other sees it is no longer pending. Each order is its
    own transaction: one that fails is rolled back, logged with its
    id and counted as failed, and the others still expire."""
    now = now or utcnow()
    never_paid = or_(
        Order.status == OrderStatus.PENDING_PAYMENT,
        and_(Order.status == OrderStatus.READY_FOR_PICKUP, Order.paid_at.is_(None)),
    )
    ids = db.session.scalars(
        select(Order.id).where(never_paid, Order.expires_at <= now).order_by(Order.id).limit(batch)
    ).all()
    db.session.rollback()
    expired = failed = 0
    for order_id in ids:
        try:
            order = db.session.scalars(
                select(Order).where(Order.id == order_id).options(*_order_options()).with_for_update(of=Order)
            ).one()
            if not (order.status == OrderStatus.PENDING_PAYMENT or order.uncollected_unpaid) or order.expires_at > now:
                db.session.rollback()
                continue

            def change(order: Order = order) -> None:
                settlement.close_parts(order, order.parts)
                order.expire()

            changing(order, None, change)
        except ConcurrentChange:
            continue
        except Exception:
            db.session.rollback()
            failed += 1
            log.exception("Order %s could not be expired; it stays pending and is tried again next run.", order_id)
            continue
        expired += 1
    if failed:
        log.error("Expired %s unpaid orders; %s could not be expired.", expired, failed)
    return expired


# --- stations ---------------------------------------------------------------


def grant_station_staff(actor: Actor, point_id: int, user_id: int) -> StationStaff:
    actor.require(Role.OPERATOR)
    with unit_of_work():
        catalog.get_fulfilment_point(point_id)
        staff = db.session.scalars(
            select(StationStaff).where(StationStaff.user_id == user_id, StationStaff.fulfilment_point_id == point_id)
        ).one_or_none()
        if staff is None:
            if db.session.get(User, user_id) is None:
                raise Invalid("Unknown user.", {"user_id": [f"No user {user_id}."]})
            staff = StationStaff(user_id=user_id, fulfilment_point_id=point_id)
            db.session.add(staff)
    return staff


def revoke_station_staff(actor: Actor, point_id: int, user_id: int) -> None:
    actor.require(Role.OPERATOR)
    with unit_of_work():
        staff = db.session.scalars(
            select(StationStaff).where(StationStaff.user_id == user_id, StationStaff.fulfilment_point_id == point_id)
        ).one_or_none()
        if staff is None:
            raise NotFound(f"User {user_id} is not staff at fulfilment point {point_id}.")
        db.session.delete(staff)


def list_station_staff(actor: Actor, point_id: int) -> list[User]:
    """The staff of a fulfilment point (operators), by email."""
    actor.require(Role.OPERATOR)
    catalog.get_fulfilment_point(point_id)
    stmt = (
        select(User)
        .join(StationStaff, StationStaff.user_id == User.id)
        .where(StationStaff.fulfilment_point_id == point_id)
        .order_by(User.email)
    )
    return list(db.session.scalars(stmt))


def point_of(actor: Actor, point_id: int) -> FulfilmentPoint:
    """A fulfilment point the actor works at (any, for operators)."""
    point = catalog.get_fulfilment_point(point_id)
    if not _is_operator(actor) and point.id not in _station_ids(actor):
        raise NotFound(f"Fulfilment point {point_id} is not one of yours.")
    return point


def locked_orders(order_ids: Iterable[int]) -> list[Order]:
    """Orders locked for a change, in id order (so that concurrent changes
    of several orders cannot deadlock), with what a view shows."""
    stmt = select(Order).where(Order.id.in_(set(order_ids))).options(*_order_options()).order_by(Order.id)
    return list(db.session.scalars(stmt.with_for_update(of=Order)).unique())


@dataclass(frozen=True)
class ManifestRow:
    section: str  # "arriving" (on its way here), "to_dispatch" (here, to go on) or "waiting" (ready for pickup)
    order_id: int
    part_id: int
    farm_name: str
    buyer_name: str
    line_id: int
    product_name: str
    grams: int
    part_status: str
    order_status: str
    dispatch_to_point_id: int | None = None
    dispatch_to: str | None = None


def manifest(actor: Actor, point_id: int, day: date) -> list[ManifestRow]:
    """What a fulfilment point handles on `day`: the parts on their way to
    it (shipped from the farm, or dispatched from the hop before, by that
    day, not yet received, or received that day), the parts received there
    to dispatch to the next point of their route (a county centre's), and
    the orders waiting there for pickup."""
    point_of(actor, point_id)
    start, end = business_day_range(day)
    waiting = db.session.scalars(
        select(Order)
        .where(Order.fulfilment_point_id == point_id, Order.status == OrderStatus.READY_FOR_PICKUP)
        .options(*_order_options())
    ).all()
    rows = [
        _manifest_row("waiting", order, part, line)
        for order in waiting
        for part in order.active_parts
        for line in part.lines
    ]
    hops = db.session.scalars(
        select(PartHop)
        .join(PartHop.part)
        .where(
            PartHop.point_id == point_id,
            OrderPart.status.in_([PartStatus.SHIPPED, PartStatus.ARRIVED]),
            or_(PartHop.received_at.is_(None), PartHop.received_at >= start, OrderPart.status == PartStatus.SHIPPED),
        )
        .options(
            selectinload(PartHop.part).selectinload(OrderPart.order).selectinload(Order.buyer),
            selectinload(PartHop.part).selectinload(OrderPart.hops).selectinload(PartHop.point),
            selectinload(PartHop.part).selectinload(OrderPart.farm),
            selectinload(PartHop.part).selectinload(OrderPart.lines),
        )
    ).all()
    for hop in hops:
        part, order = hop.part, hop.part.order
        after = part.hops[part.hops.index(hop) + 1] if hop is not part.hops[-1] else None
        section = _hop_section(hop, part.hops, day, start, end)
        if section is None or (after is None and order.status == OrderStatus.READY_FOR_PICKUP):
            continue  # not for today, or waiting for pickup (listed above)
        rows.extend(_manifest_row(section, order, part, line, after) for line in part.lines)
    return sorted(rows, key=lambda row: (row.order_id, row.part_id, row.line_id))


def _hop_section(hop: PartHop, route: list[PartHop], day: date, start: datetime, end: datetime) -> str | None:
    """Where a part stands at one of its hops on `day`, for that point's manifest."""
    if hop.received_at is not None:
        if hop is not route[-1] and hop.dispatched_at is None:
            return "to_dispatch"
        return "arriving" if start <= hop.received_at < end else None
    before = route[route.index(hop) - 1] if hop is not route[0] else None
    if before is None:
        sent = hop.part.shipped_on is not None and hop.part.shipped_on <= day
    else:
        sent = before.dispatched_at is not None and before.dispatched_at < end
    return "arriving" if sent else None


def _manifest_row(
    section: str, order: Order, part: OrderPart, line: OrderLine, after: PartHop | None = None
) -> ManifestRow:
    return ManifestRow(
        section=section,
        order_id=order.id,
        part_id=part.id,
        farm_name=part.farm.name,
        buyer_name=order.buyer.name,
        line_id=line.id,
        product_name=line.product_name,
        grams=line.billed_g,
        part_status=part.status.value,
        order_status=order.status.value,
        dispatch_to_point_id=after.point_id if after is not None and section == "to_dispatch" else None,
        dispatch_to=after.point.name if after is not None and section == "to_dispatch" else None,
    )


MANIFEST_COLUMNS = (
    "section", "order_id", "part_id", "farm_name", "buyer_name", "line_id", "product_name", "weight_kg",
    "part_status", "order_status", "dispatch_to_point_id", "dispatch_to",
)  # fmt: skip


def manifest_rows(rows: Sequence[ManifestRow]) -> list[dict[str, Any]]:
    """A manifest as spreadsheet rows, weight in kg."""
    return [asdict(row) | {"weight_kg": kg(row.grams)} for row in rows]


ORDER_CSV_COLUMNS = (
    "order_id", "status", "placed_at", "buyer_email", "fulfilment", "fulfilment_point", "farms",
    "total_yuan", "currency",
)  # fmt: skip


def order_rows(views: Iterable[OrderView]) -> list[dict[str, Any]]:
    """Orders as spreadsheet rows: money in yuan, times in the marketplace's zone."""
    return [
        {
            "order_id": view.order.id,
            "status": view.order.status.value,
            "placed_at": local_time(view.order.created_at),
            "buyer_email": view.order.buyer.email,
            "fulfilment": view.order.fulfilment.value,
            "fulfilment_point": view.order.fulfilment_point.name if view.order.fulfilment_point else None,
            "farms": "; ".join(part.farm.name for part in view.order.parts),
            "total_yuan": yuan(view.total),
            "currency": view.order.currency,
        }
        for view in views
    ]
