"""The fake Stripe refuses what Stripe refuses, so the code under test
meets the same answers there as in production."""

from __future__ import annotations

import pytest

from tests.fakes.stripe_server import FakeStripe


def captured_intent(fake: FakeStripe, amount: int) -> str:
    _, intent = fake.handle(
        "POST", "/v1/payment_intents", {"amount": str(amount), "currency": "cny", "capture_method": "manual"}, None
    )
    fake.authorise(intent["id"])
    assert fake.handle("POST", f"/v1/payment_intents/{intent['id']}/capture", {}, None)[0] == 200
    return str(intent["id"])


@pytest.mark.parametrize("amount", ["0", "-5"])
def test_a_refund_of_nothing_or_less_is_refused(amount: str) -> None:
    fake = FakeStripe()
    intent_id = captured_intent(fake, 1000)
    status, body = fake.handle("POST", "/v1/refunds", {"payment_intent": intent_id, "amount": amount}, "refund-1")
    assert (status, body["error"]["code"]) == (400, "parameter_invalid_integer")
    assert fake.refunds == {}


def test_a_refund_waiting_for_the_buyer_holds_its_amount_until_it_fails() -> None:
    fake = FakeStripe()
    intent_id = captured_intent(fake, 1000)
    fake.refund_outcomes.append("requires_action")
    status, waiting = fake.handle("POST", "/v1/refunds", {"payment_intent": intent_id, "amount": "800"}, "refund-1")
    assert (status, waiting["status"]) == (200, "requires_action")
    status, body = fake.handle("POST", "/v1/refunds", {"payment_intent": intent_id, "amount": "300"}, "refund-2")
    assert (status, body["error"]["code"]) == (400, "charge_already_refunded")
    fake.finish_refund(waiting["id"], "canceled")
    assert fake.handle("POST", "/v1/refunds", {"payment_intent": intent_id, "amount": "300"}, "refund-3")[0] == 200
