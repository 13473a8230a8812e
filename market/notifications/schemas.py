from __future__ import annotations

import marshmallow as ma
from marshmallow import fields, validate

from market.api import StrictSchema
from market.notifications.models import Channel, DeliveryStatus
from market.notifications.templates import TEMPLATES

EVENT = validate.OneOf(list(TEMPLATES))
URL = validate.Length(min=1, max=500)


class PreferenceItemSchema(StrictSchema):
    event = fields.String(required=True, validate=EVENT)
    channels = fields.List(
        fields.Enum(Channel, by_value=True), required=True, metadata={"description": "Empty silences the event."}
    )
    default = fields.Boolean(dump_only=True, metadata={"description": "True while no choice has been made."})


class PreferencesSchema(StrictSchema):
    items = fields.List(fields.Nested(PreferenceItemSchema), required=True, validate=validate.Length(max=50))


class NotificationSchema(ma.Schema):
    id = fields.Integer(required=True)
    event = fields.String(required=True)
    channel = fields.Enum(Channel, by_value=True, required=True)
    recipient = fields.String(required=True)
    subject = fields.String(required=True)
    body = fields.String(required=True)
    status = fields.Enum(DeliveryStatus, by_value=True, required=True)
    attempts = fields.Integer(required=True)
    last_error = fields.String(allow_none=True)
    created_at = fields.DateTime(required=True)
    sent_at = fields.DateTime(allow_none=True)


class EndpointCreateSchema(StrictSchema):
    url = fields.String(required=True, validate=URL, metadata={"description": "http(s), on a public address."})
    event_types = fields.List(fields.String(validate=EVENT), required=True, validate=validate.Length(min=1, max=50))
    description = fields.String(load_default="", validate=validate.Length(max=200))


class EndpointUpdateSchema(StrictSchema):
    url = fields.String(validate=URL)
    event_types = fields.List(fields.String(validate=EVENT), validate=validate.Length(min=1, max=50))
    description = fields.String(validate=validate.Length(max=200))
    active = fields.Boolean()


class EndpointSchema(ma.Schema):
    id = fields.Integer(required=True)
    url = fields.String(required=True)
    event_types = fields.List(fields.String(), required=True)
    description = fields.String(required=True)
    active = fields.Boolean(required=True)
    created_at = fields.DateTime(required=True)


class CreatedEndpointSchema(EndpointSchema):
    secret = fields.String(
        required=True, metadata={"description": "Signs every delivery (Market-Signature). Shown only this once."}
    )


class DeliverySchema(ma.Schema):
    id = fields.Integer(required=True)
    endpoint_id = fields.Integer(required=True)
    event_id = fields.String(attribute="occurrence", required=True)
    event = fields.String(required=True)
    status = fields.Enum(DeliveryStatus, by_value=True, required=True)
    attempts = fields.Integer(required=True)
    response_status = fields.Integer(allow_none=True, metadata={"description": "The HTTP status of the last try."})
    last_error = fields.String(allow_none=True)
    created_at = fields.DateTime(required=True)
    last_attempt_at = fields.DateTime(allow_none=True)
    next_attempt_at = fields.DateTime(required=True)
    delivered_at = fields.DateTime(allow_none=True)
