"""Reconciliation runs and what each found: one item per gateway record or
ledger transaction of the period, with the outcome of matching them."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from market.db import UTCDateTime, enum_column, utcnow
from market.errors import Conflict, Invalid
from market.extensions import db


class RunStatus(StrEnum):
    PENDING = "pending"  # queued for a worker
    COMPLETED = "completed"
    FAILED = "failed"  # the gateway refused or stayed unreachable; `error` says why


class Outcome(StrEnum):
    MATCHED = "matched"
    MISSING_AT_GATEWAY = "missing_at_gateway"  # in the ledger, not at the gateway (or in our records)
    MISSING_IN_LEDGER = "missing_in_ledger"  # at the gateway (or in our records), not in the ledger
    AMOUNT_DIFFERS = "amount_differs"
    CURRENCY_DIFFERS = "currency_differs"  # the two sides cannot be compared; `reason` says why
    FEE = "fee"  # a gateway fee not booked in the ledger: reported, never posted automatically


def rate_text(rate: Decimal | None) -> str | None:
    """An exchange rate as Stripe wrote it, without the column's trailing zeros."""
    return None if rate is None else format(rate.normalize(), "f")


class ReconciliationRun(db.Model):  # type: ignore[name-defined]
    __tablename__ = "reconciliation_runs"
    __table_args__ = (CheckConstraint("period_end > period_start", name="period_ordered"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    period_start: Mapped[datetime] = mapped_column(UTCDateTime())
    period_end: Mapped[datetime] = mapped_column(UTCDateTime())
    status: Mapped[RunStatus] = mapped_column(enum_column(RunStatus, "reconciliation_status"))
    requested_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    gateway_records: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    fees_total: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    settlement_currency: Mapped[str] = mapped_column(
        String(3), doc="STRIPE_SETTLEMENT_CURRENCY when the run was asked for: fees_total is in it."
    )
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    items: Mapped[list[ReconciliationItem]] = relationship(back_populates="run", order_by="ReconciliationItem.id")


class ReconciliationItem(db.Model):  # type: ignore[name-defined]
    """One thing matched or not. Amounts are signed as the platform's cash
    sees them (money in positive): `gateway_amount` from the provider's
    balance transaction (or, offline, from the Payment or Payout record an
    operator confirmed), `ledger_amount` from the `gateway_cash:*` entry,
    each in its own currency. Where Stripe settled in another currency than
    the ledger's, `gateway_amount` is the source's own (presentment) amount,
    and `settlement_amount` what the balance moved, at `exchange_rate`."""

    __tablename__ = "reconciliation_items"
    __table_args__ = (
        UniqueConstraint("run_id", "key"),
        Index("ix_reconciliation_items_run_id_outcome_id", "run_id", "outcome", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("reconciliation_runs.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(300), doc="What was matched, unique in the run.")
    provider: Mapped[str] = mapped_column(String(20))
    object_type: Mapped[str] = mapped_column(String(40))
    object_id: Mapped[str | None] = mapped_column(String(255), doc="The provider's id, or ours offline.")
    balance_transaction_id: Mapped[str | None] = mapped_column(String(255))
    ledger_reference: Mapped[str | None] = mapped_column(String(120))
    order_id: Mapped[int | None] = mapped_column(Integer)
    gateway_amount: Mapped[int | None] = mapped_column(BigInteger)
    gateway_currency: Mapped[str | None] = mapped_column(String(3))
    ledger_amount: Mapped[int | None] = mapped_column(BigInteger)
    ledger_currency: Mapped[str | None] = mapped_column(String(3))
    settlement_amount: Mapped[int | None] = mapped_column(
        BigInteger, doc="The balance transaction's own amount, in its (the settlement) currency."
    )
    settlement_currency: Mapped[str | None] = mapped_column(String(3))
    exchange_rate: Mapped[Decimal | None] = mapped_column(
        Numeric(24, 12), doc="Stripe's rate, settlement per presentment unit; null when nothing was converted."
    )
    fee: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0", doc="In the settlement currency.")
    reason: Mapped[str | None] = mapped_column(Text, doc="Why the sides could not be compared.")
    occurred_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    outcome: Mapped[Outcome] = mapped_column(enum_column(Outcome, "reconciliation_outcome"))
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    resolved_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    resolution_note: Mapped[str | None] = mapped_column(Text)
    fee_booked: Mapped[str | None] = mapped_column(
        String(120), doc="The ledger reference of a fee booked on resolving."
    )

    run: Mapped[ReconciliationRun] = relationship(back_populates="items")

    def resolve(self, user_id: int, note: str) -> None:
        if self.outcome == Outcome.MATCHED:
            raise Invalid(f"Item {self.id} matched; there is nothing to resolve.", {"item_id": ["Already matched."]})
        if self.resolved_at is not None:
            raise Conflict(f"Item {self.id} was resolved already.", resolved_at=self.resolved_at.isoformat())
        self.resolved_at = utcnow()
        self.resolved_by = user_id
        self.resolution_note = note
