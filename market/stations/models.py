"""The codes texted to villagers (to confirm an order placed for them, to
claim the account opened for them), and a station's daily cash-up."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import BigInteger, CheckConstraint, Date, ForeignKey, Integer, String, Text, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column

from market.db import UTCDateTime, enum_column, utcnow
from market.errors import Conflict
from market.extensions import db


class TextedCodeColumns:
    """A one-time code texted to a villager (`market.stations.codes`): only
    its keyed hash is kept; it expires, takes a limited number of wrong
    tries, and a new one replaces it."""

    code_hash: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    sent: Mapped[int] = mapped_column(Integer, default=1, server_default="1", doc="Codes sent so far.")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now())


class ConfirmationCode(TextedCodeColumns, db.Model):  # type: ignore[name-defined]
    """The code texted to the villager an order was placed for; a resend replaces it."""

    __tablename__ = "confirmation_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), unique=True)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ClaimCode(TextedCodeColumns, db.Model):  # type: ignore[name-defined]
    """The code texted to claim an account opened for a villager
    (docs/stations.md, "Claiming"); gone once the account is claimed."""

    __tablename__ = "claim_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), unique=True)


class CashUpStatus(StrEnum):
    SUBMITTED = "submitted"  # counted as expected, waiting for the deposit
    SHORT = "short"  # counted less than expected: flagged to operators
    OVER = "over"  # counted more than expected: flagged to operators
    DEPOSITED = "deposited"  # an operator confirmed the bank received it


class CashUp(db.Model):  # type: ignore[name-defined]
    """A station's cash-up of one business day (MARKET_TIMEZONE): the cash
    taken at its counter up to the end of that day and in no earlier
    cash-up (the payments it holds, `Payment.cash_up_id`), what that adds
    up to (`expected`), what the staff counted, and the deposit an
    operator confirmed with the bank's reference (docs/stations.md)."""

    __tablename__ = "cash_ups"
    __table_args__ = (
        UniqueConstraint("fulfilment_point_id", "business_day"),
        CheckConstraint("expected >= 0", name="expected_not_negative"),
        CheckConstraint("counted >= 0", name="counted_not_negative"),
        CheckConstraint("deposited > 0", name="deposited_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    fulfilment_point_id: Mapped[int] = mapped_column(ForeignKey("fulfilment_points.id"), index=True)
    business_day: Mapped[date] = mapped_column(Date)
    expected: Mapped[int] = mapped_column(BigInteger, doc="The cash its payments took, in minor units.")
    counted: Mapped[int] = mapped_column(BigInteger, doc="What the staff counted, in minor units.")
    status: Mapped[CashUpStatus] = mapped_column(enum_column(CashUpStatus, "cash_up_status"))
    note: Mapped[str | None] = mapped_column(Text)
    submitted_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now())
    bank_reference: Mapped[str | None] = mapped_column(
        String(255), unique=True, doc="The bank's reference for the deposit; one deposit per reference."
    )
    deposited: Mapped[int | None] = mapped_column(BigInteger, doc="What the bank received, in minor units.")
    deposit_note: Mapped[str | None] = mapped_column(Text)
    confirmed_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    @property
    def difference(self) -> int:
        """Counted less expected: negative short, positive over."""
        return self.counted - self.expected

    @property
    def deposit_difference(self) -> int | None:
        """What the bank received less what was counted, once deposited."""
        return None if self.deposited is None else self.deposited - self.counted

    @property
    def flagged(self) -> bool:
        return self.difference != 0 or bool(self.deposit_difference)

    def confirm_deposit(self, user_id: int, *, bank_reference: str, amount: int, note: str | None) -> None:
        if self.status == CashUpStatus.DEPOSITED:
            raise Conflict(
                f"Cash-up {self.id} was deposited already, as {self.bank_reference}.",
                bank_reference=self.bank_reference,
            )
        if self.counted == 0:
            raise Conflict(f"Cash-up {self.id} counted no cash: there is nothing to deposit.")
        self.status = CashUpStatus.DEPOSITED
        self.bank_reference = bank_reference
        self.deposited = amount
        self.deposit_note = note
        self.confirmed_by = user_id
        self.confirmed_at = utcnow()
