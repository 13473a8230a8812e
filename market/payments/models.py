"""Payment records. Every call to the provider is kept as an attempt, and
each provider object id sits in a unique column, so none is recorded twice."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, BigInteger, CheckConstraint, ForeignKey, String, Text, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column, relationship

from market.db import UTCDateTime, enum_column, utcnow
from market.extensions import db


class Provider(StrEnum):
    STRIPE = "stripe"
    OFFLINE = "offline"


class PaymentStatus(StrEnum):
    CREATING = "creating"  # the intent is being created by a worker
    REQUIRES_PAYMENT = "requires_payment"  # waiting for the buyer (card) or the operator (offline)
    FAILED = "failed"  # the last try failed; the buyer may try again until the order expires
    AUTHORISED = "authorised"  # money held (card) or received (offline), not yet taken
    CAPTURING = "capturing"  # the lines to capture are fixed; the provider is being asked
    CAPTURED = "captured"
    CANCELLED = "cancelled"


class RefundStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Payment(db.Model):  # type: ignore[name-defined]
    __tablename__ = "payments"
    __table_args__ = (
        CheckConstraint("amount_captured >= 0", name="captured_non_negative"),
        CheckConstraint("amount_refunded >= 0 AND amount_refunded <= amount_captured", name="refund_within_capture"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), unique=True)
    provider: Mapped[Provider] = mapped_column(enum_column(Provider, "payment_provider"))
    status: Mapped[PaymentStatus] = mapped_column(enum_column(PaymentStatus, "payment_status"))
    currency: Mapped[str] = mapped_column(String(3))
    amount: Mapped[int] = mapped_column(BigInteger, doc="What is authorised: the most the order can reach.")
    capture_amount: Mapped[int | None] = mapped_column(
        BigInteger, doc="What the capture was decided to take (its captured lines), from the moment it was decided."
    )
    amount_captured: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    amount_refunded: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    stripe_payment_intent_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    stripe_charge_id: Mapped[str | None] = mapped_column(
        String(255), doc="The charge the capture made: payouts' transfers draw on it (`source_transaction`)."
    )
    client_secret: Mapped[str | None] = mapped_column(String(255))
    offline_reference: Mapped[str | None] = mapped_column(String(255))
    cash_point_id: Mapped[int | None] = mapped_column(
        ForeignKey("fulfilment_points.id"),
        index=True,
        doc="Paid in cash on collection at this station (an offline payment); the station holds the cash.",
    )
    cash_received_by: Mapped[int | None] = mapped_column(
        ForeignKey("users.id"), doc="The station staff who took the cash."
    )
    cash_received_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    cash_up_id: Mapped[int | None] = mapped_column(
        ForeignKey("cash_ups.id"), index=True, doc="The station's cash-up that counted this cash."
    )
    failure_reason: Mapped[str | None] = mapped_column(Text)
    attention: Mapped[str | None] = mapped_column(
        Text, doc="Set when a worker gave up after its retries; operators must look."
    )
    authorised_until: Mapped[datetime | None] = mapped_column(
        UTCDateTime(), index=True, doc="When the card hold lapses at the provider (card payments, while authorised)."
    )
    hold_warned_at: Mapped[datetime | None] = mapped_column(
        UTCDateTime(), doc="When the farm and the operators were told the hold is about to lapse."
    )
    renew_by: Mapped[datetime | None] = mapped_column(
        UTCDateTime(),
        index=True,
        doc="Set when the hold lapsed on an open order: the buyer must pay again by then, or the order is cancelled.",
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now(), onupdate=utcnow)

    attempts: Mapped[list[PaymentAttempt]] = relationship(back_populates="payment", order_by="PaymentAttempt.id")
    refunds: Mapped[list[Refund]] = relationship(back_populates="payment", order_by="Refund.id")
    captured_lines: Mapped[list[CapturedLine]] = relationship(
        back_populates="payment", order_by="CapturedLine.order_line_id"
    )

    @property
    def refundable(self) -> int:
        return self.amount_captured - self.amount_refunded


class PaymentAttempt(db.Model):  # type: ignore[name-defined]
    """One call to the provider and what came of it."""

    __tablename__ = "payment_attempts"

    id: Mapped[int] = mapped_column(primary_key=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id"), index=True)
    action: Mapped[str] = mapped_column(String(40))
    idempotency_key: Mapped[str] = mapped_column(String(120))
    amount: Mapped[int | None] = mapped_column(BigInteger)
    succeeded: Mapped[bool]
    provider_object_id: Mapped[str | None] = mapped_column(String(255))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now())

    payment: Mapped[Payment] = relationship(back_populates="attempts")


class Refund(db.Model):  # type: ignore[name-defined]
    __tablename__ = "refunds"
    # A refund of grams whose money rounding has already given back returns
    # nothing; it is recorded (the grams matter to premiums) without the provider.
    __table_args__ = (CheckConstraint("amount >= 0", name="amount_not_negative"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id"), index=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(String(500))
    status: Mapped[RefundStatus] = mapped_column(enum_column(RefundStatus, "refund_status"))
    stripe_refund_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    failure_reason: Mapped[str | None] = mapped_column(Text)
    requested_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now())
    settled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    payment: Mapped[Payment] = relationship(back_populates="refunds")
    lines: Mapped[list[RefundLine]] = relationship(back_populates="refund", cascade="all, delete-orphan")


class CapturedLine(db.Model):  # type: ignore[name-defined]
    """What a capture took for one order line, and the commission on it.
    Refunds and farm statements read these, never re-derive them."""

    __tablename__ = "captured_lines"
    __table_args__ = (UniqueConstraint("order_line_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id"), index=True)
    order_line_id: Mapped[int] = mapped_column(ForeignKey("order_lines.id"))
    farm_id: Mapped[int] = mapped_column(ForeignKey("farms.id"), index=True)
    grams: Mapped[int] = mapped_column(BigInteger)
    price_per_kg: Mapped[int] = mapped_column(BigInteger)
    amount: Mapped[int] = mapped_column(BigInteger, doc="The produce, on which commission is taken.")
    premium: Mapped[int] = mapped_column(
        BigInteger, server_default="0", doc="Buyer-funded premiums, passed wholly to the farm."
    )
    commission: Mapped[int] = mapped_column(BigInteger)

    payment: Mapped[Payment] = relationship(back_populates="captured_lines")


class RefundLine(db.Model):  # type: ignore[name-defined]
    """What part of which order line a refund returns."""

    __tablename__ = "refund_lines"
    __table_args__ = (UniqueConstraint("refund_id", "order_line_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    refund_id: Mapped[int] = mapped_column(ForeignKey("refunds.id", ondelete="CASCADE"), index=True)
    order_line_id: Mapped[int] = mapped_column(ForeignKey("order_lines.id"), index=True)
    farm_id: Mapped[int] = mapped_column(ForeignKey("farms.id"), index=True)
    grams: Mapped[int] = mapped_column(BigInteger)
    amount: Mapped[int] = mapped_column(BigInteger, doc="Produce returned to the buyer.")
    premium: Mapped[int] = mapped_column(
        BigInteger, server_default="0", doc="Buyer-funded premium returned to the buyer."
    )
    commission: Mapped[int] = mapped_column(BigInteger, doc="The platform commission this refund gives back.")

    refund: Mapped[Refund] = relationship(back_populates="lines")


class StripeEvent(db.Model):  # type: ignore[name-defined]
    """A webhook event, stored once by its id: a redelivery finds it here."""

    __tablename__ = "stripe_events"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(120))
    payload: Mapped[dict[str, object]] = mapped_column(JSON)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now())
