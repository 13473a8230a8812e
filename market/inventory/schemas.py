from __future__ import annotations

import marshmallow as ma
from marshmallow import fields, validate

from market.api import BigInteger, StrictSchema
from market.catalog.schemas import SKU
from market.inventory.models import FeedFormat, MovementKind
from market.money import MAX_LINE_G
from market.pagination import PageArgsSchema

URL = validate.Length(min=1, max=500)
INTERVAL = validate.Range(min=60, max=86400)


class ChannelCreateSchema(StrictSchema):
    farm_id = fields.Integer(strict=True, required=True)
    name = fields.String(required=True, validate=validate.Length(min=1, max=120))
    push_url = fields.String(
        load_default=None, allow_none=True, validate=URL, metadata={"description": "We POST stock changes here."}
    )
    feed_url = fields.String(
        load_default=None, allow_none=True, validate=URL, metadata={"description": "We read the channel's stock here."}
    )
    feed_format = fields.Enum(FeedFormat, by_value=True, load_default=FeedFormat.JSON)
    pull_interval_seconds = fields.Integer(strict=True, load_default=300, validate=INTERVAL)


class ChannelUpdateSchema(StrictSchema):
    name = fields.String(validate=validate.Length(min=1, max=120))
    push_url = fields.String(allow_none=True, validate=URL)
    feed_url = fields.String(allow_none=True, validate=URL)
    feed_format = fields.Enum(FeedFormat, by_value=True)
    pull_interval_seconds = fields.Integer(strict=True, validate=INTERVAL)
    active = fields.Boolean()


class ChannelSchema(ma.Schema):
    id = fields.Integer(required=True)
    farm_id = fields.Integer(required=True)
    name = fields.String(required=True)
    push_url = fields.String(allow_none=True)
    feed_url = fields.String(allow_none=True)
    feed_format = fields.Enum(FeedFormat, by_value=True, required=True)
    pull_interval_seconds = fields.Integer(required=True)
    active = fields.Boolean(required=True)
    last_success_at = fields.DateTime(allow_none=True)
    last_error = fields.String(allow_none=True, metadata={"description": "The last sync problem, until a clean sync."})
    last_error_at = fields.DateTime(allow_none=True)
    next_run_at = fields.DateTime(allow_none=True, metadata={"description": "The next read of the feed."})
    push_retry_at = fields.DateTime(allow_none=True, metadata={"description": "The next try of a failed push."})
    created_at = fields.DateTime(required=True)


class CreatedChannelSchema(ChannelSchema):
    secret = fields.String(
        required=True, metadata={"description": "Signs pushes (Market-Signature). Shown only this once."}
    )


class ChannelQuerySchema(PageArgsSchema):
    farm_id = fields.Integer()
    in_error = fields.Boolean(
        metadata={"description": "Only the active channels whose last sync failed (true), or only the others (false)."}
    )


class InboundEventSchema(StrictSchema):
    channel_id = fields.Integer(strict=True, required=True)
    event_id = fields.String(
        required=True, validate=validate.Length(min=1, max=100), metadata={"description": "The channel's own id."}
    )
    type = fields.Enum(MovementKind, by_value=True, required=True)
    sku = fields.String(required=True, validate=SKU)
    grams = BigInteger(strict=True, required=True, validate=validate.Range(min=1, max=MAX_LINE_G))


class RecordedEventSchema(ma.Schema):
    id = fields.Integer(required=True)
    channel_id = fields.Integer(required=True)
    event_id = fields.String(required=True)
    type = fields.Enum(MovementKind, by_value=True, attribute="kind", required=True)
    sku = fields.String(required=True)
    listing_id = fields.Integer(required=True)
    grams = fields.Integer(required=True)
    stock_after_g = fields.Integer(required=True, metadata={"description": "The listing's stock right after."})
    created_at = fields.DateTime(required=True)
