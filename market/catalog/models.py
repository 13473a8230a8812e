"""Farms, fulfilment points, the category and brand vocabularies, listings and
their harvest lots."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Connection,
    Date,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    and_,
    bindparam,
    case,
    event,
    func,
    inspect,
    literal_column,
    select,
    true,
    update,
)
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import Mapped, Mapper, mapped_column, relationship
from sqlalchemy.sql.elements import ColumnElement

from market.accounts.models import User
from market.catalog import search
from market.db import UTCDateTime, enum_column, utcnow
from market.errors import Invalid, InvalidTransition
from market.extensions import db

# Listings without a lot sort after every harvested one when sorting by
# harvest date (newest first), and the keyset cursor needs a real date.
NEVER_HARVESTED = date(1, 1, 1)


class FarmStatus(StrEnum):
    PENDING = "pending"
    VERIFIED = "verified"
    SUSPENDED = "suspended"


class PayoutMethod(StrEnum):
    STRIPE = "stripe"
    BANK_TRANSFER = "bank_transfer"


# Stripe cannot create connected accounts in mainland China.
MAINLAND_CHINA = "CN"


class StripeCannotPay(Invalid):
    """Stripe Connect cannot pay the farm where it is: the bank file does."""

    slug = "stripe-cannot-pay-farm"
    title = "Stripe cannot pay this farm"


class FulfilmentPointKind(StrEnum):
    VILLAGE_STATION = "village_station"
    COUNTY_CENTRE = "county_centre"


class ListingStatus(StrEnum):
    DRAFT = "draft"
    ACTIVE = "active"
    PAUSED = "paused"
    SOLD_OUT = "sold_out"
    ARCHIVED = "archived"


class Farm(db.Model):  # type: ignore[name-defined]
    __tablename__ = "farms"

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    village: Mapped[str] = mapped_column(String(80))
    county: Mapped[str] = mapped_column(String(80), index=True)
    province: Mapped[str] = mapped_column(String(80), index=True)
    country: Mapped[str] = mapped_column(
        String(2), default=MAINLAND_CHINA, server_default=MAINLAND_CHINA, doc="ISO 3166-1 alpha-2; CN: mainland China."
    )
    contact_name: Mapped[str | None] = mapped_column(String(120))
    contact_phone: Mapped[str | None] = mapped_column(String(32))
    description: Mapped[str] = mapped_column(Text, default="")
    payout_method: Mapped[PayoutMethod | None] = mapped_column(enum_column(PayoutMethod, "payout_method"))
    status: Mapped[FarmStatus] = mapped_column(
        enum_column(FarmStatus, "farm_status"), default=FarmStatus.PENDING, index=True
    )
    # When an operator first verified it: a farm suspended before that never
    # sold, and nobody but its owner and the operators may see its listings.
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Name and places as search tokens, put into each of its listings' search text.
    search_tokens: Mapped[str] = mapped_column(Text, default="", server_default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now(), onupdate=utcnow)

    owner: Mapped[User] = relationship()
    listings: Mapped[list[Listing]] = relationship(back_populates="farm")

    def verify(self) -> None:
        if self.status == FarmStatus.VERIFIED:
            raise InvalidTransition(f"Farm {self.id} is already verified.")
        self.status = FarmStatus.VERIFIED
        self.verified_at = self.verified_at or utcnow()

    def suspend(self) -> None:
        if self.status == FarmStatus.SUSPENDED:
            raise InvalidTransition(f"Farm {self.id} is already suspended.")
        self.status = FarmStatus.SUSPENDED

    @property
    def named(self) -> str:
        """The farm as a message names it: by id, or by name while it is
        being registered and has none yet."""
        return f"farm {self.id}" if self.id is not None else f"the new farm {self.name!r}"

    def stripe_refusal(self, connect_country: str) -> str | None:
        """Why Stripe Connect cannot pay the farm, or None when it can. Its
        Express accounts are made in `connect_country` (STRIPE_CONNECT_COUNTRY),
        for farms there; Stripe makes none in mainland China."""
        country = self.country or MAINLAND_CHINA  # the column's default, before a new farm is flushed
        if country == MAINLAND_CHINA:
            where = "Stripe cannot onboard connected accounts in mainland China (CN)"
        elif country != connect_country:
            where = f"the farm is in {country} and Stripe Connect is set up for farms in {connect_country} only"
        else:
            return None
        return f"{where}: the farm is paid by bank transfer, in the operators' bank file (payout method bank_transfer)."

    def require_stripe_payable(self, connect_country: str, field: str) -> None:
        """Refuse Stripe as the farm's payout method where Stripe cannot pay it."""
        refusal = self.stripe_refusal(connect_country)
        if refusal is not None:
            raise StripeCannotPay(
                f"Stripe cannot pay {self.named}: {refusal}",
                {field: [f"Stripe cannot pay a farm in {self.country or MAINLAND_CHINA}; use bank_transfer."]},
                payout_method=PayoutMethod.BANK_TRANSFER.value,
            )


class FulfilmentPoint(db.Model):  # type: ignore[name-defined]
    __tablename__ = "fulfilment_points"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[FulfilmentPointKind] = mapped_column(
        enum_column(FulfilmentPointKind, "fulfilment_point_kind"), index=True
    )
    name: Mapped[str] = mapped_column(String(120))
    village: Mapped[str | None] = mapped_column(String(80))
    county: Mapped[str] = mapped_column(String(80), index=True)
    province: Mapped[str] = mapped_column(String(80), index=True)
    address: Mapped[str] = mapped_column(String(255))
    opening_hours: Mapped[str] = mapped_column(String(255), default="")
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("fulfilment_points.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now())

    parent: Mapped[FulfilmentPoint | None] = relationship(remote_side=[id])


class Category(db.Model):  # type: ignore[name-defined]
    __tablename__ = "categories"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name_zh: Mapped[str] = mapped_column(String(80))
    name_en: Mapped[str] = mapped_column(String(80))
    search_tokens: Mapped[str] = mapped_column(Text, default="", server_default="")


class Brand(db.Model):  # type: ignore[name-defined]
    """A regional (geographical-indication) brand only growers in some counties may use."""

    __tablename__ = "brands"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name_zh: Mapped[str] = mapped_column(String(80))
    name_en: Mapped[str] = mapped_column(String(80))
    search_tokens: Mapped[str] = mapped_column(Text, default="", server_default="")

    allowed: Mapped[list[BrandCounty]] = relationship(
        back_populates="brand", cascade="all, delete-orphan", order_by="BrandCounty.county"
    )

    @property
    def counties(self) -> list[str]:
        return [row.county for row in self.allowed]

    def allows(self, county: str) -> bool:
        return county in self.counties


class BrandCounty(db.Model):  # type: ignore[name-defined]
    __tablename__ = "brand_counties"
    __table_args__ = (UniqueConstraint("brand_id", "county"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    brand_id: Mapped[int] = mapped_column(ForeignKey("brands.id", ondelete="CASCADE"))
    county: Mapped[str] = mapped_column(String(80))

    brand: Mapped[Brand] = relationship(back_populates="allowed")


class Listing(db.Model):  # type: ignore[name-defined]
    __tablename__ = "listings"
    __table_args__ = (
        UniqueConstraint("farm_id", "sku"),
        CheckConstraint("price_per_kg > 0", name="price_positive"),
        CheckConstraint("stock_g >= 0", name="stock_non_negative"),
        CheckConstraint("min_order_g > 0", name="min_order_positive"),
        CheckConstraint("step_g > 0", name="step_positive"),
        # Integer division on every backend, and no "%" to escape in the DDL.
        CheckConstraint("min_order_g = (min_order_g / step_g) * step_g", name="min_order_fits_step"),
        # Browse sorts by these, each with id as the tie-breaker (harvest
        # date's index is below the class: it indexes an expression).
        Index("ix_listings_price_per_kg_id", "price_per_kg", "id"),
        # One farm's listings, newest first; also serves the farm_id
        # foreign key, so no index on farm_id alone.
        Index("ix_listings_farm_id_id", "farm_id", "id"),
        # A SKU across farms (`GET /listings?sku=`): the unique key above
        # leads with farm_id, so it serves a SKU only within one farm.
        Index("ix_listings_sku", "sku"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    farm_id: Mapped[int] = mapped_column(ForeignKey("farms.id"))
    category_id: Mapped[int] = mapped_column(ForeignKey("categories.id"), index=True)
    brand_id: Mapped[int | None] = mapped_column(ForeignKey("brands.id"), index=True)
    sku: Mapped[str | None] = mapped_column(String(64))
    product_name: Mapped[str] = mapped_column(String(120))
    # The product name in English, where the farmer gives one.
    name_en: Mapped[str] = mapped_column(String(120), default="", server_default="")
    variety: Mapped[str] = mapped_column(String(80), default="")
    grade: Mapped[str] = mapped_column(String(40), default="")
    origin_county: Mapped[str] = mapped_column(String(80), index=True)
    price_per_kg: Mapped[int] = mapped_column(BigInteger)
    stock_g: Mapped[int] = mapped_column(BigInteger, default=0)
    # The farmer hears about it when stock falls below this.
    low_stock_threshold_g: Mapped[int | None] = mapped_column(BigInteger)
    min_order_g: Mapped[int] = mapped_column(BigInteger)
    step_g: Mapped[int] = mapped_column(BigInteger)
    description: Mapped[str] = mapped_column(Text, default="")
    photo_urls: Mapped[list[str]] = mapped_column(JSON, default=list)
    # The latest lot's harvest date, kept here so browse can filter and sort
    # on it without joining every lot.
    harvest_date: Mapped[date | None] = mapped_column(Date)
    status: Mapped[ListingStatus] = mapped_column(
        enum_column(ListingStatus, "listing_status"), default=ListingStatus.DRAFT, index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now(), onupdate=utcnow, index=True)
    # Search tokens (market.catalog.search): its own words, and those with
    # the words of its category, brand and farm. Written on flush and by
    # `refresh_search_text`; never shown, so never loaded unless asked for.
    search_own: Mapped[str] = mapped_column(Text, default="", server_default="", deferred=True)
    search_text: Mapped[str] = mapped_column(Text, server_default="", deferred=True)

    farm: Mapped[Farm] = relationship(back_populates="listings")
    category: Mapped[Category] = relationship()
    brand: Mapped[Brand | None] = relationship()
    lots: Mapped[list[Lot]] = relationship(
        back_populates="listing", order_by="(Lot.harvest_date.desc(), Lot.id.desc())"
    )

    @property
    def current_lot(self) -> Lot | None:
        return max(self.lots, key=lambda lot: (lot.harvest_date, lot.id or 0), default=None)

    @hybrid_property
    def harvest_sort_date(self) -> date:
        """The value browse sorts on for "freshest first" (and puts in its cursor)."""
        return self.harvest_date or NEVER_HARVESTED

    @harvest_sort_date.inplace.expression
    @classmethod
    def _harvest_sort_date_expression(cls) -> ColumnElement[date]:
        # The date is written into the SQL, not bound: PostgreSQL uses the
        # expression index below only for the very same expression, and a
        # bound value (in a generic plan of a prepared statement) is not.
        return func.coalesce(cls.harvest_date, literal_column(f"'{NEVER_HARVESTED.isoformat()}'", Date()))

    @property
    def purchasable(self) -> bool:
        return self.status == ListingStatus.ACTIVE and self.farm.status == FarmStatus.VERIFIED

    def activate(self) -> None:
        """Put the listing on sale (from draft, paused or sold out); with no
        stock it goes straight to sold_out."""
        if self.status in (ListingStatus.ACTIVE, ListingStatus.ARCHIVED):
            raise InvalidTransition(f"Listing {self.id} is {self.status} and cannot be activated.")
        self.status = ListingStatus.ACTIVE if self.stock_g > 0 else ListingStatus.SOLD_OUT

    def pause(self) -> None:
        if self.status not in (ListingStatus.ACTIVE, ListingStatus.SOLD_OUT):
            raise InvalidTransition(f"Listing {self.id} is {self.status}; only a listing on sale can be paused.")
        self.status = ListingStatus.PAUSED

    def archive(self) -> None:
        if self.status == ListingStatus.ARCHIVED:
            raise InvalidTransition(f"Listing {self.id} is already archived.")
        self.status = ListingStatus.ARCHIVED

    def add_lot(self, lot: Lot) -> None:
        """Record a harvest lot; the caller adds its grams with one UPDATE
        (`service.receive_stock`) so a concurrent sale is never overwritten."""
        if self.status == ListingStatus.ARCHIVED:
            raise InvalidTransition(f"Listing {self.id} is archived; it takes no new lots.")
        self.lots.append(lot)
        self.harvest_date = max(self.harvest_date or lot.harvest_date, lot.harvest_date)

    def accepts_grams(self, grams: int) -> bool:
        """Whether an order of `grams` fits the minimum and the step."""
        return grams >= self.min_order_g and grams % self.step_g == 0

    @staticmethod
    def status_at_stock(
        status: ColumnElement[ListingStatus], stock_g: ColumnElement[int]
    ) -> ColumnElement[ListingStatus]:
        """SQL for the status, now `status`, at the new stock `stock_g`: a
        listing on sale is sold_out at zero and active again when restocked;
        others keep theirs."""
        return case(
            (and_(status == ListingStatus.ACTIVE, stock_g == 0), ListingStatus.SOLD_OUT.value),
            (and_(status == ListingStatus.SOLD_OUT, stock_g > 0), ListingStatus.ACTIVE.value),
            else_=status,
        )


# Browse's "freshest harvest first": ORDER BY this expression DESC, id DESC.
Index("ix_listings_harvest_sort_date_id", Listing.harvest_sort_date.desc(), Listing.id.desc())
# Search, on PostgreSQL: prefix queries on each token string read as a
# tsvector (SQLite scans: the embedded mode holds a few listings).
for _column in (Listing.search_own, Listing.search_text):
    Index(f"ix_listings_{_column.key}", search.tsvector(_column), postgresql_using="gin").ddl_if(dialect="postgresql")


# Keeping the search tokens right, whatever writes the rows (services,
# the demo, a migration): the words of each row are worked out before it is
# written, and the listings that carry them are rewritten in one UPDATE.

SEARCHED_WORDS: dict[type[Any], tuple[str, ...]] = {
    Farm: ("name", "village", "county", "province"),
    Category: ("code", "name_zh", "name_en"),
    Brand: ("code", "name_zh", "name_en"),
    Listing: ("product_name", "name_en", "variety", "sku", "origin_county"),
}
# What else changes a listing's search text: what it is filed under.
LISTING_FILING = ("farm", "farm_id", "category", "category_id", "brand", "brand_id")


def _changed(target: Any, names: tuple[str, ...]) -> bool:
    attrs = inspect(target).attrs
    return any(attrs[name].history.has_changes() for name in names)


def _own_words(target: Any) -> str:
    return search.tokens(*(getattr(target, name) for name in SEARCHED_WORDS[type(target)]))


def refresh_search_text(connection: Connection, where: ColumnElement[bool]) -> None:
    """Write `search_text` again for the listings `where` picks, in one
    UPDATE: their own tokens and those of their category, brand and farm."""
    farm = select(Farm.search_tokens).where(Farm.id == Listing.farm_id).scalar_subquery()
    category = select(Category.search_tokens).where(Category.id == Listing.category_id).scalar_subquery()
    brand = select(Brand.search_tokens).where(Brand.id == Listing.brand_id).scalar_subquery()
    text = Listing.search_own + func.coalesce(category, "") + func.coalesce(brand, "") + func.coalesce(farm, "")
    # updated_at kept as it is: the search text is never shown, and a
    # migration's backfill must not make every listing look just edited.
    connection.execute(update(Listing.__table__).where(where).values(search_text=text, updated_at=Listing.updated_at))


def _tokens_column(model: type[Any]) -> str:
    return "search_own" if model is Listing else "search_tokens"


@event.listens_for(Farm, "before_insert")
@event.listens_for(Category, "before_insert")
@event.listens_for(Brand, "before_insert")
@event.listens_for(Listing, "before_insert")
def _words_of_new_row(mapper: Mapper[Any], connection: Connection, target: Any) -> None:
    setattr(target, _tokens_column(type(target)), _own_words(target))


@event.listens_for(Farm, "before_update")
@event.listens_for(Category, "before_update")
@event.listens_for(Brand, "before_update")
@event.listens_for(Listing, "before_update")
def _words_of_changed_row(mapper: Mapper[Any], connection: Connection, target: Any) -> None:
    if _changed(target, SEARCHED_WORDS[type(target)]):
        setattr(target, _tokens_column(type(target)), _own_words(target))


@event.listens_for(Listing, "after_insert")
def _search_text_of_new_listing(mapper: Mapper[Any], connection: Connection, target: Listing) -> None:
    refresh_search_text(connection, Listing.id == target.id)


@event.listens_for(Listing, "after_update")
def _search_text_of_changed_listing(mapper: Mapper[Any], connection: Connection, target: Listing) -> None:
    if _changed(target, SEARCHED_WORDS[Listing] + LISTING_FILING):
        refresh_search_text(connection, Listing.id == target.id)


@event.listens_for(Farm, "after_update")
@event.listens_for(Category, "after_update")
@event.listens_for(Brand, "after_update")
def _search_text_of_listings_filed_under(mapper: Mapper[Any], connection: Connection, target: Any) -> None:
    if _changed(target, ("search_tokens",)):
        column = {Farm: Listing.farm_id, Category: Listing.category_id, Brand: Listing.brand_id}[type(target)]
        refresh_search_text(connection, column == target.id)


def backfill_search(connection: Connection, *, batch: int = 5000) -> None:
    """Work out every row's search tokens and every listing's search text
    (a migration adding them; a bulk load written in SQL)."""
    for model, names in SEARCHED_WORDS.items():
        table = model.__table__
        column = table.c[_tokens_column(model)]
        kept = {"updated_at": table.c.updated_at} if "updated_at" in table.c else {}  # not an edit
        last = 0
        while rows := connection.execute(
            select(table.c.id, *(table.c[name] for name in names))
            .where(table.c.id > last)
            .order_by(table.c.id)
            .limit(batch)
        ).all():
            connection.execute(
                update(table)
                .where(table.c.id == bindparam("row_id"))
                .values({column: bindparam("row_tokens"), **kept}),
                [{"row_id": row[0], "row_tokens": search.tokens(*row[1:])} for row in rows],
            )
            last = rows[-1][0]
    refresh_search_text(connection, true())


class Lot(db.Model):  # type: ignore[name-defined]
    """A harvest lot; order lines point here so a lot traces to its buyers."""

    __tablename__ = "lots"
    __table_args__ = (
        UniqueConstraint("farm_id", "code"),
        CheckConstraint("grams > 0", name="grams_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    listing_id: Mapped[int] = mapped_column(ForeignKey("listings.id"), index=True)
    farm_id: Mapped[int] = mapped_column(ForeignKey("farms.id"), index=True)
    code: Mapped[str] = mapped_column(String(64))
    harvest_date: Mapped[date] = mapped_column(Date)
    plot: Mapped[str] = mapped_column(String(120), default="")
    grade: Mapped[str] = mapped_column(String(40), default="")
    grams: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now())

    listing: Mapped[Listing] = relationship(back_populates="lots")
