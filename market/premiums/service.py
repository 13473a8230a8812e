"""Premium rules: which programmes apply to a line, budgets that never
overshoot, recomputation on the weighed grams, release on cancellation.

A buyer-funded premium is added to what the buyer pays and passed wholly to
the farm. A sponsor-funded one is reserved against the programme's budget
when the order is placed (a conditional update: never past the cap, also
under concurrency; a line gets what is left when the budget runs short and
says so), cut to the weighed grams at packing, given back on cancellation,
and paid to the farm from the sponsor's liability when the money is taken.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, bindparam, func, or_, select, update

from market.accounts.models import Role, User
from market.auth import Actor
from market.catalog.models import Brand, Category, Listing
from market.catalog.service import get_listing
from market.commissions.earning import check_within_platform_commission
from market.db import get_or_404, hold_until_commit, insert_if_absent, unit_of_work, utcnow
from market.errors import Invalid
from market.extensions import db
from market.money import line_amount
from market.pagination import Page, SortKey, keyset_page
from market.premiums.models import SCOPE_FIELDS, FarmPremiumUsage, FundedBy, LinePremium, PremiumProgramme


@dataclass(frozen=True)
class Quote:
    """A programme's premium on `grams` of a line, before any reservation."""

    programme: PremiumProgramme
    amount: int


# The sponsor's account with the platform, one per programme: premiums the
# farms earn debit it, reversals and the sponsor's deposits credit it; its
# balance is what the sponsor owes (market/premiums/deposits.py).
SPONSOR_ACCOUNT_PREFIX = "sponsor_liability:"


def sponsor_liability(programme_id: int) -> str:
    return f"{SPONSOR_ACCOUNT_PREFIX}{programme_id}"


# --- programmes -------------------------------------------------------------


def _active(now: datetime | ColumnElement[datetime]) -> Any:
    return and_(
        PremiumProgramme.valid_from <= now,
        or_(PremiumProgramme.valid_until.is_(None), PremiumProgramme.valid_until > now),
    )


def _scopes_overlap(a: dict[str, Any], b: PremiumProgramme) -> bool:
    """Two scopes can match the same line unless some field is set on both to different values."""
    return all(a.get(name) is None or getattr(b, name) is None or a[name] == getattr(b, name) for name in SCOPE_FIELDS)


def create_programme(actor: Actor, **fields: Any) -> PremiumProgramme:
    """A new programme (operators). A sponsor cannot run two programmes that
    could pay the same line at the same time: that would pay it twice."""
    actor.require(Role.OPERATOR)
    errors: dict[str, list[str]] = {}
    if fields["funded_by"] == FundedBy.SPONSOR and fields.get("budget_cap") is None:
        errors["budget_cap"] = ["A sponsor-funded programme needs a budget cap."]
    if fields["funded_by"] == FundedBy.BUYER and (fields.get("budget_cap") or fields.get("farm_cap")):
        errors["budget_cap"] = ["Buyer-funded premiums are paid by buyers; they have no budget."]
    until = fields.get("valid_until")
    if until is not None and until <= fields["valid_from"]:
        errors["valid_until"] = ["Must be after valid_from."]
    for name, model in (("category_id", Category), ("brand_id", Brand), ("buyer_id", User)):
        if fields.get(name) is not None and db.session.get(model, fields[name]) is None:
            errors[name] = [f"No such {name.removesuffix('_id')}."]
    if errors:
        raise Invalid("The programme cannot be created.", errors)
    check_within_platform_commission("host_commission_bp", fields.get("host_commission_bp"))
    # One sponsor however its name is spaced or capitalised: "Fresh Mart " is Fresh Mart.
    fields["sponsor"] = " ".join(fields["sponsor"].split())
    sponsor = fields["sponsor"].lower()
    same_time = [
        func.lower(func.trim(PremiumProgramme.sponsor)) == sponsor,
        or_(PremiumProgramme.valid_until.is_(None), PremiumProgramme.valid_until > fields["valid_from"]),
        # Ended before it started (before end_programme closed such a window
        # where it opens, the end could fall before the start): it never runs.
        or_(PremiumProgramme.valid_until.is_(None), PremiumProgramme.valid_until > PremiumProgramme.valid_from),
    ]
    if until is not None:
        same_time.append(PremiumProgramme.valid_from < until)
    with unit_of_work():
        # Two operators starting the same sponsor's programmes at once: the
        # second looks for clashes once the first is written.
        hold_until_commit("premium-programme-sponsor", sponsor)
        clashes = db.session.scalars(select(PremiumProgramme).where(*same_time)).all()
        clash = next((p for p in clashes if _scopes_overlap(fields, p)), None)
        if clash is not None:
            raise Invalid(
                f"Programme {clash.id} ({clash.name}) of the same sponsor already covers these lines in this window.",
                {"valid_from": [f"Overlaps programme {clash.id}; end it first or narrow the scope."]},
            )
        programme = PremiumProgramme(**fields)
        db.session.add(programme)
    return programme


def _programme(programme_id: int) -> PremiumProgramme:
    return get_or_404(PremiumProgramme, programme_id, "Premium programme")


def get_programme(actor: Actor, programme_id: int) -> PremiumProgramme:
    actor.require(Role.OPERATOR)
    return _programme(programme_id)


def list_programmes(actor: Actor, *, limit: int, cursor: str | None = None, active: bool | None = None) -> Page[Any]:
    actor.require(Role.OPERATOR)
    stmt = select(PremiumProgramme)
    if active is not None:
        now = utcnow()
        stmt = stmt.where(_active(now) if active else ~_active(now))
    return keyset_page(stmt, [SortKey(PremiumProgramme.id, "id", descending=True)], limit=limit, cursor=cursor)


def set_host_commission(actor: Actor, programme_id: int, host_commission_bp: int | None) -> PremiumProgramme:
    """What hosts earn of the programme's lines from the next capture
    recorded on (operators); None: each host's own rate."""
    actor.require(Role.OPERATOR)
    check_within_platform_commission("host_commission_bp", host_commission_bp)
    with unit_of_work():
        programme = _programme(programme_id)
        programme.host_commission_bp = host_commission_bp
    return programme


def end_programme(actor: Actor, programme_id: int) -> PremiumProgramme:
    """Stop a programme now; lines already placed keep their premiums. One
    that has not started yet never runs: its window closes where it opens."""
    actor.require(Role.OPERATOR)
    with unit_of_work():
        programme = _programme(programme_id)
        end = max(utcnow(), programme.valid_from)
        if programme.valid_until is None or programme.valid_until > end:
            programme.valid_until = end
    return programme


# --- matching and quoting ---------------------------------------------------


# Built once: every order runs it.
_ACTIVE = (
    select(PremiumProgramme)
    .where(
        _active(bindparam("now")),
        or_(PremiumProgramme.budget_cap.is_(None), PremiumProgramme.budget_used < PremiumProgramme.budget_cap),
    )
    .order_by(PremiumProgramme.id)
)


def active_programmes(now: datetime | None = None) -> list[PremiumProgramme]:
    """Programmes running now whose budget is not spent: one query per order."""
    return list(db.session.scalars(_ACTIVE, {"now": now or utcnow()}))


def matches(programme: PremiumProgramme, listing: Listing, buyer_id: int | None) -> bool:
    values = {
        "category_id": listing.category_id,
        "product_name": listing.product_name,
        "variety": listing.variety,
        "brand_id": listing.brand_id,
        "origin_county": listing.origin_county,
        "origin_province": listing.farm.province,
        "buyer_id": buyer_id,
    }
    return all(getattr(programme, name) is None or getattr(programme, name) == values[name] for name in SCOPE_FIELDS)


def quotes(programmes: Iterable[PremiumProgramme], listing: Listing, buyer_id: int, grams: int) -> list[Quote]:
    return [Quote(p, line_amount(p.rate_per_kg, grams)) for p in programmes if matches(p, listing, buyer_id)]


def applicable(actor: Actor | None, listing_id: int) -> list[PremiumProgramme]:
    """What premiums a listing earns per kg now: buyers and the public see the
    buyer-funded ones (they pay them); the owning farmer and operators see all."""
    listing = get_listing(actor, listing_id)
    sees_all = actor is not None and (actor.has(Role.OPERATOR) or listing.farm.owner_id == actor.user_id)
    return [
        p
        for p in active_programmes()
        if matches(p, listing, None if sees_all or actor is None else actor.user_id)
        and (sees_all or p.funded_by == FundedBy.BUYER)
    ]


# --- reservations -----------------------------------------------------------


def _farm_usage(programme_id: int, farm_id: int) -> FarmPremiumUsage:
    insert_if_absent(
        FarmPremiumUsage, ["programme_id", "farm_id"], {"programme_id": programme_id, "farm_id": farm_id, "used": 0}
    )
    return db.session.scalars(
        select(FarmPremiumUsage)
        .where(FarmPremiumUsage.programme_id == programme_id, FarmPremiumUsage.farm_id == farm_id)
        .with_for_update()
    ).one()


def _reserve(programme: PremiumProgramme, farm_id: int, wanted: int) -> int:
    """Take up to `wanted` from the budget, then within the farm's cap;
    return what was granted. The common case is one conditional UPDATE of
    the budget; when it is short the row is locked and the line gets what
    is left. The programme's row is locked before the farm's, as
    `lock_budgets` and `_release` lock them."""
    if wanted <= 0:
        return 0
    granted = db.session.execute(
        update(PremiumProgramme)
        .where(
            PremiumProgramme.id == programme.id,
            PremiumProgramme.budget_used + wanted <= PremiumProgramme.budget_cap,
        )
        .values(budget_used=PremiumProgramme.budget_used + wanted)
        .returning(PremiumProgramme.id)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    if granted is None:
        used, cap = db.session.execute(
            select(PremiumProgramme.budget_used, PremiumProgramme.budget_cap)
            .where(PremiumProgramme.id == programme.id)
            .with_for_update()
        ).one()
        wanted = min(wanted, (cap or 0) - used)
        if wanted <= 0:
            return 0
        _add_to_budget(programme.id, wanted)
    if programme.farm_cap is not None:
        usage = _farm_usage(programme.id, farm_id)
        allowed = max(0, min(wanted, programme.farm_cap - usage.used))
        _add_to_budget(programme.id, allowed - wanted)  # the budget's row is this transaction's already
        usage.used += allowed
        wanted = allowed
    return wanted


def _add_to_budget(programme_id: int, amount: int) -> None:
    if amount:
        db.session.execute(
            update(PremiumProgramme)
            .where(PremiumProgramme.id == programme_id)
            .values(budget_used=PremiumProgramme.budget_used + amount)
            .execution_options(synchronize_session=False)
        )


def lock_budgets(premiums: Iterable[LinePremium]) -> None:
    """Lock the budgets and farm caps the sponsor `premiums` draw on, in the
    one order every change of a budget takes them: programme by programme
    in id order, each programme's row before its farms' (in farm id order).
    Whatever then changes them, line by line in any order, waits on no
    other transaction that also keeps to it: no deadlock."""
    pairs = {(p.programme_id, p.farm_id) for p in premiums if p.funded_by == FundedBy.SPONSOR}
    for programme_id in sorted({programme_id for programme_id, _ in pairs}):
        db.session.execute(select(PremiumProgramme.id).where(PremiumProgramme.id == programme_id).with_for_update())
        db.session.execute(
            select(FarmPremiumUsage.id)
            .where(
                FarmPremiumUsage.programme_id == programme_id,
                FarmPremiumUsage.farm_id.in_(sorted(farm for p, farm in pairs if p == programme_id)),
            )
            .order_by(FarmPremiumUsage.farm_id)
            .with_for_update()
        )


def _release(premium: LinePremium, amount: int) -> None:
    if amount <= 0:
        return
    db.session.execute(
        update(PremiumProgramme)
        .where(PremiumProgramme.id == premium.programme_id)
        .values(budget_used=PremiumProgramme.budget_used - amount)
        .execution_options(synchronize_session=False)
    )
    db.session.execute(
        update(FarmPremiumUsage)
        .where(FarmPremiumUsage.programme_id == premium.programme_id, FarmPremiumUsage.farm_id == premium.farm_id)
        .values(used=FarmPremiumUsage.used - amount)
        .execution_options(synchronize_session=False)
    )


def premiums_for_lines(lines: Sequence[tuple[Sequence[Quote], int]]) -> list[list[LinePremium]]:
    """The premiums of each of an order's lines (its quotes, its farm id),
    sponsor ones reserved. The budgets are taken programme by programme in
    id order, each programme's farms in id order, whatever the order of
    the lines (`lock_budgets`): two orders drawing on the same programmes
    never wait on each other in a cycle."""
    asks = sorted(
        (
            (quote.programme.id, farm_id, number, quote)
            for number, (quotes_, farm_id) in enumerate(lines)
            for quote in quotes_
            if quote.programme.funded_by == FundedBy.SPONSOR
        ),
        key=lambda ask: ask[:3],
    )
    reserved = {
        (number, programme_id): _reserve(q.programme, farm_id, q.amount) for programme_id, farm_id, number, q in asks
    }
    return [
        [
            _line_premium(quote, farm_id, reserved.get((number, quote.programme.id), quote.amount))
            for quote in sorted(quotes_, key=lambda q: q.programme.id)
        ]
        for number, (quotes_, farm_id) in enumerate(lines)
    ]


def _line_premium(quote: Quote, farm_id: int, amount: int) -> LinePremium:
    programme = quote.programme
    return LinePremium(
        programme_id=programme.id,
        farm_id=farm_id,
        funded_by=programme.funded_by,
        rate_per_kg=programme.rate_per_kg,
        amount=amount,
        granted=amount,
        note=f"Budget short: {amount} of {quote.amount} reserved." if amount < quote.amount else None,
    )


def release(premiums: Iterable[LinePremium], reason: str) -> None:
    """Give back sponsor reservations of lines that will never be paid
    (every line of one order at once: their budgets are locked in order)."""
    reserved = [p for p in premiums if p.funded_by == FundedBy.SPONSOR and p.amount]
    lock_budgets(reserved)
    for premium in reserved:
        _release(premium, premium.amount)
        premium.amount = 0
        premium.note = f"Released: {reason}."


# --- money ------------------------------------------------------------------


def reverse_to(premium: LinePremium, due: int) -> int:
    """Bring a sponsor premium down to `due` and give the rest back to the
    budget; returns what was given back. Settlement records what that
    means for the farm (nothing while it was only reserved)."""
    take = premium.amount - due
    if take <= 0:
        return 0
    _release(premium, take)
    premium.amount = due
    return take
