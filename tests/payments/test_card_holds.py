"""Card holds lapse: each hold's end is tracked, the farm and operators are
warned before it, and a lapse on an open order asks the buyer to pay again
(a new intent) by a deadline, after which the order is cancelled with its
stock given back. Against the local fake Stripe."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from market.accounts.models import Role, User, UserRole
from market.catalog.models import Listing
from market.db import local_time, utcnow
from market.extensions import db
from market.notifications import service as notifications
from market.notifications.models import Notification
from market.orders.models import Order, OrderStatus
from market.outbox import OutboxMessage
from market.payments import service as payments
from market.payments.gateway import AmbiguousAnswer
from market.payments.models import Payment, PaymentStatus
from tests.fakes.stripe_server import FakeStripe, FakeStripeServer
from tests.payments.conftest import stripe_settings
from tests.payments.test_stripe_payments import deliver, pack_all, paid_order
from tests.shop import Shop, place

DAY = 86400


@pytest.fixture
def app_overrides(stripe_server: FakeStripeServer) -> dict[str, Any]:
    return stripe_settings(stripe_server)


def payment_of(order_id: int) -> Payment:
    payment = db.session.scalars(
        select(Payment).where(Payment.order_id == order_id).execution_options(populate_existing=True)
    ).one()
    return payment


def queued(task: str, order_id: int) -> int:
    return sum(
        1
        for message in db.session.scalars(select(OutboxMessage).where(OutboxMessage.task == task))
        if message.kwargs.get("order_id") == order_id
    )


def told(event: str, order_id: int) -> list[str]:
    """Handle every queued occurrence of `event` for the order; the emails of who was told."""
    handled = db.session.scalars(
        select(OutboxMessage).where(OutboxMessage.task == "notifications.handle_event").order_by(OutboxMessage.id)
    ).all()
    for message in handled:
        if message.kwargs["event"] == event and message.kwargs["order_id"] == order_id:
            notifications.handle_event(f"outbox-{message.id}", event, order_id=order_id)
    rows = db.session.scalars(select(Notification).where(Notification.event == event)).all()
    return sorted({db.session.get(User, row.user_id).email for row in rows})  # type: ignore[union-attr]


def lapse(client: FlaskClient, fake: FakeStripe, payment: Payment) -> None:
    """The hold lapses at the provider (if it has not yet) and its webhook comes."""
    intent_id = payment.stripe_payment_intent_id or ""
    intent = fake.lapse(intent_id) if fake.intents[intent_id]["status"] != "canceled" else fake.intents[intent_id]
    assert deliver(client, fake, "payment_intent.canceled", intent).status_code == 200


def pay_again(client: FlaskClient, fake: FakeStripe, order_id: int) -> Payment:
    """What the buyer does when asked: the new intent is opened by its
    worker, then authorised in Stripe.js."""
    assert queued("payments.open", order_id) >= 1
    renewed = payments.open_payment(order_id)
    intent = fake.authorise(renewed.stripe_payment_intent_id or "")
    assert deliver(client, fake, "payment_intent.amount_capturable_updated", intent).status_code == 200
    return payment_of(order_id)


def test_an_authorisation_records_when_its_hold_lapses_as_the_provider_says(
    client: FlaskClient, fake_stripe: FakeStripe, shop: Shop
) -> None:
    order = place(client, shop, (shop.oranges, 2000))
    opened = payments.open_payment(order["id"])
    intent = fake_stripe.authorise(opened.stripe_payment_intent_id or "", hold_seconds=5 * DAY)
    deliver(client, fake_stripe, "payment_intent.amount_capturable_updated", intent)
    assumed = payment_of(order["id"]).authorised_until
    assert assumed is not None and abs(assumed - (utcnow() + timedelta(days=7))) < timedelta(minutes=1)
    assert queued("payments.read_hold", order["id"]) == 1

    payments.read_hold(order["id"])  # Visa, say: five days, not seven
    expected = datetime.fromtimestamp(fake_stripe.holds_until[intent["id"]], UTC)
    assert payment_of(order["id"]).authorised_until == expected


def test_the_farm_and_operators_are_warned_once_before_a_hold_lapses(
    client: FlaskClient, fake_stripe: FakeStripe, shop: Shop
) -> None:
    order, _ = paid_order(client, fake_stripe, shop)
    until = payment_of(order["id"]).authorised_until
    assert until is not None
    assert payments.watch_holds(until - timedelta(hours=49))["warned"] == 0  # not yet within 48 hours
    assert payments.watch_holds(until - timedelta(hours=47))["warned"] == 1
    assert payments.watch_holds(until - timedelta(hours=1))["warned"] == 0  # once
    assert payment_of(order["id"]).hold_warned_at is not None
    farmer, operator = shop.orchard.owner.email, _operator_email()
    assert told("payment.hold_expiring", order["id"]) == sorted([farmer, operator])
    bodies = db.session.scalars(select(Notification.body).where(Notification.event == "payment.hold_expiring")).all()
    assert bodies and all(local_time(until) in body for body in bodies)  # in the marketplace's time zone


def _operator_email() -> str:
    return db.session.scalars(select(User).where(User.roles.any(UserRole.role == Role.OPERATOR))).one().email


def test_a_lapsed_hold_asks_the_buyer_to_pay_again_and_the_order_carries_on(
    client: FlaskClient, fake_stripe: FakeStripe, shop: Shop
) -> None:
    order, first = paid_order(client, fake_stripe, shop)
    old_intent = first.stripe_payment_intent_id
    lapse(client, fake_stripe, first)

    lapsed = payment_of(order["id"])
    assert lapsed.status == PaymentStatus.CREATING
    assert lapsed.renew_by is not None and lapsed.attention is not None and "lapsed" in lapsed.attention
    assert db.session.get(Order, order["id"]).status == OrderStatus.PAID  # type: ignore[union-attr]
    listed = client.get("/api/v1/payments/attention", headers=shop.operator_h).json["items"]
    assert [p["order_id"] for p in listed] == [order["id"]]

    renewed = payments.open_payment(order["id"])  # the worker opens the new intent ...
    assert renewed.status == PaymentStatus.REQUIRES_PAYMENT
    assert renewed.stripe_payment_intent_id not in (None, old_intent)
    shown = client.get(f"/api/v1/orders/{order['id']}/payment", headers=shop.buyer_h).json
    assert shown["client_secret"] == renewed.client_secret  # ... the buyer's page pays this one
    assert told("payment.hold_lapsed", order["id"]) == sorted([shop.buyer.email, shop.orchard.owner.email])

    # Packing while the buyer has not paid again captures nothing ...
    pack_all(client, shop, order, {order["parts"][0]["lines"][0]["id"]: 2000})
    assert payments.capture(order["id"]).status == PaymentStatus.REQUIRES_PAYMENT
    # ... and once they pay, the capture is queued and takes the new intent.
    intent = fake_stripe.authorise(renewed.stripe_payment_intent_id or "")
    deliver(client, fake_stripe, "payment_intent.amount_capturable_updated", intent)
    paid = payment_of(order["id"])
    assert (paid.status, paid.renew_by, paid.attention) == (PaymentStatus.AUTHORISED, None, None)
    assert queued("payments.capture", order["id"]) >= 1
    assert payments.capture(order["id"]).status == PaymentStatus.CAPTURED
    assert fake_stripe.intents[intent["id"]]["amount_received"] == 1998
    assert fake_stripe.intents[old_intent or ""]["status"] == "canceled"
    keys = [a.idempotency_key for a in payment_of(order["id"]).attempts]
    assert f"order-{order['id']}-intent-renewal-1" in keys and f"order-{order['id']}-capture-renewal-1" in keys
    assert told("payment.renewed", order["id"]) == [shop.orchard.owner.email]


def test_a_capture_refused_because_the_hold_lapsed_asks_the_buyer_to_pay_again(
    client: FlaskClient, fake_stripe: FakeStripe, shop: Shop
) -> None:
    order, first = paid_order(client, fake_stripe, shop)
    first_intent = first.stripe_payment_intent_id
    fake_stripe.lapse(first_intent or "")  # its webhook has not come yet
    pack_all(client, shop, order, {order["parts"][0]["lines"][0]["id"]: 2000})
    refused = payments.capture(order["id"])
    assert refused.status == PaymentStatus.CREATING and refused.renew_by is not None
    assert refused.captured_lines == [] and refused.capture_amount is None
    deliver(client, fake_stripe, "payment_intent.canceled", fake_stripe.intents[first_intent or ""])  # late: no change
    assert payment_of(order["id"]).status == PaymentStatus.CREATING

    paid = pay_again(client, fake_stripe, order["id"])
    assert paid.status == PaymentStatus.AUTHORISED
    assert payments.capture(order["id"]).status == PaymentStatus.CAPTURED


def test_a_buyer_who_does_not_pay_again_in_time_has_the_order_cancelled_and_stock_returned(
    client: FlaskClient, fake_stripe: FakeStripe, shop: Shop
) -> None:
    stock = shop.oranges.stock_g
    order, first = paid_order(client, fake_stripe, shop)
    lapse(client, fake_stripe, first)
    renewed = payments.open_payment(order["id"])
    deadline = payment_of(order["id"]).renew_by
    assert deadline is not None
    assert payments.watch_holds(deadline - timedelta(minutes=1))["cancelled"] == 0
    assert payments.watch_holds(deadline + timedelta(minutes=1))["cancelled"] == 1

    cancelled = db.session.get(Order, order["id"], populate_existing=True)
    assert cancelled is not None and cancelled.status == OrderStatus.CANCELLED
    assert "lapsed" in (cancelled.cancel_reason or "")
    assert db.session.get(Listing, shop.oranges.id, populate_existing=True).stock_g == stock  # type: ignore[union-attr]
    assert payment_of(order["id"]).attention is None
    payments.settle_closed_order(order["id"])  # queued by the cancellation: the new intent is released
    assert payment_of(order["id"]).status == PaymentStatus.CANCELLED
    assert fake_stripe.intents[renewed.stripe_payment_intent_id or ""]["status"] == "canceled"


def test_a_payment_made_just_before_the_deadline_wins_over_the_cancellation(
    client: FlaskClient, fake_stripe: FakeStripe, shop: Shop
) -> None:
    order, first = paid_order(client, fake_stripe, shop)
    lapse(client, fake_stripe, first)
    deadline = payment_of(order["id"]).renew_by
    assert deadline is not None
    pay_again(client, fake_stripe, order["id"])
    assert payments.watch_holds(deadline + timedelta(minutes=1))["cancelled"] == 0
    assert db.session.get(Order, order["id"]).status == OrderStatus.PAID  # type: ignore[union-attr]


def test_a_lapse_whose_webhook_never_came_is_found_by_the_watcher(
    client: FlaskClient, fake_stripe: FakeStripe, shop: Shop
) -> None:
    order, first = paid_order(client, fake_stripe, shop)
    fake_stripe.lapse(first.stripe_payment_intent_id or "")
    until = payment_of(order["id"]).authorised_until
    assert until is not None
    assert payments.watch_holds(until + timedelta(minutes=1))["checked"] == 1
    assert payment_of(order["id"]).renew_by is not None


def test_a_hold_that_lapses_on_a_closed_order_is_simply_gone(
    client: FlaskClient, fake_stripe: FakeStripe, shop: Shop
) -> None:
    order, first = paid_order(client, fake_stripe, shop)
    client.post(f"/api/v1/orders/{order['id']}/cancel", json={"reason": "changed my mind"}, headers=shop.buyer_h)
    lapse(client, fake_stripe, first)
    closed = payment_of(order["id"])
    assert (closed.status, closed.renew_by, closed.attention) == (PaymentStatus.CANCELLED, None, None)


def test_a_new_intent_cancelled_at_the_provider_before_it_was_paid_still_ends_at_the_deadline(
    client: FlaskClient, fake_stripe: FakeStripe, shop: Shop
) -> None:
    stock = shop.oranges.stock_g
    order, first = paid_order(client, fake_stripe, shop)
    lapse(client, fake_stripe, first)
    renewed = payments.open_payment(order["id"])
    intent_id = renewed.stripe_payment_intent_id or ""
    status, cancelled_intent = fake_stripe.handle("POST", f"/v1/payment_intents/{intent_id}/cancel", {}, None)
    assert status == 200  # in Stripe's dashboard
    assert deliver(client, fake_stripe, "payment_intent.canceled", cancelled_intent).status_code == 200

    waiting = payment_of(order["id"])
    assert waiting.status == PaymentStatus.FAILED and waiting.renew_by is not None
    assert "cancelled at the payment provider" in (waiting.failure_reason or "")
    assert waiting.attention is not None  # still before the operators
    deadline = waiting.renew_by
    assert payments.watch_holds(deadline + timedelta(minutes=1))["cancelled"] == 1
    closed = db.session.get(Order, order["id"], populate_existing=True)
    assert closed is not None and closed.status == OrderStatus.CANCELLED
    assert db.session.get(Listing, shop.oranges.id, populate_existing=True).stock_g == stock  # type: ignore[union-attr]
    payments.settle_closed_order(order["id"])  # queued by the cancellation: nothing left to release
    assert payment_of(order["id"]).status == PaymentStatus.CANCELLED


@pytest.mark.parametrize("made", [True, False], ids=["made, its answer lost", "never reached Stripe"])
def test_a_new_intent_asked_for_without_an_answer_is_asked_again_under_its_key(
    client: FlaskClient, fake_stripe: FakeStripe, shop: Shop, made: bool
) -> None:
    """The worker's request for the intent a lapsed hold asks for anew is
    lost on the network (Stripe made the intent and its answer never came,
    or Stripe never got it): the payment is still being opened, and the
    retry asks under the same key for the same amount, so the buyer is
    asked to pay the one intent Stripe made."""
    order, first = paid_order(client, fake_stripe, shop)
    old_intent, held = first.stripe_payment_intent_id, first.amount
    lapse(client, fake_stripe, first)
    key = f"order-{order['id']}-intent-renewal-1"
    fake_stripe.lose_next.append(("POST /v1/payment_intents", made))
    with pytest.raises(AmbiguousAnswer):
        payments.open_payment(order["id"])
    fake_stripe.reconnect()
    waiting = payment_of(order["id"])
    assert (waiting.status, waiting.stripe_payment_intent_id) == (PaymentStatus.CREATING, None)
    assert len(fake_stripe.intents) == (2 if made else 1)

    renewed = payments.open_payment(order["id"])
    assert renewed.status == PaymentStatus.REQUIRES_PAYMENT
    new = [i for i in fake_stripe.intents if i != old_intent]
    assert new == [renewed.stripe_payment_intent_id]
    assert fake_stripe.intents[new[0]]["amount"] == renewed.amount == held
    asked = [(a.action, a.idempotency_key) for a in renewed.attempts if a.idempotency_key.startswith(key)]
    assert asked == [("create_intent_unanswered", key), ("create_intent", key)]
    assert pay_again(client, fake_stripe, order["id"]).status == PaymentStatus.AUTHORISED


def test_a_new_intent_cancelled_at_stripe_before_its_lost_answer_was_asked_again_is_known_cancelled(
    client: FlaskClient, fake_stripe: FakeStripe, shop: Shop
) -> None:
    """Stripe made the new intent and its answer was lost; before the
    worker asked again, someone cancelled it in Stripe's dashboard (its
    webhook named an intent the marketplace did not know yet). Asked again
    under its key, Stripe answers what it made then, an intent waiting for
    payment: the payment is looked up afresh, and ends failed as any new
    intent cancelled before it was paid, not waiting for a payment that
    cannot come."""
    order, first = paid_order(client, fake_stripe, shop)
    old_intent = first.stripe_payment_intent_id
    lapse(client, fake_stripe, first)
    fake_stripe.lose_next.append(("POST /v1/payment_intents", True))
    with pytest.raises(AmbiguousAnswer):
        payments.open_payment(order["id"])
    fake_stripe.reconnect()
    (lost,) = [i for i in fake_stripe.intents if i != old_intent]
    status, cancelled_intent = fake_stripe.handle("POST", f"/v1/payment_intents/{lost}/cancel", {}, None)
    assert status == 200  # in Stripe's dashboard
    assert deliver(client, fake_stripe, "payment_intent.canceled", cancelled_intent).status_code == 200

    renewed = payments.open_payment(order["id"])
    assert renewed.stripe_payment_intent_id == lost
    assert renewed.status == PaymentStatus.FAILED
    assert "cancelled at the payment provider" in (renewed.failure_reason or "")
    assert payments.watch_holds(renewed.renew_by + timedelta(minutes=1))["cancelled"] == 1  # type: ignore[operator]


@pytest.mark.parametrize("cancelled", ["before the hold lapsed", "while the new intent was not made yet"])
def test_the_new_intent_asks_for_what_the_order_can_still_reach(
    client: FlaskClient, fake_stripe: FakeStripe, shop: Shop, cancelled: str
) -> None:
    """A paid order of two farms loses one farm's part (cancelled before any
    money was taken, so the order can reach less), and its hold lapses: the
    intent the buyer is asked to pay anew holds what the order can reach
    now, not what the first hold held."""
    order, first = paid_order(client, fake_stripe, shop, (shop.oranges, 2000), (shop.nuts, 1000))
    held = first.amount
    (orchard,) = [p for p in order["parts"] if p["farm_id"] == shop.orchard.id]
    url = f"/api/v1/orders/{order['id']}/parts/{orchard['id']}/cancel"

    def cancel_the_orchards_part() -> None:
        assert client.post(url, json={"reason": "hail"}, headers=shop.orchard_h).status_code == 200

    if cancelled == "before the hold lapsed":
        cancel_the_orchards_part()
    lapse(client, fake_stripe, first)
    if cancelled != "before the hold lapsed":
        cancel_the_orchards_part()
    reach = db.session.get(Order, order["id"], populate_existing=True).max_total  # type: ignore[union-attr]
    assert reach < held

    renewed = pay_again(client, fake_stripe, order["id"])
    assert renewed.status == PaymentStatus.AUTHORISED
    assert renewed.amount == fake_stripe.intents[renewed.stripe_payment_intent_id or ""]["amount"] == reach
