from __future__ import annotations

from marshmallow import fields, validate

from market.accounts.schemas import Phone
from market.api import BigInteger, StrictSchema, free_text
from market.money import MAX_ORDER_LINES
from market.orders.schemas import LineRequestSchema


class VillagerOrderCreateSchema(StrictSchema):
    phone = Phone(required=True, metadata={"description": "The villager's mobile number: the code is texted to it."})
    name = free_text(
        load_default="",
        validate=validate.Length(max=120),
        metadata={"description": "The villager's name, for an account opened now (their number if blank)."},
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
