"""Premium programmes and the premiums order lines earn from them."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import BigInteger, CheckConstraint, Date, ForeignKey, Integer, String, Text, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column, relationship

from market.db import UTCDateTime, enum_column
from market.extensions import db


class FundedBy(StrEnum):
    BUYER = "buyer"  # added to the buyer's price, passed wholly to the farmer
    SPONSOR = "sponsor"  # paid from the programme's budget, never charged to the buyer


SCOPE_FIELDS = ("category_id", "product_name", "variety", "brand_id", "origin_county", "origin_province", "buyer_id")


class PremiumProgramme(db.Model):  # type: ignore[name-defined]
    __tablename__ = "premium_programmes"
    __table_args__ = (
        CheckConstraint("rate_per_kg > 0", name="rate_positive"),
        CheckConstraint("budget_used >= 0", name="used_non_negative"),
        CheckConstraint("budget_cap IS NULL OR budget_used <= budget_cap", name="within_budget"),
        CheckConstraint("funded_by = 'buyer' OR budget_cap IS NOT NULL", name="sponsor_has_budget"),
        CheckConstraint(
            "host_commission_bp IS NULL OR host_commission_bp BETWEEN 0 AND 10000", name="host_commission_bp_in_range"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    sponsor: Mapped[str] = mapped_column(String(120))
    funded_by: Mapped[FundedBy] = mapped_column(enum_column(FundedBy, "funded_by"))
    rate_per_kg: Mapped[int] = mapped_column(BigInteger)
    # Scope: every field that is set must match the line; unset fields match all.
    category_id: Mapped[int | None] = mapped_column(ForeignKey("categories.id"))
    product_name: Mapped[str | None] = mapped_column(String(120))
    variety: Mapped[str | None] = mapped_column(String(80))
    brand_id: Mapped[int | None] = mapped_column(ForeignKey("brands.id"))
    origin_county: Mapped[str | None] = mapped_column(String(80))
    origin_province: Mapped[str | None] = mapped_column(String(80))
    buyer_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    valid_from: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    valid_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    budget_cap: Mapped[int | None] = mapped_column(BigInteger)
    farm_cap: Mapped[int | None] = mapped_column(BigInteger)
    budget_used: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    host_commission_bp: Mapped[int | None] = mapped_column(
        Integer,
        doc="What a livestream host earns of the produce of this programme's lines sold with their code, "
        "in basis points, instead of the host's own rate (docs/commissions.md).",
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now())

    @property
    def budget_left(self) -> int | None:
        return None if self.budget_cap is None else self.budget_cap - self.budget_used

    @property
    def exhausted(self) -> bool:
        return self.budget_cap is not None and self.budget_used >= self.budget_cap


class FarmPremiumUsage(db.Model):  # type: ignore[name-defined]
    """How much of a programme's per-farm cap one farm has used."""

    __tablename__ = "farm_premium_usage"
    __table_args__ = (
        UniqueConstraint("programme_id", "farm_id"),
        CheckConstraint("used >= 0", name="used_non_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    programme_id: Mapped[int] = mapped_column(ForeignKey("premium_programmes.id"))
    farm_id: Mapped[int] = mapped_column(ForeignKey("farms.id"))
    used: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class LinePremium(db.Model):  # type: ignore[name-defined]
    """One programme's premium on one order line. For sponsor programmes
    `amount` is what the line holds of the budget: reserved until a capture
    is decided, then earned, less what refunds took back."""

    __tablename__ = "line_premiums"
    __table_args__ = (
        UniqueConstraint("order_line_id", "programme_id"),
        CheckConstraint("amount >= 0", name="amount_non_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    order_line_id: Mapped[int] = mapped_column(ForeignKey("order_lines.id", ondelete="CASCADE"), index=True)
    programme_id: Mapped[int] = mapped_column(ForeignKey("premium_programmes.id"), index=True)
    farm_id: Mapped[int] = mapped_column(ForeignKey("farms.id"), index=True)
    funded_by: Mapped[FundedBy] = mapped_column(enum_column(FundedBy, "funded_by"))
    rate_per_kg: Mapped[int] = mapped_column(BigInteger)
    amount: Mapped[int] = mapped_column(
        BigInteger, doc="Sponsor: what the line holds of the budget now (reserved, then earned less reversals)."
    )
    granted: Mapped[int] = mapped_column(
        BigInteger, server_default="0", doc="Sponsor: what was reserved at placing, the most the line can earn."
    )
    note: Mapped[str | None] = mapped_column(Text)

    programme: Mapped[PremiumProgramme] = relationship()


class SponsorDeposit(db.Model):  # type: ignore[name-defined]
    """Money a sponsor paid the platform towards a programme's premiums, as
    an operator found it on the bank statement. One bank reference is one
    deposit: the same reference on the same programme is never recorded
    twice. Its ledger transaction is `sponsor_deposit:<id>`."""

    __tablename__ = "sponsor_deposits"
    __table_args__ = (
        UniqueConstraint("programme_id", "bank_reference"),
        CheckConstraint("amount > 0", name="amount_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    programme_id: Mapped[int] = mapped_column(ForeignKey("premium_programmes.id"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger, doc="Minor units of the marketplace currency.")
    bank_reference: Mapped[str] = mapped_column(String(255))
    received_on: Mapped[date] = mapped_column(Date, doc="The business day (MARKET_TIMEZONE) the bank received it.")
    note: Mapped[str | None] = mapped_column(Text)
    recorded_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now())
