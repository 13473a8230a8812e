from __future__ import annotations

from datetime import UTC, datetime

import marshmallow as ma
from marshmallow import fields, validate

from market.api import BigInteger, StrictSchema
from market.money import MAX_BUDGET, MAX_RATE_PER_KG
from market.pagination import PageArgsSchema
from market.premiums.models import FundedBy

RATE = validate.Range(min=1, max=MAX_RATE_PER_KG)
BUDGET = validate.Range(min=1, max=MAX_BUDGET)
# Programmes run in this era; anything outside is a typo, and dates far out
# cannot be compared across time zones without overflowing.
WINDOW = validate.Range(
    min=datetime(2000, 1, 1, tzinfo=UTC), max=datetime(2100, 1, 1, tzinfo=UTC), error="Between 2000 and 2100."
)


class ProgrammeCreateSchema(StrictSchema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=120))
    sponsor = fields.String(required=True, validate=validate.Length(min=1, max=120))
    funded_by = fields.Enum(FundedBy, by_value=True, required=True)
    rate_per_kg = BigInteger(strict=True, required=True, validate=RATE, metadata={"description": "Minor units per kg."})
    category_id = fields.Integer(strict=True, load_default=None)
    product_name = fields.String(load_default=None, validate=validate.Length(min=1, max=120))
    variety = fields.String(load_default=None, validate=validate.Length(min=1, max=80))
    brand_id = fields.Integer(strict=True, load_default=None)
    origin_county = fields.String(load_default=None, validate=validate.Length(min=1, max=80))
    origin_province = fields.String(load_default=None, validate=validate.Length(min=1, max=80))
    buyer_id = fields.Integer(strict=True, load_default=None)
    valid_from = fields.AwareDateTime(required=True, validate=WINDOW)
    valid_until = fields.AwareDateTime(load_default=None, validate=WINDOW)
    budget_cap = BigInteger(strict=True, load_default=None, validate=BUDGET)
    farm_cap = BigInteger(strict=True, load_default=None, validate=BUDGET)


class ProgrammeSchema(ma.Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    sponsor = fields.String(required=True)
    funded_by = fields.Enum(FundedBy, by_value=True, required=True)
    rate_per_kg = fields.Integer(required=True)
    category_id = fields.Integer(allow_none=True)
    product_name = fields.String(allow_none=True)
    variety = fields.String(allow_none=True)
    brand_id = fields.Integer(allow_none=True)
    origin_county = fields.String(allow_none=True)
    origin_province = fields.String(allow_none=True)
    buyer_id = fields.Integer(allow_none=True)
    valid_from = fields.DateTime(required=True)
    valid_until = fields.DateTime(allow_none=True)
    budget_cap = fields.Integer(allow_none=True)
    farm_cap = fields.Integer(allow_none=True)
    budget_used = fields.Integer(required=True)
    budget_left = fields.Integer(allow_none=True)
    exhausted = fields.Boolean(required=True, metadata={"description": "The budget is spent: it applies no more."})


class ProgrammeQuerySchema(PageArgsSchema):
    active = fields.Boolean(metadata={"description": "Only programmes running now (or only those that are not)."})


class ApplicablePremiumSchema(ma.Schema):
    programme_id = fields.Integer(attribute="id", required=True)
    name = fields.String(required=True)
    sponsor = fields.String(required=True)
    funded_by = fields.Enum(FundedBy, by_value=True, required=True)
    rate_per_kg = fields.Integer(required=True)
    budget_left = fields.Integer(allow_none=True)
