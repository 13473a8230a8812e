from __future__ import annotations

import marshmallow as ma
from marshmallow import fields, validate

from market.accounts.schemas import Phone, RegisterSchema
from market.api import DAYS, BigInteger, StrictSchema, free_text
from market.money import MAX_ORDER_LINES
from market.orders.schemas import LineRequestSchema
from market.pagination import PageArgsSchema
from market.stations.models import CashUpStatus


class VillagerOrderCreateSchema(StrictSchema):
    phone = Phone(required=True, metadata={"description": "The villager's mobile number: the code is texted to it."})
    name = free_text(
        load_default="",
        validate=validate.Length(max=120),
        metadata={
            "description": "The villager's name, for an account opened now (if blank, their number with all but "
            "its last four digits hidden)."
        },
    )
    lines = fields.List(
        fields.Nested(LineRequestSchema), required=True, validate=validate.Length(min=1, max=MAX_ORDER_LINES)
    )
    notes = free_text(load_default="", validate=validate.Length(max=1000))


class VillagerCodeSchema(StrictSchema):
    code = fields.String(
        required=True, validate=validate.Length(min=1, max=12), metadata={"description": "The code texted to them."}
    )


class CashCollectionSchema(StrictSchema):
    code = fields.String(
        required=True, validate=validate.Length(min=1, max=12), metadata={"description": "The villager's pickup code."}
    )
    amount = BigInteger(
        strict=True,
        required=True,
        validate=validate.Range(min=0),
        metadata={"description": "The cash taken, in minor units: exactly the order's weighed total."},
    )


# Cash counted or deposited, in minor units: far above a station's takings, far inside BIGINT.
MAX_CASH = 10**15


class CashUpPreviewQuerySchema(StrictSchema):
    day = fields.Date(
        load_default=None,
        validate=DAYS,
        metadata={"description": "The business day (MARKET_TIMEZONE); today by default, never after it."},
    )


class CashOrderSchema(ma.Schema):
    order_id = fields.Integer(required=True)
    amount = fields.Integer(required=True, metadata={"description": "The cash taken, in minor units."})
    collected_at = fields.DateTime(required=True)
    collected_by = fields.Integer(required=True, metadata={"description": "The staff who took the cash."})


class CashUpPreviewSchema(ma.Schema):
    fulfilment_point_id = fields.Integer(required=True)
    business_day = fields.Date(required=True)
    currency = fields.String(required=True)
    orders = fields.List(
        fields.Nested(CashOrderSchema),
        required=True,
        metadata={
            "description": "Cash orders collected up to the end of the day and in no earlier cash-up; once the day "
            "is cashed up, those its cash-up counted (cash taken after it is the next cash-up's)."
        },
    )
    expected = fields.Integer(required=True, metadata={"description": "Their total, in minor units."})
    cash_up_id = fields.Integer(
        required=True, allow_none=True, metadata={"description": "The day's cash-up, once submitted."}
    )


class CashUpCreateSchema(StrictSchema):
    business_day = fields.Date(
        load_default=None, validate=DAYS, metadata={"description": "The business day counted; today by default."}
    )
    expected = BigInteger(
        strict=True,
        required=True,
        validate=validate.Range(min=0),
        metadata={"description": "The expected total the preview showed, in minor units."},
    )
    counted = BigInteger(
        strict=True,
        required=True,
        validate=validate.Range(min=0, max=MAX_CASH),
        metadata={"description": "The cash counted, in minor units."},
    )
    note = free_text(load_default=None, validate=validate.Length(max=1000))


class DepositConfirmSchema(StrictSchema):
    bank_reference = fields.String(
        required=True,
        validate=validate.Length(min=1, max=255),
        metadata={"description": "The bank's reference for the deposit; one deposit per reference."},
    )
    amount = BigInteger(
        strict=True,
        required=True,
        validate=validate.Range(min=1, max=MAX_CASH),
        metadata={"description": "What the bank received, in minor units."},
    )
    note = free_text(load_default=None, validate=validate.Length(max=1000))


class CashUpSchema(ma.Schema):
    id = fields.Integer(required=True)
    fulfilment_point_id = fields.Integer(required=True)
    business_day = fields.Date(required=True)
    status = fields.Enum(
        CashUpStatus,
        by_value=True,
        required=True,
        metadata={"description": "submitted, short or over (a counted difference), then deposited."},
    )
    flagged = fields.Boolean(
        required=True, metadata={"description": "The count, or the bank, found other than was expected."}
    )
    expected = fields.Integer(required=True, metadata={"description": "The cash its orders took, in minor units."})
    counted = fields.Integer(required=True)
    difference = fields.Integer(required=True, metadata={"description": "counted - expected: negative is short."})
    note = fields.String(required=True, allow_none=True)
    submitted_by = fields.Integer(required=True)
    created_at = fields.DateTime(required=True)
    bank_reference = fields.String(required=True, allow_none=True)
    deposited = fields.Integer(required=True, allow_none=True, metadata={"description": "What the bank received."})
    deposit_difference = fields.Integer(
        required=True, allow_none=True, metadata={"description": "deposited - counted."}
    )
    deposit_note = fields.String(required=True, allow_none=True)
    confirmed_by = fields.Integer(required=True, allow_none=True)
    confirmed_at = fields.DateTime(required=True, allow_none=True)
    orders = fields.List(fields.Nested(CashOrderSchema), required=True)


class CashUpCsvQuerySchema(StrictSchema):
    fulfilment_point_id = fields.Integer()
    status = fields.Enum(CashUpStatus, by_value=True)
    start = fields.Date(data_key="from", validate=DAYS, metadata={"description": "First business day."})
    end = fields.Date(data_key="to", validate=DAYS, metadata={"description": "Last business day."})
    flagged = fields.Boolean(metadata={"description": "true: only those a difference flagged; false: only others."})
    deposited = fields.Boolean(
        metadata={
            "description": "true: only those whose deposit is confirmed; false: only those waiting for it (one "
            "that counted no cash waits for none)."
        }
    )


class CashUpQuerySchema(PageArgsSchema, CashUpCsvQuerySchema):
    pass


class ClaimRequestSchema(StrictSchema):
    phone = Phone(required=True, metadata={"description": "The mobile number the station opened the account for."})


class ClaimAcceptedSchema(ma.Schema):
    phone = fields.String(required=True)
    detail = fields.String(required=True)


class ClaimSchema(StrictSchema):
    phone = Phone(required=True)
    code = fields.String(
        required=True, validate=validate.Length(min=1, max=12), metadata={"description": "The code texted to it."}
    )
    email = RegisterSchema().fields["email"]
    password = RegisterSchema().fields["password"]
    name = fields.String(
        load_default=None,
        validate=validate.Length(min=1, max=120),
        metadata={"description": "The account's name from now on; the one the station gave it if not given."},
    )
