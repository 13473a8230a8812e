"""What a webhook delivery carries: one versioned schema per event type, and
the one place that builds each event's data.

A delivery's body is an envelope, `{"id", "type", "version", "created_at",
"data", "display"}`. `data` is the contract: ids, states, integer grams and
minor units of money, UTC timestamps, as this module's schemas say (and the
OpenAPI document publishes, see `document`). `display` holds the texts the
notification shows people (formatted amounts, names); it is for showing,
never for parsing, and may change without a new version.

A change that removes or renames a field, or changes its meaning, is a new
`SCHEMA_VERSION`; adding a field is not (receivers ignore fields they do
not know). The reference is docs/events.md.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import marshmallow as ma
from apispec import APISpec
from marshmallow import fields, validate

from market.accounts.models import Role
from market.api import BigInteger
from market.catalog.models import Listing, PayoutMethod
from market.inventory.models import SalesChannel
from market.orders.models import Fulfilment, Order, OrderLine, OrderPart, OrderStatus, PartStatus
from market.payments.models import Payment, PaymentStatus, Refund, RefundStatus
from market.payouts.models import Payout, PayoutStatus
from market.stations.models import CashUp, CashUpStatus

SCHEMA_VERSION = 1


class EventDataSchema(ma.Schema):
    """Every event schema refuses fields it does not name, so the document
    says exactly what a version holds (`additionalProperties: false`)."""

    class Meta:
        unknown = ma.RAISE


def _money(description: str, **kwargs: Any) -> BigInteger:
    return BigInteger(metadata={"description": f"{description}, in minor units (fen)."}, **kwargs)


def _grams(description: str, **kwargs: Any) -> BigInteger:
    return BigInteger(metadata={"description": f"{description}, in grams."}, **kwargs)


class EventLineSchema(EventDataSchema):
    id = fields.Integer(required=True)
    listing_id = fields.Integer(required=True)
    lot_id = fields.Integer(required=True, allow_none=True)
    product_name = fields.String(required=True)
    price_per_kg = _money("The price of one kilogram", required=True)
    ordered_g = _grams("What the buyer ordered", required=True)
    weighed_g = _grams("What was weighed at packing; null until packed", required=True, allow_none=True)
    amount = _money("The produce: price_per_kg x the weighed (else ordered) grams", required=True)
    premium_amount = _money("Buyer-funded premiums on the same grams", required=True)
    short_reason = fields.String(required=True, allow_none=True)


class EventPartSchema(EventDataSchema):
    id = fields.Integer(required=True)
    farm_id = fields.Integer(required=True)
    status = fields.Enum(PartStatus, by_value=True, required=True)
    subtotal = _money("What the buyer pays for the part's lines", required=True)
    cancel_reason = fields.String(required=True, allow_none=True)
    packed_at = fields.DateTime(required=True, allow_none=True)
    shipped_at = fields.DateTime(required=True, allow_none=True)
    arrived_at = fields.DateTime(required=True, allow_none=True)
    lines = fields.List(fields.Nested(EventLineSchema), required=True)


class EventPaymentSchema(EventDataSchema):
    id = fields.Integer(required=True)
    status = fields.Enum(PaymentStatus, by_value=True, required=True)
    amount = _money("What is authorised: the most the order can reach", required=True)
    amount_captured = _money("What was taken", required=True)
    amount_refunded = _money("What was given back", required=True)
    authorised_until = fields.DateTime(
        required=True, allow_none=True, metadata={"description": "When the card hold lapses."}
    )
    renew_by = fields.DateTime(
        required=True, allow_none=True, metadata={"description": "After a lapsed hold: pay again by then."}
    )


class EventRefundSchema(EventDataSchema):
    id = fields.Integer(required=True)
    status = fields.Enum(RefundStatus, by_value=True, required=True)
    amount = _money("The refund", required=True)
    failure_reason = fields.String(required=True, allow_none=True)


class OrderEventDataSchema(EventDataSchema):
    """An order as the audience may see it. The buyer and operators get the
    whole order; a farmer gets only the parts of their own farms, with
    `total`, `max_total` and `pickup_code` null."""

    order_id = fields.Integer(required=True)
    audience = fields.Enum(Role, by_value=True, required=True, metadata={"description": "Whose view this is."})
    status = fields.Enum(OrderStatus, by_value=True, required=True)
    fulfilment = fields.Enum(Fulfilment, by_value=True, required=True)
    fulfilment_point_id = fields.Integer(required=True, allow_none=True)
    currency = fields.String(required=True, validate=validate.Length(equal=3))
    total = _money("What the buyer pays; null in a farmer's view", required=True, allow_none=True)
    max_total = _money(
        "The most the order can reach within tolerance; null in a farmer's view", required=True, allow_none=True
    )
    pickup_code = fields.String(
        required=True, allow_none=True, metadata={"description": "Set once ready for pickup; the buyer's view only."}
    )
    cancel_reason = fields.String(required=True, allow_none=True)
    created_at = fields.DateTime(required=True)
    expires_at = fields.DateTime(required=True, metadata={"description": "Unpaid past this, the order expires."})
    paid_at = fields.DateTime(required=True, allow_none=True)
    closed_at = fields.DateTime(required=True, allow_none=True)
    updated_at = fields.DateTime(required=True)
    payment = fields.Nested(EventPaymentSchema, required=True, allow_none=True)
    parts = fields.List(fields.Nested(EventPartSchema), required=True)


class RefundEventDataSchema(OrderEventDataSchema):
    refund = fields.Nested(EventRefundSchema, required=True)


class PayoutEventDataSchema(EventDataSchema):
    payout_id = fields.Integer(required=True)
    run_id = fields.Integer(required=True)
    farm_id = fields.Integer(required=True)
    status = fields.Enum(PayoutStatus, by_value=True, required=True)
    method = fields.Enum(PayoutMethod, by_value=True, required=True)
    currency = fields.String(required=True, validate=validate.Length(equal=3))
    grams = _grams("Sold in the period", required=True)
    sales = _money("Sales", required=True)
    commission = _money("The marketplace's commission", required=True)
    premiums = _money("Premiums earned", required=True)
    refunds = _money("Refunds netted", required=True)
    adjustments = _money("Adjustments", required=True)
    amount = _money("What is paid", required=True)
    failure_reason = fields.String(required=True, allow_none=True)
    paid_at = fields.DateTime(required=True, allow_none=True)
    created_at = fields.DateTime(required=True)


class CashUpEventDataSchema(EventDataSchema):
    cash_up_id = fields.Integer(required=True)
    fulfilment_point_id = fields.Integer(required=True, metadata={"description": "The village station."})
    business_day = fields.Date(required=True, metadata={"description": "The day counted (MARKET_TIMEZONE)."})
    status = fields.Enum(CashUpStatus, by_value=True, required=True)
    currency = fields.String(required=True, validate=validate.Length(equal=3))
    expected = _money("The cash the day's collections took", required=True)
    counted = _money("What the station's staff counted", required=True)
    difference = _money("Counted less expected: negative when short", required=True)
    note = fields.String(required=True, allow_none=True, metadata={"description": "The staff's note."})
    submitted_by = fields.Integer(required=True)
    created_at = fields.DateTime(required=True)


class StockLowEventDataSchema(EventDataSchema):
    listing_id = fields.Integer(required=True)
    farm_id = fields.Integer(required=True)
    sku = fields.String(required=True, allow_none=True)
    product_name = fields.String(required=True)
    stock_g = _grams("Left in stock", required=True)
    low_stock_threshold_g = _grams("The listing's alert threshold", required=True, allow_none=True)


class SaleRefusedEventDataSchema(EventDataSchema):
    channel_id = fields.Integer(required=True)
    farm_id = fields.Integer(required=True)
    listing_id = fields.Integer(required=True)
    sku = fields.String(required=True, allow_none=True)
    grams = _grams("The sale the channel reported", required=True)
    stock_g = _grams("In stock when it was refused", required=True)


# --- building the data ---------------------------------------------------------


def _line(line: OrderLine) -> dict[str, Any]:
    return {name: getattr(line, name) for name in EventLineSchema().fields}


def _part(part: OrderPart) -> dict[str, Any]:
    data = {name: getattr(part, name) for name in EventPartSchema().fields if name != "lines"}
    return data | {"lines": [_line(line) for line in part.lines]}


def _payment(payment: Payment | None) -> dict[str, Any] | None:
    if payment is None:
        return None
    return {name: getattr(payment, name) for name in EventPaymentSchema().fields}


def order_data(order: Order, payment: Payment | None, role: Role, parts: Sequence[OrderPart]) -> dict[str, Any]:
    """The data of an order event for `role`: `parts` are those the
    audience may see (all of them but for a farmer)."""
    whole = role != Role.FARMER
    return {
        "order_id": order.id,
        "audience": role,
        "status": order.status,
        "fulfilment": order.fulfilment,
        "fulfilment_point_id": order.fulfilment_point_id,
        "currency": order.currency,
        "total": order.total if whole else None,
        "max_total": order.max_total if whole else None,
        "pickup_code": order.pickup_code if whole else None,
        "cancel_reason": order.cancel_reason,
        "created_at": order.created_at,
        "expires_at": order.expires_at,
        "paid_at": order.paid_at,
        "closed_at": order.closed_at,
        "updated_at": order.updated_at,
        "payment": _payment(payment),
        "parts": [_part(part) for part in parts],
    }


def refund_data(refund: Refund) -> dict[str, Any]:
    return {"refund": {name: getattr(refund, name) for name in EventRefundSchema().fields}}


def payout_data(payout: Payout) -> dict[str, Any]:
    return {"payout_id": payout.id} | {
        name: getattr(payout, name) for name in PayoutEventDataSchema().fields if name != "payout_id"
    }


def cash_up_data(cash_up: CashUp, currency: str) -> dict[str, Any]:
    return {"cash_up_id": cash_up.id, "currency": currency, "difference": cash_up.difference} | {
        name: getattr(cash_up, name)
        for name in CashUpEventDataSchema().fields
        if name not in ("cash_up_id", "currency", "difference")
    }


def stock_low_data(listing: Listing) -> dict[str, Any]:
    return {
        "listing_id": listing.id,
        "farm_id": listing.farm_id,
        "sku": listing.sku,
        "product_name": listing.product_name,
        "stock_g": listing.stock_g,
        "low_stock_threshold_g": listing.low_stock_threshold_g,
    }


def sale_refused_data(channel: SalesChannel, listing: Listing, *, grams: int, stock_g: int) -> dict[str, Any]:
    return {
        "channel_id": channel.id,
        "farm_id": channel.farm_id,
        "listing_id": listing.id,
        "sku": listing.sku,
        "grams": grams,
        "stock_g": stock_g,
    }


# --- the envelope and the event types -------------------------------------------------


class EventEnvelopeSchema(EventDataSchema):
    id = fields.String(
        required=True,
        metadata={"description": "The event's id: the same on every try and redelivery, to drop repeats."},
    )
    type = fields.String(required=True)
    version = fields.Integer(required=True, metadata={"description": "The version of `data`'s schema."})
    created_at = fields.DateTime(required=True)
    data = fields.Dict(required=True)
    display = fields.Dict(
        keys=fields.String(),
        values=fields.String(),
        metadata={"description": "The notification's texts (formatted amounts, names): for showing, not parsing."},
    )


@dataclass(frozen=True)
class EventType:
    data: type[EventDataSchema]
    description: str

    def envelope(self, event: str) -> type[EventEnvelopeSchema]:
        """The schema of a whole delivery of `event` (its name in the document)."""
        attributes: dict[str, Any] = {
            "type": fields.String(required=True, validate=validate.Equal(event)),
            "version": fields.Integer(
                required=True,
                validate=validate.Equal(SCHEMA_VERSION),
                metadata={"description": "The version of `data`'s schema."},
            ),
            "data": fields.Nested(self.data, required=True),
        }
        return type(component_name(event), (EventEnvelopeSchema,), attributes)


ORDER = OrderEventDataSchema
EVENT_TYPES: dict[str, EventType] = {
    "order.placed": EventType(ORDER, "An order was placed; its farms pack it once it is paid."),
    "order.paid": EventType(ORDER, "The order is paid: its farms start packing."),
    "order.confirmed": EventType(
        ORDER,
        "The villager confirmed an order station staff placed for them: its farms start packing; it is paid "
        "in cash on collection.",
    ),
    "order.packed": EventType(ORDER, "Every live part is weighed and packed; the total follows the weights."),
    "order.shipped": EventType(ORDER, "Every live part has shipped."),
    "order.ready_for_pickup": EventType(ORDER, "The order is at its station, with a pickup code for the buyer."),
    "order.pickup_code_renewed": EventType(ORDER, "The order has a new pickup code; the old one no longer works."),
    "order.cancelled": EventType(ORDER, "The order was cancelled: its farms stop packing and shipping it."),
    "order.expired": EventType(ORDER, "The order was not paid in time and is closed: its farms do not pack it."),
    "payment.failed": EventType(ORDER, "A payment try failed; the buyer may pay again until the order expires."),
    "payment.hold_expiring": EventType(ORDER, "The card hold lapses soon (`payment.authorised_until`)."),
    "payment.hold_lapsed": EventType(ORDER, "The card hold lapsed; the buyer must pay again by `payment.renew_by`."),
    "payment.renewed": EventType(ORDER, "The buyer paid again after a lapsed hold."),
    "refund.failed": EventType(RefundEventDataSchema, "A refund was refused or returned by the bank."),
    "payout.paid": EventType(PayoutEventDataSchema, "A farm's payout is paid."),
    "payout.failed": EventType(PayoutEventDataSchema, "A farm's payout failed (`failure_reason`)."),
    "cash_up.flagged": EventType(
        CashUpEventDataSchema,
        "A station's staff counted a day's cash other than the collections took (`short` or `over`).",
    ),
    "listing.stock_low": EventType(StockLowEventDataSchema, "A listing's stock fell below its threshold."),
    "inventory.sale_refused": EventType(
        SaleRefusedEventDataSchema, "A sales channel reported a sale larger than the stock; nothing was taken."
    ),
}


def component_name(event: str) -> str:
    """`order.ready_for_pickup` -> `OrderReadyForPickupEvent`."""
    words = event.replace(".", "_").split("_")
    return "".join(word.capitalize() for word in words) + "Event"


_ENVELOPES = {event: kind.envelope(event) for event, kind in EVENT_TYPES.items()}


def envelope(occurrence: str, event: str, created_at: datetime, data: dict[str, Any], display: dict[str, Any]) -> str:
    """The JSON body of a delivery of `event`, as its schema dumps it."""
    body = _ENVELOPES[event]().dump(
        {
            "id": occurrence,
            "type": event,
            "version": SCHEMA_VERSION,
            "created_at": created_at,
            "data": data,
            "display": {name: str(value) for name, value in display.items()},
        }
    )
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def document(spec: APISpec) -> None:
    """Publish every event type's schema in the OpenAPI document: as
    components, and as the `webhooks` object of OpenAPI 3.1 (`x-webhooks`
    in an earlier version, which has none)."""
    webhooks: dict[str, Any] = {}
    for event, kind in EVENT_TYPES.items():
        name = component_name(event)
        spec.components.schema(name, schema=_ENVELOPES[event])
        webhooks[event] = {
            "post": {
                "summary": event,
                "description": kind.description + " Signed with the endpoint's secret (`Market-Signature`).",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}},
                },
                "responses": {"2XX": {"description": "Received; any other answer is retried."}},
            }
        }
    version = spec.openapi_version
    spec.options["webhooks" if (version.major, version.minor) >= (3, 1) else "x-webhooks"] = webhooks
