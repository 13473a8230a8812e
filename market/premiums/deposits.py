"""A sponsor's money: what a sponsor-funded programme's sponsor owes the
platform for the premiums it pays farms, what the sponsor deposited, and the
programme's statement (docs/settlement.md, "Sponsors' money").

The programme's ledger account `sponsor_liability:<programme>` is the
sponsor's account with the platform: a premium the farms earn debits it
(the platform paid it for the sponsor), a premium reversed by a refund
credits it back, and a deposit credits it (the money came in, to
`gateway_cash:offline`, the platform's bank). Its balance, debit-positive,
is what the sponsor owes: earned - reversed - deposited; negative, the
sponsor's credit. `ledger-check` proves it against the farm entries and the
deposits.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from market.accounts.models import Role
from market.auth import Actor
from market.csv_export import Text, yuan
from market.db import NOT_AFTER_TODAY, business_day, business_day_range, business_today, get_or_404, unit_of_work
from market.errors import Conflict, Invalid, NotFound
from market.extensions import db
from market.ledger import service as ledger
from market.pagination import Page, SortKey, keyset_page
from market.payments.models import Provider
from market.premiums.models import FundedBy, PremiumProgramme, SponsorDeposit
from market.premiums.service import sponsor_liability
from market.settlement.models import PREMIUM_KINDS, EntryKind, FarmEntry

DEPOSIT_KIND = "sponsor_deposit"
FIGURES = ("earned", "reversed", "deposited", "owed")
STATEMENT_COLUMNS = (
    "programme_id", "day", "movement", "order_id", "refund_id", "deposit_id", "bank_reference",
    *(f"{name}_yuan" for name in FIGURES), "balance_yuan",
)  # fmt: skip


class DepositNotFound(NotFound):
    pass


def deposit_reference(deposit_id: int) -> str:
    return f"{DEPOSIT_KIND}:{deposit_id}"


def _sponsored(programme_id: int) -> PremiumProgramme:
    """The programme, which must be funded by a sponsor: a buyer-funded one's
    premiums are paid by its buyers with their orders, and no sponsor owes
    anything for them."""
    programme = get_or_404(PremiumProgramme, programme_id, "Premium programme")
    if programme.funded_by != FundedBy.SPONSOR:
        raise Invalid(
            f"Programme {programme_id} is funded by its buyers: it has no sponsor account.",
            {"programme_id": ["Only a sponsor-funded programme takes deposits and has a statement."]},
        )
    return programme


def record_deposit(
    actor: Actor, programme_id: int, *, amount: int, bank_reference: str, received_on: date, note: str | None = None
) -> SponsorDeposit:
    """An operator records money the sponsor paid towards the programme
    (operators). The bank reference makes it idempotent: the same one on
    the same programme again is a 409 naming the deposit it recorded."""
    actor.require(Role.OPERATOR)
    reference = bank_reference.strip()
    errors: dict[str, list[str]] = {}
    if not reference:
        errors["bank_reference"] = ["Must not be blank."]
    if received_on > business_today():
        errors["received_on"] = [NOT_AFTER_TODAY]
    if errors:
        raise Invalid("The deposit cannot be recorded.", errors)
    try:
        with unit_of_work():
            programme = _sponsored(programme_id)
            earlier = db.session.scalar(
                select(SponsorDeposit.id).where(
                    SponsorDeposit.programme_id == programme.id, SponsorDeposit.bank_reference == reference
                )
            )
            if earlier is not None:
                raise Conflict(
                    f"Bank reference {reference} is recorded on programme {programme_id} already, "
                    f"as deposit {earlier}.",
                    deposit_id=earlier,
                )
            deposit = SponsorDeposit(
                programme_id=programme.id,
                amount=amount,
                bank_reference=reference,
                received_on=received_on,
                note=note,
                recorded_by=actor.user_id,
            )
            db.session.add(deposit)
            db.session.flush()
            ledger.post(
                DEPOSIT_KIND,
                deposit_reference(deposit.id),
                {ledger.gateway_cash(Provider.OFFLINE): amount, sponsor_liability(programme.id): -amount},
                memo=reference,
            )
    except IntegrityError:  # the same reference recorded by another operator meanwhile
        raise Conflict(
            f"Bank reference {reference} was recorded on programme {programme_id} at the same time."
        ) from None
    return deposit


def list_deposits(actor: Actor, programme_id: int, *, limit: int, cursor: str | None = None) -> Page[SponsorDeposit]:
    """The programme's deposits, newest first (operators)."""
    actor.require(Role.OPERATOR)
    get_or_404(PremiumProgramme, programme_id, "Premium programme")
    stmt = select(SponsorDeposit).where(SponsorDeposit.programme_id == programme_id)
    return keyset_page(stmt, [SortKey(SponsorDeposit.id, "id", descending=True)], limit=limit, cursor=cursor)


def get_deposit(actor: Actor, programme_id: int, deposit_id: int) -> SponsorDeposit:
    actor.require(Role.OPERATOR)
    deposit = db.session.scalars(
        select(SponsorDeposit).where(SponsorDeposit.id == deposit_id, SponsorDeposit.programme_id == programme_id)
    ).one_or_none()
    if deposit is None:
        raise DepositNotFound(f"Programme {programme_id} has no deposit {deposit_id}.")
    return deposit


# --- the statement ------------------------------------------------------------


def _figures(earned: int = 0, reversed_: int = 0, deposited: int = 0) -> dict[str, int]:
    return {"earned": earned, "reversed": reversed_, "deposited": deposited, "owed": earned - reversed_ - deposited}


def _premium_rows(programme_id: int, since: datetime | None, until: datetime | None) -> list[tuple[Any, ...]]:
    """The farms' premium entries of the window, one row per capture
    (earned, by order) and per refund (reversed), each dated by its first
    entry, and ordered by it where two share a time (SQLite's clock counts
    whole seconds)."""
    stmt = select(
        FarmEntry.kind,
        FarmEntry.order_id,
        FarmEntry.refund_id,
        func.sum(FarmEntry.net),
        func.min(FarmEntry.created_at),
        func.min(FarmEntry.id),
    ).where(FarmEntry.programme_id == programme_id, FarmEntry.kind.in_(PREMIUM_KINDS))
    if since is not None:
        stmt = stmt.where(FarmEntry.created_at >= since)
    if until is not None:
        stmt = stmt.where(FarmEntry.created_at < until)
    rows = db.session.execute(stmt.group_by(FarmEntry.kind, FarmEntry.order_id, FarmEntry.refund_id)).tuples()
    return [
        (
            (business_day(at), at, 0, first),
            {"movement": "premium_earned" if kind == EntryKind.SPONSOR_PREMIUM else "premium_reversed"}
            | {"order_id": order_id, "refund_id": refund_id, "deposit_id": None, "bank_reference": None}
            | (_figures(earned=int(net)) if kind == EntryKind.SPONSOR_PREMIUM else _figures(reversed_=-int(net))),
        )
        for kind, order_id, refund_id, net, at, first in rows
    ]


def _deposit_rows(deposits: Iterable[SponsorDeposit]) -> list[tuple[Any, ...]]:
    return [
        (
            (deposit.received_on, deposit.created_at, 1, deposit.id),
            {"movement": "deposit", "order_id": None, "refund_id": None, "deposit_id": deposit.id}
            | {"bank_reference": deposit.bank_reference}
            | _figures(deposited=deposit.amount),
        )
        for deposit in deposits
    ]


def _owed_before(programme_id: int, start: date) -> int:
    since = business_day_range(start)[0]
    premiums = db.session.scalar(
        select(func.coalesce(func.sum(FarmEntry.net), 0)).where(
            FarmEntry.programme_id == programme_id, FarmEntry.kind.in_(PREMIUM_KINDS), FarmEntry.created_at < since
        )
    )
    deposited = db.session.scalar(
        select(func.coalesce(func.sum(SponsorDeposit.amount), 0)).where(
            SponsorDeposit.programme_id == programme_id, SponsorDeposit.received_on < start
        )
    )
    return int(premiums or 0) - int(deposited or 0)


def statement(actor: Actor, programme_id: int, *, start: date | None = None, end: date | None = None) -> dict[str, Any]:
    """The sponsor's statement of a sponsor-funded programme for the business
    days `start` to `end` (each open when not given): what it owed before,
    every premium the farms earned or a refund reversed and every deposit of
    the period (oldest first, each with the balance after it), their totals,
    and what it owes after (negative: its credit). Premiums are dated by
    when they were earned or reversed, deposits by the day the bank received
    them (operators)."""
    actor.require(Role.OPERATOR)
    if start is not None and end is not None and end < start:
        raise Invalid("The period ends before it starts.", {"to": ["Must not be before from."]})
    programme = _sponsored(programme_id)
    since = business_day_range(start)[0] if start is not None else None
    until = business_day_range(end)[1] if end is not None else None
    deposits = select(SponsorDeposit).where(SponsorDeposit.programme_id == programme_id)
    if start is not None:
        deposits = deposits.where(SponsorDeposit.received_on >= start)
    if end is not None:
        deposits = deposits.where(SponsorDeposit.received_on <= end)
    movements = _premium_rows(programme_id, since, until) + _deposit_rows(db.session.scalars(deposits))
    movements.sort(key=lambda movement: movement[0])
    opening = _owed_before(programme_id, start) if start is not None else 0
    balance, rows = opening, []
    for (day, *_), row in movements:
        balance += row["owed"]
        rows.append({"day": day, **row, "balance": balance})
    totals = _figures(*(sum(row[name] for row in rows) for name in ("earned", "reversed", "deposited")))
    return {
        "programme_id": programme.id,
        "programme": programme.name,
        "sponsor": programme.sponsor,
        "currency": current_app.config["MARKET_CURRENCY"],
        "period_from": start,
        "period_to": end,
        "opening_owed": opening,
        "rows": rows,
        "totals": totals,
        "closing_owed": opening + totals["owed"],
    }


def statement_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The statement as spreadsheet rows, money in yuan: the balance owed
    before the period, each movement, and the totals with what is owed after."""
    opening = {"day": report["period_from"], "movement": "opening", "balance": report["opening_owed"]}
    total = {"day": report["period_to"], "movement": "total", **report["totals"], "balance": report["closing_owed"]}
    return [
        {
            "programme_id": report["programme_id"],
            "day": row["day"].isoformat() if row.get("day") else None,
            "movement": row["movement"],
            "order_id": row.get("order_id"),
            "refund_id": row.get("refund_id"),
            "deposit_id": row.get("deposit_id"),
            "bank_reference": Text(row["bank_reference"]) if row.get("bank_reference") else None,
            "balance_yuan": yuan(row["balance"]),
        }
        | {f"{name}_yuan": yuan(row[name]) if name in row else None for name in FIGURES}
        for row in [opening, *report["rows"], total]
    ]
