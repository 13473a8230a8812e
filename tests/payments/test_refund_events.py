"""Stripe's refund events (refund.updated, refund.failed,
charge.refund.updated) as Stripe sends them, including refunds that are
not ours: another environment sharing the Stripe account names its
refunds by the same `refund-<id>` references."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from market.extensions import db
from market.payments import service as payments
from market.payments.models import Refund, RefundStatus
from market.settlement.checks import check_ledger
from tests.fakes.stripe_server import FakeStripe, FakeStripeServer
from tests.payments.conftest import stripe_settings
from tests.payments.test_stripe_payments import deliver
from tests.settlement.test_turns import captured_order, payment_of
from tests.shop import Shop


@pytest.fixture
def app_overrides(stripe_server: FakeStripeServer) -> dict[str, Any]:
    return stripe_settings(stripe_server) | {"STRIPE_IDEMPOTENCY_PREFIX": "staging-"}


def other_environments_refund(fake: FakeStripe, refund_id: int, amount: int, status: str) -> dict[str, Any]:
    """A refund that production, sharing the Stripe account, made for its own
    refund of the same id, on an intent of its own."""
    _, intent = fake.handle(
        "POST", "/v1/payment_intents", {"amount": str(amount), "currency": "cny", "capture_method": "manual"}, None
    )
    fake.authorise(intent["id"])
    fake.handle("POST", f"/v1/payment_intents/{intent['id']}/capture", {}, None)
    fake.refund_outcomes.append("pending")
    _, made = fake.handle(
        "POST",
        "/v1/refunds",
        {"payment_intent": intent["id"], "amount": str(amount), "metadata": {"key": f"refund-{refund_id}"}},
        f"refund-{refund_id}",
    )
    return fake.finish_refund(made["id"], status, "expired_or_canceled_card" if status == "failed" else None)


@pytest.mark.parametrize("status", ["succeeded", "failed"])
def test_a_refund_event_of_another_environment_settles_none_of_ours(
    client: FlaskClient, fake_stripe: FakeStripe, shop: Shop, status: str
) -> None:
    order, _ = captured_order(client, fake_stripe, shop)
    refund = payments.request_refund(None, order["id"], reason="bruised")  # queued, not asked yet
    theirs = other_environments_refund(fake_stripe, refund.id, refund.amount, status)
    response = deliver(client, fake_stripe, "refund.updated", theirs)
    assert (response.status_code, response.json) == (200, {"result": "handled"})
    db.session.expire_all()
    ours = db.session.get(Refund, refund.id)
    assert ours is not None
    assert (ours.status, ours.stripe_refund_id) == (RefundStatus.PENDING, None)
    held = payment_of(order["id"])
    assert (held.amount_refunded, held.attention) == (0, None)
    # Our own worker then makes our refund, and it is the one that counts.
    done = payments.process_refund(refund.id)
    assert done.status == RefundStatus.SUCCEEDED and done.stripe_refund_id != theirs["id"]
    assert fake_stripe.refunds[done.stripe_refund_id or ""]["payment_intent"] == held.stripe_payment_intent_id
    assert payment_of(order["id"]).amount_refunded == refund.amount
    assert check_ledger() == []


def test_our_refund_event_that_overtakes_the_answer_is_still_applied_by_its_key(
    client: FlaskClient, fake_stripe: FakeStripe, shop: Shop
) -> None:
    order, payment = captured_order(client, fake_stripe, shop)
    refund = payments.request_refund(None, order["id"], reason="bruised")
    fake_stripe.refund_outcomes.append("pending")
    _, made = fake_stripe.handle(
        "POST",
        "/v1/refunds",
        {
            "payment_intent": payment.stripe_payment_intent_id,
            "amount": str(refund.amount),
            "metadata": {"key": f"refund-{refund.id}"},
        },
        f"staging-refund-{refund.id}",
    )
    done = fake_stripe.finish_refund(made["id"], "succeeded")
    assert deliver(client, fake_stripe, "charge.refund.updated", done).status_code == 200
    db.session.expire_all()
    ours = db.session.get(Refund, refund.id)
    assert ours is not None
    assert (ours.status, ours.stripe_refund_id) == (RefundStatus.SUCCEEDED, made["id"])
    assert check_ledger() == []
