from __future__ import annotations

from datetime import UTC

import marshmallow as ma
from marshmallow import fields, validate

from market.api import StrictSchema, free_text
from market.pagination import PageArgsSchema
from market.reconciliation.models import Outcome, RunStatus, rate_text


class RunRequestSchema(StrictSchema):
    period_start = fields.AwareDateTime(
        required=True, default_timezone=UTC, metadata={"description": "Inclusive; UTC unless an offset is given."}
    )
    period_end = fields.AwareDateTime(
        required=True,
        default_timezone=UTC,
        metadata={"description": "Exclusive; after period_start, not in the future."},
    )


class CountsSchema(ma.Schema):
    matched = fields.Integer(required=True)
    missing_at_gateway = fields.Integer(required=True)
    missing_in_ledger = fields.Integer(required=True)
    amount_differs = fields.Integer(required=True)
    currency_differs = fields.Integer(
        required=True, metadata={"description": "Records in a currency the ledger's cannot be compared with."}
    )
    fee = fields.Integer(required=True, metadata={"description": "Gateway fees not booked in the ledger."})
    unresolved = fields.Integer(required=True, metadata={"description": "Items other than matched, not resolved."})


class RunSchema(ma.Schema):
    id = fields.Integer(required=True)
    period_start = fields.DateTime(required=True)
    period_end = fields.DateTime(required=True)
    status = fields.Enum(RunStatus, by_value=True, required=True)
    gateway_records = fields.Integer(required=True, metadata={"description": "Balance transactions in the period."})
    fees_total = fields.Integer(
        required=True, metadata={"description": "The gateway's fees in the period, in settlement_currency."}
    )
    settlement_currency = fields.String(
        required=True, metadata={"description": "The currency Stripe settles in (STRIPE_SETTLEMENT_CURRENCY)."}
    )
    error = fields.String(allow_none=True)
    created_at = fields.DateTime(required=True)
    finished_at = fields.DateTime(allow_none=True)
    counts = fields.Nested(CountsSchema, required=True)


class RunQuerySchema(PageArgsSchema):
    pass


class ItemQuerySchema(PageArgsSchema):
    outcome = fields.Enum(Outcome, by_value=True)
    resolved = fields.Boolean()


class ItemCsvQuerySchema(StrictSchema):
    outcome = fields.Enum(Outcome, by_value=True)
    resolved = fields.Boolean()


class ItemSchema(ma.Schema):
    id = fields.Integer(required=True)
    run_id = fields.Integer(required=True)
    provider = fields.String(required=True, metadata={"description": "stripe or offline"})
    object_type = fields.String(
        required=True,
        metadata={
            "description": "charge, refund, transfer, transfer_reversal, fee, offline_receipt, bank_payout "
            "(to a farm), seller_payout (to a station or host) or station_deposit"
        },
    )
    object_id = fields.String(allow_none=True, required=True)
    balance_transaction_id = fields.String(allow_none=True, required=True)
    ledger_reference = fields.String(allow_none=True, required=True)
    order_id = fields.Integer(allow_none=True, required=True)
    gateway_amount = fields.Integer(
        allow_none=True,
        required=True,
        metadata={"description": "Signed as cash sees it; offline, the confirmed record's amount."},
    )
    gateway_currency = fields.String(allow_none=True, required=True, metadata={"description": "Of gateway_amount."})
    ledger_amount = fields.Integer(allow_none=True, required=True)
    ledger_currency = fields.String(allow_none=True, required=True, metadata={"description": "Of ledger_amount."})
    settlement_amount = fields.Integer(
        allow_none=True,
        required=True,
        metadata={"description": "What the provider's balance moved, in settlement_currency (Stripe only)."},
    )
    settlement_currency = fields.String(allow_none=True, required=True)
    exchange_rate = fields.Function(
        lambda item: rate_text(item.exchange_rate),
        allow_none=True,
        required=True,
        metadata={
            "type": "string",
            "description": "Settlement units per presentment unit, as a decimal; null when nothing was converted.",
        },
    )
    fee = fields.Integer(required=True, metadata={"description": "In settlement_currency."})
    reason = fields.String(allow_none=True, required=True, metadata={"description": "Why the sides do not compare."})
    occurred_at = fields.DateTime(allow_none=True, required=True)
    outcome = fields.Enum(Outcome, by_value=True, required=True)
    resolved_at = fields.DateTime(allow_none=True, required=True)
    resolved_by = fields.Integer(allow_none=True, required=True)
    resolution_note = fields.String(allow_none=True, required=True)
    fee_booked = fields.String(allow_none=True, required=True)


class ResolveSchema(StrictSchema):
    note = free_text(required=True, validate=validate.Length(min=1, max=2000))
    book_fee = fields.Boolean(
        load_default=False, metadata={"description": "Book a fee item as a gateway_fees expense."}
    )
