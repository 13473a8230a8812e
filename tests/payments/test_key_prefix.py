"""Two environments sharing one Stripe account: each sends its own prefix
before every idempotency key, so one's `order-1-intent` is not the other's."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from market.payments import service as payments
from tests.fakes.stripe_server import FakeStripe, FakeStripeServer
from tests.payments.conftest import stripe_settings
from tests.shop import Shop, place


@pytest.fixture
def app_overrides(stripe_server: FakeStripeServer) -> dict[str, Any]:
    return stripe_settings(stripe_server) | {"STRIPE_IDEMPOTENCY_PREFIX": "staging-"}


def test_another_environments_key_for_the_same_order_id_is_not_replayed(
    client: FlaskClient, fake_stripe: FakeStripe, shop: Shop
) -> None:
    order = place(client, shop, (shop.oranges, 2000))
    # Production, with its own order of the same id, got there first.
    fake_stripe.handle(
        "POST", "/v1/payment_intents", {"amount": "12345", "currency": "cny"}, f"order-{order['id']}-intent"
    )
    payment = payments.open_payment(order["id"])
    intent = fake_stripe.intents[payment.stripe_payment_intent_id or ""]
    assert intent["amount"] == order["max_total"]  # a new intent, not production's replayed
    assert f"staging-order-{order['id']}-intent" in fake_stripe._keys
