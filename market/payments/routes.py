from typing import Any

from flask import request

from market.api import MarketBlueprint
from market.auth import current_actor
from market.idempotency import idempotent
from market.pagination import Page, PageArgsSchema, page_schema
from market.payments import service, webhooks
from market.payments.models import Payment, Refund
from market.payments.schemas import (
    OfflineConfirmationSchema,
    PaymentSchema,
    RefundRequestSchema,
    RefundSchema,
    WebhookResultSchema,
)
from market.payments.service import LineRefund

blp = MarketBlueprint("payments", __name__, url_prefix="/api/v1", description="Payments, refunds and Stripe webhooks")
WEBHOOK_PATH = "/api/v1/webhooks/stripe"


@blp.route("/orders/<int:order_id>/payment", methods=["GET"])
@blp.authenticated
@blp.response(200, PaymentSchema)
@blp.alt_response(404, description="No such order, or not one you may see")
@blp.alt_response(
    409,
    description="The payment is still being prepared (right after placing the order); retry after Retry-After seconds",
    headers={"Retry-After": {"description": "Seconds to wait before asking again.", "schema": {"type": "integer"}}},
)
def get_payment(order_id: int) -> Payment:
    """The order's payment, with the client secret for Stripe.js (the buyer; operators)"""
    return service.get_payment(current_actor(), order_id)


@blp.route("/orders/<int:order_id>/payment/offline-confirmation", methods=["POST"])
@blp.authenticated
@blp.arguments(OfflineConfirmationSchema)
@blp.response(200, PaymentSchema)
@blp.alt_response(409, description="The order is cancelled or expired, or the payment is not offline")
@blp.alt_response(404, description="No such order, or not one you may see")
def confirm_offline_payment(body: dict[str, Any], order_id: int) -> Payment:
    """Record cash or a bank transfer received for an order (operators)"""
    return service.confirm_offline(current_actor(), order_id, **body)


@blp.route("/orders/<int:order_id>/refunds", methods=["POST"])
@blp.authenticated
@idempotent
@blp.arguments(RefundRequestSchema)
@blp.response(201, RefundSchema, location="/orders/{order_id}/refunds/{id}")
@blp.alt_response(409, description="Nothing captured to refund")
@blp.alt_response(404, description="No such order, or not one you may see")
def request_refund(body: dict[str, Any], order_id: int) -> Refund:
    """Refund whole or part lines of a paid order (operators); accepts an Idempotency-Key"""
    lines = [LineRefund(**line) for line in body["lines"]] if body["lines"] is not None else None
    return service.request_refund(current_actor(), order_id, lines=lines, reason=body["reason"])


@blp.route("/orders/<int:order_id>/refunds", methods=["GET"])
@blp.authenticated
@blp.response(200, page_schema(RefundSchema))
@blp.alt_response(404, description="No such order, or not one you may see")
def list_refunds(order_id: int) -> Page[Refund]:
    """Refunds of an order (the buyer; operators): one page, as an order has few"""
    return Page(items=service.refunds_of(current_actor(), order_id), next_cursor=None)


@blp.route("/orders/<int:order_id>/refunds/<int:refund_id>", methods=["GET"])
@blp.authenticated
@blp.response(200, RefundSchema)
@blp.alt_response(404, description="No such refund of an order you may see")
def get_refund(order_id: int, refund_id: int) -> Refund:
    """One refund of an order (the buyer; operators)"""
    return service.get_refund(current_actor(), order_id, refund_id)


@blp.route("/payments/attention", methods=["GET"])
@blp.authenticated
@blp.arguments(PageArgsSchema, location="query")
@blp.response(200, page_schema(PaymentSchema))
def list_payments_needing_attention(args: dict[str, Any]) -> Page[Payment]:
    """Payments a worker could not confirm after its retries, oldest first (operators)"""
    return service.list_attention(current_actor(), **args)


@blp.route("/payments/holds-lapsing", methods=["GET"])
@blp.authenticated
@blp.arguments(PageArgsSchema, location="query")
@blp.response(200, page_schema(PaymentSchema))
def list_lapsing_payment_holds(args: dict[str, Any]) -> Page[Payment]:
    """Card holds of open orders lapsing within HOLD_WARNING_HOURS, soonest first (operators)"""
    return service.list_holds_lapsing(current_actor(), **args)


@blp.route("/webhooks/stripe", methods=["POST"])
@blp.response(200, WebhookResultSchema)
@blp.alt_response(400, description="Bad, stale or future signature, or a malformed event; nothing was stored")
def receive_stripe_webhook() -> dict[str, str]:
    """Stripe's webhook endpoint (signed with the endpoint secret)"""
    return {"result": webhooks.receive(request.get_data(), request.headers.get("Stripe-Signature"))}
