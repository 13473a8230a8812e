"""Sales channels (a shop, a retailer's system, a livestream) that sell the
same produce as our listings, matched by SKU; what each channel last told us
and was last told; and the inbound sale and return events, each applied once."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from market.catalog.models import Farm, Listing
from market.db import UTCDateTime, enum_column
from market.extensions import db


class FeedFormat(StrEnum):
    JSON = "json"
    CSV = "csv"


class MovementKind(StrEnum):
    SALE = "sale"
    RETURN = "return"


class SalesChannel(db.Model):  # type: ignore[name-defined]
    """Another place a farm sells its produce. With a push URL it is sent
    every stock change; with a feed URL its stock feed is read on a
    schedule; either way it may report sales and returns as events."""

    __tablename__ = "sales_channels"
    __table_args__ = (CheckConstraint("pull_interval_seconds >= 60", name="pull_interval_minimum"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    farm_id: Mapped[int] = mapped_column(ForeignKey("farms.id"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    push_url: Mapped[str | None] = mapped_column(String(500))
    feed_url: Mapped[str | None] = mapped_column(String(500))
    feed_format: Mapped[FeedFormat] = mapped_column(enum_column(FeedFormat, "feed_format"), default=FeedFormat.JSON)
    pull_interval_seconds: Mapped[int] = mapped_column(Integer, default=300)
    # Signs pushes like webhooks; shown to the farmer once.
    secret: Mapped[str] = mapped_column(String(80))
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default="1")
    feed_etag: Mapped[str | None] = mapped_column(String(200))
    feed_last_modified: Mapped[str | None] = mapped_column(String(100))
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    next_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    push_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    push_retry_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now())

    farm: Mapped[Farm] = relationship()


class ChannelListing(db.Model):  # type: ignore[name-defined]
    """A listing as one channel knows it: the quantity its feed last
    reported and under which SKU, and the stock pushes (a version per
    change; the receiver drops any version lower than one it has), under
    the listing's SKU and, with no stock, under the SKUs it had before."""

    __tablename__ = "channel_listings"
    __table_args__ = (UniqueConstraint("channel_id", "listing_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("sales_channels.id", ondelete="CASCADE"))
    listing_id: Mapped[int] = mapped_column(ForeignKey("listings.id", ondelete="CASCADE"), index=True)
    reported_g: Mapped[int | None] = mapped_column(BigInteger)
    # The SKU the feed reported reported_g for: a quantity of another SKU is
    # no baseline for this one (the listing's SKU was changed since).
    reported_sku: Mapped[str | None] = mapped_column(String(64))
    push_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    push_stock_g: Mapped[int | None] = mapped_column(BigInteger)
    # The SKU push_version is pushed under: the listing's when it was queued.
    push_sku: Mapped[str | None] = mapped_column(String(64))
    # SKUs the channel may still hold for this listing, each to be pushed
    # with no stock under the version given, until a push of it is
    # acknowledged: the listing was given another SKU since.
    retired_skus: Mapped[dict[str, int] | None] = mapped_column(JSON)
    pushed_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    listing: Mapped[Listing] = relationship()


class InboundEvent(db.Model):  # type: ignore[name-defined]
    """A sale or return a channel reported under its own event id."""

    __tablename__ = "inventory_events"
    __table_args__ = (
        UniqueConstraint("channel_id", "event_id"),
        CheckConstraint("grams > 0", name="grams_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("sales_channels.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(String(100))
    request_hash: Mapped[str] = mapped_column(String(64))
    kind: Mapped[MovementKind] = mapped_column(enum_column(MovementKind, "movement_kind"))
    sku: Mapped[str] = mapped_column(String(64))
    listing_id: Mapped[int] = mapped_column(ForeignKey("listings.id"), index=True)
    grams: Mapped[int] = mapped_column(BigInteger)
    stock_after_g: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now())
