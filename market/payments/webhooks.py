"""Stripe webhooks: verified on the raw body, stored and handled once per
event id, in any order. Handlers only move a payment forward, so an event
that arrives late or twice leaves the same end state."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import marshmallow as ma
import stripe
from flask import current_app
from sqlalchemy.exc import IntegrityError

from market.api import has_unstorable_text
from market.errors import DomainError
from market.extensions import db
from market.payments import service
from market.payments.gateway import id_of, transfers_active
from market.payments.models import StripeEvent
from market.payments.schemas import (
    AccountEventSchema,
    CapturedIntentEventSchema,
    PaymentIntentEventSchema,
    RefundEventSchema,
    StripeEventSchema,
)
from market.payouts import service as payouts

# How far a delivery's signed time may be from ours, either way: an older
# one may be a replay, a later one was signed with a clock we cannot trust.
TOLERANCE_SECONDS = 300


class BadSignature(DomainError):
    status = 400
    slug = "bad-signature"
    title = "Webhook signature invalid"


class BadEvent(DomainError):
    status = 400
    slug = "bad-event"
    title = "Webhook event malformed"


def _object(event: dict[str, Any]) -> dict[str, Any]:
    obj: dict[str, Any] = event["data"]["object"]
    return obj


def _intent_failed(event: dict[str, Any]) -> None:
    intent = _object(event)
    reason = (intent.get("last_payment_error") or {}).get("message") or "The payment failed."
    service.intent_failed(intent["id"], reason)


def _intent_captured(event: dict[str, Any]) -> None:
    intent = _object(event)
    service.intent_captured(intent["id"], intent["amount_received"], id_of(intent.get("latest_charge")))


def _account_updated(event: dict[str, Any]) -> None:
    account = _object(event)
    payouts.account_updated(
        account["id"],
        payouts_enabled=bool(account.get("payouts_enabled")),
        details_submitted=bool(account.get("details_submitted")),
        transfers_active=transfers_active(account),
        created=event["created"],
    )


# Each event type we act on: the schema its data.object must match, and its handler.
HANDLERS: dict[str, tuple[type[ma.Schema], Callable[[dict[str, Any]], None]]] = {
    "payment_intent.amount_capturable_updated": (
        PaymentIntentEventSchema,
        lambda e: service.intent_authorised(_object(e)["id"]),
    ),
    "payment_intent.payment_failed": (PaymentIntentEventSchema, _intent_failed),
    "payment_intent.succeeded": (CapturedIntentEventSchema, _intent_captured),
    "payment_intent.canceled": (PaymentIntentEventSchema, lambda e: service.intent_cancelled(_object(e)["id"])),
    "refund.updated": (RefundEventSchema, lambda e: service.refund_updated(_object(e))),
    "refund.failed": (RefundEventSchema, lambda e: service.refund_updated(_object(e))),
    "charge.refund.updated": (RefundEventSchema, lambda e: service.refund_updated(_object(e))),
    "account.updated": (AccountEventSchema, _account_updated),
}


def _verified_at(payload: bytes, signature: str | None, secret: str) -> int:
    """Check the signature and its time; the time it was signed at."""
    try:
        stripe.WebhookSignature.verify_header(payload, signature, secret, tolerance=TOLERANCE_SECONDS)
    except (stripe.SignatureVerificationError, ValueError) as error:
        raise BadSignature(f"Not a valid Stripe delivery: {error}") from None
    assert signature is not None  # verify_header refuses a missing header
    # The `t=` item verify_header checked the signature with (the first).
    signed_at = int(
        next(value for name, _, value in (item.partition("=") for item in signature.split(",")) if name == "t")
    )
    # Stripe's check is for stale deliveries only; one signed far ahead of
    # our clock is refused the same way.
    if signed_at > time.time() + TOLERANCE_SECONDS:
        raise BadSignature(f"Not a valid Stripe delivery: Timestamp outside the tolerance zone ({signed_at})")
    return signed_at


def _event(payload: bytes, signed_at: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The event as sent (to store) and as read (for its handler), checked
    to hold what its handler reads."""
    try:
        body = current_app.json.loads(payload)
    except ValueError as error:  # not JSON (or not UTF-8), or nested too deep
        raise BadEvent(f"The event is not valid JSON: {error}") from None
    unreadable = "The event is not a Stripe event this endpoint can read."
    try:
        event: dict[str, Any] = StripeEventSchema().load(body)
    except ma.ValidationError as error:
        raise BadEvent(unreadable, errors=error.messages_dict) from None
    if event["type"] in HANDLERS:
        try:
            event["data"]["object"] = HANDLERS[event["type"]][0]().load(event["data"]["object"])
        except ma.ValidationError as error:
            raise BadEvent(unreadable, errors={"data.object": error.messages_dict}) from None
    if has_unstorable_text(body):
        raise BadEvent("The event holds text that cannot be stored (NUL or unpaired surrogates).")
    if event["created"] > signed_at + TOLERANCE_SECONDS:
        raise BadEvent("The event says it was created after it was signed.", errors={"created": ["In the future."]})
    return body, event


def receive(payload: bytes, signature: str | None) -> str:
    """Verify, store and handle one delivery; returns "handled", "ignored"
    (a type we do not use) or "duplicate". A bad signature, a delivery
    signed too long ago or too far ahead, or a malformed event stores
    nothing."""
    secret = current_app.config["STRIPE_WEBHOOK_SECRET"]
    if not secret:
        raise BadSignature("Webhooks are not configured (no STRIPE_WEBHOOK_SECRET).")
    body, event = _event(payload, _verified_at(payload, signature, secret))
    db.session.add(StripeEvent(id=event["id"], type=event["type"], payload=body))
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        return "duplicate"
    handler = HANDLERS.get(event["type"])
    if handler is not None:
        handler[1](event)
    db.session.commit()
    return "handled" if handler else "ignored"
