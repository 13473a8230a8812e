"""Card payments against the local fake Stripe: intents, authorisation by
webhook, catch-weight capture, cancellation, refunds and failures."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select, update

from market.db import utcnow
from market.extensions import TransientError, db
from market.ledger import service as ledger
from market.ledger.models import LedgerEntry, LedgerTransaction
from market.orders import service as orders
from market.orders.models import Order, OrderStatus
from market.outbox import OutboxMessage
from market.payments import service as payments
from market.payments.models import Payment, PaymentStatus, Refund, StripeEvent
from tests.fakes.stripe_server import FakeStripe, FakeStripeServer, sign
from tests.payments.conftest import WEBHOOK_SECRET, stripe_settings
from tests.shop import Shop, place


@pytest.fixture
def app_overrides(stripe_server: FakeStripeServer) -> dict[str, Any]:
    return stripe_settings(stripe_server)


def deliver(client: FlaskClient, fake: FakeStripe, kind: str, obj: dict[str, Any], event_id: str | None = None) -> Any:
    payload = fake.event(kind, obj, event_id=event_id)
    return client.post(
        "/api/v1/webhooks/stripe",
        data=payload,
        headers={"Stripe-Signature": sign(payload, WEBHOOK_SECRET), "Content-Type": "application/json"},
    )


def paid_order(client: FlaskClient, fake: FakeStripe, shop: Shop, *lines: Any) -> tuple[dict[str, Any], Payment]:
    order = place(client, shop, *(lines or [(shop.oranges, 2000)]))
    payment = payments.open_payment(order["id"])
    intent = fake.authorise(payment.stripe_payment_intent_id or "")
    assert deliver(client, fake, "payment_intent.amount_capturable_updated", intent).status_code == 200
    return order, payment


def pack_all(client: FlaskClient, shop: Shop, order: dict[str, Any], grams: dict[int, int]) -> None:
    for part in order["parts"]:
        headers = shop.orchard_h if part["farm_id"] == shop.orchard.id else shop.chestnut_h
        body = {"weights": [{"line_id": line["id"], "weighed_g": grams[line["id"]]} for line in part["lines"]]}
        response = client.post(f"/api/v1/orders/{order['id']}/parts/{part['id']}/pack", json=body, headers=headers)
        assert response.status_code == 200, response.json


def assert_ledger_balances() -> None:
    assert db.session.scalar(select(func.coalesce(func.sum(LedgerEntry.amount), 0))) == 0
    for transaction in db.session.scalars(select(LedgerTransaction)):
        assert sum(entry.amount for entry in transaction.entries) == 0


def test_opening_creates_one_manual_capture_intent_for_the_most_the_order_can_reach(
    client: FlaskClient, fake_stripe: FakeStripe, shop: Shop
) -> None:
    order = place(client, shop, (shop.oranges, 2000), (shop.nuts, 1000))
    first = payments.open_payment(order["id"])
    again = payments.open_payment(order["id"])
    assert first.id == again.id
    assert len(fake_stripe.intents) == 1
    intent = fake_stripe.intents[first.stripe_payment_intent_id or ""]
    assert intent["amount"] == order["max_total"]
    assert intent["capture_method"] == "manual"
    assert intent["transfer_group"] == f"order-{order['id']}"
    assert first.status == PaymentStatus.REQUIRES_PAYMENT
    resource = client.get(f"/api/v1/orders/{order['id']}/payment", headers=shop.buyer_h).json
    assert resource["client_secret"] == intent["client_secret"]
    assert client.get(f"/api/v1/orders/{order['id']}/payment", headers=shop.other_buyer_h).status_code == 404


def test_a_payment_being_prepared_is_a_409_to_retry_not_a_404(
    client: FlaskClient, fake_stripe: FakeStripe, shop: Shop
) -> None:
    order = place(client, shop, (shop.oranges, 2000))
    url = f"/api/v1/orders/{order['id']}/payment"
    waiting = client.get(url, headers=shop.buyer_h)  # the worker has not opened it yet
    assert waiting.status_code == 409 and waiting.content_type == "application/problem+json"
    assert waiting.headers["Retry-After"] == "2" and waiting.json["retry_after"] == 2
    assert waiting.json["type"] == "/problems/payment-being-prepared"
    assert "still being prepared" in waiting.json["detail"]
    assert client.get(url, headers=shop.other_buyer_h).status_code == 404  # not theirs: nothing to wait for

    payment = payments.open_payment(order["id"])
    ready = client.get(url, headers=shop.buyer_h)
    assert ready.status_code == 200 and "Retry-After" not in ready.headers
    assert ready.json["client_secret"] == payment.client_secret

    # A worker opening a new intent (after a lapsed hold) is the same wait.
    db.session.execute(update(Payment).where(Payment.id == payment.id).values(status=PaymentStatus.CREATING))
    db.session.commit()
    opening = client.get(url, headers=shop.operator_h)
    assert opening.status_code == 409 and opening.json["payment_status"] == "creating"
    assert opening.headers["Retry-After"] == "2"


def test_an_order_closed_before_its_payment_was_opened_has_none(client: FlaskClient, shop: Shop) -> None:
    order = place(client, shop, (shop.oranges, 2000))
    cancelled = client.post(f"/api/v1/orders/{order['id']}/cancel", json={"reason": "x"}, headers=shop.buyer_h)
    assert cancelled.status_code == 200
    gone = client.get(f"/api/v1/orders/{order['id']}/payment", headers=shop.buyer_h)
    assert gone.status_code == 404 and "Retry-After" not in gone.headers
    assert client.get(f"/api/v1/orders/{order['id']}/refunds", headers=shop.buyer_h).status_code == 404


def test_placing_an_order_queues_the_payment_through_the_outbox(client: FlaskClient, shop: Shop) -> None:
    order = place(client, shop, (shop.oranges, 1000))
    kwargs = db.session.scalars(select(OutboxMessage.kwargs).where(OutboxMessage.task == "payments.open")).one()
    assert kwargs == {"event": "order.placed", "order_id": order["id"]}


def test_authorisation_webhook_marks_the_order_paid_once(
    client: FlaskClient, fake_stripe: FakeStripe, shop: Shop
) -> None:
    order, payment = paid_order(client, fake_stripe, shop)
    assert db.session.get(Order, order["id"]).status == OrderStatus.PAID  # type: ignore[union-attr]
    intent = fake_stripe.intents[payment.stripe_payment_intent_id or ""]
    stored = db.session.scalars(select(StripeEvent.id)).one()
    again = deliver(client, fake_stripe, "payment_intent.amount_capturable_updated", intent, event_id=stored)
    assert again.json == {"result": "duplicate"}
    paid_events = [e["type"] for e in client.get(f"/api/v1/orders/{order['id']}", headers=shop.buyer_h).json["events"]]
    assert paid_events.count("order.paid") == 1


def test_capture_takes_exactly_the_weighed_total_and_posts_a_balanced_entry(
    client: FlaskClient, fake_stripe: FakeStripe, shop: Shop
) -> None:
    order, payment = paid_order(client, fake_stripe, shop, (shop.oranges, 2000), (shop.nuts, 1000))
    lines = {line["id"]: line for part in order["parts"] for line in part["lines"]}
    weighed = {line_id: int(line["ordered_g"] * 1.05) for line_id, line in lines.items()}
    pack_all(client, shop, order, weighed)
    captured = payments.capture(order["id"])
    total = db.session.get(Order, order["id"]).total  # type: ignore[union-attr]
    assert total == 2098 + 2520
    intent = fake_stripe.intents[payment.stripe_payment_intent_id or ""]
    assert intent["amount_received"] == total < intent["amount"]  # the rest is released
    assert captured.status == PaymentStatus.CAPTURED
    assert captured.amount_captured == total
    assert ledger.balance("gateway_cash:stripe") == total
    commission = ledger.balance("platform_commission")
    farms = ledger.balance(f"farm_payable:{shop.orchard.id}") + ledger.balance(f"farm_payable:{shop.chestnuts.id}")
    assert commission == -(105 + 126)  # 5 % of each line, half-up
    assert farms + commission == -total
    assert_ledger_balances()
    payments.capture(order["id"])  # the capture task delivered twice
    assert db.session.scalar(select(func.count()).select_from(LedgerTransaction)) == 1


@pytest.mark.parametrize("key_forgotten", [False, True])
def test_capture_whose_answer_was_lost_is_recorded_once(
    client: FlaskClient, fake_stripe: FakeStripe, shop: Shop, key_forgotten: bool
) -> None:
    order, payment = paid_order(client, fake_stripe, shop)
    pack_all(client, shop, order, {order["parts"][0]["lines"][0]["id"]: 2000})
    intent_id = payment.stripe_payment_intent_id or ""
    # The provider captured, but the worker died before recording it ...
    payments.gateway().capture(intent_id, amount=1998, key=f"order-{order['id']}-capture")
    if key_forgotten:  # ... and the retry comes after Stripe forgot the key (24 hours)
        fake_stripe._keys.clear()
    captured = payments.capture(order["id"])
    assert captured.status == PaymentStatus.CAPTURED
    assert captured.amount_captured == 1998
    assert fake_stripe.intents[intent_id]["amount_received"] == 1998
    assert ledger.balance("gateway_cash:stripe") == 1998
    assert db.session.scalar(select(func.count()).select_from(LedgerTransaction)) == 1


def test_stripe_outage_on_capture_is_transient_and_retried(
    client: FlaskClient, fake_stripe: FakeStripe, shop: Shop
) -> None:
    order, payment = paid_order(client, fake_stripe, shop)
    pack_all(client, shop, order, {order["parts"][0]["lines"][0]["id"]: 2000})
    fake_stripe.fail_next.extend([("/v1/payment_intents", 500)] * 3)  # more than the client's own retries
    with pytest.raises(TransientError):
        payments.capture(order["id"])
    # The capture was decided before the provider was asked; the retry finishes it.
    assert db.session.get(Payment, payment.id).status == PaymentStatus.CAPTURING  # type: ignore[union-attr]
    assert payments.capture(order["id"]).status == PaymentStatus.CAPTURED


def test_a_payment_that_keeps_failing_is_flagged_for_operators(client: FlaskClient, shop: Shop) -> None:
    order = place(client, shop, (shop.oranges, 1000))
    payments.open_payment(order["id"])
    payments.flag(order["id"], "payments.capture gave up after 8 retries: Stripe 500")
    listed = client.get("/api/v1/payments/attention", headers=shop.operator_h)
    assert [p["order_id"] for p in listed.json["items"]] == [order["id"]]
    assert client.get("/api/v1/payments/attention", headers=shop.buyer_h).status_code == 403


def test_declined_card_marks_the_payment_failed_and_the_order_stays_payable(
    client: FlaskClient, fake_stripe: FakeStripe, shop: Shop
) -> None:
    order = place(client, shop, (shop.oranges, 1000))
    payment = payments.open_payment(order["id"])
    intent = dict(fake_stripe.intents[payment.stripe_payment_intent_id or ""])
    intent["last_payment_error"] = {"message": "Your card has insufficient funds.", "code": "card_declined"}
    deliver(client, fake_stripe, "payment_intent.payment_failed", intent)
    failed = client.get(f"/api/v1/orders/{order['id']}/payment", headers=shop.buyer_h).json
    assert failed["status"] == "failed"
    assert failed["failure_reason"] == "Your card has insufficient funds."
    assert db.session.get(Order, order["id"]).status == OrderStatus.PENDING_PAYMENT  # type: ignore[union-attr]
    deliver(client, fake_stripe, "payment_intent.amount_capturable_updated", fake_stripe.authorise(intent["id"]))
    assert db.session.get(Order, order["id"]).status == OrderStatus.PAID  # type: ignore[union-attr]


def test_events_out_of_order_leave_the_same_end_state(client: FlaskClient, fake_stripe: FakeStripe, shop: Shop) -> None:
    order, payment = paid_order(client, fake_stripe, shop)
    pack_all(client, shop, order, {order["parts"][0]["lines"][0]["id"]: 2000})
    payments.capture(order["id"])
    intent = fake_stripe.intents[payment.stripe_payment_intent_id or ""]
    # A late "authorised" and a "failed" after the capture change nothing.
    stale = dict(intent, status="requires_capture", amount_capturable=intent["amount"])
    deliver(client, fake_stripe, "payment_intent.amount_capturable_updated", stale)
    deliver(client, fake_stripe, "payment_intent.payment_failed", stale)
    deliver(client, fake_stripe, "payment_intent.succeeded", intent)
    db.session.expire_all()
    settled = db.session.get(Payment, payment.id)
    assert settled is not None
    assert settled.status == PaymentStatus.CAPTURED
    assert settled.amount_captured == 1998
    assert db.session.scalar(select(func.count()).select_from(LedgerTransaction)) == 1


def test_cancelling_before_capture_releases_the_authorisation(
    client: FlaskClient, fake_stripe: FakeStripe, shop: Shop
) -> None:
    order, payment = paid_order(client, fake_stripe, shop)
    client.post(f"/api/v1/orders/{order['id']}/cancel", json={"reason": "changed my mind"}, headers=shop.buyer_h)
    assert db.session.scalars(select(OutboxMessage.task).where(OutboxMessage.task.like("payments.settle%"))).all()
    payments.settle_closed_order(order["id"])
    assert fake_stripe.intents[payment.stripe_payment_intent_id or ""]["status"] == "canceled"
    assert db.session.get(Payment, payment.id).status == PaymentStatus.CANCELLED  # type: ignore[union-attr]
    assert db.session.scalar(select(func.count()).select_from(LedgerTransaction)) == 0


def test_a_payment_arriving_after_expiry_is_given_back(
    client: FlaskClient, fake_stripe: FakeStripe, shop: Shop
) -> None:
    order = place(client, shop, (shop.oranges, 1000))
    payment = payments.open_payment(order["id"])
    assert orders.expire_unpaid(utcnow() + timedelta(hours=1)) == 1
    deliver(
        client,
        fake_stripe,
        "payment_intent.amount_capturable_updated",
        fake_stripe.authorise(payment.stripe_payment_intent_id or ""),
    )
    assert db.session.get(Order, order["id"]).status == OrderStatus.EXPIRED  # type: ignore[union-attr]
    queued = db.session.scalars(
        select(OutboxMessage.kwargs).where(OutboxMessage.task == "payments.settle_closed_order")
    ).all()
    assert {"order_id": order["id"]} in [{k: v for k, v in q.items() if k == "order_id"} for q in queued]
    payments.settle_closed_order(order["id"])
    assert fake_stripe.intents[payment.stripe_payment_intent_id or ""]["status"] == "canceled"


def test_cancelling_after_capture_refunds_everything_once(
    client: FlaskClient, fake_stripe: FakeStripe, shop: Shop
) -> None:
    order, payment = paid_order(client, fake_stripe, shop, (shop.oranges, 2000), (shop.nuts, 1000))
    lines = [line for part in order["parts"] for line in part["lines"]]
    pack_all(client, shop, order, {line["id"]: line["ordered_g"] for line in lines})
    payments.capture(order["id"])
    client.post(f"/api/v1/orders/{order['id']}/cancel", json={"reason": "spoiled in transit"}, headers=shop.operator_h)
    payments.settle_closed_order(order["id"])
    payments.settle_closed_order(order["id"])  # delivered twice
    (refund,) = db.session.get(Payment, payment.id).refunds  # type: ignore[union-attr]
    payments.process_refund(refund.id)
    payments.process_refund(refund.id)
    settled = db.session.get(Payment, payment.id)
    assert settled is not None
    assert settled.amount_refunded == settled.amount_captured == 1998 + 2400
    assert fake_stripe.total_refunded(payment.stripe_payment_intent_id or "") == 1998 + 2400
    for account in ("gateway_cash:stripe", "platform_commission", f"farm_payable:{shop.orchard.id}"):
        assert ledger.balance(account) == 0
    assert_ledger_balances()


def test_operator_refunds_grams_of_a_line_never_more_than_captured(
    client: FlaskClient, fake_stripe: FakeStripe, shop: Shop
) -> None:
    order, payment = paid_order(client, fake_stripe, shop, (shop.oranges, 2000))
    line = order["parts"][0]["lines"][0]
    pack_all(client, shop, order, {line["id"]: 2000})
    payments.capture(order["id"])
    url = f"/api/v1/orders/{order['id']}/refunds"
    body = {"lines": [{"line_id": line["id"], "grams": 500}], "reason": "bruised"}
    assert client.post(url, json=body, headers=shop.buyer_h).status_code == 403
    created = client.post(url, json=body, headers={**shop.operator_h, "Idempotency-Key": "r1"})
    assert created.status_code == 201, created.json
    assert created.json["amount"] == 500  # 9.99 x 0.5 = 4.995 -> 5.00
    replay = client.post(url, json=body, headers={**shop.operator_h, "Idempotency-Key": "r1"})
    assert replay.json["id"] == created.json["id"]
    too_much = client.post(
        url, json={"lines": [{"line_id": line["id"], "grams": 1600}], "reason": "x"}, headers=shop.operator_h
    )
    assert too_much.status_code == 422
    assert "lines.0.grams" in too_much.json["errors"]
    payments.process_refund(created.json["id"])
    rest = client.post(url, json={"reason": "all of it"}, headers=shop.operator_h)
    assert rest.json["amount"] == 1998 - 500
    payments.process_refund(rest.json["id"])
    assert fake_stripe.total_refunded(payment.stripe_payment_intent_id or "") == 1998
    assert ledger.balance(f"farm_payable:{shop.orchard.id}") == 0
    assert ledger.balance("platform_commission") == 0
    nothing_left = client.post(url, json={"reason": "again"}, headers=shop.operator_h)
    assert nothing_left.status_code == 422


def test_a_refund_naming_a_line_twice_is_422_and_writes_nothing(
    client: FlaskClient, fake_stripe: FakeStripe, shop: Shop
) -> None:
    """Each line is checked against what is left of it: named twice, its
    grams would together pass what was captured."""
    order, _ = paid_order(client, fake_stripe, shop, (shop.oranges, 2000))
    line = order["parts"][0]["lines"][0]
    pack_all(client, shop, order, {line["id"]: 2000})
    payments.capture(order["id"])
    twice = [{"line_id": line["id"], "grams": 1500}, {"line_id": line["id"], "grams": 1500}]

    response = client.post(
        f"/api/v1/orders/{order['id']}/refunds", json={"lines": twice, "reason": "x"}, headers=shop.operator_h
    )

    assert response.status_code == 422 and response.content_type == "application/problem+json"
    assert list(response.json["errors"]) == ["lines.1.line_id"]
    assert db.session.scalar(select(func.count()).select_from(Refund)) == 0


def test_refund_before_capture_is_409(client: FlaskClient, fake_stripe: FakeStripe, shop: Shop) -> None:
    order, _ = paid_order(client, fake_stripe, shop)
    response = client.post(f"/api/v1/orders/{order['id']}/refunds", json={"reason": "x"}, headers=shop.operator_h)
    assert response.status_code == 409
    assert response.json["current_status"] == "authorised"


def test_capture_before_packing_is_refused(client: FlaskClient, fake_stripe: FakeStripe, shop: Shop) -> None:
    order, _ = paid_order(client, fake_stripe, shop)
    with pytest.raises(Exception, match="not packed"):
        payments.capture(order["id"])
    assert db.session.scalar(select(func.count()).select_from(LedgerTransaction)) == 0


@pytest.mark.parametrize(
    "header",
    [
        None,
        "t=1,v1=deadbeef",
        sign(b"{}", WEBHOOK_SECRET),  # signed, but for another body
        sign(b"BODY", WEBHOOK_SECRET, timestamp=1_000_000_000),  # too old
        sign(b"BODY", "whsec_someone_else"),
    ],
    # Named, not shown: a signature holds the time, and xdist's workers must collect the same ids.
    ids=["missing", "garbage", "other-body", "too-old", "other-secret"],
)
def test_forged_or_stale_webhooks_are_400_and_store_nothing(
    client: FlaskClient, fake_stripe: FakeStripe, header: str | None
) -> None:
    payload = fake_stripe.event("payment_intent.succeeded", {"id": "pi_x", "amount_received": 1})
    if header is not None and "BODY" in json.dumps(header):
        header = None
    if header is not None and header.startswith("t=1000000000"):
        header = sign(payload, WEBHOOK_SECRET, timestamp=1_000_000_000)
    response = client.post(
        "/api/v1/webhooks/stripe",
        data=payload,
        headers={"Content-Type": "application/json", **({"Stripe-Signature": header} if header else {})},
    )
    assert response.status_code == 400
    assert response.content_type == "application/problem+json"
    assert db.session.scalar(select(func.count()).select_from(StripeEvent)) == 0


def test_unknown_event_types_are_acknowledged_and_ignored(client: FlaskClient, fake_stripe: FakeStripe) -> None:
    response = deliver(client, fake_stripe, "customer.created", {"id": "cus_1"})
    assert response.status_code == 200
    assert response.json == {"result": "ignored"}
