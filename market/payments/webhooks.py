"""Stripe webhooks: verified on the raw body, stored and handled once per
event id, in any order. Handlers only move a payment forward, so an event
that arrives late or twice leaves the same end state."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import stripe
from flask import current_app
from sqlalchemy.exc import IntegrityError

from market.errors import DomainError
from market.extensions import db
from market.payments import service
from market.payments.gateway import id_of, transfers_active
from market.payments.models import StripeEvent
from market.payouts import service as payouts

TOLERANCE_SECONDS = 300


class BadSignature(DomainError):
    status = 400
    slug = "bad-signature"
    title = "Webhook signature invalid"


def _payment_intent(event: dict[str, Any]) -> dict[str, Any]:
    obj: dict[str, Any] = event["data"]["object"]
    return obj


HANDLERS: dict[str, Callable[[dict[str, Any]], None]] = {
    "payment_intent.amount_capturable_updated": lambda e: service.intent_authorised(_payment_intent(e)["id"]),
    "payment_intent.payment_failed": lambda e: service.intent_failed(
        _payment_intent(e)["id"],
        (_payment_intent(e).get("last_payment_error") or {}).get("message") or "The payment failed.",
    ),
    "payment_intent.succeeded": lambda e: service.intent_captured(
        _payment_intent(e)["id"], _payment_intent(e)["amount_received"], id_of(_payment_intent(e).get("latest_charge"))
    ),
    "payment_intent.canceled": lambda e: service.intent_cancelled(_payment_intent(e)["id"]),
    "refund.updated": lambda e: service.refund_updated(e["data"]["object"]),
    "refund.failed": lambda e: service.refund_updated(e["data"]["object"]),
    "charge.refund.updated": lambda e: service.refund_updated(e["data"]["object"]),
    "account.updated": lambda e: payouts.account_updated(
        e["data"]["object"]["id"],
        payouts_enabled=bool(e["data"]["object"].get("payouts_enabled")),
        details_submitted=bool(e["data"]["object"].get("details_submitted")),
        transfers_active=transfers_active(e["data"]["object"]),
        created=int(e["created"]),
    ),
}


def receive(payload: bytes, signature: str | None) -> str:
    """Verify, store and handle one delivery; returns "handled", "ignored"
    (a type we do not use) or "duplicate". A bad signature stores nothing."""
    secret = current_app.config["STRIPE_WEBHOOK_SECRET"]
    if not secret:
        raise BadSignature("Webhooks are not configured (no STRIPE_WEBHOOK_SECRET).")
    try:
        event = stripe.Webhook.construct_event(payload, signature, secret, tolerance=TOLERANCE_SECONDS)
    except (stripe.SignatureVerificationError, ValueError) as error:
        raise BadSignature(f"Not a valid Stripe delivery: {error}") from None
    body = event.to_dict()
    db.session.add(StripeEvent(id=body["id"], type=body["type"], payload=body))
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        return "duplicate"
    handler = HANDLERS.get(body["type"])
    if handler is not None:
        handler(body)
    db.session.commit()
    return "handled" if handler else "ignored"
