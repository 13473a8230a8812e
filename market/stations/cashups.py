"""A station's daily cash-up, and the deposit that pays its cash into the
marketplace's bank (docs/stations.md, "Cash-up and deposit").

The cash villagers pay on collection is the station's to hold
(`station_cash:<point>`). At the end of a business day (MARKET_TIMEZONE)
its staff count it: the cash-up of that day holds every cash payment taken
at the counter up to the end of the day and in no earlier cash-up (a day
without one rolls into the next), what they add up to (`expected`) and
what was counted. A difference is posted at once to
`station_cash_difference` and flags the cash-up (`short`, `over`) to
operators. An operator then confirms the deposit the bank received, by its
reference: the counted cash leaves `station_cash:<point>` for
`gateway_cash:offline`, where offline money lands, and what the bank
received beyond the count goes to `station_cash_difference` too. So the
station's account always holds the cash taken and not yet deposited,
corrected by what its counts found.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from flask import current_app
from sqlalchemy import ColumnElement, Select, and_, or_, select, update
from sqlalchemy.exc import IntegrityError

from market.accounts.models import Role
from market.auth import Actor
from market.catalog import service as catalog
from market.csv_export import Text, yuan
from market.db import NOT_AFTER_TODAY, business_day_range, business_today, get_or_404, unit_of_work
from market.errors import Conflict, Invalid, NotFound
from market.events import publish
from market.extensions import db
from market.ledger import service as ledger
from market.orders.models import StationStaff
from market.pagination import Page, SortKey, count_rows, keyset_page
from market.payments.models import Payment, Provider
from market.stations.models import CashUp, CashUpStatus
from market.stations.service import require_staff

DIFFERENCE_KIND = "cash_up_difference"
DEPOSIT_KIND = "station_deposit"
CSV_COLUMNS = (
    "id", "fulfilment_point_id", "business_day", "status", "flagged", "orders", "expected_yuan", "counted_yuan",
    "difference_yuan", "deposited_yuan", "deposit_difference_yuan", "bank_reference", "note", "submitted_by",
    "created_at", "confirmed_by", "confirmed_at", "deposit_note",
)  # fmt: skip
# What a cash-up shows, besides its orders.
SHOWN = (
    "id", "fulfilment_point_id", "business_day", "expected", "counted", "difference", "status", "flagged", "note",
    "submitted_by", "created_at", "bank_reference", "deposited", "deposit_difference", "deposit_note",
    "confirmed_by", "confirmed_at",
)  # fmt: skip


class CashUpNotFound(NotFound):
    pass


def difference_reference(cash_up_id: int) -> str:
    return f"cash_up:{cash_up_id}:difference"


def deposit_reference(cash_up_id: int) -> str:
    return f"cash_up:{cash_up_id}:deposit"


def _require_reader(actor: Actor, point_id: int) -> None:
    """Operators, or staff of the station."""
    if actor.has(Role.OPERATOR):
        catalog.get_fulfilment_point(point_id)
    else:
        require_staff(actor, point_id)


def _day(day: date | None, field: str) -> date:
    """`day`, or today; a day after today is refused, naming the request's `field`."""
    today = business_today()
    if day is None:
        return today
    if day > today:
        raise Invalid("A day that has not come has no cash to count.", {field: [NOT_AFTER_TODAY]})
    return day


def _uncounted(point_id: int, day: date) -> tuple[ColumnElement[bool], ...]:
    """Cash taken at the station up to the end of `day` and in no cash-up yet."""
    return (
        Payment.cash_point_id == point_id,
        Payment.cash_received_at.isnot(None),
        Payment.cash_received_at < business_day_range(day)[1],
        Payment.cash_up_id.is_(None),
    )


def _cash_orders(payments: Sequence[Payment]) -> list[dict[str, Any]]:
    return [
        {
            "order_id": p.order_id,
            "amount": p.amount,
            "collected_at": p.cash_received_at,
            "collected_by": p.cash_received_by,
        }
        for p in sorted(payments, key=lambda p: (p.cash_received_at, p.id))
    ]


def _of_day(point_id: int, day: date) -> CashUp | None:
    return db.session.scalars(
        select(CashUp).where(CashUp.fulfilment_point_id == point_id, CashUp.business_day == day)
    ).one_or_none()


def preview(actor: Actor, point_id: int, day: date | None = None) -> dict[str, Any]:
    """What the cash-up of `day` (today by default) holds (staff of the
    station, operators): before it is submitted, the cash orders collected
    up to the day's end and in no earlier cash-up, and their total; once it
    is, the orders it counted, their total and its id. Cash taken after it
    is not the day's any more: the next cash-up counts it."""
    _require_reader(actor, point_id)
    day = _day(day, "day")
    done = _of_day(point_id, day)
    counted = (Payment.cash_up_id == done.id,) if done else _uncounted(point_id, day)
    payments = db.session.scalars(select(Payment).where(*counted)).all()
    return {
        "fulfilment_point_id": point_id,
        "business_day": day,
        "currency": current_app.config["MARKET_CURRENCY"],
        "orders": _cash_orders(payments),
        "expected": sum(p.amount for p in payments),
        "cash_up_id": done.id if done else None,
    }


def record(
    actor: Actor, point_id: int, *, business_day: date | None, expected: int, counted: int, note: str | None = None
) -> CashUp:
    """Staff of the station submit the cash-up of a business day (today by
    default) with the cash they counted. `expected` is the total the
    preview showed them: cash taken since (a 409) must be counted too. One
    cash-up per station and day (a 409 naming it), and none for a day
    before the station's last one (its cash is in that one). A counted
    difference is posted and flags the cash-up to operators."""
    require_staff(actor, point_id)
    day = _day(business_day, "business_day")
    try:
        with unit_of_work():
            earlier = _of_day(point_id, day)
            if earlier is not None:
                raise Conflict(f"The cash-up of {day} is submitted already, as {earlier.id}.", cash_up_id=earlier.id)
            later = db.session.scalar(
                select(CashUp.id).where(CashUp.fulfilment_point_id == point_id, CashUp.business_day > day).limit(1)
            )
            if later is not None:
                raise Conflict(f"Cash-up {later} of a later day counted the cash of {day} already.", cash_up_id=later)
            cash_up = CashUp(
                fulfilment_point_id=point_id,
                business_day=day,
                expected=0,
                counted=counted,
                status=CashUpStatus.SUBMITTED,
                note=note,
                submitted_by=actor.user_id,
            )
            db.session.add(cash_up)
            db.session.flush()
            # One statement takes each payment into one cash-up only: a
            # concurrent cash-up of the station re-checks `cash_up_id`.
            taken = db.session.scalars(
                update(Payment)
                .where(*_uncounted(point_id, day))
                .values(cash_up_id=cash_up.id)
                .returning(Payment.amount)
                .execution_options(synchronize_session=False)
            ).all()
            cash_up.expected = sum(taken)
            if cash_up.expected != expected:
                raise Conflict(
                    f"The station took {cash_up.expected} in cash to count, not the {expected} expected: "
                    "look at the cash-up again.",
                    expected=cash_up.expected,
                )
            if cash_up.difference:
                cash_up.status = CashUpStatus.SHORT if cash_up.difference < 0 else CashUpStatus.OVER
                ledger.post(
                    DIFFERENCE_KIND,
                    difference_reference(cash_up.id),
                    {
                        ledger.station_cash(point_id): cash_up.difference,
                        ledger.STATION_CASH_DIFFERENCE: -cash_up.difference,
                    },
                    memo=(note or "")[:500],
                )
                publish("cash_up.flagged", cash_up_id=cash_up.id)
    except IntegrityError:  # the same day submitted by another of the staff meanwhile
        raise Conflict(f"The cash-up of {day} was submitted at the same time.") from None
    return cash_up


def confirm_deposit(
    actor: Actor, cash_up_id: int, *, bank_reference: str, amount: int, note: str | None = None
) -> CashUp:
    """An operator confirms the bank received the cash-up's cash: `amount`
    under `bank_reference`, one deposit per reference (the same again is a
    409 naming the cash-up it paid, also when two operators confirm it at
    once). The counted cash moves from the station to `gateway_cash:offline`;
    a bank amount other than the count is a difference, and flags it."""
    actor.require(Role.OPERATOR)
    reference = bank_reference.strip()
    if not reference:
        raise Invalid("The deposit cannot be confirmed.", {"bank_reference": ["Must not be blank."]})
    try:
        with unit_of_work():
            cash_up = get_or_404(CashUp, cash_up_id, "Cash-up", lock=True, missing=CashUpNotFound)
            earlier = db.session.scalar(select(CashUp.id).where(CashUp.bank_reference == reference))
            if earlier is not None:
                raise Conflict(
                    f"Bank reference {reference} is the deposit of cash-up {earlier} already.", cash_up_id=earlier
                )
            cash_up.confirm_deposit(actor.user_id, bank_reference=reference, amount=amount, note=note)
            ledger.post(
                DEPOSIT_KIND,
                deposit_reference(cash_up.id),
                {
                    ledger.gateway_cash(Provider.OFFLINE): amount,
                    ledger.station_cash(cash_up.fulfilment_point_id): -cash_up.counted,
                    ledger.STATION_CASH_DIFFERENCE: cash_up.counted - amount,
                },
                memo=reference,
            )
    except IntegrityError:
        raise Conflict(f"Bank reference {reference} was confirmed for another deposit at the same time.") from None
    return cash_up


def _visible(actor: Actor) -> Select[tuple[CashUp]]:
    stmt = select(CashUp)
    if not actor.has(Role.OPERATOR):
        mine = select(StationStaff.fulfilment_point_id).where(StationStaff.user_id == actor.user_id)
        stmt = stmt.where(CashUp.fulfilment_point_id.in_(mine))
    return stmt


def view(cash_up: CashUp) -> dict[str, Any]:
    return _with_orders([cash_up])[0]


def get_cash_up(actor: Actor, cash_up_id: int) -> dict[str, Any]:
    """One cash-up with its cash orders (operators, staff of its station)."""
    cash_up = db.session.scalars(_visible(actor).where(CashUp.id == cash_up_id)).one_or_none()
    if cash_up is None:
        raise CashUpNotFound(f"Cash-up {cash_up_id} not found.")
    return view(cash_up)


def _with_orders(cash_ups: Sequence[CashUp]) -> list[dict[str, Any]]:
    payments = db.session.scalars(select(Payment).where(Payment.cash_up_id.in_([c.id for c in cash_ups]))).all()
    return [
        {name: getattr(cash_up, name) for name in SHOWN}
        | {"orders": _cash_orders([p for p in payments if p.cash_up_id == cash_up.id])}
        for cash_up in cash_ups
    ]


def _filtered(
    actor: Actor,
    *,
    fulfilment_point_id: int | None = None,
    status: CashUpStatus | None = None,
    start: date | None = None,
    end: date | None = None,
    flagged: bool | None = None,
    deposited: bool | None = None,
) -> Select[tuple[CashUp]]:
    if start is not None and end is not None and end < start:
        raise Invalid("The period ends before it starts.", {"to": ["Must not be before from."]})
    stmt = _visible(actor)
    if fulfilment_point_id is not None:
        stmt = stmt.where(CashUp.fulfilment_point_id == fulfilment_point_id)
    if status is not None:
        stmt = stmt.where(CashUp.status == status)
    if start is not None:
        stmt = stmt.where(CashUp.business_day >= start)
    if end is not None:
        stmt = stmt.where(CashUp.business_day <= end)
    if flagged is not None:
        differs = or_(
            CashUp.counted != CashUp.expected, and_(CashUp.deposited.isnot(None), CashUp.deposited != CashUp.counted)
        )
        stmt = stmt.where(differs if flagged else ~differs)
    if deposited is True:
        stmt = stmt.where(CashUp.status == CashUpStatus.DEPOSITED)
    elif deposited is False:
        # Waiting for a deposit: a cash-up that counted no cash has none to wait for.
        stmt = stmt.where(CashUp.status != CashUpStatus.DEPOSITED, CashUp.counted > 0)
    return stmt


def list_cash_ups(actor: Actor, *, limit: int, cursor: str | None = None, **filters: Any) -> Page[dict[str, Any]]:
    """Cash-ups, newest first, by station, status, business days, whether
    a difference flagged them and whether their deposit is confirmed (`_filtered`; operators; staff see
    their stations', anyone else none)."""
    stmt = _filtered(actor, **filters)
    page = keyset_page(stmt, [SortKey(CashUp.id, "id", descending=True)], limit=limit, cursor=cursor)
    return Page(items=_with_orders(page.items), next_cursor=page.next_cursor)


def count_cash_ups(actor: Actor, **filters: Any) -> int:
    """How many cash-ups `list_cash_ups` lists with `filters`, over all its pages."""
    return count_rows(_filtered(actor, **filters))


def cash_up_rows(actor: Actor, **filters: Any) -> list[dict[str, Any]]:
    """The cash-ups of the filters (`_filtered`) as CSV rows, money in yuan (operators)."""
    actor.require(Role.OPERATOR)
    stmt = _filtered(actor, **filters)
    money = ("expected", "counted", "difference", "deposited", "deposit_difference")
    rows = []
    for c in _with_orders(db.session.scalars(stmt.order_by(CashUp.business_day, CashUp.id)).all()):
        row = {name: c[name] for name in CSV_COLUMNS if name in c and name not in money}
        row |= {f"{name}_yuan": yuan(c[name]) for name in money}
        row |= {
            "business_day": c["business_day"].isoformat(),
            "status": c["status"].value,
            "flagged": "yes" if c["flagged"] else "no",
            "orders": len(c["orders"]),
            "bank_reference": Text(c["bank_reference"]) if c["bank_reference"] else None,
            "created_at": c["created_at"].isoformat(),
            "confirmed_at": c["confirmed_at"].isoformat() if c["confirmed_at"] else None,
        }
        rows.append(row)
    return rows
