from __future__ import annotations

import marshmallow as ma
from marshmallow import fields, validate

from market.api import BigInteger, StrictSchema, free_text
from market.money import MAX_BIGINT, MAX_ORDER_LINES, MAX_WEIGHED_G
from market.payments.models import PaymentStatus, Provider, RefundStatus


class PaymentSchema(ma.Schema):
    id = fields.Integer(required=True)
    order_id = fields.Integer(required=True)
    provider = fields.Enum(Provider, by_value=True, required=True)
    status = fields.Enum(PaymentStatus, by_value=True, required=True)
    currency = fields.String(required=True)
    amount = fields.Integer(
        required=True,
        metadata={
            "description": "Authorised: the most the order can reach (cash on collection: the cash taken, once taken)."
        },
    )
    cash_point_id = fields.Integer(
        allow_none=True, metadata={"description": "Paid in cash on collection at this station."}
    )
    cash_received_at = fields.DateTime(allow_none=True)
    amount_captured = fields.Integer(required=True)
    amount_refunded = fields.Integer(required=True)
    client_secret = fields.String(
        allow_none=True, required=True, metadata={"description": "For Stripe.js to confirm the card payment."}
    )
    failure_reason = fields.String(allow_none=True)
    authorised_until = fields.DateTime(
        allow_none=True, metadata={"description": "When the card hold lapses at the provider, while authorised."}
    )
    attention = fields.String(allow_none=True)
    created_at = fields.DateTime(required=True)


class OfflineConfirmationSchema(StrictSchema):
    amount = BigInteger(strict=True, required=True, validate=validate.Range(min=0))
    reference = fields.String(required=True, validate=validate.Length(min=1, max=255))


class RefundLineRequestSchema(StrictSchema):
    line_id = fields.Integer(strict=True, required=True)
    grams = BigInteger(strict=True, required=True, validate=validate.Range(min=1, max=MAX_WEIGHED_G))


class RefundRequestSchema(StrictSchema):
    lines = fields.List(
        fields.Nested(RefundLineRequestSchema),
        load_default=None,
        validate=validate.Length(min=1, max=MAX_ORDER_LINES),
        metadata={"description": "Lines and grams to refund; leave out to refund everything left."},
    )
    reason = free_text(required=True, validate=validate.Length(min=1, max=500))


class RefundLineSchema(ma.Schema):
    order_line_id = fields.Integer(required=True)
    grams = fields.Integer(required=True)
    amount = fields.Integer(required=True)


class RefundSchema(ma.Schema):
    id = fields.Integer(required=True)
    order_id = fields.Integer(required=True)
    amount = fields.Integer(required=True)
    reason = fields.String(required=True)
    status = fields.Enum(RefundStatus, by_value=True, required=True)
    failure_reason = fields.String(allow_none=True)
    lines = fields.List(fields.Nested(RefundLineSchema), required=True)
    created_at = fields.DateTime(required=True)
    settled_at = fields.DateTime(allow_none=True)


class WebhookResultSchema(ma.Schema):
    result = fields.String(required=True, metadata={"description": "handled, ignored or duplicate"})


# Stripe's webhook events. A delivery is signed, but what it says is still
# read with care: a malformed event (a list, no id, no data.object, an
# amount that is text) is refused as a 400 and stored nowhere. Only the
# fields the handlers read are checked; Stripe's others are kept as sent.

STRIPE_ID = validate.Length(min=1, max=255)


class StripeSchema(ma.Schema):
    class Meta:
        unknown = ma.INCLUDE


def _stripe_reference(value: object) -> None:
    """An expandable field: an object's id, or the object with its id."""
    ident = value.get("id") if isinstance(value, dict) else value
    if not isinstance(ident, str) or not 1 <= len(ident) <= 255:
        raise ma.ValidationError("An id, or an object with an id.")


class StripeEventDataSchema(StripeSchema):
    object = fields.Dict(required=True)


class StripeEventSchema(StripeSchema):
    id = fields.String(required=True, validate=STRIPE_ID)
    type = fields.String(required=True, validate=validate.Length(min=1, max=120))
    created = fields.Integer(strict=True, required=True, validate=validate.Range(min=0))
    data = fields.Nested(StripeEventDataSchema, required=True)


class StripeObjectSchema(StripeSchema):
    id = fields.String(required=True, validate=STRIPE_ID)


class PaymentErrorSchema(StripeSchema):
    message = fields.String(allow_none=True)


class PaymentIntentEventSchema(StripeObjectSchema):
    amount_received = BigInteger(strict=True, validate=validate.Range(min=0, max=MAX_BIGINT))
    latest_charge = fields.Raw(allow_none=True, validate=_stripe_reference)
    last_payment_error = fields.Nested(PaymentErrorSchema, allow_none=True)


class CapturedIntentEventSchema(PaymentIntentEventSchema):
    amount_received = BigInteger(strict=True, required=True, validate=validate.Range(min=0, max=MAX_BIGINT))


class RefundEventSchema(StripeObjectSchema):
    payment_intent = fields.Raw(allow_none=True, validate=_stripe_reference)
    status = fields.String(allow_none=True)
    failure_reason = fields.String(allow_none=True)
    metadata = fields.Dict(keys=fields.String(), values=fields.String(), allow_none=True)


class AccountEventSchema(StripeObjectSchema):
    payouts_enabled = fields.Boolean(allow_none=True)
    details_submitted = fields.Boolean(allow_none=True)
    capabilities = fields.Dict(keys=fields.String(), values=fields.String(), allow_none=True)
