from typing import Any

from market.api import MarketBlueprint
from market.auth import current_actor
from market.notifications import service
from market.notifications.models import Notification, WebhookDelivery, WebhookEndpoint
from market.notifications.schemas import (
    CreatedEndpointSchema,
    DeliverySchema,
    EndpointCreateSchema,
    EndpointSchema,
    EndpointUpdateSchema,
    NotificationSchema,
    PreferenceItemSchema,
    PreferencesSchema,
)
from market.notifications.service import Preference
from market.pagination import Page, PageArgsSchema, page_schema

blp = MarketBlueprint(
    "notifications", __name__, url_prefix="/api/v1", description="Notification preferences, log and webhooks"
)
ENDPOINT = "/webhook-endpoints/<int:endpoint_id>"


@blp.route("/me/notification-preferences", methods=["GET"])
@blp.authenticated
@blp.response(200, page_schema(PreferenceItemSchema))
def get_notification_preferences() -> Page[Preference]:
    """Which events reach you on which channel (every event, on one page)"""
    return Page(items=service.get_preferences(current_actor()), next_cursor=None)


@blp.route("/me/notification-preferences", methods=["PUT"])
@blp.authenticated
@blp.arguments(PreferencesSchema)
@blp.response(200, page_schema(PreferenceItemSchema))
def set_notification_preferences(body: dict[str, Any]) -> Page[Preference]:
    """Choose the channels for some events; others keep their choice"""
    return Page(items=service.set_preferences(current_actor(), body["items"]), next_cursor=None)


@blp.route("/me/notifications", methods=["GET"])
@blp.authenticated
@blp.arguments(PageArgsSchema, location="query")
@blp.response(200, page_schema(NotificationSchema))
def list_notifications(args: dict[str, Any]) -> Page[Notification]:
    """Your notification log, newest first"""
    return service.list_notifications(current_actor(), **args)


@blp.route("/webhook-endpoints", methods=["POST"])
@blp.authenticated
@blp.arguments(EndpointCreateSchema)
@blp.response(201, CreatedEndpointSchema, location="/webhook-endpoints/{id}")
def create_webhook_endpoint(body: dict[str, Any]) -> dict[str, Any]:
    """Register a URL for signed events; the secret is shown only in this response"""
    created = service.create_endpoint(current_actor(), **body)
    return {name: getattr(created.endpoint, name) for name in EndpointSchema().fields} | {"secret": created.secret}


@blp.route("/webhook-endpoints", methods=["GET"])
@blp.authenticated
@blp.arguments(PageArgsSchema, location="query")
@blp.response(200, page_schema(EndpointSchema))
def list_webhook_endpoints(args: dict[str, Any]) -> Page[WebhookEndpoint]:
    """Your webhook endpoints"""
    return service.list_endpoints(current_actor(), **args)


@blp.route(ENDPOINT, methods=["GET"])
@blp.authenticated
@blp.response(200, EndpointSchema)
@blp.alt_response(404, description="No such webhook endpoint of yours")
def get_webhook_endpoint(endpoint_id: int) -> WebhookEndpoint:
    """One of your webhook endpoints"""
    return service.get_endpoint(current_actor(), endpoint_id)


@blp.route(ENDPOINT, methods=["PATCH"])
@blp.authenticated
@blp.arguments(EndpointUpdateSchema)
@blp.response(200, EndpointSchema)
@blp.alt_response(404, description="No such webhook endpoint of yours")
def update_webhook_endpoint(body: dict[str, Any], endpoint_id: int) -> WebhookEndpoint:
    """Change an endpoint's URL, events or description, or pause it"""
    return service.update_endpoint(current_actor(), endpoint_id, **body)


@blp.route(ENDPOINT, methods=["DELETE"])
@blp.authenticated
@blp.response(204)
@blp.alt_response(404, description="No such webhook endpoint of yours")
def delete_webhook_endpoint(endpoint_id: int) -> None:
    """Remove an endpoint and its delivery log"""
    service.delete_endpoint(current_actor(), endpoint_id)


@blp.route(f"{ENDPOINT}/deliveries", methods=["GET"])
@blp.authenticated
@blp.arguments(PageArgsSchema, location="query")
@blp.response(200, page_schema(DeliverySchema))
@blp.alt_response(404, description="No such webhook endpoint of yours")
def list_webhook_deliveries(args: dict[str, Any], endpoint_id: int) -> Page[WebhookDelivery]:
    """The endpoint's delivery log with status codes, newest first"""
    return service.list_deliveries(current_actor(), endpoint_id, **args)


@blp.route("/webhook-deliveries/failed", methods=["GET"])
@blp.authenticated
@blp.arguments(PageArgsSchema, location="query")
@blp.response(200, page_schema(DeliverySchema))
def list_failed_webhook_deliveries(args: dict[str, Any]) -> Page[WebhookDelivery]:
    """Deliveries to any endpoint that failed and were not sent again, newest first (operators)"""
    return service.list_failed_deliveries(current_actor(), **args)


@blp.route(f"{ENDPOINT}/deliveries/<int:delivery_id>/redeliver", methods=["POST"])
@blp.authenticated
@blp.response(202, DeliverySchema)
@blp.alt_response(404, description="No such endpoint of yours, or no such delivery on it")
def redeliver_webhook(endpoint_id: int, delivery_id: int) -> WebhookDelivery:
    """Send a delivery's event again (a new entry in the log, the same body)"""
    return service.redeliver(current_actor(), endpoint_id, delivery_id)
