"""The impact report: what the marketplace did for farms, per county or per
premium programme, over a period, straight from the ledger and the captured
lines. Every figure is one aggregate over a union of facts (set-based SQL,
never a loop over lines):

- grams_sold, sales: produce captured in the period (by the time of its
  "capture" ledger transaction) less what refunds settled in the period gave
  back. Sales are the produce only, in minor units.
- premiums_paid: premiums that became the farms' in the period. Sponsor
  premiums from the farm entries (earned less reversed); buyer-funded
  premiums as captured, less refunds of them (per county; a refund does not
  split its premium by programme, so per programme buyer premiums are as
  captured). Per programme, the produce is that of the lines that earned it.
- premiums_reserved: sponsor budget still held for lines of orders placed
  in the period that have not been paid for yet.
- payouts_made, farms_paid, farmers_paid: payouts paid in the period (a
  Stripe transfer made or a bank transfer confirmed), and the distinct farms
  and farm owners they paid. Per programme: the premiums of that programme
  those payouts carried.

The first three are flows placed by the moment they were recorded, so a
business day that has ended gains none: `roll_up_days` (beat) sums each
closed day once per county and per programme (`ImpactDayFigure`), and a
report reads the sums of the days rolled up and the lines of the days
after them, alike. The held reservations and the payouts (a few rows, and
distinct farms over the whole period) are always read live.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from itertools import pairwise
from typing import Any

from flask import current_app
from sqlalchemy import Integer, Select, and_, case, cast, delete, func, literal, null, select, union_all
from sqlalchemy.exc import IntegrityError

from market.accounts.models import Role
from market.auth import Actor
from market.catalog.models import Farm
from market.csv_export import kg, yuan
from market.db import business_day, business_day_range, unit_of_work, utcnow
from market.errors import Invalid
from market.extensions import db
from market.ledger.models import LedgerTransaction
from market.orders.models import Order, OrderLine
from market.payments.models import CapturedLine, Payment, Refund, RefundLine, RefundStatus
from market.payouts.models import Payout, PayoutStatus
from market.premiums.models import FundedBy, LinePremium, PremiumProgramme
from market.reports.models import ImpactDay, ImpactDayFigure
from market.settlement.models import PREMIUM_KINDS, FarmEntry, entries_paid_by

MEASURES = (
    "grams_sold", "sales", "premiums_paid", "premiums_reserved", "payouts_made", "farms_paid", "farmers_paid",
)  # fmt: skip
KEYS = {
    "county": ("province", "county"),
    "programme": ("programme_id", "programme", "sponsor", "funded_by"),
}
MONEY_MEASURES = ("sales", "premiums_paid", "premiums_reserved", "payouts_made")
CSV_COLUMNS = {
    group: (
        "period_from", "period_to", *keys, "sold_kg", *(f"{name}_yuan" for name in MONEY_MEASURES),
        "farms_paid", "farmers_paid",
    )
    for group, keys in KEYS.items()
}  # fmt: skip
ZERO = literal(0, Integer)
NONE = cast(null(), Integer)


def _fact(
    key: Any,
    *,
    at: Any,
    grams: Any = ZERO,
    sales: Any = ZERO,
    paid: Any = ZERO,
    reserved: Any = ZERO,
    payouts: Any = ZERO,
    farm: Any = NONE,
    owner: Any = NONE,
) -> list[Any]:
    """One row shape for every kind of fact, so they can be unioned; `at`
    is the moment that puts the fact in a period."""
    return [
        key.label("key"),
        at.label("at"),
        grams.label("grams_sold"),
        sales.label("sales"),
        paid.label("premiums_paid"),
        reserved.label("premiums_reserved"),
        payouts.label("payouts_made"),
        farm.label("paid_farm_id"),
        owner.label("paid_owner_id"),
    ]


def _captured_in(since: datetime, until: datetime) -> Select[Any]:
    """Captured lines whose capture was posted in the window."""
    return (
        select(CapturedLine)
        .join(Payment, Payment.id == CapturedLine.payment_id)
        .join(
            LedgerTransaction,
            and_(LedgerTransaction.order_id == Payment.order_id, LedgerTransaction.kind == "capture"),
        )
        .where(LedgerTransaction.created_at >= since, LedgerTransaction.created_at < until)
    )


def _refunded_in(since: datetime, until: datetime) -> Select[Any]:
    return (
        select(RefundLine)
        .join(Refund, Refund.id == RefundLine.refund_id)
        .where(Refund.status == RefundStatus.SUCCEEDED, Refund.settled_at >= since, Refund.settled_at < until)
    )


def _paid_payouts(since: datetime, until: datetime) -> Select[Any]:
    return (
        select(Payout)
        .join(Farm, Farm.id == Payout.farm_id)
        .where(Payout.status == PayoutStatus.PAID, Payout.paid_at >= since, Payout.paid_at < until)
    )


def _unpaid_reservations(since: datetime, until: datetime) -> Select[Any]:
    """Sponsor premiums held for lines of orders placed in the window and
    not captured yet (released reservations are already zero)."""
    captured = select(CapturedLine.id).where(CapturedLine.order_line_id == LinePremium.order_line_id).exists()
    return (
        select(LinePremium)
        .join(OrderLine, OrderLine.id == LinePremium.order_line_id)
        .join(Order, Order.id == OrderLine.order_id)
        .where(
            LinePremium.funded_by == FundedBy.SPONSOR,
            Order.created_at >= since,
            Order.created_at < until,
            ~captured,
        )
    )


def _premiums_moved(key: Any, since: datetime, until: datetime) -> Select[Any]:
    """Sponsor premiums the farms earned in the window, less what refunds took back."""
    return (
        select(*_fact(key, at=FarmEntry.created_at, paid=FarmEntry.net))
        .select_from(FarmEntry)
        .join(Farm, Farm.id == FarmEntry.farm_id)
        .where(FarmEntry.kind.in_(PREMIUM_KINDS), FarmEntry.created_at >= since, FarmEntry.created_at < until)
    )


COUNTY_KEY = Farm.province + literal("\x1f") + Farm.county  # one key column; split again below


def _county_flows(since: datetime, until: datetime) -> list[Select[Any]]:
    """The facts kept by day once a day is rolled up: produce captured and
    refunded, sponsor premiums moved."""
    return [
        _captured_in(since, until)
        .with_only_columns(
            *_fact(
                COUNTY_KEY,
                at=LedgerTransaction.created_at,
                grams=CapturedLine.grams,
                sales=CapturedLine.amount,
                paid=CapturedLine.premium,
            )
        )
        .join(Farm, Farm.id == CapturedLine.farm_id),
        _refunded_in(since, until)
        .with_only_columns(
            *_fact(
                COUNTY_KEY,
                at=Refund.settled_at,
                grams=-RefundLine.grams,
                sales=-RefundLine.amount,
                paid=-RefundLine.premium,
            )
        )
        .join(Farm, Farm.id == RefundLine.farm_id),
        _premiums_moved(COUNTY_KEY, since, until),
    ]


def _county_facts(since: datetime, until: datetime) -> Any:
    rolled = _rolled_until(since, until)
    return union_all(
        *_county_flows(rolled, until),
        _rolled_up("county", since, rolled),
        _unpaid_reservations(since, until)
        .with_only_columns(*_fact(COUNTY_KEY, at=Order.created_at, reserved=LinePremium.amount))
        .join(Farm, Farm.id == LinePremium.farm_id),
        _county_payouts(since, until),
    ).subquery()


def _county_payouts(since: datetime, until: datetime) -> Select[Any]:
    return _paid_payouts(since, until).with_only_columns(
        *_fact(COUNTY_KEY, at=Payout.paid_at, payouts=Payout.amount, farm=Payout.farm_id, owner=Farm.owner_id)
    )


def _earned_on(line_id: Any) -> Any:
    """A line's premiums that paid it something: a sponsor's line granted
    nothing (its budget or the farm's cap spent when it was placed) holds
    a premium of 0, and its produce is not the programme's."""
    return and_(LinePremium.order_line_id == line_id, LinePremium.granted > 0)


def _programme_flows(since: datetime, until: datetime) -> list[Select[Any]]:
    return [
        _captured_in(since, until)
        .with_only_columns(
            *_fact(
                LinePremium.programme_id,
                at=LedgerTransaction.created_at,
                grams=CapturedLine.grams,
                sales=CapturedLine.amount,
                paid=_buyer_amount(),
            )
        )
        .join(LinePremium, _earned_on(CapturedLine.order_line_id)),
        _refunded_in(since, until)
        .with_only_columns(
            *_fact(LinePremium.programme_id, at=Refund.settled_at, grams=-RefundLine.grams, sales=-RefundLine.amount)
        )
        .join(LinePremium, _earned_on(RefundLine.order_line_id)),
        _premiums_moved(FarmEntry.programme_id, since, until),
    ]


def _programme_facts(since: datetime, until: datetime) -> Any:
    rolled = _rolled_until(since, until)
    return union_all(
        *_programme_flows(rolled, until),
        _rolled_up("programme", since, rolled),
        _unpaid_reservations(since, until).with_only_columns(
            *_fact(LinePremium.programme_id, at=Order.created_at, reserved=LinePremium.amount)
        ),
        _programme_payouts(since, until),
    ).subquery()


def _programme_payouts(since: datetime, until: datetime) -> Select[Any]:
    """Per programme, its premiums the payouts of the window carried."""
    paid = entries_paid_by(_paid_payouts(since, until).with_only_columns(Payout.id)).subquery()
    return (
        _paid_payouts(since, until)
        .with_only_columns(
            *_fact(
                FarmEntry.programme_id,
                at=Payout.paid_at,
                payouts=FarmEntry.net,
                farm=Payout.farm_id,
                owner=Farm.owner_id,
            )
        )
        .join(paid, paid.c.payout_id == Payout.id)
        .join(FarmEntry, and_(FarmEntry.id == paid.c.entry_id, FarmEntry.kind.in_(PREMIUM_KINDS)))
    )


FLOWS = {"county": _county_flows, "programme": _programme_flows}
PAYOUTS = {"county": _county_payouts, "programme": _programme_payouts}
ADDED_UP = tuple(name for name in MEASURES if name not in ("farms_paid", "farmers_paid"))


# --- days kept by day -------------------------------------------------------------


def _rolled_until(since: datetime, until: datetime) -> datetime:
    """Where the live facts of [since, until) start: after the days rolled
    up (in the marketplace's present time zone), within the window."""
    rolled = db.session.scalar(
        select(func.max(ImpactDay.until)).where(ImpactDay.timezone == current_app.config["MARKET_TIMEZONE"])
    )
    return min(max(since, rolled or since), until)


def _rolled_up(group_by: str, since: datetime, until: datetime) -> Select[Any]:
    """The rolled-up days of [since, until), as facts placed at each day's start."""
    key = ImpactDayFigure.county_key if group_by == "county" else ImpactDayFigure.programme_id
    return select(
        *_fact(
            key,
            at=ImpactDayFigure.since,
            grams=ImpactDayFigure.grams_sold,
            sales=ImpactDayFigure.sales,
            paid=ImpactDayFigure.premiums_paid,
        )
    ).where(ImpactDayFigure.group_by == group_by, ImpactDayFigure.since >= since, ImpactDayFigure.since < until)


def _first_fact() -> datetime | None:
    """The moment of the earliest fact kept by day."""
    firsts: list[Select[Any]] = [
        select(func.min(LedgerTransaction.created_at)).where(LedgerTransaction.kind == "capture"),
        select(func.min(Refund.settled_at)).where(Refund.status == RefundStatus.SUCCEEDED),
        select(func.min(FarmEntry.created_at)).where(FarmEntry.kind.in_(PREMIUM_KINDS)),
    ]
    found = [moment for moment in (db.session.scalar(first) for first in firsts) if moment is not None]
    return min(found, default=None)


def roll_up_days(now: datetime | None = None) -> int:
    """Sum each business day that ended IMPACT_ROLLUP_DELAY_MINUTES ago or
    more and is not rolled up yet, oldest first, one transaction a day;
    returns how many. Days rolled up under another MARKET_TIMEZONE are
    dropped and rolled up again. Two at once roll each day once: the
    second stops at the first day the other wrote."""
    zone = current_app.config["MARKET_TIMEZONE"]
    closed_by = (now or utcnow()) - timedelta(minutes=current_app.config["IMPACT_ROLLUP_DELAY_MINUTES"])
    with unit_of_work():
        other_zone = select(ImpactDay.business_day).where(ImpactDay.timezone != zone)
        db.session.execute(delete(ImpactDayFigure).where(ImpactDayFigure.business_day.in_(other_zone)))
        db.session.execute(delete(ImpactDay).where(ImpactDay.timezone != zone))
    last = db.session.scalar(select(func.max(ImpactDay.business_day)))
    first = _first_fact()
    if last is not None:
        day = last + timedelta(days=1)
    elif first is not None:
        day = business_day(first)
    else:
        return 0
    rolled = 0
    while (bounds := business_day_range(day))[1] <= closed_by:
        try:
            with unit_of_work():
                _roll_up(day, *bounds, zone)
        except IntegrityError:  # rolled up by another meanwhile
            break
        rolled += 1
        day += timedelta(days=1)
    return rolled


def _roll_up(day: date, since: datetime, until: datetime, zone: str) -> None:
    db.session.add(ImpactDay(business_day=day, timezone=zone, since=since, until=until))
    db.session.flush()
    for group_by, flows in FLOWS.items():
        facts = union_all(*flows(since, until)).subquery()
        sums = db.session.execute(
            select(
                facts.c.key,
                func.sum(facts.c.grams_sold),
                func.sum(facts.c.sales),
                func.sum(facts.c.premiums_paid),
            ).group_by(facts.c.key)
        )
        key = "county_key" if group_by == "county" else "programme_id"
        db.session.add_all(
            ImpactDayFigure(
                business_day=day,
                since=since,
                group_by=group_by,
                **{key: row_key},
                grams_sold=int(grams),
                sales=int(sales),
                premiums_paid=int(paid),
            )
            for row_key, grams, sales, paid in sums
        )


def _buyer_amount() -> Any:
    """A buyer-funded premium reaches the farm with the capture; a sponsor's
    is counted from the ledger instead."""
    return case((LinePremium.funded_by == FundedBy.BUYER, LinePremium.amount), else_=0)


def _measures(facts: Any) -> list[Any]:
    return [
        func.coalesce(func.sum(facts.c.grams_sold), 0).label("grams_sold"),
        func.coalesce(func.sum(facts.c.sales), 0).label("sales"),
        func.coalesce(func.sum(facts.c.premiums_paid), 0).label("premiums_paid"),
        func.coalesce(func.sum(facts.c.premiums_reserved), 0).label("premiums_reserved"),
        func.coalesce(func.sum(facts.c.payouts_made), 0).label("payouts_made"),
        func.count(func.distinct(facts.c.paid_farm_id)).label("farms_paid"),
        func.count(func.distinct(facts.c.paid_owner_id)).label("farmers_paid"),
    ]


def _facts(group_by: str, since: datetime, until: datetime) -> Any:
    return _county_facts(since, until) if group_by == "county" else _programme_facts(since, until)


def _in_order(start: date, end: date) -> None:
    if end < start:
        raise Invalid("The period ends before it starts.", {"to": ["Must not be before from."]})


def impact(actor: Actor, *, start: date, end: date, group_by: str) -> dict[str, Any]:
    """The impact report for the days `start` to `end` (operators)."""
    actor.require(Role.OPERATOR)
    _in_order(start, end)
    since, until = business_day_range(start, end)
    facts = _facts(group_by, since, until)
    grouped = db.session.execute(
        select(facts.c.key, *_measures(facts)).group_by(facts.c.key).order_by(facts.c.key)
    ).all()
    # The sums over all keys are the rows' sums; the farms and farmers paid
    # are counted once over the whole period, from its payouts alone.
    payouts = PAYOUTS[group_by](since, until).subquery()
    paid = db.session.execute(
        select(
            func.count(func.distinct(payouts.c.paid_farm_id)).label("farms_paid"),
            func.count(func.distinct(payouts.c.paid_owner_id)).label("farmers_paid"),
        )
    ).one()
    totals = {name: sum(getattr(row, name) for row in grouped) for name in ADDED_UP} | paid._asdict()
    if group_by == "county":
        rows = [
            dict(zip(("province", "county"), row.key.split("\x1f", 1), strict=True))
            | {name: int(getattr(row, name)) for name in MEASURES}
            for row in grouped
        ]
    else:
        programmes = {
            p.id: p
            for p in db.session.scalars(
                select(PremiumProgramme).where(PremiumProgramme.id.in_([r.key for r in grouped]))
            )
        }
        rows = [
            {
                "programme_id": row.key,
                "programme": programmes[row.key].name,
                "sponsor": programmes[row.key].sponsor,
                "funded_by": programmes[row.key].funded_by.value,
            }
            | {name: int(getattr(row, name)) for name in MEASURES}
            for row in grouped
        ]
    return {
        "period_from": start,
        "period_to": end,
        "group_by": group_by,
        "currency": current_app.config["MARKET_CURRENCY"],
        "rows": rows,
        "totals": {name: int(totals[name]) for name in MEASURES},
    }


def impact_totals(actor: Actor, *, periods: Sequence[tuple[date, date]], group_by: str) -> list[dict[str, int]]:
    """The impact report's totals (`impact(...)["totals"]`, grouped the same
    way) for each of `periods` (first and last business days, in order and
    not overlapping), in one statement rather than a report each: the facts
    of all the periods are read once, each put in the period its moment
    falls in and grouped by period in SQL. A period's bounds are its days'
    midnights in the marketplace's time zone, as the report's are
    (operators)."""
    actor.require(Role.OPERATOR)
    for start, end in periods:
        _in_order(start, end)
    if not periods:
        return []
    moments = [business_day_range(start, end) for start, end in periods]
    if any(since < until for (_, until), (since, _) in pairwise(moments)):
        raise ValueError("impact_totals: the periods must be in order and must not overlap")
    facts = _facts(group_by, moments[0][0], moments[-1][1])
    period = case(
        *((and_(facts.c.at >= since, facts.c.at < until), number) for number, (since, until) in enumerate(moments))
    )
    placed = select(facts, period.label("period")).subquery()
    found = {
        row.period: row
        for row in db.session.execute(
            select(placed.c.period, *_measures(placed)).where(placed.c.period.isnot(None)).group_by(placed.c.period)
        )
    }
    return [
        {name: int(getattr(found[number], name)) if number in found else 0 for name in MEASURES}
        for number in range(len(periods))
    ]


def impact_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The report as spreadsheet rows: weight in kg, money in yuan."""
    rows = []
    for row in [*report["rows"], {"province": "total", "programme": "total", **report["totals"]}]:
        rows.append(
            row
            | {
                "period_from": report["period_from"].isoformat(),
                "period_to": report["period_to"].isoformat(),
                "sold_kg": kg(row["grams_sold"]),
            }
            | {f"{name}_yuan": yuan(row[name]) for name in MONEY_MEASURES}
        )
    return rows
