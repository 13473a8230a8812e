from __future__ import annotations

import marshmallow as ma
from marshmallow import fields, validate

from market.api import DAYS, StrictSchema, free_text
from market.catalog.models import PayoutMethod
from market.pagination import PageArgsSchema
from market.payouts.models import PayoutStatus, ReversalStatus, SkipReason


class BankDetailsSchema(StrictSchema):
    """Bank details for an offline transfer: a farm's, a seller's."""

    account_holder = fields.String(validate=validate.Length(min=1, max=120))
    bank_name = fields.String(validate=validate.Length(min=1, max=120))
    account_number = fields.String(
        validate=validate.Regexp(r"^[0-9][0-9 ]{4,40}[0-9]$", error="6 to 34 digits (spaces allowed)."),
        metadata={"description": "Stored for the bank file; shown masked everywhere else."},
    )

    @ma.validates_schema
    def _length(self, data: dict[str, object], **kwargs: object) -> None:
        number = data.get("account_number")
        if isinstance(number, str) and not 6 <= len(number.replace(" ", "")) <= 34:
            raise ma.ValidationError("6 to 34 digits (spaces allowed).", "account_number")


class PayoutAccountRequestSchema(BankDetailsSchema):
    method = fields.Enum(
        PayoutMethod,
        by_value=True,
        load_default=None,
        metadata={
            "description": "Unless given: stripe where Stripe can pay the farm, else bank_transfer (always for "
            "farms in mainland China, which Stripe cannot onboard)."
        },
    )


class PayoutAccountSchema(ma.Schema):
    farm_id = fields.Integer(required=True)
    method = fields.Enum(PayoutMethod, by_value=True, required=True)
    status = fields.String(
        required=True, metadata={"description": "connecting, onboarding, enabled (Stripe); ready, incomplete (bank)"}
    )
    stripe_account_id = fields.String(allow_none=True)
    payouts_enabled = fields.Boolean(required=True)
    transfers_active = fields.Boolean(
        required=True, metadata={"description": "Stripe accepts transfers to the account: payouts can be sent."}
    )
    onboarding_url = fields.String(
        allow_none=True, metadata={"description": "Where the farmer finishes the Stripe account; null until made."}
    )
    onboarding_expires_at = fields.DateTime(allow_none=True)
    bank_account_holder = fields.String(allow_none=True)
    bank_name = fields.String(allow_none=True)
    bank_account_masked = fields.String(allow_none=True)
    attention = fields.String(
        allow_none=True,
        metadata={
            "description": "What stops Stripe paying the farm (Stripe payouts only); cleared when the farm moves to "
            "bank_transfer."
        },
    )


class PayoutRunRequestSchema(StrictSchema):
    period_end = fields.Date(
        required=True,
        validate=DAYS,
        metadata={"description": "The last business day of the period (MARKET_TIMEZONE); not before 2000-01-01."},
    )


class SkippedFarmSchema(ma.Schema):
    farm_id = fields.Integer(required=True)
    reason = fields.Enum(
        SkipReason,
        by_value=True,
        required=True,
        metadata={
            "description": "no_payout_account; stripe_transfers_inactive (the Stripe account's transfers capability "
            "is not active); bank_details_missing; negative_net (take-backs exceed what is due, netted later); "
            "nothing_to_pay (what is due and taken back cancel out)."
        },
    )
    detail = fields.String(required=True, metadata={"description": "The reason, in words."})
    amount = fields.Integer(required=True, metadata={"description": "The net of the entries left unpaid."})
    entries_count = fields.Integer(required=True)


class PayoutRunSchema(ma.Schema):
    id = fields.Integer(required=True)
    period_end = fields.Date(required=True)
    cutoff = fields.DateTime(required=True, metadata={"description": "Orders settled before this are paid."})
    currency = fields.String(required=True)
    payouts_count = fields.Integer(required=True)
    total = fields.Integer(required=True)
    reversals_count = fields.Integer(required=True)
    skipped = fields.List(
        fields.Nested(SkippedFarmSchema),
        required=True,
        metadata={"description": "Farms with due entries this run did not pay, and why; paid by a later run."},
    )
    created_at = fields.DateTime(required=True)


class RunQuerySchema(PageArgsSchema):
    pass


class PayoutQuerySchema(PageArgsSchema):
    farm_id = fields.Integer()
    run_id = fields.Integer()
    status = fields.Enum(PayoutStatus, by_value=True)


class PayoutSchema(ma.Schema):
    id = fields.Integer(required=True)
    run_id = fields.Integer(required=True)
    farm_id = fields.Integer(required=True)
    method = fields.Enum(PayoutMethod, by_value=True, required=True)
    status = fields.Enum(PayoutStatus, by_value=True, required=True)
    currency = fields.String(required=True)
    orders_count = fields.Integer(required=True)
    lines_count = fields.Integer(required=True)
    grams = fields.Integer(required=True)
    sales = fields.Integer(required=True)
    commission = fields.Integer(required=True)
    premiums = fields.Integer(required=True)
    refunds = fields.Integer(required=True, metadata={"description": "Refunds of lines this payout pays."})
    adjustments = fields.Integer(
        required=True, metadata={"description": "Refunds of lines an earlier payout paid, netted here."}
    )
    amount = fields.Integer(required=True, metadata={"description": "Net: what the farm is paid."})
    stripe_transfer_id = fields.String(allow_none=True)
    bank_account_holder = fields.String(
        allow_none=True, metadata={"description": "A bank transfer's payee, as the run took it from the farm."}
    )
    bank_name = fields.String(allow_none=True)
    bank_account_masked = fields.String(
        allow_none=True,
        metadata={"description": "The account the bank transfer goes to, as the run took it; later changes apply to "
                  "later runs. Null for Stripe, and for bank transfers paid before it was recorded."},
    )  # fmt: skip
    bank_reference = fields.String(allow_none=True)
    failure_reason = fields.String(allow_none=True)
    attention = fields.String(allow_none=True)
    flag_note = fields.String(
        allow_none=True, metadata={"description": "Set while an operator follows a failed transfer up: why."}
    )
    flagged_at = fields.DateTime(allow_none=True)
    flagged_by_id = fields.Integer(allow_none=True)
    paid_at = fields.DateTime(allow_none=True)
    created_at = fields.DateTime(required=True)


class StatementLineSchema(ma.Schema):
    order_line_id = fields.Integer(required=True)
    product_name = fields.String(required=True)
    grams = fields.Integer(required=True)
    price_per_kg = fields.Integer(required=True)
    amount = fields.Integer(required=True)
    buyer_premium = fields.Integer(required=True, metadata={"description": "Buyer-funded premiums, no commission."})
    commission = fields.Integer(required=True)
    net = fields.Integer(required=True, metadata={"description": "amount - commission + buyer_premium"})


class StatementOrderSchema(ma.Schema):
    order_id = fields.Integer(required=True)
    lines = fields.List(fields.Nested(StatementLineSchema), required=True)


class StatementRefundSchema(ma.Schema):
    refund_id = fields.Integer(required=True)
    order_id = fields.Integer(required=True)
    order_line_id = fields.Integer(required=True)
    grams = fields.Integer(required=True)
    amount = fields.Integer(required=True)
    commission = fields.Integer(required=True)
    net = fields.Integer(
        required=True, metadata={"description": "The farm's share: amount less commission, with buyer premiums."}
    )


class StatementPremiumSchema(ma.Schema):
    programme = fields.String(required=True)
    amount = fields.Integer(required=True)


class StatementReversalSchema(ma.Schema):
    id = fields.Integer(required=True)
    run_id = fields.Integer(required=True)
    amount = fields.Integer(required=True)
    status = fields.Enum(ReversalStatus, by_value=True, required=True)
    failure_reason = fields.String(allow_none=True)
    created_at = fields.DateTime(required=True)
    refunds = fields.List(fields.Nested(StatementRefundSchema), required=True)


class StatementSchema(ma.Schema):
    payout = fields.Nested(PayoutSchema, required=True)
    orders = fields.List(fields.Nested(StatementOrderSchema), required=True)
    refunds = fields.List(fields.Nested(StatementRefundSchema), required=True)
    adjustments = fields.List(fields.Nested(StatementRefundSchema), required=True)
    premiums = fields.List(fields.Nested(StatementPremiumSchema), required=True)
    reversals = fields.List(fields.Nested(StatementReversalSchema), required=True)


class ConfirmSchema(StrictSchema):
    bank_reference = fields.String(required=True, validate=validate.Length(min=1, max=255))


class FlagSchema(StrictSchema):
    note = free_text(
        required=True,
        validate=validate.Length(min=1, max=1000),
        metadata={"description": "What is being looked into (a wrong account, a bank's return)."},
    )
