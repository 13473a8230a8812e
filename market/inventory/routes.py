from typing import Any

from market.api import MarketBlueprint
from market.auth import current_actor
from market.idempotency import idempotent
from market.inventory import service
from market.inventory.models import InboundEvent, SalesChannel
from market.inventory.schemas import (
    ChannelCreateSchema,
    ChannelQuerySchema,
    ChannelSchema,
    ChannelUpdateSchema,
    CreatedChannelSchema,
    InboundEventSchema,
    RecordedEventSchema,
)
from market.pagination import Page, page_schema

blp = MarketBlueprint("inventory", __name__, url_prefix="/api/v1", description="Stock sync with other sales channels")
CHANNEL = "/sales-channels/<int:channel_id>"


@blp.route("/sales-channels", methods=["POST"])
@blp.authenticated
@idempotent
@blp.arguments(ChannelCreateSchema)
@blp.response(201, CreatedChannelSchema, location="/sales-channels/{id}")
def create_sales_channel(body: dict[str, Any]) -> dict[str, Any]:
    """Register another place you sell a farm's produce (listings matched by SKU); the secret is shown once

    Accepts Idempotency-Key: a retry with the same key and body answers the same channel and secret.
    """
    created = service.create_channel(current_actor(), **body)
    return {name: getattr(created.channel, name) for name in ChannelSchema().fields} | {"secret": created.secret}


@blp.route("/sales-channels", methods=["GET"])
@blp.authenticated
@blp.arguments(ChannelQuerySchema, location="query")
@blp.response(200, page_schema(ChannelSchema))
def list_sales_channels(args: dict[str, Any]) -> Page[SalesChannel]:
    """Your sales channels with their sync state (operators: all)"""
    return service.list_channels(current_actor(), **args)


@blp.route(CHANNEL, methods=["GET"])
@blp.authenticated
@blp.response(200, ChannelSchema)
@blp.alt_response(404, description="No such sales channel of yours")
def get_sales_channel(channel_id: int) -> SalesChannel:
    """One sales channel: last success, last error, next run"""
    return service.get_channel(current_actor(), channel_id)


@blp.route(CHANNEL, methods=["PATCH"])
@blp.authenticated
@blp.arguments(ChannelUpdateSchema)
@blp.response(200, ChannelSchema)
@blp.alt_response(404, description="No such sales channel of yours")
def update_sales_channel(body: dict[str, Any], channel_id: int) -> SalesChannel:
    """Change a channel's URLs, feed format or schedule, or pause it"""
    return service.update_channel(current_actor(), channel_id, **body)


@blp.route(CHANNEL, methods=["DELETE"])
@blp.authenticated
@blp.response(204)
@blp.alt_response(404, description="No such sales channel of yours")
def delete_sales_channel(channel_id: int) -> None:
    """Stop syncing with a channel"""
    service.delete_channel(current_actor(), channel_id)


@blp.route(f"{CHANNEL}/events/<int:recorded_id>", methods=["GET"])
@blp.authenticated
@blp.response(200, RecordedEventSchema)
@blp.alt_response(404, description="No such event on a sales channel of yours")
def get_inventory_event(channel_id: int, recorded_id: int) -> InboundEvent:
    """One sale or return recorded on a channel, by the id it was given here"""
    return service.get_event(current_actor(), channel_id, recorded_id)


@blp.route("/inventory/events", methods=["POST"])
@blp.authenticated
@blp.arguments(InboundEventSchema)
@blp.response(201, RecordedEventSchema, location="/sales-channels/{channel_id}/events/{id}")
@blp.alt_response(200, schema=RecordedEventSchema, description="This event id was already applied")
@blp.alt_response(409, description="The sale exceeds the stock, or the listing is archived; nothing moved")
def record_inventory_event(body: dict[str, Any]) -> tuple[InboundEvent, int]:
    """Report a sale or return on a channel, by SKU, under the channel's own event id (applied once)"""
    event, created = service.record_event(current_actor(), **body)
    return event, 201 if created else 200
