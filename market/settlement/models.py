"""The farms' money, one row per movement, written once when it is decided.

A farm's balance with the marketplace (its payable) is the sum of its rows'
`net`; payout runs, statements, the ledger's farm accounts, reports and
`ledger-check` all read these rows. Amounts are signed from the farm's side:
a sale adds, a refund takes back, a payout takes what was paid.

What paid an entry (docs/settlement.md, "Which payout paid an entry"): the
payout whose `PayoutCoverage` covers its order part up to or past it, or
else the payout or transfer reversal its own row names. Exactly one of the
three at most; `paid_by` reads it.

What an order part's earned entries come to is kept beside them
(`PartTotal`), written in the entries' own transaction, so a payout run
reads one row per part instead of every entry.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    CompoundSelect,
    ForeignKey,
    Index,
    Integer,
    String,
    and_,
    case,
    func,
    literal,
    select,
)
from sqlalchemy.orm import Mapped, mapped_column

from market.db import UTCDateTime, enum_column
from market.extensions import db


class EntryKind(StrEnum):
    SALE = "sale"  # a captured line: produce, the commission on it, buyer premiums
    SPONSOR_PREMIUM = "sponsor_premium"  # earned from a sponsor programme when the line was captured
    REFUND = "refund"  # a refunded part of a line: produce, commission and buyer premium back
    PREMIUM_REVERSAL = "premium_reversal"  # the sponsor premium the kept grams no longer earn
    PAYOUT = "payout"  # what a payout paid the farm
    TRANSFER_REVERSAL = "transfer_reversal"  # taken back from a payout's transfer


# What a payout run pays (or nets); payouts and reversals are how it is paid.
EARNED = (EntryKind.SALE, EntryKind.SPONSOR_PREMIUM, EntryKind.REFUND, EntryKind.PREMIUM_REVERSAL)
TAKE_BACKS = (EntryKind.REFUND, EntryKind.PREMIUM_REVERSAL)
PREMIUM_KINDS = (EntryKind.SPONSOR_PREMIUM, EntryKind.PREMIUM_REVERSAL)


class FarmEntry(db.Model):  # type: ignore[name-defined]
    __tablename__ = "farm_entries"
    __table_args__ = (
        CheckConstraint(
            "kind IN ('payout', 'transfer_reversal') OR net = produce - commission + premium", name="net_is_farm_share"
        ),
        CheckConstraint("payout_id IS NULL OR reversal_id IS NULL", name="settled_once"),
        # Every earned entry belongs to an order part, whose totals count it.
        CheckConstraint("kind IN ('payout', 'transfer_reversal') OR order_id IS NOT NULL", name="earned_in_a_part"),
        # Settling a sale entry writes a new version of its row into every
        # index that holds it, so the sparse columns are indexed only where set.
        Index("ix_farm_entries_unsettled", "farm_id", "kind", postgresql_where="payout_id IS NULL"),
        Index("ix_farm_entries_payout_id", "payout_id", postgresql_where="payout_id IS NOT NULL"),
        Index("ix_farm_entries_reversal_id", "reversal_id", postgresql_where="reversal_id IS NOT NULL"),
        Index("ix_farm_entries_programme_id", "programme_id", postgresql_where="programme_id IS NOT NULL"),
        Index(
            "ix_farm_entries_premium_created_at",
            "created_at",
            postgresql_where="kind IN ('sponsor_premium', 'premium_reversal')",
        ),
        Index("ix_farm_entries_order_line_id", "order_line_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    reference: Mapped[str] = mapped_column(String(120), unique=True, doc="What decided it; never written twice.")
    farm_id: Mapped[int] = mapped_column(ForeignKey("farms.id"))
    kind: Mapped[EntryKind] = mapped_column(enum_column(EntryKind, "entry_kind"))
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"), index=True)
    order_line_id: Mapped[int | None] = mapped_column(ForeignKey("order_lines.id"))
    programme_id: Mapped[int | None] = mapped_column(ForeignKey("premium_programmes.id"))
    refund_id: Mapped[int | None] = mapped_column(ForeignKey("refunds.id"))
    grams: Mapped[int] = mapped_column(BigInteger, default=0)
    produce: Mapped[int] = mapped_column(BigInteger, default=0)
    commission: Mapped[int] = mapped_column(BigInteger, default=0)
    premium: Mapped[int] = mapped_column(BigInteger, default=0)
    net: Mapped[int] = mapped_column(BigInteger)
    payout_id: Mapped[int | None] = mapped_column(
        ForeignKey("payouts.id"),
        doc="The payout that paid or netted it, when no coverage of its order part does (a payout's own row: "
        "that payout).",
    )
    reversal_id: Mapped[int | None] = mapped_column(
        ForeignKey("transfer_reversals.id"), doc="The transfer reversal that recovered it."
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now())


class PayoutCoverage(db.Model):  # type: ignore[name-defined]
    """What a payout paid of one order part (an order's entries for one
    farm): every earned entry of the part up to `last_entry_id`, written
    once, by the first payout that pays the part. Entries the part gets
    later (refunds, premium reversals) are above it and are settled one by
    one (`FarmEntry.payout_id` or `reversal_id`).

    The primary key makes a part covered at most once. A payout run writes
    these rows set-wise from its own payouts and the entries it chose,
    holding the lock that keeps entries from being written meanwhile
    (`market.settlement.service.hold_payout_runs`), so there are no foreign
    keys to check row by row; `ledger-check` checks that each names a
    payout of its farm and that no entry it covers is settled otherwise."""

    __tablename__ = "payout_coverage"
    __table_args__ = (Index("ix_payout_coverage_payout_id", "payout_id"),)

    order_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    farm_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    payout_id: Mapped[int] = mapped_column(Integer)
    last_entry_id: Mapped[int] = mapped_column(Integer, doc="The part's last entry this payout paid.")


class PartTotal(db.Model):  # type: ignore[name-defined]
    """What the earned entries of one order part come to, the part's last
    entry included: kept as the entries are written (`add_earned` in
    market/settlement/service.py, in the entries' transaction), so that a
    payout run totals a part it has not covered yet from this row rather
    than from its entries. `ledger-check` recomputes every row from the
    entries."""

    __tablename__ = "part_totals"

    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), primary_key=True, autoincrement=False)
    farm_id: Mapped[int] = mapped_column(ForeignKey("farms.id"), primary_key=True, autoincrement=False)
    last_entry_id: Mapped[int] = mapped_column(Integer)
    entries: Mapped[int] = mapped_column(Integer)
    lines: Mapped[int] = mapped_column(Integer, doc="Sale entries: the part's captured lines.")
    grams: Mapped[int] = mapped_column(BigInteger, doc="Grams sold (captured).")
    sales: Mapped[int] = mapped_column(BigInteger, doc="Produce and buyer premiums captured.")
    commission: Mapped[int] = mapped_column(BigInteger, doc="The commission on the produce captured.")
    premiums: Mapped[int] = mapped_column(BigInteger, doc="Sponsor premiums earned, less those taken back.")
    refunds: Mapped[int] = mapped_column(BigInteger, doc="What refunds took back from the farm (positive).")
    net: Mapped[int] = mapped_column(BigInteger, doc="The part's entries' net: what the farm is owed for it.")


# The totals a part's entries are kept in (PartTotal) and a payout run's
# rows are totalled in, each entry adding `entry_totals`' value.
TOTALS = ("entries", "lines", "grams", "sales", "commission", "premiums", "refunds", "net")


def entry_totals(entry: Any) -> dict[str, Any]:
    """What one earned entry (FarmEntry or an alias) adds to each of TOTALS."""
    sale = entry.kind == EntryKind.SALE
    return {
        "entries": literal(1),
        "lines": case((sale, 1), else_=0),
        "grams": case((sale, entry.grams), else_=0),
        "sales": case((sale, entry.produce + entry.premium), else_=0),
        "commission": case((sale, entry.commission), else_=0),
        "premiums": case((entry.kind.in_(PREMIUM_KINDS), entry.net), else_=0),
        "refunds": case((entry.kind == EntryKind.REFUND, -entry.net), else_=0),
        "net": entry.net,
    }


def part_of(entry: Any, coverage: Any = PayoutCoverage) -> Any:
    """The join condition of `coverage` (PayoutCoverage or an alias) to
    `entry` (FarmEntry or an alias): the coverage of the entry's order part,
    whether or not it reaches the entry."""
    return and_(coverage.order_id == entry.order_id, coverage.farm_id == entry.farm_id)


def coverage_of(entry: Any) -> Any:
    """The join condition of the `PayoutCoverage` covering `entry`
    (FarmEntry or an alias)."""
    return and_(part_of(entry), entry.id <= PayoutCoverage.last_entry_id)


def paid_by(entry: Any) -> Any:
    """The payout that paid `entry` (FarmEntry or an alias), or NULL: its
    part's coverage or its own `payout_id`."""
    covering = select(PayoutCoverage.payout_id).where(coverage_of(entry)).scalar_subquery()
    return func.coalesce(entry.payout_id, covering)


def entries_paid_by(payout_ids: Any) -> CompoundSelect[Any]:
    """The ids of the earned entries each of `payout_ids` (a column or
    select of payout ids) paid, with that payout's id: those its coverage
    covers and those naming it."""
    covered = (
        select(FarmEntry.id.label("entry_id"), PayoutCoverage.payout_id.label("payout_id"))
        .join(PayoutCoverage, coverage_of(FarmEntry))
        .where(PayoutCoverage.payout_id.in_(payout_ids), FarmEntry.kind.in_(EARNED))
    )
    named = select(FarmEntry.id, FarmEntry.payout_id).where(
        FarmEntry.payout_id.in_(payout_ids), FarmEntry.kind.in_(EARNED)
    )
    return covered.union_all(named)


def farm_share(produce: int, commission: int, premium: int) -> int:
    """What a movement is worth to the farm: the produce less the platform's
    commission on it, plus premiums. The one place this sum is made."""
    return produce - commission + premium


def entry(kind: EntryKind, reference: str, farm_id: int, *, produce: int = 0, commission: int = 0,
          premium: int = 0, **fields: int | None) -> FarmEntry:  # fmt: skip
    return FarmEntry(
        kind=kind,
        reference=reference,
        farm_id=farm_id,
        produce=produce,
        commission=commission,
        premium=premium,
        net=farm_share(produce, commission, premium),
        **fields,
    )
