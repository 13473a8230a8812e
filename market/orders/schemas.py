from __future__ import annotations

from typing import Any

import marshmallow as ma
from marshmallow import fields, validate

from market.api import MAX_ID, BigInteger, StrictSchema, free_text
from market.catalog.models import FulfilmentPointKind
from market.money import MAX_LINE_G, MAX_ORDER_LINES, MAX_WEIGHED_G
from market.orders.models import Fulfilment, OrderStatus, PartStatus, destination_problem
from market.pagination import PageArgsSchema

REASON = validate.Length(min=1, max=500)
MAX_SCANNED_PARTS = 500
STAFF_NULL = "Null for station staff, who see the goods and not the money."


class LineRequestSchema(StrictSchema):
    listing_id = fields.Integer(strict=True, required=True)
    grams = BigInteger(strict=True, required=True, validate=validate.Range(min=1, max=MAX_LINE_G))


class OrderCreateSchema(StrictSchema):
    lines = fields.List(
        fields.Nested(LineRequestSchema), required=True, validate=validate.Length(min=1, max=MAX_ORDER_LINES)
    )
    fulfilment_point_id = fields.Integer(
        strict=True, load_default=None, metadata={"description": "Pick up here (a station or county centre)."}
    )
    delivery_address = free_text(
        load_default=None, validate=validate.Length(min=5, max=500), metadata={"description": "Or deliver here."}
    )
    notes = free_text(load_default="", validate=validate.Length(max=1000))
    attribution_code = fields.String(
        load_default=None,
        validate=validate.Regexp(r"^[A-Za-z0-9-]{4,32}$", error="4 to 32 letters, digits or hyphens."),
        metadata={"description": "The code of the livestream host who sold it (any case): the host earns a share."},
    )

    @ma.validates_schema
    def one_destination(self, data: dict[str, Any], **kwargs: Any) -> None:
        message = destination_problem(data.get("fulfilment_point_id"), data.get("delivery_address"))
        if message:
            raise ma.ValidationError(message, "fulfilment_point_id")


class LotRefSchema(ma.Schema):
    id = fields.Integer(required=True)
    code = fields.String(required=True)
    harvest_date = fields.Date(required=True)


class LinePremiumSchema(ma.Schema):
    programme_id = fields.Integer(required=True)
    name = fields.String(attribute="programme.name", required=True)
    funded_by = fields.String(required=True, metadata={"description": "buyer (in the total) or sponsor (not charged)"})
    rate_per_kg = fields.Integer(required=True)
    amount = fields.Integer(required=True)
    note = fields.String(allow_none=True, metadata={"description": "Set when the budget ran short or was released."})


class OrderLineSchema(ma.Schema):
    id = fields.Integer(required=True)
    listing_id = fields.Integer(required=True)
    lot = fields.Nested(LotRefSchema, allow_none=True)
    product_name = fields.String(required=True)
    price_per_kg = fields.Integer(required=True, allow_none=True, metadata={"description": STAFF_NULL})
    ordered_g = fields.Integer(required=True)
    weighed_g = fields.Integer(allow_none=True)
    amount = fields.Integer(
        required=True, allow_none=True, metadata={"description": f"Of the weighed grams once packed. {STAFF_NULL}"}
    )
    premium_amount = fields.Integer(
        required=True, allow_none=True, metadata={"description": f"Buyer-funded premiums, in the total. {STAFF_NULL}"}
    )
    premiums = fields.List(
        fields.Nested(LinePremiumSchema), required=True, allow_none=True, metadata={"description": STAFF_NULL}
    )
    short_reason = fields.String(allow_none=True)


class PointRefSchema(ma.Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    county = fields.String(required=True)


class StopSchema(PointRefSchema):
    """A point on a part's route."""

    kind = fields.Enum(FulfilmentPointKind, by_value=True, required=True)


class HopSchema(ma.Schema):
    sequence = fields.Integer(required=True, metadata={"description": "1 for the first point after the farm."})
    point = fields.Nested(StopSchema, required=True)
    state = fields.String(
        required=True,
        validate=validate.OneOf(["expected", "received", "dispatched"]),
        metadata={"description": "expected (not there yet), received (there now) or dispatched (gone on)."},
    )
    received_at = fields.DateTime(required=True, allow_none=True)
    dispatched_at = fields.DateTime(required=True, allow_none=True)


class OrderPartSchema(ma.Schema):
    id = fields.Integer(required=True)
    farm_id = fields.Integer(required=True)
    farm_name = fields.String(attribute="farm.name", required=True)
    farm_village = fields.String(attribute="farm.village", required=True)
    status = fields.Enum(PartStatus, by_value=True, required=True)
    subtotal = fields.Integer(required=True, allow_none=True, metadata={"description": STAFF_NULL})
    cancel_reason = fields.String(allow_none=True)
    lines = fields.List(fields.Nested(OrderLineSchema), required=True)
    route = fields.List(
        fields.Nested(HopSchema),
        attribute="hops",
        required=True,
        metadata={
            "description": "A pickup part's stops once shipped, the last the order's point: through the county "
            "centre when the farm is in another county than the village station. Empty before shipping."
        },
    )


class OrderEventSchema(ma.Schema):
    type = fields.String(required=True)
    part_id = fields.Integer(allow_none=True)
    detail = fields.String(required=True)
    created_at = fields.DateTime(required=True)


class OrderSchema(ma.Schema):
    """An order as the caller may see it: farmers see only their own farm's
    parts; station staff see every part with its money (subtotals, prices,
    line amounts, premiums) null; both get null for the totals and the
    pickup code. Staff see the money of an order placed at their station
    for a villager (they take its cash), never its pickup code."""

    id = fields.Integer(required=True)
    status = fields.Enum(OrderStatus, by_value=True, required=True)
    buyer_id = fields.Integer(required=True)
    buyer_name = fields.String(attribute="buyer.name", required=True)
    placed_by_id = fields.Integer(
        allow_none=True, metadata={"description": "The station staff who placed it for the buyer (a villager)."}
    )
    attribution_code = fields.String(
        allow_none=True, metadata={"description": "The livestream host's code it was placed with."}
    )
    fulfilment = fields.Enum(Fulfilment, by_value=True, required=True)
    fulfilment_point = fields.Nested(PointRefSchema, allow_none=True)
    delivery_address = fields.String(allow_none=True)
    notes = fields.String(required=True)
    currency = fields.String(required=True)
    total = fields.Integer(allow_none=True, required=True)
    max_total = fields.Integer(
        allow_none=True, required=True, metadata={"description": "The most the order can reach within tolerance."}
    )
    pickup_code = fields.String(allow_none=True, required=True)
    cancel_reason = fields.String(allow_none=True)
    created_at = fields.DateTime(required=True)
    expires_at = fields.DateTime(
        attribute="payment_deadline",
        required=True,
        allow_none=True,
        metadata={
            "description": "Unpaid past this, the order expires: set while it waits for payment, or for cash "
            "at its station (an order placed for a villager); null otherwise."
        },
    )
    paid_at = fields.DateTime(allow_none=True)
    parts = fields.List(fields.Nested(OrderPartSchema), required=True)
    events = fields.List(fields.Nested(OrderEventSchema), required=True)


class OrderQuerySchema(PageArgsSchema):
    status = fields.Enum(OrderStatus, by_value=True)
    farm_id = fields.Integer(metadata={"description": "Orders with a part of this farm that you are shown."})
    buyer_id = fields.Integer()
    fulfilment_point_id = fields.Integer()
    created_from = fields.Date()
    created_to = fields.Date()
    buyer = fields.String(
        validate=validate.Length(min=1, max=120),
        metadata={
            "description": "Text in the buyer's name, email or phone number (case aside); for anyone but an "
            "operator, in the name only."
        },
    )
    farm = fields.String(
        validate=validate.Length(min=1, max=120),
        metadata={"description": "Text in the name of a farm whose part you are shown (case aside)."},
    )
    overdue_for_pickup = fields.Boolean(
        metadata={
            "description": "Only orders overdue for pickup (true): waiting at their station more than "
            "STATION_COLLECT_DAYS days since their last part arrived; or only the others (false)."
        }
    )

    @ma.validates_schema
    def _in_order(self, data: dict[str, Any], **kwargs: Any) -> None:
        self.require_in_order(data, "created_from", "created_to")


class ReasonSchema(StrictSchema):
    reason = free_text(required=True, validate=REASON)


class WeighingSchema(StrictSchema):
    line_id = fields.Integer(strict=True, required=True)
    weighed_g = BigInteger(strict=True, required=True, validate=validate.Range(min=0, max=MAX_WEIGHED_G))
    short_reason = free_text(load_default=None, validate=REASON)


class PackSchema(StrictSchema):
    weights = fields.List(
        fields.Nested(WeighingSchema), required=True, validate=validate.Length(min=1, max=MAX_ORDER_LINES)
    )


class CollectSchema(StrictSchema):
    code = fields.String(required=True, validate=validate.Length(min=1, max=12))


class StaffSchema(StrictSchema):
    user_id = fields.Integer(strict=True, required=True)


class StaffGrantSchema(ma.Schema):
    user_id = fields.Integer(required=True)
    fulfilment_point_id = fields.Integer(required=True)
    created_at = fields.DateTime(required=True)


class ManifestQuerySchema(StrictSchema):
    date = fields.Date(
        load_default=None, metadata={"description": "The business day (MARKET_TIMEZONE); today there by default."}
    )
    format = fields.String(load_default="json", validate=validate.OneOf(["json", "csv"]))


class ManifestRowSchema(ma.Schema):
    section = fields.String(
        required=True,
        metadata={
            "description": "arriving (on its way here, or received on the day), to_dispatch (received here, to go "
            "on to dispatch_to) or waiting (for pickup)."
        },
    )
    order_id = fields.Integer(required=True)
    part_id = fields.Integer(required=True)
    farm_name = fields.String(required=True)
    buyer_name = fields.String(required=True)
    line_id = fields.Integer(required=True)
    product_name = fields.String(required=True)
    grams = fields.Integer(required=True)
    part_status = fields.String(required=True)
    order_status = fields.String(required=True)
    dispatch_to_point_id = fields.Integer(required=True, allow_none=True)
    dispatch_to = fields.String(
        required=True, allow_none=True, metadata={"description": "Where a part to dispatch goes next; else null."}
    )


class ManifestSchema(ma.Schema):
    fulfilment_point_id = fields.Integer(required=True)
    date = fields.Date(required=True)
    rows = fields.List(fields.Nested(ManifestRowSchema), required=True)


class PartScanSchema(StrictSchema):
    part_ids = fields.List(
        fields.Integer(strict=True, validate=validate.Range(min=1, max=MAX_ID)),
        required=True,
        validate=validate.Length(min=1, max=MAX_SCANNED_PARTS),
        metadata={"description": "The parts scanned, as many as a load holds; a part given twice is scanned once."},
    )


class ScannedPartSchema(ma.Schema):
    """A part as scanned: its stop at this point (`hop`), and where it goes
    from here (`next_point`, null at the order's own point)."""

    order_id = fields.Integer(required=True)
    part_id = fields.Integer(required=True)
    farm_name = fields.String(required=True)
    part_status = fields.String(required=True)
    hop = fields.Nested(HopSchema, required=True, metadata={"description": "Its stop at this point."})
    next_point = fields.Nested(StopSchema, required=True, allow_none=True)
    changed = fields.Boolean(required=True, metadata={"description": "False: it had been scanned so already."})


class ScanResultSchema(ma.Schema):
    fulfilment_point_id = fields.Integer(required=True)
    parts = fields.List(fields.Nested(ScannedPartSchema), required=True)
