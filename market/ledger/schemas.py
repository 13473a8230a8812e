from __future__ import annotations

import marshmallow as ma
from marshmallow import fields, validate

from market.ledger.models import AccountKind
from market.pagination import PageArgsSchema


class BalanceSchema(ma.Schema):
    account = fields.String(required=True)
    kind = fields.Enum(AccountKind, by_value=True, required=True)
    currency = fields.String(required=True, metadata={"description": "The one currency the account holds."})
    balance = fields.Integer(required=True, metadata={"description": "Debits positive, credits negative."})


class EntryQuerySchema(PageArgsSchema):
    account = fields.String(validate=validate.Length(min=1, max=80), metadata={"description": "An account code."})
    order_id = fields.Integer()


class EntrySchema(ma.Schema):
    id = fields.Integer(required=True)
    transaction_id = fields.Integer(required=True)
    kind = fields.String(required=True, attribute="transaction.kind")
    reference = fields.String(required=True, attribute="transaction.reference")
    order_id = fields.Integer(allow_none=True, required=True, attribute="transaction.order_id")
    account = fields.String(required=True, attribute="account.code")
    currency = fields.String(required=True, attribute="account.currency")
    amount = fields.Integer(required=True, metadata={"description": "Debits positive, credits negative."})
    created_at = fields.DateTime(required=True, attribute="transaction.created_at")
