"""The turns an order's life can take after the money is held, each against
the fake Stripe: what the buyer, the farm and each premium programme end up
with is decided by the payment's state (docs/settlement.md)."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from market.db import unit_of_work
from market.extensions import TransientError, db
from market.ledger import service as ledger
from market.notifications import service as notifications
from market.notifications.models import Notification
from market.outbox import OutboxMessage
from market.payments import service as payments
from market.payments.models import Payment, PaymentStatus, Refund, RefundStatus
from market.premiums.models import PremiumProgramme
from market.settlement.checks import check_ledger
from tests.factories import ListingFactory
from tests.fakes.stripe_server import FakeStripe, FakeStripeServer
from tests.payments.conftest import stripe_settings
from tests.payments.test_stripe_payments import deliver, pack_all, paid_order
from tests.premiums.test_premiums import programme
from tests.shop import Shop, part_of


@pytest.fixture
def app_overrides(stripe_server: FakeStripeServer) -> dict[str, Any]:
    return stripe_settings(stripe_server)


def used(programme_id: int) -> int:
    db.session.expire_all()
    found = db.session.get(PremiumProgramme, programme_id)
    assert found is not None
    return found.budget_used


def payment_of(order_id: int) -> Payment:
    db.session.expire_all()
    return db.session.scalars(select(Payment).where(Payment.order_id == order_id)).one()


def weighed(order: dict[str, Any], grams: int) -> dict[int, int]:
    return {line["id"]: grams for part in order["parts"] for line in part["lines"]}


def captured_order(client: FlaskClient, fake: FakeStripe, shop: Shop) -> tuple[dict[str, Any], Payment]:
    """2 kg of oranges paid by card, packed as ordered and captured."""
    order, payment = paid_order(client, fake, shop)
    pack_all(client, shop, order, weighed(order, 2000))
    payments.capture(order["id"])
    return order, payment


def refund_all_pending() -> None:
    for refund_id in db.session.scalars(select(Refund.id).where(Refund.status == RefundStatus.PENDING)).all():
        payments.process_refund(refund_id)


def cancel(client: FlaskClient, shop: Shop, order: dict[str, Any]) -> None:
    response = client.post(f"/api/v1/orders/{order['id']}/cancel", json={"reason": "late"}, headers=shop.operator_h)
    assert response.status_code == 200, response.json


def test_a_packed_order_cancelled_before_capture_gives_the_sponsor_budget_back(
    client: FlaskClient, fake_stripe: FakeStripe, shop: Shop
) -> None:
    sponsored = programme(client, shop, funded_by="sponsor", budget_cap=5000)
    order, _ = paid_order(client, fake_stripe, shop)
    pack_all(client, shop, order, weighed(order, 2000))
    assert used(sponsored["id"]) == 200
    cancel(client, shop, order)
    payments.settle_closed_order(order["id"])
    assert used(sponsored["id"]) == 0
    assert payment_of(order["id"]).status == PaymentStatus.CANCELLED
    assert check_ledger() == []


def test_a_cancel_after_the_capture_was_decided_is_refunded_in_full_once_recorded(
    client: FlaskClient, fake_stripe: FakeStripe, shop: Shop
) -> None:
    sponsored = programme(client, shop, funded_by="sponsor", budget_cap=5000)
    order, payment = paid_order(client, fake_stripe, shop)
    pack_all(client, shop, order, weighed(order, 2000))
    with unit_of_work():
        payments._decide_capture(order["id"])  # the capture worker got this far
    cancel(client, shop, order)
    assert used(sponsored["id"]) == 200  # the money is being taken: the premium is not simply released
    payments.settle_closed_order(order["id"])  # finishes the capture and refunds it
    refund_all_pending()
    settled = payment_of(order["id"])
    assert settled.status == PaymentStatus.CAPTURED
    assert settled.amount_captured == settled.amount_refunded == 1998
    assert fake_stripe.total_refunded(payment.stripe_payment_intent_id or "") == 1998
    assert used(sponsored["id"]) == 0
    assert ledger.balance(ledger.farm_payable(shop.orchard.id)) == 0
    assert check_ledger() == []


def nuts_cancelled_while_capture_decided(
    client: FlaskClient, fake: FakeStripe, shop: Shop
) -> tuple[dict[str, Any], Payment, dict[str, Any]]:
    """Oranges and chestnuts paid and packed, the capture decided, then the
    chestnut part cancelled by its farm."""
    order, payment = paid_order(client, fake, shop, (shop.oranges, 2000), (shop.nuts, 1000))
    pack_all(client, shop, order, weighed(order, 1000) | {part_of(order, shop.orchard)["lines"][0]["id"]: 2000})
    with unit_of_work():
        payments._decide_capture(order["id"])
    nuts = part_of(order, shop.chestnuts)
    response = client.post(
        f"/api/v1/orders/{order['id']}/parts/{nuts['id']}/cancel", json={"reason": "mould"}, headers=shop.chestnut_h
    )
    assert response.status_code == 200, response.json
    return order, payment, nuts


def test_a_part_cancelled_while_its_capture_is_in_flight_is_refunded(
    client: FlaskClient, fake_stripe: FakeStripe, shop: Shop
) -> None:
    order, payment, nuts = nuts_cancelled_while_capture_decided(client, fake_stripe, shop)
    payments.capture(order["id"])
    payments.refund_cancelled_part(order["id"], nuts["id"])  # the part's own event: nothing more to do
    refund_all_pending()
    settled = payment_of(order["id"])
    assert (settled.amount_captured, settled.amount_refunded) == (1998 + 2400, 2400)
    assert fake_stripe.total_refunded(payment.stripe_payment_intent_id or "") == 2400
    assert check_ledger() == []


def test_a_capture_the_provider_refuses_is_on_the_attention_list_with_its_reason(
    client: FlaskClient, fake_stripe: FakeStripe, shop: Shop
) -> None:
    order, _ = paid_order(client, fake_stripe, shop)
    pack_all(client, shop, order, weighed(order, 2000))
    fake_stripe.refuse_next.append(("/v1/payment_intents/", "This PaymentIntent's authorization has expired."))
    payments.capture(order["id"])
    refused = payment_of(order["id"])
    assert refused.status == PaymentStatus.AUTHORISED
    assert refused.captured_lines == []
    listed = client.get("/api/v1/payments/attention", headers=shop.operator_h).json["items"]
    assert [p["order_id"] for p in listed] == [order["id"]]
    assert "authorization has expired" in listed[0]["attention"]
    # An operator's retry goes through, under a new key: Stripe would replay the refusal for the old one.
    assert payments.capture(order["id"]).status == PaymentStatus.CAPTURED
    keys = [a.idempotency_key for a in payment_of(order["id"]).attempts if a.action == "capture"]
    assert keys == [f"order-{order['id']}-capture", f"order-{order['id']}-capture-retry-1"]
    assert check_ledger() == []


def test_two_pending_refunds_take_back_only_what_the_refunded_grams_earned(
    client: FlaskClient, fake_stripe: FakeStripe, shop: Shop
) -> None:
    sponsored = programme(client, shop, funded_by="sponsor", budget_cap=5000)
    order, _ = captured_order(client, fake_stripe, shop)
    line_id = order["parts"][0]["lines"][0]["id"]
    for _ in range(2):
        body = {"reason": "bruised", "lines": [{"line_id": line_id, "grams": 500}]}
        response = client.post(f"/api/v1/orders/{order['id']}/refunds", json=body, headers=shop.operator_h)
        assert response.status_code == 201, response.json
    refund_all_pending()
    assert used(sponsored["id"]) == 100  # 1 kg kept earns 1.00 of the 2.00
    assert check_ledger() == []


def test_a_refund_that_fails_takes_no_premium_back(client: FlaskClient, fake_stripe: FakeStripe, shop: Shop) -> None:
    sponsored = programme(client, shop, funded_by="sponsor", budget_cap=5000)
    order, _ = captured_order(client, fake_stripe, shop)
    refund = payments.request_refund(None, order["id"], reason="bruised")
    fake_stripe.refuse_next.append(("/v1/refunds", "Charge has been disputed."))
    assert payments.process_refund(refund.id).status == RefundStatus.FAILED
    assert used(sponsored["id"]) == 200
    assert "disputed" in (payment_of(order["id"]).attention or "")
    assert check_ledger() == []


def test_a_cancelled_order_with_a_refund_pending_is_refunded_in_full(
    client: FlaskClient, fake_stripe: FakeStripe, shop: Shop
) -> None:
    order, payment = captured_order(client, fake_stripe, shop)
    line_id = order["parts"][0]["lines"][0]["id"]
    payments.request_refund(None, order["id"], lines=[payments.LineRefund(line_id, 500)], reason="bruised")
    cancel(client, shop, order)
    payments.settle_closed_order(order["id"])
    refund_all_pending()
    assert payment_of(order["id"]).amount_refunded == 1998
    assert fake_stripe.total_refunded(payment.stripe_payment_intent_id or "") == 1998


def test_a_refund_of_grams_worth_less_than_a_fen_is_a_422_naming_the_least(
    client: FlaskClient, fake_stripe: FakeStripe, shop: Shop
) -> None:
    cabbage = ListingFactory(farm=shop.orchard, product_name="Cabbage", price_per_kg=300)
    order, _ = paid_order(client, fake_stripe, shop, (cabbage, 2000))
    pack_all(client, shop, order, weighed(order, 2000))
    payments.capture(order["id"])
    line_id = order["parts"][0]["lines"][0]["id"]
    body = {"reason": "one leaf", "lines": [{"line_id": line_id, "grams": 1}]}
    response = client.post(f"/api/v1/orders/{order['id']}/refunds", json=body, headers=shop.operator_h)
    assert response.status_code == 422, response.json
    assert response.headers["Content-Type"] == "application/problem+json"
    assert "at least 2 g" in response.json["errors"]["lines.0.grams"][0]
    assert db.session.scalars(select(Refund)).all() == []
    body["lines"][0]["grams"] = 2
    assert client.post(f"/api/v1/orders/{order['id']}/refunds", json=body, headers=shop.operator_h).status_code == 201


def test_an_over_weighed_line_keeps_the_premium_its_kept_kilograms_earn(
    client: FlaskClient, fake_stripe: FakeStripe, shop: Shop
) -> None:
    sponsored = programme(client, shop, funded_by="sponsor", budget_cap=5000)
    order, _ = paid_order(client, fake_stripe, shop)
    pack_all(client, shop, order, weighed(order, 2200))  # 2 kg ordered: 2.00 reserved, the most it earns
    payments.capture(order["id"])
    assert used(sponsored["id"]) == 200
    line_id = order["parts"][0]["lines"][0]["id"]
    payments.request_refund(None, order["id"], lines=[payments.LineRefund(line_id, 200)], reason="bruised")
    refund_all_pending()
    assert used(sponsored["id"]) == 200  # 2 kg kept still earn 2.00
    payments.request_refund(None, order["id"], lines=[payments.LineRefund(line_id, 1000)], reason="bruised")
    refund_all_pending()
    assert used(sponsored["id"]) == 100  # 1 kg kept earns 1.00
    assert check_ledger() == []


def test_an_answer_that_may_hide_a_capture_is_looked_up_and_retried_not_refused(
    client: FlaskClient, fake_stripe: FakeStripe, shop: Shop
) -> None:
    """Stripe answers `idempotency_error` when a key comes back with other
    parameters (a key another database used first, say): whether anything
    was captured is unknown, so the intent is looked up, and while it holds
    the money the capture is retried (transient), never taken as refused."""
    order, payment = paid_order(client, fake_stripe, shop)
    pack_all(client, shop, order, weighed(order, 2000))
    key = f"order-{order['id']}-capture"
    fake_stripe.handle("POST", "/v1/refunds", {"payment_intent": "pi_elsewhere", "amount": "1"}, key)
    with pytest.raises(TransientError):
        payments.capture(order["id"])
    held = payment_of(order["id"])
    assert (held.status, held.attention) == (PaymentStatus.CAPTURING, None)
    assert fake_stripe.calls[f"GET /v1/payment_intents/{payment.stripe_payment_intent_id}"] == 1


def test_a_pending_refund_counts_once_stripe_says_it_succeeded(
    client: FlaskClient, fake_stripe: FakeStripe, shop: Shop
) -> None:
    order, _ = captured_order(client, fake_stripe, shop)
    fake_stripe.refund_outcomes.append("pending")
    refund = payments.process_refund(payments.request_refund(None, order["id"], reason="bruised").id)
    assert (refund.status, refund.stripe_refund_id is not None) == (RefundStatus.PENDING, True)
    assert payment_of(order["id"]).amount_refunded == 0
    payments.process_refund(refund.id)  # a worker's retry asks nothing more
    assert fake_stripe.calls["POST /v1/refunds"] == 1
    done = fake_stripe.finish_refund(refund.stripe_refund_id or "", "succeeded")
    assert deliver(client, fake_stripe, "refund.updated", done).status_code == 200
    assert deliver(client, fake_stripe, "charge.refund.updated", done).status_code == 200  # the same news twice
    settled = payment_of(order["id"])
    assert (settled.amount_refunded, settled.attention) == (1998, None)
    assert ledger.balance(ledger.farm_payable(shop.orchard.id)) == 0
    assert check_ledger() == []


def test_a_pending_refund_that_fails_stops_counting_and_goes_to_the_operators(
    client: FlaskClient, fake_stripe: FakeStripe, shop: Shop
) -> None:
    sponsored = programme(client, shop, funded_by="sponsor", budget_cap=5000)
    order, _ = captured_order(client, fake_stripe, shop)
    fake_stripe.refund_outcomes.append("pending")
    refund = payments.process_refund(payments.request_refund(None, order["id"], reason="bruised").id)
    failed = fake_stripe.finish_refund(refund.stripe_refund_id or "", "failed", "expired_or_canceled_card")
    assert deliver(client, fake_stripe, "refund.failed", failed).status_code == 200
    db.session.expire_all()
    assert db.session.get(Refund, refund.id).status == RefundStatus.FAILED  # type: ignore[union-attr]
    held = payment_of(order["id"])
    assert held.amount_refunded == 0
    assert "expired_or_canceled_card" in (held.attention or "")
    assert used(sponsored["id"]) == 200  # nothing was taken back
    listed = client.get("/api/v1/payments/attention", headers=shop.operator_h).json["items"]
    assert [p["order_id"] for p in listed] == [order["id"]]
    told = db.session.scalars(select(OutboxMessage).where(OutboxMessage.task == "notifications.handle_event")).all()
    assert {"event": "refund.failed", "order_id": order["id"], "refund_id": refund.id} in [m.kwargs for m in told]
    assert notifications.handle_event("refund-failed", "refund.failed", order_id=order["id"], refund_id=refund.id) == 1
    assert db.session.scalars(select(Notification.user_id).where(Notification.event == "refund.failed")).all() == [
        shop.buyer.id
    ]
    again = payments.request_refund(None, order["id"], reason="bruised, again")  # the grams are refundable again
    assert again.amount == 1998
    assert check_ledger() == []


def test_a_refund_event_that_overtakes_the_providers_answer_is_applied_by_its_key(
    client: FlaskClient, fake_stripe: FakeStripe, shop: Shop
) -> None:
    order, _ = captured_order(client, fake_stripe, shop)
    refund = payments.request_refund(None, order["id"], reason="bruised")
    fake_stripe.refund_outcomes.append("pending")
    status, made = fake_stripe.handle(
        "POST", "/v1/refunds", {"payment_intent": payment_of(order["id"]).stripe_payment_intent_id, "amount": "1998",
                                "metadata": {"key": f"refund-{refund.id}"}}, f"refund-{refund.id}",
    )  # fmt: skip
    assert status == 200
    done = fake_stripe.finish_refund(made["id"], "succeeded")
    assert deliver(client, fake_stripe, "refund.updated", done).status_code == 200
    assert payment_of(order["id"]).amount_refunded == 1998
    assert payments.process_refund(refund.id).status == RefundStatus.SUCCEEDED  # the worker's call changes nothing
    assert check_ledger() == []


def test_a_part_cancelled_while_a_refused_capture_was_decided_holds_no_premium(
    client: FlaskClient, fake_stripe: FakeStripe, shop: Shop
) -> None:
    """The capture was decided, the chestnut part cancelled (its premium is
    kept for the capture's refund), and then the provider refused the
    capture: nothing was taken, so the cancelled part holds nothing."""
    sponsored = programme(client, shop, funded_by="sponsor", budget_cap=5000)
    order, _, _ = nuts_cancelled_while_capture_decided(client, fake_stripe, shop)
    assert used(sponsored["id"]) == 200 + 100
    fake_stripe.refuse_next.append(("/v1/payment_intents/", "Amount exceeds the card's limit."))
    refused = payments.capture(order["id"])
    assert (refused.status, refused.captured_lines) == (PaymentStatus.AUTHORISED, [])
    assert used(sponsored["id"]) == 200  # the oranges' reservation stands, the chestnuts' is back
    assert check_ledger() == []
    assert payments.capture(order["id"]).amount_captured == 1998  # the retry takes the live part only
    assert used(sponsored["id"]) == 200
    assert check_ledger() == []
