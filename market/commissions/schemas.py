from __future__ import annotations

from typing import Any

import marshmallow as ma
from marshmallow import fields, validate

from market.api import StrictSchema
from market.commissions.models import CommissionKind, SellerKind, SellerPayoutStatus
from market.pagination import PageArgsSchema
from market.payouts.schemas import BankDetailsSchema
from market.reports.schemas import DAYS

CODE = validate.Regexp(r"^[A-Za-z0-9-]{4,32}$", error="4 to 32 letters, digits or hyphens.")


class _RateSchema(BankDetailsSchema):
    rate_bp = fields.Integer(
        strict=True,
        validate=validate.Range(min=0, max=10_000),
        metadata={"description": "Basis points of the produce sold, at most the platform's COMMISSION_BP."},
    )
    per_order = fields.Integer(
        strict=True,
        validate=validate.Range(min=0),
        metadata={"description": "Stations only: a fixed amount per order (minor units), instead of rate_bp."},
    )


class SellerCreateSchema(_RateSchema):
    kind = fields.Enum(SellerKind, by_value=True, required=True)
    name = fields.String(required=True, validate=validate.Length(min=1, max=120))
    fulfilment_point_id = fields.Integer(strict=True, metadata={"description": "Stations: the village station."})
    user_id = fields.Integer(strict=True, metadata={"description": "Hosts: the host's account."})
    code = fields.String(
        validate=CODE, metadata={"description": "Hosts: the attribution code buyers give (made up when not given)."}
    )


class SellerUpdateSchema(_RateSchema):
    name = fields.String(validate=validate.Length(min=1, max=120))
    active = fields.Boolean(
        metadata={"description": "An inactive seller earns on no new capture; its code is refused."}
    )


class SellerSchema(ma.Schema):
    id = fields.Integer(required=True)
    kind = fields.Enum(SellerKind, by_value=True, required=True)
    name = fields.String(required=True)
    fulfilment_point_id = fields.Integer(allow_none=True)
    user_id = fields.Integer(allow_none=True)
    code = fields.String(allow_none=True, metadata={"description": "A host's attribution code."})
    rate_bp = fields.Integer(allow_none=True)
    per_order = fields.Integer(allow_none=True)
    active = fields.Boolean(required=True)
    bank_account_holder = fields.String(allow_none=True)
    bank_name = fields.String(allow_none=True)
    bank_account_masked = fields.String(allow_none=True)
    created_at = fields.DateTime(required=True)
    earned = fields.Integer(required=True, metadata={"description": "Commission earned on captures."})
    reversed = fields.Integer(required=True, metadata={"description": "Taken back with refunds."})
    paid = fields.Integer(required=True, metadata={"description": "Paid by payout runs."})
    payable = fields.Integer(required=True, metadata={"description": "earned - reversed - paid"})


class SellerQuerySchema(PageArgsSchema):
    kind = fields.Enum(SellerKind, by_value=True)
    active = fields.Boolean()


class _PeriodSchema(StrictSchema):
    first = fields.Date(data_key="from", validate=DAYS, metadata={"description": "First business day."})
    last = fields.Date(data_key="to", validate=DAYS, metadata={"description": "Last business day."})

    @ma.validates_schema
    def _in_order(self, data: dict[str, Any], **kwargs: Any) -> None:
        self.require_in_order(data, "first", "last")


class EntryQuerySchema(PageArgsSchema, _PeriodSchema):
    pass


class EntryCsvQuerySchema(_PeriodSchema):
    pass


class CommissionEntrySchema(ma.Schema):
    id = fields.Integer(required=True)
    kind = fields.Enum(CommissionKind, by_value=True, required=True)
    order_id = fields.Integer(allow_none=True)
    order_line_id = fields.Integer(allow_none=True)
    refund_id = fields.Integer(allow_none=True)
    produce = fields.Integer(required=True, metadata={"description": "The produce it is on (negative: refunded)."})
    amount = fields.Integer(required=True, metadata={"description": "Signed from the seller's side."})
    payout_id = fields.Integer(allow_none=True, metadata={"description": "The seller payout that paid it."})
    created_at = fields.DateTime(required=True)


class SellerPayoutSchema(ma.Schema):
    id = fields.Integer(required=True)
    run_id = fields.Integer(required=True)
    seller_id = fields.Integer(required=True)
    amount = fields.Integer(required=True)
    currency = fields.String(required=True)
    orders = fields.Integer(required=True)
    status = fields.Enum(SellerPayoutStatus, by_value=True, required=True)
    bank_account_holder = fields.String(allow_none=True)
    bank_name = fields.String(allow_none=True)
    bank_account_masked = fields.String(
        allow_none=True,
        metadata={"description": "The account the transfer goes to, as the run took it from the seller; later "
                  "changes apply to later runs. Null for payouts paid before it was recorded."},
    )  # fmt: skip
    bank_reference = fields.String(allow_none=True)
    paid_at = fields.DateTime(allow_none=True)
    created_at = fields.DateTime(required=True)


class SellerStatementSchema(ma.Schema):
    payout = fields.Nested(SellerPayoutSchema, required=True)
    entries = fields.List(fields.Nested(CommissionEntrySchema), required=True)


class SellerSkipSchema(ma.Schema):
    seller_id = fields.Integer(required=True)
    reason = fields.String(required=True)
    amount = fields.Integer(required=True, metadata={"description": "What was due, net; it stays due."})


class RunSellersSchema(ma.Schema):
    run_id = fields.Integer(required=True)
    payouts = fields.List(fields.Nested(SellerPayoutSchema), required=True)
    skipped = fields.List(fields.Nested(SellerSkipSchema), required=True)


class SalesQuerySchema(_PeriodSchema):
    first = fields.Date(required=True, data_key="from", validate=DAYS, metadata={"description": "First business day."})
    last = fields.Date(required=True, data_key="to", validate=DAYS, metadata={"description": "Last business day."})
    format = fields.String(
        load_default="json", validate=validate.OneOf(["json", "csv"]), metadata={"description": "csv: a download."}
    )


class SellerSalesSchema(ma.Schema):
    seller_id = fields.Integer(required=True)
    kind = fields.Enum(SellerKind, by_value=True, required=True)
    name = fields.String(required=True)
    code = fields.String(allow_none=True)
    fulfilment_point_id = fields.Integer(allow_none=True)
    orders = fields.Integer(required=True, metadata={"description": "Orders it earned on in the period."})
    produce = fields.Integer(required=True, metadata={"description": "Produce sold less refunded, minor units."})
    commission = fields.Integer(required=True, metadata={"description": "Commission earned less reversed."})


class SalesReportSchema(ma.Schema):
    period_from = fields.Date(required=True)
    period_to = fields.Date(required=True)
    currency = fields.String(required=True)
    rows = fields.List(fields.Nested(SellerSalesSchema), required=True)
