"""The Stripe gateway against a real Stripe API: stripe-mock (set
STRIPE_API_BASE, e.g. http://127.0.0.1:12111) or Stripe's test mode (set
STRIPE_SECRET_KEY to an sk_test_ key). Without either there is nothing to
talk to, and these tests are skipped; the local fake covers the behaviour."""

from __future__ import annotations

import os
import uuid

import pytest

from market.payments.gateway import GatewayError, StripeGateway

API_BASE = os.environ.get("STRIPE_API_BASE", "")
SECRET_KEY = os.environ.get("STRIPE_SECRET_KEY", "")
LIVE = bool(API_BASE) or SECRET_KEY.startswith("sk_test_")

pytestmark = pytest.mark.skipif(not LIVE, reason="set STRIPE_API_BASE (stripe-mock) or an sk_test_ STRIPE_SECRET_KEY")


@pytest.fixture
def gateway() -> StripeGateway:
    return StripeGateway(SECRET_KEY or "sk_test_123", api_base=API_BASE or None)


def test_intent_round_trip(gateway: StripeGateway) -> None:
    key = f"live-test-{uuid.uuid4()}"
    intent = gateway.create_intent(order_id=1, amount=1234, currency="usd", key=key)
    assert intent.id.startswith("pi_")
    assert intent.client_secret
    again = gateway.create_intent(order_id=1, amount=1234, currency="usd", key=key)
    if not API_BASE:  # stripe-mock does not keep idempotency keys; Stripe does
        assert again.id == intent.id
    assert gateway.get_intent(intent.id).id == intent.id
    cancelled = gateway.cancel(intent.id, key=f"{key}-cancel")
    assert cancelled.id == intent.id


def test_capture_of_an_unconfirmed_intent_is_refused(gateway: StripeGateway) -> None:
    if API_BASE:
        pytest.skip("stripe-mock answers every capture with a fixture")
    intent = gateway.create_intent(order_id=2, amount=500, currency="usd", key=f"live-test-{uuid.uuid4()}")
    with pytest.raises(GatewayError):
        gateway.capture(intent.id, amount=500, key=f"live-test-{uuid.uuid4()}")
