"""The impact report's closed days, kept by day (docs/performance.md,
"Console"). A fact of the report (produce captured, refunded, a sponsor
premium earned or taken back) is placed by its moment, which is the time
it was recorded: once a business day has ended, and a margin for
transactions still open at midnight has passed, no fact can join it. Its
sums per county and per programme are then written once and the report
reads them instead of the day's lines; days not rolled up yet are read
live, the same way as before."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, CheckConstraint, Date, ForeignKey, Index, Integer, String, func
from sqlalchemy.orm import Mapped, mapped_column

from market.db import UTCDateTime
from market.extensions import db


class ImpactDay(db.Model):  # type: ignore[name-defined]
    """A business day whose facts are summed in `impact_day_figures`; the
    days rolled up run without a gap from the first day with a fact."""

    __tablename__ = "impact_days"

    business_day: Mapped[date] = mapped_column(Date, primary_key=True)
    timezone: Mapped[str] = mapped_column(String(64), doc="MARKET_TIMEZONE when it was rolled up.")
    since: Mapped[datetime] = mapped_column(UTCDateTime(), doc="The day's first moment.")
    until: Mapped[datetime] = mapped_column(UTCDateTime(), doc="The next day's first moment.")
    rolled_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now())


class ImpactDayFigure(db.Model):  # type: ignore[name-defined]
    """One county's or one programme's sums of a rolled-up day."""

    __tablename__ = "impact_day_figures"
    __table_args__ = (
        CheckConstraint(
            "(group_by = 'county' AND county_key IS NOT NULL AND programme_id IS NULL) OR "
            "(group_by = 'programme' AND programme_id IS NOT NULL AND county_key IS NULL)",
            name="one_key",
        ),
        Index("ix_impact_day_figures_group_by_since", "group_by", "since"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    business_day: Mapped[date] = mapped_column(ForeignKey("impact_days.business_day", ondelete="CASCADE"), index=True)
    since: Mapped[datetime] = mapped_column(UTCDateTime(), doc="The day's first moment: where the report places it.")
    group_by: Mapped[str] = mapped_column(String(16))
    county_key: Mapped[str | None] = mapped_column(String(200), doc="Province and county, as the report keys them.")
    programme_id: Mapped[int | None] = mapped_column(Integer)
    grams_sold: Mapped[int] = mapped_column(BigInteger)
    sales: Mapped[int] = mapped_column(BigInteger)
    premiums_paid: Mapped[int] = mapped_column(BigInteger)
