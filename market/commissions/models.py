"""Those who sell for farmers (village stations and livestream hosts), the
commissions they earn, and how they are paid (docs/commissions.md).

A seller's commission is a share of the platform's commission on the
produce of the orders it sells, never of the farmer's price or premiums.
Like the farms' money it is one row per movement, written once when it is
decided: earned when an order's capture is recorded, taken back in
proportion when a refund is, and paid by a payout run.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Boolean, CheckConstraint, ForeignKey, Index, Integer, String, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column

from market.db import UTCDateTime, enum_column
from market.errors import InvalidTransition
from market.extensions import db
from market.payouts.models import BankDetails


class SellerKind(StrEnum):
    STATION = "station"  # a village station: orders collected there
    HOST = "host"  # a livestream host: orders placed with their attribution code


class Seller(BankDetails, db.Model):  # type: ignore[name-defined]
    """A station or a host that earns a commission on the orders it sells,
    paid by bank transfer in payout runs. A station's rate is basis points
    of produce or a fixed amount per order; a host's is basis points."""

    __tablename__ = "sellers"
    __table_args__ = (
        CheckConstraint(
            "(kind = 'station' AND fulfilment_point_id IS NOT NULL AND user_id IS NULL AND code IS NULL) OR "
            "(kind = 'host' AND user_id IS NOT NULL AND code IS NOT NULL AND fulfilment_point_id IS NULL "
            "AND per_order IS NULL)",
            name="station_or_host",
        ),
        CheckConstraint("(rate_bp IS NULL) <> (per_order IS NULL)", name="one_rate"),
        CheckConstraint("rate_bp IS NULL OR rate_bp BETWEEN 0 AND 10000", name="rate_bp_in_range"),
        CheckConstraint("per_order IS NULL OR per_order >= 0", name="per_order_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[SellerKind] = mapped_column(enum_column(SellerKind, "seller_kind"))
    name: Mapped[str] = mapped_column(String(120))
    fulfilment_point_id: Mapped[int | None] = mapped_column(ForeignKey("fulfilment_points.id"), unique=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), unique=True)
    code: Mapped[str | None] = mapped_column(String(32), unique=True, doc="A host's attribution code.")
    rate_bp: Mapped[int | None] = mapped_column(Integer, doc="Basis points of the produce sold.")
    per_order: Mapped[int | None] = mapped_column(BigInteger, doc="A fixed amount per order (stations).")
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default="1")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now())


class CommissionKind(StrEnum):
    EARNED = "earned"  # a captured line's share, when the capture was recorded
    REVERSED = "reversed"  # taken back with a refund of the line
    PAYOUT = "payout"  # what a payout paid the seller


class CommissionEntry(db.Model):  # type: ignore[name-defined]
    """One movement of a seller's money, signed from the seller's side. A
    seller's payable is the sum of its rows; an earned or reversed row
    names the seller payout that paid or netted it."""

    __tablename__ = "commission_entries"
    __table_args__ = (
        CheckConstraint("(kind = 'earned' AND amount > 0) OR (kind <> 'earned' AND amount < 0)", name="earned_adds"),
        Index("ix_commission_entries_seller_unpaid", "seller_id", postgresql_where="payout_id IS NULL"),
        Index("ix_commission_entries_order_line_id", "order_line_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    reference: Mapped[str] = mapped_column(String(120), unique=True, doc="What decided it; never written twice.")
    seller_id: Mapped[int] = mapped_column(ForeignKey("sellers.id"))
    kind: Mapped[CommissionKind] = mapped_column(enum_column(CommissionKind, "commission_kind"))
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"), index=True)
    order_line_id: Mapped[int | None] = mapped_column(ForeignKey("order_lines.id"))
    refund_id: Mapped[int | None] = mapped_column(ForeignKey("refunds.id"))
    produce: Mapped[int] = mapped_column(BigInteger, default=0, doc="The produce it was earned on (signed).")
    amount: Mapped[int] = mapped_column(BigInteger)
    payout_id: Mapped[int | None] = mapped_column(ForeignKey("seller_payouts.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now())


class SellerPayoutStatus(StrEnum):
    AWAITING_CONFIRMATION = "awaiting_confirmation"  # in the run's bank file
    PAID = "paid"


class SellerPayout(BankDetails, db.Model):  # type: ignore[name-defined]
    """What a payout run pays a seller: the sum of its due entries, by bank
    transfer to the bank details the seller had then, confirmed by an
    operator."""

    __tablename__ = "seller_payouts"
    __table_args__ = (UniqueConstraint("run_id", "seller_id"), CheckConstraint("amount > 0", name="pays_something"))

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("payout_runs.id"), index=True)
    seller_id: Mapped[int] = mapped_column(ForeignKey("sellers.id"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    orders: Mapped[int] = mapped_column(Integer, doc="Orders its entries come from.")
    status: Mapped[SellerPayoutStatus] = mapped_column(
        enum_column(SellerPayoutStatus, "seller_payout_status"), default=SellerPayoutStatus.AWAITING_CONFIRMATION
    )
    bank_reference: Mapped[str | None] = mapped_column(String(255))
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now())

    def confirm(self, bank_reference: str, now: datetime) -> None:
        if self.status != SellerPayoutStatus.AWAITING_CONFIRMATION:
            raise InvalidTransition(
                f"Seller payout {self.id} is {self.status}; it cannot be confirmed.", current_status=self.status
            )
        self.status = SellerPayoutStatus.PAID
        self.bank_reference = bank_reference
        self.paid_at = now


class SellerSkip(db.Model):  # type: ignore[name-defined]
    """A seller a payout run owed something (or nothing, net) and did not
    pay, and why; what it owed stays due for a later run."""

    __tablename__ = "seller_skips"
    __table_args__ = (UniqueConstraint("run_id", "seller_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("payout_runs.id"), index=True)
    seller_id: Mapped[int] = mapped_column(ForeignKey("sellers.id"))
    reason: Mapped[str] = mapped_column(String(40))
    amount: Mapped[int] = mapped_column(BigInteger)
