from typing import Any

from flask import Response, request

from market.api import MarketBlueprint
from market.auth import current_actor, optional_actor
from market.catalog import service
from market.catalog.models import Brand, Category, Farm, FulfilmentPoint, Listing, Lot
from market.catalog.schemas import (
    BrandCreateSchema,
    BrandSchema,
    BrandUpdateSchema,
    CategoryCreateSchema,
    CategorySchema,
    CategoryUpdateSchema,
    FarmCreateSchema,
    FarmQuerySchema,
    FarmSchema,
    FarmUpdateSchema,
    FulfilmentPointCreateSchema,
    FulfilmentPointQuerySchema,
    FulfilmentPointSchema,
    FulfilmentPointUpdateSchema,
    ListingCreateSchema,
    ListingQuerySchema,
    ListingSchema,
    ListingUpdateSchema,
    LotCreateSchema,
    LotSchema,
    StockResultSchema,
    StockUpdateSchema,
)
from market.conditional import if_match
from market.idempotency import idempotent
from market.pagination import Page, PageArgsSchema, page_schema

blp = MarketBlueprint(
    "catalog", __name__, url_prefix="/api/v1", description="Farms, fulfilment points, categories, brands and listings"
)


@blp.after_request
def _validator_on_not_modified(response: Response) -> Response:
    # flask-smorest answers 304 by raising before it sets the ETag, but a 304
    # must carry the validator (RFC 9110 15.4.5): it is the one the client sent.
    sent = request.if_none_match.as_set()
    if response.status_code == 304 and "ETag" not in response.headers and len(sent) == 1:
        response.set_etag(next(iter(sent)))
    return response


# Farms


@blp.route("/farms", methods=["POST"])
@blp.authenticated
@idempotent
@blp.arguments(FarmCreateSchema)
@blp.response(201, FarmSchema, location="/farms/{id}")
def create_farm(body: dict[str, Any]) -> Farm:
    """Register one of your farms (pending until an operator verifies it; accepts Idempotency-Key)"""
    return service.create_farm(current_actor(), **body)


@blp.route("/farms", methods=["GET"])
@blp.arguments(FarmQuerySchema, location="query")
@blp.response(200, page_schema(FarmSchema))
def list_farms(args: dict[str, Any]) -> Page[Farm]:
    """Verified farms; your own too; all of them for operators"""
    return service.list_farms(optional_actor(), **args)


@blp.route("/farms/<int:farm_id>", methods=["GET"])
@blp.etag
@blp.response(200, FarmSchema)
@blp.alt_response(404, description="No such farm, or not visible to you")
def get_farm(farm_id: int) -> Farm:
    """A farm's public profile; its ETag goes in If-Match when you change it"""
    return service.get_farm(optional_actor(), farm_id)


@blp.route("/farms/<int:farm_id>", methods=["PATCH"])
@blp.conditional
@blp.authenticated
@blp.arguments(FarmUpdateSchema)
@blp.response(200, FarmSchema)
@blp.alt_response(404, description="No such farm of yours")
@blp.alt_response(409, description="A payout method other than the payout account's: change it there")
def update_farm(body: dict[str, Any], farm_id: int) -> Farm:
    """Edit one of your farms (honours If-Match)"""
    return service.update_farm(current_actor(), farm_id, if_match(FarmSchema()), **body)


@blp.route("/farms/<int:farm_id>/verify", methods=["POST"])
@blp.conditional
@blp.authenticated
@blp.response(200, FarmSchema)
@blp.alt_response(404, description="No such farm")
@blp.alt_response(409, description="Already verified")
def verify_farm(farm_id: int) -> Farm:
    """Verify a farm so its listings can be bought (operators)"""
    return service.verify_farm(current_actor(), farm_id, if_match(FarmSchema()))


@blp.route("/farms/<int:farm_id>/suspend", methods=["POST"])
@blp.conditional
@blp.authenticated
@blp.response(200, FarmSchema)
@blp.alt_response(404, description="No such farm")
@blp.alt_response(409, description="Already suspended")
def suspend_farm(farm_id: int) -> Farm:
    """Suspend a farm: its listings cannot be bought (operators)"""
    return service.suspend_farm(current_actor(), farm_id, if_match(FarmSchema()))


# Fulfilment points


@blp.route("/fulfilment-points", methods=["POST"])
@blp.authenticated
@blp.arguments(FulfilmentPointCreateSchema)
@blp.response(201, FulfilmentPointSchema, location="/fulfilment-points/{id}")
def create_fulfilment_point(body: dict[str, Any]) -> FulfilmentPoint:
    """Add a village station or county centre (operators)"""
    return service.create_fulfilment_point(current_actor(), **body)


@blp.route("/fulfilment-points", methods=["GET"])
@blp.arguments(FulfilmentPointQuerySchema, location="query")
@blp.response(200, page_schema(FulfilmentPointSchema))
def list_fulfilment_points(args: dict[str, Any]) -> Page[FulfilmentPoint]:
    """Stations and centres, by kind and place"""
    return service.list_fulfilment_points(**args)


@blp.route("/fulfilment-points/<int:point_id>", methods=["GET"])
@blp.response(200, FulfilmentPointSchema)
@blp.alt_response(404, description="No such fulfilment point")
def get_fulfilment_point(point_id: int) -> FulfilmentPoint:
    """One station or centre"""
    return service.get_fulfilment_point(point_id)


@blp.route("/fulfilment-points/<int:point_id>", methods=["PATCH"])
@blp.authenticated
@blp.arguments(FulfilmentPointUpdateSchema)
@blp.response(200, FulfilmentPointSchema)
@blp.alt_response(404, description="No such fulfilment point")
def update_fulfilment_point(body: dict[str, Any], point_id: int) -> FulfilmentPoint:
    """Edit a station or centre (operators)"""
    return service.update_fulfilment_point(current_actor(), point_id, **body)


# Categories and brands


@blp.route("/categories", methods=["GET"])
@blp.arguments(PageArgsSchema, location="query")
@blp.response(200, page_schema(CategorySchema))
def list_categories(args: dict[str, Any]) -> Page[Category]:
    """Product categories, by code"""
    return service.list_categories(**args)


@blp.route("/categories", methods=["POST"])
@blp.authenticated
@blp.arguments(CategoryCreateSchema)
@blp.response(201, CategorySchema, location="/categories/{id}")
@blp.alt_response(409, description="The code is already used")
def create_category(body: dict[str, Any]) -> Category:
    """Add a category (operators)"""
    return service.create_category(current_actor(), **body)


@blp.route("/categories/<int:category_id>", methods=["PATCH"])
@blp.authenticated
@blp.arguments(CategoryUpdateSchema)
@blp.response(200, CategorySchema)
@blp.alt_response(404, description="No such category")
def update_category(body: dict[str, Any], category_id: int) -> Category:
    """Rename a category (operators)"""
    return service.update_category(current_actor(), category_id, **body)


@blp.route("/brands", methods=["GET"])
@blp.arguments(PageArgsSchema, location="query")
@blp.response(200, page_schema(BrandSchema))
def list_brands(args: dict[str, Any]) -> Page[Brand]:
    """Regional brands by code, with the counties allowed to use each"""
    return service.list_brands(**args)


@blp.route("/brands", methods=["POST"])
@blp.authenticated
@blp.arguments(BrandCreateSchema)
@blp.response(201, BrandSchema, location="/brands/{id}")
@blp.alt_response(409, description="The code is already used")
def create_brand(body: dict[str, Any]) -> Brand:
    """Add a regional brand (operators)"""
    return service.create_brand(current_actor(), **body)


@blp.route("/brands/<int:brand_id>", methods=["PATCH"])
@blp.authenticated
@blp.arguments(BrandUpdateSchema)
@blp.response(200, BrandSchema)
@blp.alt_response(404, description="No such brand")
def update_brand(body: dict[str, Any], brand_id: int) -> Brand:
    """Rename a brand or replace its counties (operators)"""
    return service.update_brand(current_actor(), brand_id, **body)


# Listings


@blp.route("/listings", methods=["POST"])
@blp.authenticated
@idempotent
@blp.arguments(ListingCreateSchema)
@blp.response(201, ListingSchema, location="/listings/{id}")
@blp.alt_response(404, description="No such farm of yours")
@blp.alt_response(409, description="The SKU is already used on this farm")
def create_listing(body: dict[str, Any]) -> Listing:
    """Add a draft listing to one of your farms (accepts Idempotency-Key)"""
    return service.create_listing(current_actor(), **body)


@blp.route("/listings", methods=["GET"])
@blp.etag
@blp.arguments(ListingQuerySchema, location="query")
@blp.response(200, page_schema(ListingSchema))
def list_listings(args: dict[str, Any]) -> Page[Listing]:
    """Browse and search listings; send If-None-Match to skip an unchanged page"""
    return service.list_listings(optional_actor(), **args)


@blp.route("/listings/stock", methods=["POST"])
@blp.authenticated
@idempotent
@blp.arguments(StockUpdateSchema)
@blp.response(200, StockResultSchema)
@blp.alt_response(409, description="A listing is archived; nothing was changed")
@blp.alt_response(412, description="The stock of an item is not its expected_stock_g; nothing was changed")
def set_stock(body: dict[str, Any]) -> dict[str, Any]:
    """Set the stock of many of your listings at once, all or nothing (accepts Idempotency-Key)

    An item may give expected_stock_g, the stock its client last read: if the listing's stock is not that any
    more, the request is a 412 naming the item, and nothing changes. If-Match is refused here: the request
    names many listings, each with its own version.
    """
    return {"items": service.set_stock(current_actor(), body["items"])}


@blp.route("/listings/<int:listing_id>", methods=["GET"])
@blp.etag
@blp.response(200, ListingSchema)
@blp.alt_response(404, description="No such listing, or not visible to you")
def get_listing(listing_id: int) -> Listing:
    """One listing; send If-None-Match to skip an unchanged one"""
    return service.get_listing(optional_actor(), listing_id)


@blp.route("/listings/<int:listing_id>", methods=["PATCH"])
@blp.conditional
@blp.authenticated
@blp.arguments(ListingUpdateSchema)
@blp.response(200, ListingSchema)
@blp.alt_response(404, description="No such listing of yours")
@blp.alt_response(409, description="Archived, or the SKU is already used on this farm")
def update_listing(body: dict[str, Any], listing_id: int) -> Listing:
    """Edit one of your listings (honours If-Match; stock_g here sets the stock)"""
    return service.update_listing(current_actor(), listing_id, if_match(ListingSchema()), **body)


@blp.route("/listings/<int:listing_id>/activate", methods=["POST"])
@blp.conditional
@blp.authenticated
@blp.response(200, ListingSchema)
@blp.alt_response(404, description="No such listing of yours")
@blp.alt_response(409, description="Already active, or archived")
def activate_listing(listing_id: int) -> Listing:
    """Put a draft or paused listing on sale (sold_out when it has no stock)"""
    return service.activate_listing(current_actor(), listing_id, if_match(ListingSchema()))


@blp.route("/listings/<int:listing_id>/pause", methods=["POST"])
@blp.conditional
@blp.authenticated
@blp.response(200, ListingSchema)
@blp.alt_response(404, description="No such listing of yours")
@blp.alt_response(409, description="Not on sale")
def pause_listing(listing_id: int) -> Listing:
    """Take a listing off sale for a while"""
    return service.pause_listing(current_actor(), listing_id, if_match(ListingSchema()))


@blp.route("/listings/<int:listing_id>/archive", methods=["POST"])
@blp.conditional
@blp.authenticated
@blp.response(200, ListingSchema)
@blp.alt_response(404, description="No such listing of yours")
@blp.alt_response(409, description="Already archived")
def archive_listing(listing_id: int) -> Listing:
    """Withdraw a listing for good (still readable by id)"""
    return service.archive_listing(current_actor(), listing_id, if_match(ListingSchema()))


@blp.route("/listings/<int:listing_id>/lots", methods=["POST"])
@blp.takes_if_match
@blp.authenticated
@idempotent
@blp.arguments(LotCreateSchema)
@blp.response(201, LotSchema, location="/listings/{listing_id}/lots/{id}")
@blp.alt_response(404, description="No such listing of yours")
@blp.alt_response(409, description="The lot code is already used on this farm, or the listing is archived")
def add_lot(body: dict[str, Any], listing_id: int) -> Lot:
    """Record a harvest lot; its grams are added to the listing's stock (honours If-Match, accepts Idempotency-Key)

    If-Match takes the listing's ETag, as its GET answers it: the lot changes the listing's stock."""
    return service.add_lot(current_actor(), listing_id, if_match(ListingSchema()), **body)


@blp.route("/listings/<int:listing_id>/lots/<int:lot_id>", methods=["GET"])
@blp.response(200, LotSchema)
@blp.alt_response(404, description="No such lot on this listing, or not visible to you")
def get_lot(listing_id: int, lot_id: int) -> Lot:
    """One harvest lot of a listing"""
    return service.get_lot(optional_actor(), listing_id, lot_id)


@blp.route("/listings/<int:listing_id>/lots", methods=["GET"])
@blp.arguments(PageArgsSchema, location="query")
@blp.response(200, page_schema(LotSchema))
@blp.alt_response(404, description="No such listing, or not visible to you")
def list_lots(args: dict[str, Any], listing_id: int) -> Page[Lot]:
    """A listing's harvest lots, newest first"""
    return service.list_lots(optional_actor(), listing_id, **args)
