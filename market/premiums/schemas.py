from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import marshmallow as ma
from marshmallow import fields, validate

from market.api import DAYS, BigInteger, StrictSchema, free_text
from market.money import MAX_BUDGET, MAX_RATE_PER_KG
from market.pagination import PageArgsSchema
from market.premiums.models import FundedBy

RATE = validate.Range(min=1, max=MAX_RATE_PER_KG)
# A deposit at most a whole budget: the sum of a programme's deposits stays far inside a bigint.
DEPOSIT = validate.Range(min=1, max=MAX_BUDGET)
BUDGET = validate.Range(min=1, max=MAX_BUDGET)
# Programmes run in this era; anything outside is a typo, and dates far out
# cannot be compared across time zones without overflowing.
WINDOW = validate.Range(
    min=datetime(2000, 1, 1, tzinfo=UTC), max=datetime(2100, 1, 1, tzinfo=UTC), error="Between 2000 and 2100."
)


def _host_commission_bp(note: str = "", **options: Any) -> fields.Integer:
    description = (
        "What a livestream host earns, in basis points, of the produce of this programme's lines sold with their "
        "code, instead of the host's own rate; at most the platform's COMMISSION_BP (docs/commissions.md)."
    )
    return fields.Integer(
        strict=True, validate=validate.Range(min=0, max=10_000), metadata={"description": description + note}, **options
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
    host_commission_bp = _host_commission_bp(load_default=None)


class ProgrammeUpdateSchema(StrictSchema):
    host_commission_bp = _host_commission_bp(required=True, allow_none=True, note=" null: hosts earn their own rate.")


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
    host_commission_bp = fields.Integer(allow_none=True)
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


class DepositCreateSchema(StrictSchema):
    amount = BigInteger(
        strict=True, required=True, validate=DEPOSIT, metadata={"description": "Minor units (fen) received."}
    )
    bank_reference = fields.String(
        required=True,
        validate=validate.Length(min=1, max=255),
        metadata={"description": "The bank's reference for the transfer; recorded once per programme."},
    )
    received_on = fields.Date(
        required=True,
        validate=DAYS,
        metadata={"description": "The business day (MARKET_TIMEZONE) the bank received it; not after today."},
    )
    note = free_text(load_default=None, validate=validate.Length(max=500))


class DepositSchema(ma.Schema):
    id = fields.Integer(required=True)
    programme_id = fields.Integer(required=True)
    amount = fields.Integer(required=True, metadata={"description": "Minor units."})
    bank_reference = fields.String(required=True)
    received_on = fields.Date(required=True)
    note = fields.String(allow_none=True)
    recorded_by = fields.Integer(required=True, metadata={"description": "The operator who recorded it."})
    created_at = fields.DateTime(required=True)


class StatementQuerySchema(StrictSchema):
    start = fields.Date(
        data_key="from",
        load_default=None,
        validate=DAYS,
        metadata={"description": "First business day (MARKET_TIMEZONE); from the programme's start if not given."},
    )
    end = fields.Date(
        data_key="to",
        load_default=None,
        validate=DAYS,
        metadata={"description": "Last business day (MARKET_TIMEZONE); up to now if not given."},
    )
    format = fields.String(
        load_default="json", validate=validate.OneOf(["json", "csv"]), metadata={"description": "csv: a download."}
    )


class StatementFiguresSchema(ma.Schema):
    earned = fields.Integer(required=True, metadata={"description": "Sponsor premiums the farms earned."})
    reversed = fields.Integer(required=True, metadata={"description": "Premiums refunds took back from the farms."})
    deposited = fields.Integer(required=True, metadata={"description": "What the sponsor paid in."})
    owed = fields.Integer(
        required=True, metadata={"description": "earned - reversed - deposited; negative: the sponsor's credit."}
    )


class StatementRowSchema(StatementFiguresSchema):
    day = fields.Date(required=True, metadata={"description": "Business day: earned or reversed, or received."})
    movement = fields.String(required=True, validate=validate.OneOf(["premium_earned", "premium_reversed", "deposit"]))
    order_id = fields.Integer(allow_none=True)
    refund_id = fields.Integer(allow_none=True)
    deposit_id = fields.Integer(allow_none=True)
    bank_reference = fields.String(allow_none=True)
    balance = fields.Integer(required=True, metadata={"description": "What the sponsor owes after this movement."})


class ProgrammeStatementSchema(ma.Schema):
    programme_id = fields.Integer(required=True)
    programme = fields.String(required=True)
    sponsor = fields.String(required=True)
    currency = fields.String(required=True)
    period_from = fields.Date(allow_none=True, required=True)
    period_to = fields.Date(allow_none=True, required=True)
    opening_owed = fields.Integer(required=True, metadata={"description": "Owed before the period."})
    rows = fields.List(fields.Nested(StatementRowSchema), required=True, metadata={"description": "Oldest first."})
    totals = fields.Nested(StatementFiguresSchema, required=True, metadata={"description": "The period's."})
    closing_owed = fields.Integer(
        required=True, metadata={"description": "Owed after the period: opening_owed + totals.owed."}
    )
