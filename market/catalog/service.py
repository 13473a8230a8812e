"""Catalog rules: who may touch which farm and listing, what buyers see, and
every change to stock.

Visibility: buyers and the public browse active and sold_out listings of
verified farms (sold_out ones stay visible so a buyer can see the produce is
coming back; `in_stock=true` hides them). By id they can also read paused and
archived listings of farms that were ever verified, so old orders keep their
links. A farmer sees all of their own listings in any status; operators see
everything. Another farmer's farm, listing or lot is "not found" to a farmer
who tries to change it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from flask import current_app
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Select,
    Update,
    and_,
    bindparam,
    false,
    func,
    not_,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import contains_eager, joinedload, selectinload
from sqlalchemy.orm.util import identity_key

from market.accounts.models import Role
from market.auth import Actor
from market.catalog import search
from market.catalog.models import (
    Brand,
    BrandCounty,
    Category,
    Farm,
    FarmStatus,
    FulfilmentPoint,
    FulfilmentPointKind,
    Listing,
    ListingStatus,
    Lot,
    PayoutMethod,
    StripeCannotPay,
)
from market.conditional import Expected, PreconditionFailed
from market.db import NOT_AFTER_TODAY, business_today, get_or_404, unit_of_work, utcnow
from market.errors import Conflict, Invalid, InvalidTransition, NotFound
from market.events import publish
from market.extensions import db
from market.money import MAX_STOCK_G
from market.pagination import Page, SortKey, Sparse, count_rows, keyset_page, tiered_page
from market.payouts.models import PayoutAccount

PUBLIC_BROWSE_STATUSES = (ListingStatus.ACTIVE, ListingStatus.SOLD_OUT)
SKU_CONFLICT = ("That SKU is already used on this farm.", {"sku": ["Already used on this farm."]})


class OutOfStock(Conflict):
    slug = "out-of-stock"
    title = "Out of stock"


class ListingArchived(InvalidTransition):
    """An archived listing's stock changes no more; only orders closing
    give back what they took (`add_stock`)."""

    def __init__(self, listing_id: int, field: str) -> None:
        super().__init__(
            f"Listing {listing_id} is archived; its stock cannot change.",
            {field: ["The listing is archived; its stock cannot change."]},
        )


@dataclass(frozen=True)
class StockLine:
    """Grams of one listing, as an order line takes or gives them back."""

    listing_id: int
    grams: int


def _is_operator(actor: Actor | None) -> bool:
    return actor is not None and actor.has(Role.OPERATOR)


def _flush_or_conflict(detail: str, errors: dict[str, list[str]]) -> None:
    """Flush; a unique constraint lost to a concurrent writer after our own
    check is a 409, not a 500 (the unit of work rolls back)."""
    try:
        db.session.flush()
    except IntegrityError:
        raise Conflict(detail, errors) from None


# Farms


def _farm_visibility(actor: Actor | None) -> ColumnElement[bool]:
    if _is_operator(actor):
        return true()
    public = Farm.status == FarmStatus.VERIFIED
    if actor is not None and actor.has(Role.FARMER):
        return or_(public, Farm.owner_id == actor.user_id)
    return public


def _farm_for_write(actor: Actor, farm_id: int, expected: Expected | None = None) -> Farm:
    """The farm, locked for the write and read afresh, if the caller may
    change it and it is still as `expected` (If-Match)."""
    actor.require(Role.FARMER, Role.OPERATOR)
    farm = db.session.get(Farm, farm_id, with_for_update=True, populate_existing=True)
    if farm is None or not (_is_operator(actor) or farm.owner_id == actor.user_id):
        raise NotFound(f"Farm {farm_id} not found.")
    if expected is not None:
        expected.check(farm, f"Farm {farm_id}")
    return farm


def create_farm(actor: Actor, **fields: Any) -> Farm:
    """A farmer registers a farm; it waits for an operator to verify it."""
    actor.require(Role.FARMER)
    with unit_of_work():
        farm = Farm(owner_id=actor.user_id, status=FarmStatus.PENDING, **fields)
        _check_payout_method(farm)
        db.session.add(farm)
    return farm


def update_farm(actor: Actor, farm_id: int, expected: Expected | None = None, **changes: Any) -> Farm:
    with unit_of_work():
        farm = _farm_for_write(actor, farm_id, expected)
        if "payout_method" in changes:
            _keep_to_payout_account(farm, changes["payout_method"])
        for name, value in changes.items():
            setattr(farm, name, value)
        if changes.keys() & {"payout_method", "country"}:
            _check_payout_method(farm)
    return farm


def _keep_to_payout_account(farm: Farm, method: PayoutMethod | None) -> None:
    """Refuse a payout method other than the payout account's: once the
    farm has an account, the account says how payout runs pay it, and the
    farm's `payout_method` is the account's. Before that, it is the method
    the farmer prefers, which a payout account asked for without one takes."""
    on_account = db.session.scalar(select(PayoutAccount.method).where(PayoutAccount.farm_id == farm.id))
    if on_account is not None and method != on_account:
        raise Conflict(
            f"Farm {farm.id} is paid by {on_account.value} through its payout account. To be paid another way, "
            f"choose it with POST /api/v1/farms/{farm.id}/payout-account (with the bank details for bank_transfer).",
            {"payout_method": [f"The payout account pays by {on_account.value}."]},
            payout_method=on_account.value,
        )


def _check_payout_method(farm: Farm) -> None:
    if farm.payout_method == PayoutMethod.STRIPE:
        require_stripe_payable(farm, "payout_method")


def require_stripe_payable(farm: Farm, field: str) -> None:
    """Refuse Stripe as the farm's payout method (`field`) when this
    marketplace has no Stripe (STRIPE_SECRET_KEY unset), or Stripe cannot
    pay a farm where this one is: the bank file pays it instead."""
    if not current_app.config["STRIPE_SECRET_KEY"]:
        raise StripeCannotPay(
            f"Stripe is not configured on this marketplace (no STRIPE_SECRET_KEY), so it cannot pay {farm.named}: "
            "the farm is paid by bank transfer, in the operators' bank file (payout method bank_transfer).",
            {field: ["Stripe is not configured here; use bank_transfer."]},
            payout_method=PayoutMethod.BANK_TRANSFER.value,
        )
    farm.require_stripe_payable(current_app.config["STRIPE_CONNECT_COUNTRY"], field)


def verify_farm(actor: Actor, farm_id: int, expected: Expected | None = None) -> Farm:
    actor.require(Role.OPERATOR)
    with unit_of_work():
        farm = _farm_for_write(actor, farm_id, expected)
        farm.verify()
    return farm


def suspend_farm(actor: Actor, farm_id: int, expected: Expected | None = None) -> Farm:
    """Stop a farm's listings from being bought; they stay readable by id."""
    actor.require(Role.OPERATOR)
    with unit_of_work():
        farm = _farm_for_write(actor, farm_id, expected)
        farm.suspend()
    return farm


def get_farm(actor: Actor | None, farm_id: int) -> Farm:
    farm = db.session.scalar(select(Farm).where(Farm.id == farm_id, _farm_visibility(actor)))
    if farm is None:
        raise NotFound(f"Farm {farm_id} not found.")
    return farm


def _farms(
    actor: Actor | None,
    *,
    county: str | None = None,
    province: str | None = None,
    status: FarmStatus | None = None,
    owner_id: int | None = None,
) -> Select[tuple[Farm]]:
    stmt = select(Farm).where(_farm_visibility(actor))
    if owner_id is not None:
        stmt = stmt.where(Farm.owner_id == owner_id)
    if county:
        stmt = stmt.where(Farm.county == county)
    if province:
        stmt = stmt.where(Farm.province == province)
    if status:
        stmt = stmt.where(Farm.status == status)
    return stmt


def list_farms(actor: Actor | None, *, limit: int, cursor: str | None = None, **filters: Any) -> Page[Farm]:
    """Farms the caller may see (verified ones; plus their own; all for
    operators), by `county`, `province`, `status` and `owner_id`."""
    return keyset_page(_farms(actor, **filters), [SortKey(Farm.id, "id")], limit=limit, cursor=cursor)


def count_farms(actor: Actor | None, **filters: Any) -> int:
    """How many farms `list_farms` would list, over all its pages."""
    return count_rows(_farms(actor, **filters))


def _names(model: type[Farm] | type[FulfilmentPoint], ids: Iterable[int]) -> dict[int, str]:
    wanted = set(ids)
    if not wanted:
        return {}
    return dict(db.session.execute(select(model.id, model.name).where(model.id.in_(wanted))).tuples().all())


def farm_names(ids: Iterable[int]) -> dict[int, str]:
    """The names of the farms `ids` (for lists that show farms by name)."""
    return _names(Farm, ids)


def point_names(ids: Iterable[int]) -> dict[int, str]:
    """The names of the fulfilment points `ids` (for lists that show them by name)."""
    return _names(FulfilmentPoint, ids)


# Fulfilment points


def _check_parent(kind: FulfilmentPointKind, parent_id: int | None, *, point_id: int | None = None) -> None:
    if kind == FulfilmentPointKind.COUNTY_CENTRE:
        if parent_id is not None:
            raise Invalid("A county centre belongs to no other point.", {"parent_id": ["Must be empty."]})
        return
    if parent_id is None:
        raise Invalid("A village station belongs to a county centre.", {"parent_id": ["Required for a station."]})
    parent = db.session.get(FulfilmentPoint, parent_id)
    if parent is None or parent.id == point_id or parent.kind != FulfilmentPointKind.COUNTY_CENTRE:
        raise Invalid(
            f"Fulfilment point {parent_id} is not a county centre.", {"parent_id": ["Must be a county centre."]}
        )


def create_fulfilment_point(
    actor: Actor, *, kind: FulfilmentPointKind, parent_id: int | None, **fields: Any
) -> FulfilmentPoint:
    actor.require(Role.OPERATOR)
    with unit_of_work():
        _check_parent(kind, parent_id)
        point = FulfilmentPoint(kind=kind, parent_id=parent_id, **fields)
        db.session.add(point)
    return point


def update_fulfilment_point(actor: Actor, point_id: int, **changes: Any) -> FulfilmentPoint:
    actor.require(Role.OPERATOR)
    with unit_of_work():
        point = get_fulfilment_point(point_id)
        if "parent_id" in changes:
            _check_parent(point.kind, changes["parent_id"], point_id=point.id)
        for name, value in changes.items():
            setattr(point, name, value)
    return point


def get_fulfilment_point(point_id: int) -> FulfilmentPoint:
    return get_or_404(FulfilmentPoint, point_id, "Fulfilment point")


def county_centre(station: FulfilmentPoint) -> FulfilmentPoint | None:
    """The county distribution centre a village station is served by: its
    parent, or else the first centre of its county; None when it has none."""
    if station.parent is not None and station.parent.kind == FulfilmentPointKind.COUNTY_CENTRE:
        return station.parent
    return db.session.scalars(
        select(FulfilmentPoint)
        .where(
            FulfilmentPoint.kind == FulfilmentPointKind.COUNTY_CENTRE,
            FulfilmentPoint.county == station.county,
            FulfilmentPoint.province == station.province,
        )
        .order_by(FulfilmentPoint.id)
        .limit(1)
    ).first()


def route(farm: Farm, point: FulfilmentPoint) -> list[FulfilmentPoint]:
    """The points produce from `farm` passes to be picked up at `point`, in
    order (docs/stations.md): through the county centre of a village
    station in another county than the farm's, else straight to `point`
    (a station of the farm's own county, a centre, a station with no centre)."""
    same_county = (farm.province, farm.county) == (point.province, point.county)
    centre = None if same_county or point.kind != FulfilmentPointKind.VILLAGE_STATION else county_centre(point)
    return [point] if centre is None else [centre, point]


def list_fulfilment_points(
    *,
    limit: int,
    cursor: str | None = None,
    kind: FulfilmentPointKind | None = None,
    county: str | None = None,
    province: str | None = None,
    parent_id: int | None = None,
) -> Page[FulfilmentPoint]:
    stmt = select(FulfilmentPoint)
    if kind:
        stmt = stmt.where(FulfilmentPoint.kind == kind)
    if county:
        stmt = stmt.where(FulfilmentPoint.county == county)
    if province:
        stmt = stmt.where(FulfilmentPoint.province == province)
    if parent_id is not None:
        stmt = stmt.where(FulfilmentPoint.parent_id == parent_id)
    return keyset_page(stmt, [SortKey(FulfilmentPoint.id, "id")], limit=limit, cursor=cursor)


# Categories and regional brands


def list_categories(*, limit: int, cursor: str | None = None) -> Page[Category]:
    keys = [SortKey(Category.code, "code"), SortKey(Category.id, "id")]
    return keyset_page(select(Category), keys, limit=limit, cursor=cursor)


def create_category(actor: Actor, *, code: str, name_zh: str, name_en: str) -> Category:
    actor.require(Role.OPERATOR)
    with unit_of_work():
        category = Category(code=code, name_zh=name_zh, name_en=name_en)
        db.session.add(category)
        _flush_or_conflict(f"Category {code!r} already exists.", {"code": ["Already used."]})
    return category


def update_category(actor: Actor, category_id: int, **changes: Any) -> Category:
    actor.require(Role.OPERATOR)
    with unit_of_work():
        category = get_or_404(Category, category_id, "Category")
        for name, value in changes.items():
            setattr(category, name, value)
    return category


def list_brands(*, limit: int, cursor: str | None = None) -> Page[Brand]:
    keys = [SortKey(Brand.code, "code"), SortKey(Brand.id, "id")]
    return keyset_page(select(Brand).options(selectinload(Brand.allowed)), keys, limit=limit, cursor=cursor)


def create_brand(actor: Actor, *, code: str, name_zh: str, name_en: str, counties: list[str]) -> Brand:
    actor.require(Role.OPERATOR)
    with unit_of_work():
        brand = Brand(
            code=code,
            name_zh=name_zh,
            name_en=name_en,
            allowed=[BrandCounty(county=c) for c in sorted(set(counties))],
        )
        db.session.add(brand)
        _flush_or_conflict(f"Brand {code!r} already exists.", {"code": ["Already used."]})
    return brand


def update_brand(actor: Actor, brand_id: int, *, counties: list[str] | None = None, **changes: Any) -> Brand:
    """Rename a brand or replace its counties. Listings already carrying it
    keep it; the county rule applies when a listing is next created or edited."""
    actor.require(Role.OPERATOR)
    with unit_of_work():
        brand = get_or_404(Brand, brand_id, "Brand")
        for name, value in changes.items():
            setattr(brand, name, value)
        if counties is not None:
            wanted = set(counties)
            brand.allowed = [row for row in brand.allowed if row.county in wanted] + [
                BrandCounty(county=c) for c in sorted(wanted - set(brand.counties))
            ]
    return brand


def _category(code: str) -> Category:
    category = db.session.scalar(select(Category).where(Category.code == code))
    if category is None:
        raise Invalid(f"Unknown category {code!r}.", {"category": ["No such category; see /api/v1/categories."]})
    return category


def _brand(code: str) -> Brand:
    brand = db.session.scalar(select(Brand).where(Brand.code == code))
    if brand is None:
        raise Invalid(f"Unknown brand {code!r}.", {"brand": ["No such brand; see /api/v1/brands."]})
    return brand


# Listings


def purchasable_listing_filter(listings: Any = Listing, farms: Any = Farm) -> ColumnElement[bool]:
    """Listings that can be bought now: active, on a verified farm. For
    `select(Listing).where(purchasable_listing_filter())`; needs no join.
    Given the tables' columns (`Listing.__table__.c`, `Farm.__table__.c`),
    the same filter for a Core statement."""
    return and_(
        listings.status == ListingStatus.ACTIVE,
        listings.farm_id.in_(select(farms.id).where(farms.status == FarmStatus.VERIFIED)),
    )


def _listing_visibility(actor: Actor | None, *, by_id: bool) -> ColumnElement[bool]:
    """Which listings the caller may read; the statement must join Farm."""
    if _is_operator(actor):
        return true()
    if by_id:
        public = and_(Listing.status != ListingStatus.DRAFT, Farm.verified_at.isnot(None))
    else:
        public = and_(Listing.status.in_(PUBLIC_BROWSE_STATUSES), Farm.status == FarmStatus.VERIFIED)
    if actor is not None and actor.has(Role.FARMER):
        return or_(public, Farm.owner_id == actor.user_id)
    return public


def _with_details(stmt: Select[tuple[Listing]]) -> Select[tuple[Listing]]:
    """Load what a listing response shows in a fixed number of queries."""
    return stmt.options(
        contains_eager(Listing.farm),
        joinedload(Listing.category, innerjoin=True),
        joinedload(Listing.brand),
        selectinload(Listing.lots),
    )


def _listing_for_write(actor: Actor, listing_id: int, expected: Expected | None = None) -> Listing:
    """The listing, locked for the write and read afresh, if the caller may
    change it and it is still as `expected` (If-Match): a sale or another
    client's edit committed since the client read it is seen here."""
    actor.require(Role.FARMER, Role.OPERATOR)
    listing = db.session.get(Listing, listing_id, with_for_update=True, populate_existing=True)
    if listing is None or not (_is_operator(actor) or listing.farm.owner_id == actor.user_id):
        raise NotFound(f"Listing {listing_id} not found.")
    if expected is not None:
        expected.check(listing, f"Listing {listing_id}")
    return listing


def _check_listing(
    *, min_order_g: int, step_g: int, brand: Brand | None, origin_county: str, brand_named: bool
) -> None:
    """Rules across fields, checked on the values a create or edit would store."""
    if min_order_g % step_g:
        raise Invalid(
            f"The minimum order ({min_order_g} g) is not a whole number of steps of {step_g} g.",
            {"step_g": ["min_order_g must be a multiple of step_g."]},
        )
    if brand is not None and not brand.allows(origin_county):
        field = "brand" if brand_named else "origin_county"
        raise Invalid(
            f"The brand {brand.code!r} is not allowed for produce from {origin_county}.",
            {field: [f"{brand.code!r} may be used in: {', '.join(brand.counties)}."]},
        )


def _check_sku_free(farm_id: int, sku: str | None, *, listing_id: int | None = None) -> None:
    if sku is None:
        return
    taken = db.session.scalar(select(Listing.id).where(Listing.farm_id == farm_id, Listing.sku == sku))
    if taken is not None and taken != listing_id:
        raise Conflict(f"SKU {sku!r} is already used on this farm.", {"sku": ["Already used on this farm."]})


def create_listing(
    actor: Actor,
    *,
    farm_id: int,
    category: str,
    brand: str | None = None,
    origin_county: str | None = None,
    sku: str | None = None,
    stock_g: int = 0,
    **fields: Any,
) -> Listing:
    """A draft listing on one of the caller's farms."""
    with unit_of_work():
        farm = _farm_for_write(actor, farm_id)
        _check_sku_free(farm.id, sku)
        category_row = _category(category)
        brand_row = _brand(brand) if brand else None
        origin_county = origin_county or farm.county
        _check_listing(
            min_order_g=fields["min_order_g"],
            step_g=fields["step_g"],
            brand=brand_row,
            origin_county=origin_county,
            brand_named=True,
        )
        listing = Listing(
            farm_id=farm.id,
            category=category_row,
            brand=brand_row,
            origin_county=origin_county,
            sku=sku,
            stock_g=stock_g,
            status=ListingStatus.DRAFT,
            **fields,
        )
        db.session.add(listing)
        _flush_or_conflict(*SKU_CONFLICT)
    return listing


def update_listing(actor: Actor, listing_id: int, expected: Expected | None = None, **changes: Any) -> Listing:
    with unit_of_work():
        listing = _listing_for_write(actor, listing_id, expected)
        if listing.status == ListingStatus.ARCHIVED:
            raise InvalidTransition(f"Listing {listing_id} is archived and can no longer be edited.")
        sku_before, stock_before = listing.sku, listing.stock_g
        if "sku" in changes:
            _check_sku_free(listing.farm_id, changes["sku"], listing_id=listing.id)
        category = _category(changes.pop("category")) if "category" in changes else listing.category
        brand_named = "brand" in changes
        code = changes.pop("brand", None)
        brand = (_brand(code) if code else None) if brand_named else listing.brand
        stock_g = changes.pop("stock_g", None)
        _check_listing(
            min_order_g=changes.get("min_order_g", listing.min_order_g),
            step_g=changes.get("step_g", listing.step_g),
            brand=brand,
            origin_county=changes.get("origin_county", listing.origin_county),
            brand_named=brand_named,
        )
        listing.category = category
        listing.brand = brand
        for name, value in changes.items():
            setattr(listing, name, value)
        _flush_or_conflict(*SKU_CONFLICT)
        if stock_g is not None:
            _write_stock(listing.id, stock_g)
        # The other sales channels know it by SKU: tell them the new one,
        # once. A stock written just now has told them already, the new SKU
        # with it; a second event would push the same stock again.
        if changes.get("sku", sku_before) != sku_before and listing.stock_g == stock_before:
            publish("listing.stock_changed", listing_id=listing.id)
    return listing


def activate_listing(actor: Actor, listing_id: int, expected: Expected | None = None) -> Listing:
    with unit_of_work():
        listing = _listing_for_write(actor, listing_id, expected)
        listing.activate()
    return listing


def pause_listing(actor: Actor, listing_id: int, expected: Expected | None = None) -> Listing:
    with unit_of_work():
        listing = _listing_for_write(actor, listing_id, expected)
        listing.pause()
    return listing


def archive_listing(actor: Actor, listing_id: int, expected: Expected | None = None) -> Listing:
    """Withdraw a listing for good; it stays readable by id for old orders."""
    with unit_of_work():
        listing = _listing_for_write(actor, listing_id, expected)
        listing.archive()
        # The other sales channels are told it is gone: pushed with no stock.
        publish("listing.stock_changed", listing_id=listing.id)
    return listing


def get_listing(actor: Actor | None, listing_id: int) -> Listing:
    stmt = _with_details(
        select(Listing).join(Listing.farm).where(Listing.id == listing_id, _listing_visibility(actor, by_id=True))
    )
    listing: Listing | None = db.session.scalar(stmt)
    if listing is None:
        raise NotFound(f"Listing {listing_id} not found.")
    return listing


def _load_listings(ids: Sequence[int]) -> dict[int, Listing]:
    stmt = _with_details(select(Listing).join(Listing.farm).where(Listing.id.in_(ids)))
    return {listing.id: listing for listing in db.session.scalars(stmt.execution_options(populate_existing=True))}


def _sort_keys(sort: str) -> list[SortKey]:
    if sort == "price":
        return [SortKey(Listing.price_per_kg, "price_per_kg"), SortKey(Listing.id, "id")]
    if sort == "-price":
        return [SortKey(Listing.price_per_kg, "price_per_kg", descending=True), SortKey(Listing.id, "id", True)]
    if sort == "harvest_date":
        # Listing.harvest_sort_date is the expression ix_listings_harvest_sort_date_id indexes.
        harvested = SortKey(Listing.harvest_sort_date, "harvest_sort_date", descending=True)
        return [harvested, SortKey(Listing.id, "id", descending=True)]
    return [SortKey(Listing.id, "id", descending=True)]


def _named(model: type[Category] | type[Brand], value: str) -> Select[tuple[int]]:
    """The ids of the categories or brands `value` names: by code, by the
    Chinese name, or by the English one in any case."""
    return select(model.id).where(
        or_(model.code == value, model.name_zh == value, func.lower(model.name_en) == value.lower())
    )


def list_listings(
    actor: Actor | None,
    *,
    limit: int,
    cursor: str | None = None,
    sort: str | None = None,
    q: str | None = None,
    category: str | None = None,
    county: str | None = None,
    province: str | None = None,
    brand: str | None = None,
    farm_id: int | None = None,
    sku: str | None = None,
    status: ListingStatus | None = None,
    price_min: int | None = None,
    price_max: int | None = None,
    in_stock: bool | None = None,
    harvested_after: date | None = None,
    updated_since: datetime | None = None,
) -> Page[Listing]:
    """Browse and search the listings the caller may see, one page at a time.

    `q` finds listings by the start of any word of their names, SKU,
    category, brand, farm and places (market.catalog.search); every word of
    it must be found. Sorted by relevance unless another sort is asked for:
    listings whose own words (names, variety, SKU, origin county) hold
    the query first, then those that hold it through what they are filed
    under, each band newest first.
    """
    query = search.terms(q) if q is not None else None
    if query == []:
        raise Invalid("Search for at least one letter or digit.", {"q": ["Holds no letter or digit."]})
    sort = sort or ("relevance" if query else "newest")
    if sort == "relevance" and not query:
        raise Invalid("Sorting by relevance needs a search.", {"sort": ["relevance needs q."]})
    dialect = db.session.get_bind().dialect.name
    in_stock_clause = None if in_stock is None else (Listing.stock_g > 0 if in_stock else Listing.stock_g == 0)
    filters = [
        Listing.category_id.in_(_named(Category, category)) if category else None,
        Listing.brand_id.in_(_named(Brand, brand)) if brand else None,
        Listing.origin_county == county if county else None,
        Farm.province == province if province else None,
        Listing.farm_id == farm_id if farm_id is not None else None,
        Listing.sku == sku if sku is not None else None,
        Listing.status == status if status else None,
        Listing.price_per_kg >= price_min if price_min is not None else None,
        Listing.price_per_kg <= price_max if price_max is not None else None,
        in_stock_clause,
        # On the sort expression, so its index serves the filter too; the same
        # rows, as a listing never harvested sorts at 0001-01-01.
        Listing.harvest_sort_date > harvested_after if harvested_after else None,
        Listing.updated_at >= updated_since if updated_since else None,
    ]
    stmt = _with_details(
        select(Listing)
        .join(Listing.farm)
        .where(_listing_visibility(actor, by_id=False), *(f for f in filters if f is not None))
    )
    if not query:
        return keyset_page(stmt, _sort_keys(sort), limit=limit, cursor=cursor)
    found = search.matches(Listing.search_text, query, dialect)
    if sort != "relevance":
        return keyset_page(stmt, _sort_keys(sort), limit=limit, cursor=cursor, sparse=found)
    # The own words are among search_text's: the first band needs no other
    # search condition (PostgreSQL would take the two as independent and
    # expect far fewer rows than there are).
    own = search.matches(Listing.search_own, query, dialect)
    others = Sparse(and_(found.each_row, not_(own.each_row)), and_(found.indexed, not_(own.each_row)))
    bands = [(stmt, own), (stmt, others)]
    return tiered_page(bands, _sort_keys("newest"), limit=limit, cursor=cursor)


# Lots


def add_lot(
    actor: Actor,
    listing_id: int,
    expected: Expected | None = None,
    *,
    code: str,
    grams: int,
    harvest_date: date,
    **fields: Any,
) -> Lot:
    """Record a harvest lot on a listing and add its grams to the stock, if
    the listing is still as `expected` (If-Match). A lot not yet harvested
    (dated after today) is refused: the listing would show its date and
    orders would be stamped with it."""
    if harvest_date > business_today():
        raise Invalid(
            "A lot is recorded once harvested: its harvest_date is after today.",
            {"harvest_date": [NOT_AFTER_TODAY]},
        )
    with unit_of_work():
        listing = _listing_for_write(actor, listing_id, expected)
        taken = db.session.scalar(select(Lot.id).where(Lot.farm_id == listing.farm_id, Lot.code == code))
        if taken is not None:
            raise Conflict(f"Lot {code!r} already exists on this farm.", {"code": ["Already used on this farm."]})
        lot = Lot(farm_id=listing.farm_id, code=code, grams=grams, harvest_date=harvest_date, **fields)
        listing.add_lot(lot)
        _flush_or_conflict(f"Lot {code!r} already exists on this farm.", {"code": ["Already used on this farm."]})
        receive_stock([StockLine(listing.id, grams)])
    return lot


def list_lots(actor: Actor | None, listing_id: int, *, limit: int, cursor: str | None = None) -> Page[Lot]:
    """A listing's lots, newest harvest first, for whoever may read the listing."""
    listing = get_listing(actor, listing_id)
    keys = [SortKey(Lot.harvest_date, "harvest_date", descending=True), SortKey(Lot.id, "id", descending=True)]
    return keyset_page(select(Lot).where(Lot.listing_id == listing.id), keys, limit=limit, cursor=cursor)


def get_lot(actor: Actor | None, listing_id: int, lot_id: int) -> Lot:
    """One of a listing's lots, for whoever may read the listing."""
    listing = get_listing(actor, listing_id)
    lot = db.session.get(Lot, lot_id)
    if lot is None or lot.listing_id != listing.id:
        raise NotFound(f"Lot {lot_id} not found on listing {listing_id}.")
    return lot


# Stock: every change is one UPDATE on the row, never read-modify-write, so
# concurrent sales and restocks cannot overwrite each other.


def _merged(lines: Iterable[StockLine]) -> list[StockLine]:
    """One line per listing, in id order, so concurrent callers lock rows in
    the same order and cannot deadlock."""
    grams: dict[int, int] = {}
    for line in lines:
        if line.grams <= 0:
            raise Invalid("Stock moves in whole positive grams.", {"grams": ["Must be a positive integer."]})
        grams[line.listing_id] = grams.get(line.listing_id, 0) + line.grams
    return [StockLine(listing_id, grams[listing_id]) for listing_id in sorted(grams)]


# The stock statements name the table's columns, not the model's: a model
# attribute anywhere in an UPDATE makes it ORM-enabled, and the ORM's bulk
# update path cost as much CPU as the rest of taking stock.
_LISTING = Listing.__table__.c


def _stock_update(new_stock: ColumnElement[int], *conditions: ColumnElement[bool]) -> Update:
    """One conditional UPDATE of a listing's stock (bound: listing_id,
    grams, now), answering the new stock and the low-stock threshold.

    A Core UPDATE on the table: the ORM-enabled form with
    synchronize_session="fetch" cost five times the CPU on the order hot
    path. Built once, at import: building it and its cache key on each
    call cost as much again as executing it."""
    return (
        update(Listing.__table__)
        .where(_LISTING.id == bindparam("listing_id"), *conditions)
        .values(
            stock_g=new_stock, status=Listing.status_at_stock(_LISTING.status, new_stock), updated_at=bindparam("now")
        )
        .returning(_LISTING.stock_g, _LISTING.low_stock_threshold_g)
    )


_GRAMS = bindparam("grams", type_=BigInteger)
# What an order may take from (purchasable_only), and another sales channel.
_SELLABLE = {
    True: purchasable_listing_filter(_LISTING, Farm.__table__.c),
    False: _LISTING.status != ListingStatus.ARCHIVED,
}
_TAKE = {
    only: _stock_update(_LISTING.stock_g - _GRAMS, _LISTING.stock_g >= _GRAMS, sellable)
    for only, sellable in _SELLABLE.items()
}
_ADD = _stock_update(_LISTING.stock_g + _GRAMS)
_RECEIVE = _stock_update(
    _LISTING.stock_g + _GRAMS, _LISTING.stock_g <= MAX_STOCK_G - _GRAMS, _LISTING.status != ListingStatus.ARCHIVED
)
_SET = _stock_update(_GRAMS)


def _execute_stock_update(statement: Update, line: StockLine) -> tuple[int, int | None] | None:
    """Run one of the statements above for `line`: the new stock and the
    low-stock threshold, or None when its conditions did not hold."""
    row = db.session.execute(
        statement, {"listing_id": line.listing_id, "grams": line.grams, "now": utcnow()}
    ).one_or_none()
    # A listing loaded in this session is expired instead, so it reads the
    # new stock and status when next used.
    loaded = db.session.identity_map.get(identity_key(Listing, line.listing_id))
    if loaded is not None:
        db.session.expire(loaded, ["stock_g", "status", "updated_at"])
    return None if row is None else (row[0], row[1])


def _stock_moved(listing_id: int, before: int, after: int, threshold: int | None) -> None:
    """Tell the other sales channels, and the farmer when stock just fell
    below their threshold (once per fall, not on every sale below it)."""
    publish("listing.stock_changed", listing_id=listing_id)
    if threshold is not None and after < threshold <= before:
        publish("listing.stock_low", listing_id=listing_id)


def take_stock(lines: Iterable[StockLine], *, purchasable_only: bool = True) -> None:
    """Take grams from purchasable listings, all or nothing, for an order.

    Each listing is one conditional UPDATE (`stock_g >= grams`), so stock
    never goes negative however many buyers race. A sale on another sales
    channel (`purchasable_only=False`) may take from any listing not
    archived. Flushes only: the caller owns the transaction and must roll
    back when this raises `OutOfStock`.
    """
    for line in _merged(lines):
        moved = _execute_stock_update(_TAKE[purchasable_only], line)
        if moved is None:
            available = db.session.scalar(
                select(Listing.stock_g).where(Listing.id == line.listing_id, _SELLABLE[purchasable_only])
            )
            detail = (
                f"Listing {line.listing_id} cannot be bought now."
                if available is None
                else f"Listing {line.listing_id} has {available} g left, not {line.grams} g."
            )
            raise OutOfStock(detail, {"listing_id": [detail]}, listing_id=line.listing_id, available_g=available)
        _stock_moved(line.listing_id, moved[0] + line.grams, *moved)


def add_stock(lines: Iterable[StockLine]) -> None:
    """Give grams back (a cancelled or expired order; a channel's feed
    rising again, each reading at most MAX_STOCK_G).

    A sold_out listing becomes active again; an archived one keeps its
    status. Never refused for the amount. Flushes only: the caller commits.
    """
    for line in _merged(lines):
        moved = _execute_stock_update(_ADD, line)
        if moved is None:
            raise NotFound(f"Listing {line.listing_id} not found.")
        _stock_moved(line.listing_id, moved[0] - line.grams, *moved)


def receive_stock(lines: Iterable[StockLine], *, field: str = "grams") -> None:
    """Add new produce (a harvest lot, a return on another sales channel) as
    `add_stock` does, but never to an archived listing (`ListingArchived`,
    naming `listing_id`) and never above MAX_STOCK_G: a line that would pass
    it raises `Invalid` naming `field`. The caller rolls back. Flushes only.
    """
    for line in _merged(lines):
        moved = _execute_stock_update(_RECEIVE, line)
        if moved is None:
            found = db.session.execute(
                select(Listing.stock_g, Listing.status).where(Listing.id == line.listing_id)
            ).one_or_none()
            if found is None:
                raise NotFound(f"Listing {line.listing_id} not found.")
            stock, status = found
            if status == ListingStatus.ARCHIVED:
                raise ListingArchived(line.listing_id, "listing_id")
            room = max(MAX_STOCK_G - stock, 0)
            raise Invalid(
                f"Listing {line.listing_id} holds {stock} g; {line.grams} g more would pass the most a listing "
                f"may hold ({MAX_STOCK_G} g).",
                {field: [f"At most {room} g more fit on this listing."]},
            )
        _stock_moved(line.listing_id, moved[0] - line.grams, *moved)


return_stock = add_stock


def _write_stock(listing_id: int, grams: int, *, expected_g: int | None = None) -> int | None:
    """Set the listing's stock to `grams`, on its row locked. When the stock
    found is not `expected_g` (given), nothing is written and the stock
    found is returned. Setting the stock it already has writes nothing:
    the listing, its updated_at and its ETag stay as they are."""
    before = db.session.scalar(
        select(Listing.stock_g)
        .where(Listing.id == listing_id, Listing.status != ListingStatus.ARCHIVED)
        .with_for_update()
    )
    if before is None:
        raise ListingArchived(listing_id, "stock_g")
    if expected_g is not None and before != expected_g:
        return before
    if before != grams:
        moved = _execute_stock_update(_SET, StockLine(listing_id, grams))
        assert moved is not None  # the row is locked and not archived
        _stock_moved(listing_id, before, *moved)
    return None


@dataclass(frozen=True)
class StockTarget:
    index: int
    stock_g: int
    expected_g: int | None


def set_stock(actor: Actor, items: list[dict[str, Any]]) -> list[Listing]:
    """Set the stock of many listings at once, all or nothing.

    Items address a listing by `listing_id` or by `sku` with `farm_id`; a
    farmer with one farm may leave `farm_id` out. Any bad item refuses the
    whole request, naming `items.<index>.<field>`. An item with
    `expected_stock_g` is a compare-and-set: when the listing's stock (on
    its locked row) is not that, the request is a 412 naming every such
    item with the stock found, and nothing is written.
    """
    actor.require(Role.FARMER, Role.OPERATOR)
    chosen = _stock_targets(actor, items)
    with unit_of_work():
        stale: dict[str, list[str]] = {}
        found: dict[int, int] = {}
        for listing_id in sorted(chosen):
            target = chosen[listing_id]
            current = _write_stock(listing_id, target.stock_g, expected_g=target.expected_g)
            if current is not None:
                stale[f"items.{target.index}.expected_stock_g"] = [f"The stock is now {current} g."]
                found[listing_id] = current
        if stale:
            raise PreconditionFailed(
                "The stock of some listings changed since you read it (a sale, or another client); nothing was "
                "changed. Read them again and send the stock with the new expected_stock_g.",
                stale,
                current_stock_g={str(listing_id): grams for listing_id, grams in found.items()},
            )
    loaded = _load_listings(list(chosen))
    return [loaded[listing_id] for listing_id in chosen]


def _with_farm_of_sku(actor: Actor, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`items` with the caller's one farm as the farm of every SKU given
    without `farm_id`. A SKU is unique per farm only, so a caller with
    several farms (or none: an operator) must say which."""
    bare = [index for index, item in enumerate(items) if "sku" in item and "farm_id" not in item]
    if not bare:
        return items
    farms = (
        []
        if _is_operator(actor)
        else list(db.session.scalars(select(Farm.id).where(Farm.owner_id == actor.user_id).limit(2)))
    )
    if len(farms) != 1:
        why = "You have several farms" if farms else "You have no farm of your own"
        raise Invalid(
            f"{why}: give farm_id with each sku; nothing was changed.",
            {f"items.{index}.farm_id": ["Required with sku unless you have exactly one farm."] for index in bare},
        )
    return [item if "farm_id" in item or "sku" not in item else {**item, "farm_id": farms[0]} for item in items]


def _stock_targets(actor: Actor, items: list[dict[str, Any]]) -> dict[int, StockTarget]:
    """The stock each item sets, by listing id in the order given; any bad
    item refuses them all."""
    items = _with_farm_of_sku(actor, items)
    ids = [item["listing_id"] for item in items if "listing_id" in item]
    skus = [(item["farm_id"], item["sku"]) for item in items if "sku" in item]
    address = or_(
        Listing.id.in_(ids) if ids else false(),
        and_(Listing.farm_id.in_({f for f, _ in skus}), Listing.sku.in_({s for _, s in skus})) if skus else false(),
    )
    stmt = select(Listing).join(Listing.farm).where(address)
    if not _is_operator(actor):
        stmt = stmt.where(Farm.owner_id == actor.user_id)
    found = list(db.session.scalars(stmt))
    by_id = {listing.id: listing for listing in found}
    by_sku = {(listing.farm_id, listing.sku): listing for listing in found}

    invalid: dict[str, list[str]] = {}
    conflicts: dict[str, list[str]] = {}
    chosen: dict[int, StockTarget] = {}
    for index, item in enumerate(items):
        if "listing_id" in item:
            field, listing = "listing_id", by_id.get(item["listing_id"])
        else:
            field, listing = "sku", by_sku.get((item["farm_id"], item["sku"]))
        key = f"items.{index}.{field}"
        if listing is None:
            invalid[key] = ["No such listing of yours."]
        elif listing.id in chosen:
            invalid[key] = ["This listing appears earlier in the same request."]
        elif listing.status == ListingStatus.ARCHIVED:
            conflicts[key] = ["The listing is archived; its stock cannot change."]
        else:
            chosen[listing.id] = StockTarget(index, item["stock_g"], item.get("expected_stock_g"))
    if invalid:
        raise Invalid("Some items do not name a listing of yours; nothing was changed.", invalid)
    if conflicts:
        raise Conflict("Some listings cannot take a stock change; nothing was changed.", conflicts)
    return chosen
