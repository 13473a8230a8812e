"""Payout records. What a payout pays are farm entries
(market/settlement/models.py), each naming the one payout or transfer
reversal that settled it, so no amount is ever paid twice, however often or
however overlapping the runs."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Boolean,
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

from market.catalog.models import Farm, PayoutMethod
from market.db import UTCDateTime, enum_column, utcnow
from market.errors import InvalidTransition, NotFound
from market.extensions import db


class PayoutStatus(StrEnum):
    PENDING = "pending"  # a worker is to send the Stripe transfers
    AWAITING_CONFIRMATION = "awaiting_confirmation"  # in a bank file; an operator confirms the transfer
    PAID = "paid"
    FAILED = "failed"  # Stripe refused a transfer; failure_reason says why


class ReversalStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class SkipReason(StrEnum):
    """Why a payout run paid a farm nothing of what was due to it."""

    NO_PAYOUT_ACCOUNT = "no_payout_account"
    STRIPE_TRANSFERS_INACTIVE = "stripe_transfers_inactive"
    BANK_DETAILS_MISSING = "bank_details_missing"
    NEGATIVE_NET = "negative_net"
    NOTHING_TO_PAY = "nothing_to_pay"


SKIP_DETAILS = {
    SkipReason.NO_PAYOUT_ACCOUNT: "The farm has not chosen how it is paid (no payout account).",
    SkipReason.STRIPE_TRANSFERS_INACTIVE: (
        "The farm's Stripe account does not accept transfers yet (its transfers capability is not active)."
    ),
    SkipReason.BANK_DETAILS_MISSING: "The farm chose bank transfer but its bank details are incomplete.",
    SkipReason.NEGATIVE_NET: "What is taken back from the farm exceeds what is due to it; netted from a later payout.",
    SkipReason.NOTHING_TO_PAY: "What is due to the farm and what is taken back from it cancel out.",
}


class PayoutNotFound(NotFound):
    pass


def _refuse(what: str, current: str, action: str) -> InvalidTransition:
    return InvalidTransition(f"{what} is {current}; it cannot be {action}.", current_status=current)


class BankDetails:
    """Where a bank transfer goes. The full account number is only ever
    written to the operators' bank file; everything else shows the masked
    one."""

    bank_account_holder: Mapped[str | None] = mapped_column(String(120))
    bank_name: Mapped[str | None] = mapped_column(String(120))
    bank_account_number: Mapped[str | None] = mapped_column(String(34))
    bank_account_masked: Mapped[str | None] = mapped_column(String(34))


BANK_COLUMNS = ("bank_account_holder", "bank_name", "bank_account_number", "bank_account_masked")


class PayoutAccount(BankDetails, db.Model):  # type: ignore[name-defined]
    """How a farm is paid: a Stripe connected account, or bank details for
    an offline transfer."""

    __tablename__ = "payout_accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    farm_id: Mapped[int] = mapped_column(ForeignKey("farms.id"), unique=True)
    method: Mapped[PayoutMethod] = mapped_column(enum_column(PayoutMethod, "payout_method"))
    stripe_account_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    payouts_enabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    details_submitted: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    transfers_active: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default="0", doc="Stripe accepts transfers to it (its transfers capability)."
    )
    # The `created` time of the newest account.updated event applied, so a
    # late, older event does not undo a newer one.
    stripe_state_at: Mapped[int | None] = mapped_column(BigInteger)  # Unix seconds: past 2038 too
    # Each request for an onboarding link bumps this; it names the link's
    # idempotency key, so one request makes one link however often retried.
    link_requests: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    account_attempts: Mapped[int] = mapped_column(
        Integer, default=0, server_default="0", doc="Tries to make the Express account that Stripe failed on."
    )
    link_requested_for: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    onboarding_url: Mapped[str | None] = mapped_column(Text)
    onboarding_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    attention: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now(), onupdate=utcnow)

    farm: Mapped[Farm] = relationship()

    @property
    def status(self) -> str:
        """connecting (account being made), onboarding (the farmer has a link
        to finish), enabled (Stripe pays out), or ready (bank details given)."""
        if self.method == PayoutMethod.BANK_TRANSFER:
            return "ready" if self.bank_account_number else "incomplete"
        if self.transfers_active:
            return "enabled"
        if self.stripe_account_id is None or self.onboarding_url is None:
            return "connecting"
        return "onboarding"

    @property
    def ready(self) -> bool:
        return self.status in ("enabled", "ready")


class PayoutRun(db.Model):  # type: ignore[name-defined]
    __tablename__ = "payout_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    period_end: Mapped[date] = mapped_column(Date)
    cutoff: Mapped[datetime] = mapped_column(
        UTCDateTime(), doc="Orders settled before this moment (period end and hold period) are paid."
    )
    currency: Mapped[str] = mapped_column(String(3))
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    payouts_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    total: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    reversals_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now())

    payouts: Mapped[list[Payout]] = relationship(back_populates="run", order_by="Payout.id")
    skipped: Mapped[list[PayoutRunSkip]] = relationship(order_by="PayoutRunSkip.farm_id", lazy="selectin")


class PayoutRunSkip(db.Model):  # type: ignore[name-defined]
    """A farm some of whose entries were due when the run was made but that
    the run did not pay, and why; the entries wait for a later run."""

    __tablename__ = "payout_run_skips"
    __table_args__ = (UniqueConstraint("run_id", "farm_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("payout_runs.id"))
    farm_id: Mapped[int] = mapped_column(ForeignKey("farms.id"), index=True)
    reason: Mapped[SkipReason] = mapped_column(enum_column(SkipReason, "payout_skip_reason"))
    amount: Mapped[int] = mapped_column(BigInteger, doc="The net of the due entries left unpaid, in minor units.")
    entries_count: Mapped[int] = mapped_column(Integer)

    @property
    def detail(self) -> str:
        return SKIP_DETAILS[self.reason]


class Payout(BankDetails, db.Model):  # type: ignore[name-defined]
    """What one run pays one farm, with the statement totals; the farm
    entries it settled are the statement's detail. A bank transfer keeps the
    bank details the run paid it to, whatever the farm sets up later."""

    __tablename__ = "payouts"
    __table_args__ = (
        UniqueConstraint("run_id", "farm_id"),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint(
            "amount = sales - commission + premiums - refunds - adjustments", name="amount_is_statement_net"
        ),
        Index("ix_payouts_farm_id_id", "farm_id", "id"),
        Index("ix_payouts_status_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("payout_runs.id"), index=True)
    farm_id: Mapped[int] = mapped_column(ForeignKey("farms.id"))
    method: Mapped[PayoutMethod] = mapped_column(enum_column(PayoutMethod, "payout_method"))
    status: Mapped[PayoutStatus] = mapped_column(enum_column(PayoutStatus, "payout_status"))
    currency: Mapped[str] = mapped_column(String(3))
    orders_count: Mapped[int] = mapped_column(Integer, default=0)
    lines_count: Mapped[int] = mapped_column(Integer, default=0)
    grams: Mapped[int] = mapped_column(BigInteger, default=0)
    sales: Mapped[int] = mapped_column(BigInteger, default=0)
    commission: Mapped[int] = mapped_column(BigInteger, default=0)
    premiums: Mapped[int] = mapped_column(BigInteger, default=0)
    refunds: Mapped[int] = mapped_column(
        BigInteger, default=0, doc="Refunds of lines paid by this payout (farm share)."
    )
    adjustments: Mapped[int] = mapped_column(
        BigInteger, default=0, doc="Refunds of lines an earlier payout paid, netted here (farm share)."
    )
    amount: Mapped[int] = mapped_column(BigInteger)
    stripe_account_id: Mapped[str | None] = mapped_column(String(255))
    stripe_transfer_id: Mapped[str | None] = mapped_column(
        String(255), unique=True, doc="The transfer that paid it, when one did; see `transfers` for all of them."
    )
    transfer_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    transfer_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    bank_reference: Mapped[str | None] = mapped_column(String(255))
    failure_reason: Mapped[str | None] = mapped_column(Text)
    attention: Mapped[str | None] = mapped_column(
        Text, doc="Set when a worker gave up after its retries; operators must look."
    )
    flag_note: Mapped[str | None] = mapped_column(
        Text, doc="Set when an operator flagged the failed transfer for follow-up: what is being looked into."
    )
    flagged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    flagged_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now(), onupdate=utcnow)

    run: Mapped[PayoutRun] = relationship(back_populates="payouts")
    farm: Mapped[Farm] = relationship()
    transfers: Mapped[list[PayoutTransfer]] = relationship(back_populates="payout", order_by="PayoutTransfer.id")

    @property
    def transfer_group(self) -> str:
        return f"payout-run-{self.run_id}"

    def mark_transferred(self, transfer_ids: list[str]) -> None:
        """Every transfer of the payout is made; a payout paid by one names it."""
        if self.status != PayoutStatus.PENDING:
            raise _refuse(f"Payout {self.id}", self.status, "marked paid")
        self.status = PayoutStatus.PAID
        self.stripe_transfer_id = transfer_ids[0] if len(transfer_ids) == 1 else None
        self.failure_reason = None
        self.attention = None
        self.paid_at = utcnow()

    def mark_failed(self, reason: str) -> None:
        if self.status != PayoutStatus.PENDING:
            raise _refuse(f"Payout {self.id}", self.status, "marked failed")
        self.status = PayoutStatus.FAILED
        self.failure_reason = reason[:2000]

    def retry(self) -> None:
        """Send a failed payout again; sending it again ends any follow-up it was flagged for."""
        if self.status != PayoutStatus.FAILED:
            raise _refuse(f"Payout {self.id}", self.status, "retried")
        self.status = PayoutStatus.PENDING
        self.transfer_attempts += 1
        self.transfer_requested_at = None
        self.attention = None
        self.flag_note = self.flagged_at = self.flagged_by_id = None

    def flag_for_follow_up(self, note: str, by_id: int) -> None:
        """An operator marks the failed transfer as being looked into, with a
        note (flagging it again replaces the note)."""
        if self.status != PayoutStatus.FAILED:
            raise _refuse(f"Payout {self.id}", self.status, "flagged for follow-up")
        self.flag_note = note
        self.flagged_at = utcnow()
        self.flagged_by_id = by_id

    def confirm(self, bank_reference: str) -> None:
        if self.method != PayoutMethod.BANK_TRANSFER:
            raise _refuse(f"Payout {self.id}", "paid by Stripe transfer", "confirmed by hand")
        if self.status != PayoutStatus.AWAITING_CONFIRMATION:
            raise _refuse(f"Payout {self.id}", self.status, "confirmed")
        self.status = PayoutStatus.PAID
        self.bank_reference = bank_reference
        self.paid_at = utcnow()


class PayoutTransfer(db.Model):  # type: ignore[name-defined]
    """One Stripe transfer of a payout. A payout is paid by one transfer per
    order's charge it draws on (`source_transaction`: the transfer does not
    wait for the platform's available balance), and at most one more, from
    the balance, for what no charge covers. Written by the run, each made
    once by the worker with its own key (docs/settlement.md)."""

    __tablename__ = "payout_transfers"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("(order_id IS NULL) = (stripe_charge_id IS NULL)", name="charge_of_its_order"),
        UniqueConstraint("payout_id", "order_id"),
        Index(
            "ix_payout_transfers_stripe_charge_id", "stripe_charge_id", postgresql_where="stripe_charge_id IS NOT NULL"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    payout_id: Mapped[int] = mapped_column(ForeignKey("payouts.id"))
    order_id: Mapped[int | None] = mapped_column(
        ForeignKey("orders.id"), doc="The order whose charge it draws on; none: from the platform's balance."
    )
    stripe_charge_id: Mapped[str | None] = mapped_column(String(255), doc="Sent as `source_transaction`.")
    amount: Mapped[int] = mapped_column(BigInteger)
    stripe_transfer_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    made_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    payout: Mapped[Payout] = relationship(back_populates="transfers")

    def key(self, attempts: int) -> str:
        """`payout-<id>-order-<order>` for a transfer from a charge, and
        `payout-<id>` for the one from the balance (the key a payout's one
        transfer always had); a try after Stripe refused for good, or failed
        with a 5xx, needs a fresh key (Stripe would replay its answer)."""
        base = f"payout-{self.payout_id}" + ("" if self.order_id is None else f"-order-{self.order_id}")
        return base if attempts == 0 else f"{base}-retry-{attempts}"

    def mark_made(self, transfer_id: str) -> None:
        if self.stripe_transfer_id is None:
            self.stripe_transfer_id = transfer_id
            self.made_at = utcnow()


class TransferReversal(db.Model):  # type: ignore[name-defined]
    """Money taken back from a farm's Stripe transfer for refunds of lines
    that transfer had paid."""

    __tablename__ = "transfer_reversals"
    __table_args__ = (CheckConstraint("amount > 0", name="amount_positive"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    payout_id: Mapped[int] = mapped_column(ForeignKey("payouts.id"), index=True)
    transfer_id: Mapped[int] = mapped_column(
        ForeignKey("payout_transfers.id"), index=True, doc="The transfer of the payout it takes back from."
    )
    run_id: Mapped[int] = mapped_column(ForeignKey("payout_runs.id"), index=True)
    farm_id: Mapped[int] = mapped_column(ForeignKey("farms.id"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[ReversalStatus] = mapped_column(enum_column(ReversalStatus, "reversal_status"))
    stripe_reversal_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    failure_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now())
    settled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    payout: Mapped[Payout] = relationship()
    transfer: Mapped[PayoutTransfer] = relationship()

    def mark_succeeded(self, reversal_id: str) -> None:
        if self.status != ReversalStatus.PENDING:
            raise _refuse(f"Reversal {self.id}", self.status, "marked succeeded")
        self.status = ReversalStatus.SUCCEEDED
        self.stripe_reversal_id = reversal_id
        self.settled_at = utcnow()

    def mark_failed(self, reason: str) -> None:
        if self.status != ReversalStatus.PENDING:
            raise _refuse(f"Reversal {self.id}", self.status, "marked failed")
        self.status = ReversalStatus.FAILED
        self.failure_reason = reason[:2000]
        self.settled_at = utcnow()
