from __future__ import annotations

from datetime import UTC
from typing import Any

import marshmallow as ma
from flask import current_app
from marshmallow import fields, validate

from market.api import DAYS, BigInteger, StrictSchema, free_text
from market.catalog.models import FarmStatus, FulfilmentPointKind, Listing, ListingStatus, PayoutMethod
from market.money import MAX_LINE_G, MAX_PRICE_PER_KG, MAX_STOCK_G
from market.pagination import PageArgsSchema

PLACE = validate.Length(min=1, max=80)
CODE = validate.Regexp(r"^[a-z0-9][a-z0-9_-]{0,39}$", error="Lowercase letters, digits, '-' and '_' (up to 40).")
SKU = validate.Regexp(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$", error="Letters, digits and . _ / - (up to 64).")
PHONE = validate.Regexp(r"^\+?[0-9][0-9 -]{5,30}$")
COUNTRY = validate.Regexp(r"^[A-Z]{2}$", error="An ISO 3166-1 alpha-2 code in capitals (CN is mainland China).")
PRICE = validate.Range(min=1, max=MAX_PRICE_PER_KG)


def grams(*, minimum: int, maximum: int = MAX_LINE_G, **kwargs: Any) -> BigInteger:
    return BigInteger(strict=True, validate=validate.Range(min=minimum, max=maximum), **kwargs)


# Farms


class FarmCreateSchema(StrictSchema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=120))
    village = fields.String(required=True, validate=PLACE)
    county = fields.String(required=True, validate=PLACE)
    province = fields.String(required=True, validate=PLACE)
    country = fields.String(
        load_default="CN",
        validate=COUNTRY,
        metadata={"description": "Where the farm is; CN (mainland China) unless given. Stripe cannot pay farms in CN."},
    )
    contact_name = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=120))
    contact_phone = fields.String(load_default=None, allow_none=True, validate=PHONE)
    description = free_text(load_default="", validate=validate.Length(max=5000))
    payout_method = fields.Enum(
        PayoutMethod,
        by_value=True,
        load_default=None,
        allow_none=True,
        metadata={"description": "How the farm prefers to be paid; its payout account, once made, takes it."},
    )


class FarmUpdateSchema(StrictSchema):
    name = fields.String(validate=validate.Length(min=1, max=120))
    village = fields.String(validate=PLACE)
    county = fields.String(validate=PLACE)
    province = fields.String(validate=PLACE)
    country = fields.String(validate=COUNTRY)
    contact_name = fields.String(allow_none=True, validate=validate.Length(max=120))
    contact_phone = fields.String(allow_none=True, validate=PHONE)
    description = free_text(validate=validate.Length(max=5000))
    payout_method = fields.Enum(
        PayoutMethod,
        by_value=True,
        allow_none=True,
        metadata={
            "description": "Before the farm has a payout account only: from then on the account's method, "
            "changed through the payout account (409 otherwise)."
        },
    )


class FarmSchema(ma.Schema):
    id = fields.Integer(required=True)
    owner_id = fields.Integer(required=True)
    name = fields.String(required=True)
    village = fields.String(required=True)
    county = fields.String(required=True)
    province = fields.String(required=True)
    country = fields.String(required=True)
    contact_name = fields.String(allow_none=True)
    contact_phone = fields.String(allow_none=True)
    description = fields.String(required=True)
    payout_method = fields.Enum(
        PayoutMethod,
        by_value=True,
        allow_none=True,
        metadata={
            "description": "Its payout account's method, by which payout runs pay it; before there is one, the "
            "method preferred."
        },
    )
    status = fields.Enum(FarmStatus, by_value=True, required=True)
    created_at = fields.DateTime(required=True)
    updated_at = fields.DateTime(required=True)


class FarmQuerySchema(PageArgsSchema):
    owner_id = fields.Integer(
        metadata={"description": "The farms of this account: a farmer's own with its id (GET /me)."}
    )
    county = fields.String(validate=PLACE)
    province = fields.String(validate=PLACE)
    status = fields.Enum(FarmStatus, by_value=True, metadata={"description": "Operators and owners see non-verified."})


# Fulfilment points


class FulfilmentPointCreateSchema(StrictSchema):
    kind = fields.Enum(FulfilmentPointKind, by_value=True, required=True)
    name = fields.String(required=True, validate=validate.Length(min=1, max=120))
    village = fields.String(load_default=None, allow_none=True, validate=PLACE)
    county = fields.String(required=True, validate=PLACE)
    province = fields.String(required=True, validate=PLACE)
    address = fields.String(required=True, validate=validate.Length(min=1, max=255))
    opening_hours = fields.String(load_default="", validate=validate.Length(max=255))
    parent_id = fields.Integer(
        strict=True, load_default=None, allow_none=True, metadata={"description": "The county centre of a station."}
    )


class FulfilmentPointUpdateSchema(StrictSchema):
    name = fields.String(validate=validate.Length(min=1, max=120))
    village = fields.String(allow_none=True, validate=PLACE)
    county = fields.String(validate=PLACE)
    province = fields.String(validate=PLACE)
    address = fields.String(validate=validate.Length(min=1, max=255))
    opening_hours = fields.String(validate=validate.Length(max=255))
    parent_id = fields.Integer(strict=True, allow_none=True)


class FulfilmentPointSchema(ma.Schema):
    id = fields.Integer(required=True)
    kind = fields.Enum(FulfilmentPointKind, by_value=True, required=True)
    name = fields.String(required=True)
    village = fields.String(allow_none=True)
    county = fields.String(required=True)
    province = fields.String(required=True)
    address = fields.String(required=True)
    opening_hours = fields.String(required=True)
    parent_id = fields.Integer(allow_none=True)


class FulfilmentPointQuerySchema(PageArgsSchema):
    kind = fields.Enum(FulfilmentPointKind, by_value=True)
    county = fields.String(validate=PLACE)
    province = fields.String(validate=PLACE)
    parent_id = fields.Integer()


# Vocabularies


class CategoryCreateSchema(StrictSchema):
    code = fields.String(required=True, validate=CODE)
    name_zh = fields.String(required=True, validate=validate.Length(min=1, max=80))
    name_en = fields.String(required=True, validate=validate.Length(min=1, max=80))


class CategoryUpdateSchema(StrictSchema):
    name_zh = fields.String(validate=validate.Length(min=1, max=80))
    name_en = fields.String(validate=validate.Length(min=1, max=80))


class CategorySchema(ma.Schema):
    id = fields.Integer(required=True)
    code = fields.String(required=True)
    name_zh = fields.String(required=True)
    name_en = fields.String(required=True)


class BrandCreateSchema(CategoryCreateSchema):
    counties = fields.List(fields.String(validate=PLACE), required=True, validate=validate.Length(min=1, max=100))


class BrandUpdateSchema(CategoryUpdateSchema):
    counties = fields.List(fields.String(validate=PLACE), validate=validate.Length(min=1, max=100))


class BrandSchema(CategorySchema):
    counties = fields.List(fields.String(), required=True, metadata={"description": "Counties allowed to use it."})


# Listings and lots


class ListingCreateSchema(StrictSchema):
    farm_id = fields.Integer(strict=True, required=True)
    sku = fields.String(load_default=None, allow_none=True, validate=SKU)
    product_name = fields.String(required=True, validate=validate.Length(min=1, max=120))
    name_en = fields.String(
        load_default="", validate=validate.Length(max=120), metadata={"description": "The product name in English."}
    )
    category = fields.String(required=True, metadata={"description": "A category code."})
    variety = fields.String(load_default="", validate=validate.Length(max=80))
    grade = fields.String(load_default="", validate=validate.Length(max=40))
    origin_county = fields.String(
        load_default=None, allow_none=True, validate=PLACE, metadata={"description": "The farm's county if omitted."}
    )
    brand = fields.String(load_default=None, allow_none=True, metadata={"description": "A regional brand code."})
    price_per_kg = BigInteger(
        strict=True, required=True, validate=PRICE, metadata={"description": "Minor units per kg."}
    )
    stock_g = grams(minimum=0, maximum=MAX_STOCK_G, load_default=0)
    low_stock_threshold_g = grams(
        minimum=1,
        maximum=MAX_STOCK_G,
        load_default=None,
        allow_none=True,
        metadata={"description": "Tell the farmer below this."},
    )
    min_order_g = grams(minimum=1, required=True)
    step_g = grams(minimum=1, required=True, metadata={"description": "min_order_g must be a multiple of it."})
    description = free_text(load_default="", validate=validate.Length(max=5000))
    photo_urls = fields.List(
        fields.Url(schemes={"http", "https"}, validate=validate.Length(max=500)),
        load_default=list,
        validate=validate.Length(max=12),
    )


class ListingUpdateSchema(StrictSchema):
    sku = fields.String(allow_none=True, validate=SKU)
    product_name = fields.String(validate=validate.Length(min=1, max=120))
    name_en = fields.String(validate=validate.Length(max=120))
    category = fields.String()
    variety = fields.String(validate=validate.Length(max=80))
    grade = fields.String(validate=validate.Length(max=40))
    origin_county = fields.String(validate=PLACE)
    brand = fields.String(allow_none=True)
    price_per_kg = BigInteger(strict=True, validate=PRICE)
    stock_g = grams(minimum=0, maximum=MAX_STOCK_G)
    low_stock_threshold_g = grams(minimum=1, maximum=MAX_STOCK_G, allow_none=True)
    min_order_g = grams(minimum=1)
    step_g = grams(minimum=1)
    description = free_text(validate=validate.Length(max=5000))
    photo_urls = fields.List(
        fields.Url(schemes={"http", "https"}, validate=validate.Length(max=500)), validate=validate.Length(max=12)
    )


class LotCreateSchema(StrictSchema):
    code = fields.String(required=True, validate=SKU)
    harvest_date = fields.Date(
        required=True,
        validate=DAYS,
        metadata={"description": "The day it was harvested (MARKET_TIMEZONE); not after today."},
    )
    plot = fields.String(load_default="", validate=validate.Length(max=120))
    grade = fields.String(load_default="", validate=validate.Length(max=40))
    grams = grams(minimum=1, required=True)


class LotSchema(ma.Schema):
    id = fields.Integer(required=True)
    listing_id = fields.Integer(required=True)
    code = fields.String(required=True)
    harvest_date = fields.Date(required=True)
    plot = fields.String(required=True)
    grade = fields.String(required=True)
    grams = fields.Integer(required=True)
    created_at = fields.DateTime(required=True)


class ListingFarmSchema(ma.Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    village = fields.String(required=True)
    county = fields.String(required=True)
    province = fields.String(required=True)


class ListingSchema(ma.Schema):
    id = fields.Integer(required=True)
    farm = fields.Nested(ListingFarmSchema, required=True)
    sku = fields.String(allow_none=True)
    product_name = fields.String(required=True)
    name_en = fields.String(required=True, metadata={"description": "The product name in English; empty if none."})
    category = fields.Pluck(CategorySchema, "code", required=True)
    variety = fields.String(required=True)
    grade = fields.String(required=True)
    origin_county = fields.String(required=True)
    brand = fields.Pluck(BrandSchema, "code", allow_none=True)
    price_per_kg = fields.Integer(required=True, metadata={"description": "Minor units of currency per kg."})
    currency = fields.Method("dump_currency", required=True, metadata={"type": "string"})
    stock_g = fields.Integer(required=True)
    low_stock_threshold_g = fields.Integer(allow_none=True)
    min_order_g = fields.Integer(required=True)
    step_g = fields.Integer(required=True)
    description = fields.String(required=True)
    photo_urls = fields.List(fields.String(), required=True)
    harvest_date = fields.Date(allow_none=True, metadata={"description": "The current lot's harvest date."})
    current_lot = fields.Nested(LotSchema, allow_none=True)
    status = fields.Enum(ListingStatus, by_value=True, required=True)
    purchasable = fields.Boolean(required=True)
    created_at = fields.DateTime(required=True)
    updated_at = fields.DateTime(required=True)

    def dump_currency(self, listing: Listing) -> str:
        currency: str = current_app.config["MARKET_CURRENCY"]
        return currency


class ListingQuerySchema(PageArgsSchema):
    q = fields.String(
        validate=validate.Length(min=1, max=80),
        metadata={
            "description": "Words to find, each as the start of a word of the product name (Chinese or English), "
            "variety, SKU, category, brand, farm, village, county or province; pinyin too. Every word must be found."
        },
    )
    category = fields.String(
        validate=validate.Length(min=1, max=80), metadata={"description": "A category's code or name."}
    )
    county = fields.String(validate=PLACE, metadata={"description": "Origin county."})
    province = fields.String(validate=PLACE, metadata={"description": "The farm's province."})
    brand = fields.String(validate=validate.Length(min=1, max=80), metadata={"description": "A brand's code or name."})
    farm_id = fields.Integer()
    sku = fields.String(
        validate=validate.Length(min=1, max=64),
        metadata={
            "description": "The listings with exactly this SKU (one per farm: with farm_id, the one listing a "
            "sales channel or stock sync knows by it)."
        },
    )
    status = fields.Enum(ListingStatus, by_value=True, metadata={"description": "Among the listings you may see."})
    price_min = fields.Integer(validate=validate.Range(min=0))
    price_max = fields.Integer(validate=validate.Range(min=0))
    in_stock = fields.Boolean()
    harvested_after = fields.Date()
    updated_since = fields.AwareDateTime(
        default_timezone=UTC, metadata={"description": "updated_at at or after (UTC if no zone is given)."}
    )
    sort = fields.String(
        validate=validate.OneOf(["relevance", "newest", "price", "-price", "harvest_date"]),
        metadata={
            "description": "Best match first (with q; its default), newest first (the default without q), "
            "price up or down, or freshest harvest first."
        },
    )


class StockItemSchema(StrictSchema):
    listing_id = fields.Integer(strict=True)
    sku = fields.String(validate=validate.Length(min=1, max=64))
    farm_id = fields.Integer(
        strict=True,
        metadata={"description": "The farm of `sku`; may be left out by a farmer with one farm."},
    )
    stock_g = grams(minimum=0, maximum=MAX_STOCK_G, required=True)
    expected_stock_g = grams(
        minimum=0,
        maximum=MAX_STOCK_G,
        metadata={
            "description": "The stock you last read; if the listing's stock is not that now (a sale, another "
            "client), the whole request is a 412 and nothing changes."
        },
    )

    @ma.validates_schema
    def one_address(self, data: dict[str, Any], **kwargs: Any) -> None:
        if "listing_id" in data:
            if "sku" in data or "farm_id" in data:
                raise ma.ValidationError("Give listing_id, or sku (with farm_id), not both.", "listing_id")
        elif "sku" not in data:
            field = "sku" if "farm_id" in data else "listing_id"
            raise ma.ValidationError("Give listing_id, or sku (with farm_id unless you have one farm).", field)


class StockUpdateSchema(StrictSchema):
    items = fields.List(fields.Nested(StockItemSchema), required=True, validate=validate.Length(min=1, max=500))


class StockResultSchema(ma.Schema):
    items = fields.List(fields.Nested(ListingSchema), required=True)
