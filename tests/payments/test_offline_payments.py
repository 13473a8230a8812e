"""Offline payments (cash, bank transfer) confirmed by an operator: the
embedded default when no Stripe key is configured."""

from __future__ import annotations

from datetime import timedelta

from flask.testing import FlaskClient
from sqlalchemy import func, select

from market.db import utcnow
from market.extensions import db
from market.ledger import service as ledger
from market.ledger.models import LedgerTransaction
from market.orders import service as orders
from market.orders.models import Order, OrderStatus
from market.payments import service as payments
from market.payments.models import PaymentStatus, Provider
from tests.shop import Shop, part_of, place


def confirm(client: FlaskClient, shop: Shop, order_id: int, amount: int, headers: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return client.post(
        f"/api/v1/orders/{order_id}/payment/offline-confirmation",
        json={"amount": amount, "reference": "cash at Xialiao station"},
        headers=headers or shop.operator_h,
    )


def transactions() -> int:
    return db.session.scalar(select(func.count()).select_from(LedgerTransaction)) or 0


def test_offline_payment_waits_for_an_operator(client: FlaskClient, shop: Shop) -> None:
    order = place(client, shop, (shop.oranges, 2000))
    payment = payments.open_payment(order["id"])
    assert payment.provider == Provider.OFFLINE
    assert payment.status == PaymentStatus.REQUIRES_PAYMENT
    assert payment.amount == order["max_total"]
    resource = client.get(f"/api/v1/orders/{order['id']}/payment", headers=shop.buyer_h).json
    assert resource["client_secret"] is None


def test_confirming_the_wrong_amount_is_422_and_writes_nothing(client: FlaskClient, shop: Shop) -> None:
    order = place(client, shop, (shop.oranges, 2000))
    payments.open_payment(order["id"])
    response = confirm(client, shop, order["id"], order["total"])
    assert response.status_code == 422
    assert "amount" in response.json["errors"]
    assert db.session.get(Order, order["id"]).status == OrderStatus.PENDING_PAYMENT  # type: ignore[union-attr]
    assert transactions() == 0


def test_a_part_cancelled_before_payment_lowers_what_the_payment_asks_for(client: FlaskClient, shop: Shop) -> None:
    nuts_alone = place(client, shop, (shop.nuts, 1000))
    order = place(client, shop, (shop.oranges, 2000), (shop.nuts, 1000))
    payments.open_payment(order["id"])
    orchard = part_of(order, shop.orchard)
    cancelled = client.post(
        f"/api/v1/orders/{order['id']}/parts/{orchard['id']}/cancel", json={"reason": "hail"}, headers=shop.orchard_h
    )
    assert cancelled.status_code == 200, cancelled.json
    left = client.get(f"/api/v1/orders/{order['id']}", headers=shop.buyer_h).json
    assert (left["total"], left["max_total"]) == (nuts_alone["total"], nuts_alone["max_total"])
    payment = client.get(f"/api/v1/orders/{order['id']}/payment", headers=shop.buyer_h).json
    assert payment["amount"] == nuts_alone["max_total"] < order["max_total"]

    assert confirm(client, shop, order["id"], order["max_total"]).status_code == 422
    assert confirm(client, shop, order["id"], nuts_alone["max_total"]).status_code == 200


def test_only_operators_confirm(client: FlaskClient, shop: Shop) -> None:
    order = place(client, shop, (shop.oranges, 2000))
    payments.open_payment(order["id"])
    assert confirm(client, shop, order["id"], order["max_total"], shop.buyer_h).status_code == 403


def test_confirmed_cash_pays_the_order_and_packing_hands_back_the_difference(client: FlaskClient, shop: Shop) -> None:
    order = place(client, shop, (shop.oranges, 2000))
    payments.open_payment(order["id"])
    confirmed = confirm(client, shop, order["id"], order["max_total"])
    assert confirmed.status_code == 200, confirmed.json
    assert confirmed.json["status"] == "authorised"
    assert db.session.get(Order, order["id"]).status == OrderStatus.PAID  # type: ignore[union-attr]
    assert ledger.balance("gateway_cash:offline") == order["max_total"]
    again = confirm(client, shop, order["id"], order["max_total"])
    assert again.status_code == 409
    assert again.json["detail"] == (
        f"The payment of order {order['id']} is authorised already (confirmed as cash at Xialiao station): "
        "it takes no further confirmation."
    )
    assert ledger.balance("gateway_cash:offline") == order["max_total"]

    line = order["parts"][0]["lines"][0]
    client.post(
        f"/api/v1/orders/{order['id']}/parts/{order['parts'][0]['id']}/pack",
        json={"weights": [{"line_id": line["id"], "weighed_g": 1900}]},
        headers=shop.orchard_h,
    )
    payments.capture(order["id"])
    assert ledger.balance("gateway_cash:offline") == 1898  # 9.99 x 1.9 kg kept, the rest handed back
    assert ledger.balance(ledger.BUYER_DEPOSITS) == 0
    assert ledger.balance(f"farm_payable:{shop.orchard.id}") == -(1898 - 95)
    assert ledger.balance("platform_commission") == -95


def test_paying_an_expired_order_is_refused(client: FlaskClient, shop: Shop) -> None:
    order = place(client, shop, (shop.oranges, 2000))
    payments.open_payment(order["id"])
    orders.expire_unpaid(utcnow() + timedelta(hours=1))
    response = confirm(client, shop, order["id"], order["max_total"])
    assert response.status_code == 409
    assert response.json["current_status"] == "expired"
    assert transactions() == 0


def test_cancelled_after_cash_was_taken_returns_the_deposit(client: FlaskClient, shop: Shop) -> None:
    order = place(client, shop, (shop.oranges, 2000))
    payments.open_payment(order["id"])
    confirm(client, shop, order["id"], order["max_total"])
    client.post(f"/api/v1/orders/{order['id']}/cancel", json={"reason": "no longer needed"}, headers=shop.buyer_h)
    payments.settle_closed_order(order["id"])
    payments.settle_closed_order(order["id"])
    assert ledger.balance("gateway_cash:offline") == 0
    assert ledger.balance(ledger.BUYER_DEPOSITS) == 0
    assert transactions() == 2
