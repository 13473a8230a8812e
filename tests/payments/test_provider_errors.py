"""Stripe's errors as Stripe gives them, against the local fake: a 5xx is
kept for its idempotency key and replayed to a repeat, and the request may
or may not have taken effect. Every call looks the object up first, and
asks again under a new key only when nothing was made."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from market.extensions import TransientError, db
from market.outbox import OutboxMessage
from market.payments import service as payments
from market.payments.gateway import AmbiguousAnswer, Intent, RefundResult, StripeGateway
from market.payments.models import Payment, PaymentStatus, Refund, RefundStatus
from tests.fakes.stripe_server import FakeStripe, FakeStripeServer
from tests.payments.conftest import stripe_settings
from tests.payments.test_stripe_payments import pack_all, paid_order
from tests.shop import Shop, part_of, place


@pytest.fixture
def app_overrides(stripe_server: FakeStripeServer) -> dict[str, Any]:
    return stripe_settings(stripe_server)


def payment_of(order_id: int) -> Payment:
    db.session.expire_all()
    return db.session.scalars(select(Payment).where(Payment.order_id == order_id)).one()


def keys(order_id: int, action: str) -> list[tuple[str, bool]]:
    return [(a.idempotency_key, a.succeeded) for a in payment_of(order_id).attempts if a.action == action]


def captured(client: FlaskClient, fake: FakeStripe, shop: Shop) -> dict[str, Any]:
    order, _ = paid_order(client, fake, shop)
    pack_all(client, shop, order, {order["parts"][0]["lines"][0]["id"]: 2000})
    assert payments.capture(order["id"]).status == PaymentStatus.CAPTURED
    return order


def test_a_5xx_is_replayed_to_its_key(fake_stripe: FakeStripe) -> None:
    fake_stripe.fail_next.append(("/v1/payment_intents", 500))
    params = {"amount": "100", "currency": "cny"}
    first = fake_stripe.handle("POST", "/v1/payment_intents", params, "k-1")
    assert first[0] == 500
    assert fake_stripe.handle("POST", "/v1/payment_intents", params, "k-1") == first
    assert fake_stripe.handle("POST", "/v1/payment_intents", params, "k-2")[0] == 200
    assert len(fake_stripe.intents) == 1


def test_a_capture_that_failed_at_the_provider_is_asked_again_under_a_new_key(
    client: FlaskClient, fake_stripe: FakeStripe, shop: Shop
) -> None:
    order, payment = paid_order(client, fake_stripe, shop)
    pack_all(client, shop, order, {order["parts"][0]["lines"][0]["id"]: 2000})
    fake_stripe.fail_next.append((f"/v1/payment_intents/{payment.stripe_payment_intent_id}/capture", 500))
    with pytest.raises(TransientError):
        payments.capture(order["id"])
    assert payment_of(order["id"]).status == PaymentStatus.CAPTURING
    assert payments.capture(order["id"]).status == PaymentStatus.CAPTURED  # the same key would get the 500 again
    base = f"order-{order['id']}-capture"
    assert keys(order["id"], "capture") == [(base, False), (f"{base}-retry-1", True)]


def test_a_capture_made_though_the_provider_answered_500_is_found_and_recorded(
    client: FlaskClient, fake_stripe: FakeStripe, shop: Shop
) -> None:
    order, payment = paid_order(client, fake_stripe, shop)
    pack_all(client, shop, order, {order["parts"][0]["lines"][0]["id"]: 2000})
    fake_stripe.fail_after.append(f"/v1/payment_intents/{payment.stripe_payment_intent_id}/capture")
    done = payments.capture(order["id"])  # looked up: it was taken
    assert (done.status, done.amount_captured) == (PaymentStatus.CAPTURED, 1998)
    assert len(fake_stripe.charges) == 1  # the client's own retries of the key were replayed the 500


def test_a_refund_that_failed_at_the_provider_is_asked_again_and_keeps_its_reference(
    client: FlaskClient, fake_stripe: FakeStripe, shop: Shop
) -> None:
    order = captured(client, fake_stripe, shop)
    refund = payments.request_refund(None, order["id"], reason="mouldy")
    fake_stripe.fail_next.append(("/v1/refunds", 500))
    with pytest.raises(TransientError):
        payments.process_refund(refund.id)
    assert db.session.get(Refund, refund.id).status == RefundStatus.PENDING  # type: ignore[union-attr]
    assert payments.process_refund(refund.id).status == RefundStatus.SUCCEEDED
    assert [r["metadata"]["key"] for r in fake_stripe.refunds.values()] == [f"refund-{refund.id}"]
    assert keys(order["id"], "refund") == [(f"refund-{refund.id}", False), (f"refund-{refund.id}-retry-1", True)]


def test_a_refund_made_though_the_provider_answered_500_is_found_not_made_twice(
    client: FlaskClient, fake_stripe: FakeStripe, shop: Shop
) -> None:
    order = captured(client, fake_stripe, shop)
    refund = payments.request_refund(None, order["id"], reason="mouldy")
    fake_stripe.fail_after.append("/v1/refunds")
    assert payments.process_refund(refund.id).status == RefundStatus.SUCCEEDED
    assert len(fake_stripe.refunds) == 1
    assert payment_of(order["id"]).amount_refunded == 1998


def test_an_intent_the_provider_failed_to_create_is_created_under_a_new_key(
    client: FlaskClient, fake_stripe: FakeStripe, shop: Shop
) -> None:
    order = place(client, shop, (shop.oranges, 1000))
    fake_stripe.fail_next.append(("/v1/payment_intents", 500))  # the client's own retries are replayed it
    with pytest.raises(TransientError):
        payments.open_payment(order["id"])
    opened = payments.open_payment(order["id"])
    assert opened.status == PaymentStatus.REQUIRES_PAYMENT and opened.stripe_payment_intent_id
    base = f"order-{order['id']}-intent"
    assert keys(order["id"], "create_intent") == [(base, False), (f"{base}-retry-1", True)]


def test_a_release_the_provider_failed_on_is_asked_again_under_a_new_key(
    client: FlaskClient, fake_stripe: FakeStripe, shop: Shop
) -> None:
    order, payment = paid_order(client, fake_stripe, shop)
    client.post(f"/api/v1/orders/{order['id']}/cancel", json={"reason": "changed my mind"}, headers=shop.buyer_h)
    fake_stripe.fail_next.append((f"/v1/payment_intents/{payment.stripe_payment_intent_id}/cancel", 503))
    with pytest.raises(TransientError):
        payments.settle_closed_order(order["id"])
    assert payments.settle_closed_order(order["id"]).status == PaymentStatus.CANCELLED  # type: ignore[union-attr]
    assert fake_stripe.intents[payment.stripe_payment_intent_id or ""]["status"] == "canceled"


def test_an_intent_the_provider_refuses_to_open_is_failed_and_on_the_attention_list(
    client: FlaskClient, fake_stripe: FakeStripe, shop: Shop
) -> None:
    order = place(client, shop, (shop.oranges, 1000))
    fake_stripe.refuse_next.append(("/v1/payment_intents", "Amount must be no more than ¥999,999.99"))
    refused = payments.open_payment(order["id"])
    assert (refused.status, refused.stripe_payment_intent_id) == (PaymentStatus.FAILED, None)
    assert "no more than" in (refused.failure_reason or "")
    listed = client.get("/api/v1/payments/attention", headers=shop.operator_h).json["items"]
    assert [p["order_id"] for p in listed] == [order["id"]]
    assert "refused to open" in listed[0]["attention"]
    told = db.session.scalars(select(OutboxMessage).where(OutboxMessage.task == "notifications.handle_event")).all()
    assert {"event": "payment.failed", "order_id": order["id"]} in [m.kwargs for m in told]
    assert payments.open_payment(order["id"]).status == PaymentStatus.FAILED  # a repeat asks nothing more
    assert fake_stripe.intents == {}


def test_a_rate_limited_capture_runs_when_asked_again_under_its_own_key(
    client: FlaskClient, fake_stripe: FakeStripe, shop: Shop
) -> None:
    """Stripe keeps nothing for a key whose request it turned away with a
    429 before running it: the retry runs the capture under the same key."""
    order, payment = paid_order(client, fake_stripe, shop)
    pack_all(client, shop, order, {order["parts"][0]["lines"][0]["id"]: 2000})
    path = f"/v1/payment_intents/{payment.stripe_payment_intent_id}/capture"
    fake_stripe.fail_next.append((path, 429))
    with pytest.raises(TransientError):
        payments.capture(order["id"])
    assert payment_of(order["id"]).status == PaymentStatus.CAPTURING
    assert payments.capture(order["id"]).amount_captured == 1998
    assert keys(order["id"], "capture") == [(f"order-{order['id']}-capture", True)]
    assert (fake_stripe.calls[f"POST {path}"], len(fake_stripe.charges)) == (2, 1)


def test_a_repeat_while_the_first_request_is_in_flight_is_ambiguous_then_replays(
    stripe_server: FakeStripeServer,
) -> None:
    """Stripe answers a request whose key another request is still using
    with a 409 (the client's own retries get it too), keeping nothing for
    the key: the first may yet succeed. Once it is answered, the key
    replays its answer."""
    fake = stripe_server.fake
    gateway = StripeGateway("sk_test_fake", api_base=stripe_server.url)
    fake.hold["POST /v1/payment_intents"] = 4.0
    made: list[Intent] = []
    first = threading.Thread(
        target=lambda: made.append(gateway.create_intent(order_id=1, amount=500, currency="CNY", key="order-1-intent"))
    )
    first.start()
    assert fake.received.wait(5)
    with pytest.raises(AmbiguousAnswer):
        gateway.create_intent(order_id=1, amount=500, currency="CNY", key="order-1-intent")
    first.join()
    fake.hold.clear()
    again = gateway.create_intent(order_id=1, amount=500, currency="CNY", key="order-1-intent")
    assert [intent.id for intent in made] == [again.id]
    assert len(fake.intents) == 1
    assert fake.calls["POST /v1/payment_intents"] == 1 + 3 + 1  # the first, the repeat and its two retries, the last


def test_a_refund_whose_key_is_still_in_flight_is_not_asked_again_under_a_new_key(
    client: FlaskClient, stripe_server: FakeStripeServer, shop: Shop
) -> None:
    """A worker's refund call is still being handled at Stripe (a worker that
    died waiting, say) when the retry asks with the same key: Stripe's 409
    says nothing was kept for the key, so the retry looks for the refund,
    finds none yet, and asks again later under the same key, never under a
    new one (which would refund the buyer twice)."""
    fake = stripe_server.fake
    order = captured(client, fake, shop)
    refund = payments.request_refund(None, order["id"], reason="mouldy")
    key = f"refund-{refund.id}"
    intent_id = payment_of(order["id"]).stripe_payment_intent_id or ""
    earlier = StripeGateway("sk_test_fake", api_base=stripe_server.url)
    fake.hold["POST /v1/refunds"] = 4.0
    fake.received.clear()
    answers: list[RefundResult] = []
    worker = threading.Thread(
        target=lambda: answers.append(earlier.refund(intent_id, amount=1998, key=key, reason="mouldy", reference=key))
    )
    worker.start()
    assert fake.received.wait(5)
    with pytest.raises(TransientError):
        payments.process_refund(refund.id)
    assert keys(order["id"], "refund") == []  # nothing spent: the key is not given up
    worker.join()
    fake.hold.clear()
    done = payments.process_refund(refund.id)
    assert (done.status, done.stripe_refund_id) == (RefundStatus.SUCCEEDED, answers[0].id)
    assert keys(order["id"], "refund") == [(key, True)]
    assert len(fake.refunds) == 1 and fake.total_refunded(intent_id) == 1998
    assert payment_of(order["id"]).amount_refunded == 1998


def test_an_intent_asked_for_without_an_answer_is_asked_again_for_a_new_amount_under_a_new_key(
    app: Flask, client: FlaskClient, stripe_server: FakeStripeServer, shop: Shop
) -> None:
    """The first request for the intent got no answer (Stripe made it all
    the same, for the whole order), and a part was cancelled before the
    retry: the key was used with the first amount, so the retry for the
    lower one asks under a new key (Stripe refuses a key for other
    parameters) and is not refused."""
    fake = stripe_server.fake
    app.extensions["payment_gateway"] = StripeGateway("sk_test_fake", api_base=stripe_server.url, timeout=1.0)
    nuts_alone = place(client, shop, (shop.nuts, 1000))
    order = place(client, shop, (shop.oranges, 2000), (shop.nuts, 1000))
    base = f"order-{order['id']}-intent"
    fake.hold["POST /v1/payment_intents"] = 6.0
    with pytest.raises(AmbiguousAnswer):  # a timeout, then the client's retries meet the first still in flight
        payments.open_payment(order["id"])
    deadline = time.monotonic() + 10
    while base not in fake._keys and time.monotonic() < deadline:
        time.sleep(0.1)
    assert fake._keys[base][2][1]["amount"] == order["max_total"]  # made, for the whole order
    fake.hold.clear()

    orchard = part_of(order, shop.orchard)
    cancelled = client.post(
        f"/api/v1/orders/{order['id']}/parts/{orchard['id']}/cancel", json={"reason": "hail"}, headers=shop.orchard_h
    )
    assert cancelled.status_code == 200, cancelled.json
    opened = payments.open_payment(order["id"])
    assert opened.status == PaymentStatus.REQUIRES_PAYMENT
    assert fake.intents[opened.stripe_payment_intent_id or ""]["amount"] == nuts_alone["max_total"]
    assert keys(order["id"], "create_intent") == [(base, False), (f"{base}-retry-1", True)]
    assert opened.stripe_payment_intent_id != fake._keys[base][2][1]["id"]


def test_an_intent_asked_for_without_an_answer_is_asked_again_under_the_same_key(
    app: Flask, client: FlaskClient, stripe_server: FakeStripeServer, shop: Shop
) -> None:
    fake = stripe_server.fake
    app.extensions["payment_gateway"] = StripeGateway("sk_test_fake", api_base=stripe_server.url, timeout=1.0)
    order = place(client, shop, (shop.oranges, 2000))
    base = f"order-{order['id']}-intent"
    fake.hold["POST /v1/payment_intents"] = 6.0
    with pytest.raises(AmbiguousAnswer):
        payments.open_payment(order["id"])
    deadline = time.monotonic() + 10
    while base not in fake._keys and time.monotonic() < deadline:
        time.sleep(0.1)
    fake.hold.clear()
    opened = payments.open_payment(order["id"])  # the same amount: the key replays the intent made
    assert opened.stripe_payment_intent_id == fake._keys[base][2][1]["id"]
    assert keys(order["id"], "create_intent") == [(base, True)]
    assert len(fake.intents) == 1
