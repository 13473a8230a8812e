"""A marketplace with settled orders to pay out: orders placed, paid,
packed by weight, captured and delivered, and farms set up for payouts."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from market.accounts.models import Role, User
from market.auth import Actor
from market.db import business_today, utcnow
from market.extensions import db
from market.outbox import OutboxMessage
from market.payments import service as payments
from market.payments.models import Payment, Provider
from market.payments.service import LineRefund
from market.payouts import service as payouts
from market.payouts.models import PayoutAccount
from tests.fakes.stripe_server import FakeStripe, FakeStripeServer, sign
from tests.payments.conftest import WEBHOOK_SECRET, stripe_settings
from tests.shop import Shop, place
from tests.workers.conftest import celery_app  # noqa: F401 (a fixture for this package)


@pytest.fixture
def stripe_server() -> Iterator[FakeStripeServer]:
    with FakeStripeServer() as server:
        yield server


@pytest.fixture
def fake(stripe_server: FakeStripeServer) -> FakeStripe:
    return stripe_server.fake


@pytest.fixture
def app_overrides() -> dict[str, Any]:
    return {"PAYOUT_HOLD_DAYS": 0}


def stripe_overrides(server: FakeStripeServer) -> dict[str, Any]:
    return {"PAYOUT_HOLD_DAYS": 0, **stripe_settings(server)}


def operator() -> Actor:
    user = User(email=f"op-{utcnow().timestamp()}@example.test", name="Operator", password_hash="x")
    db.session.add(user)
    db.session.commit()
    return Actor(user_id=user.id, roles=frozenset({Role.OPERATOR}))


def headers_of(shop: Shop, farm_id: int) -> dict[str, str]:
    return shop.orchard_h if farm_id == shop.orchard.id else shop.chestnut_h


def settled_order(
    client: FlaskClient, shop: Shop, *lines: Any, weighed: dict[int, int] | None = None, fake: FakeStripe | None = None,
    **extra: Any,
) -> dict[str, Any]:  # fmt: skip
    """Place (with `extra` fields), pay, pack (at `weighed` grams by listing
    id, else as ordered), capture, ship and deliver an order."""
    order = place(client, shop, *lines, delivery_address="寻乌县 长宁镇 12号", **extra)
    payment = payments.open_payment(order["id"])
    if payment.provider == Provider.STRIPE:
        assert fake is not None
        fake.authorise(payment.stripe_payment_intent_id or "")
        payments.intent_authorised(payment.stripe_payment_intent_id or "")
        db.session.commit()
    else:
        payments.confirm_offline(operator(), order["id"], amount=payment.amount, reference="cash at the station")
    grams = {listing.id: g for listing, g in lines} | (weighed or {})
    for part in order["parts"]:
        h = headers_of(shop, part["farm_id"])
        body = {"weights": [{"line_id": ln["id"], "weighed_g": grams[ln["listing_id"]]} for ln in part["lines"]]}
        url = f"/api/v1/orders/{order['id']}/parts/{part['id']}"
        assert client.post(f"{url}/pack", json=body, headers=h).status_code == 200
    payments.capture(order["id"])
    for part in order["parts"]:
        h = headers_of(shop, part["farm_id"])
        url = f"/api/v1/orders/{order['id']}/parts/{part['id']}"
        assert client.post(f"{url}/ship", headers=h).status_code == 200
        response = client.post(f"{url}/deliver", headers=h)
        assert response.status_code == 200, response.json
    return client.get(f"/api/v1/orders/{order['id']}", headers=shop.buyer_h).json  # type: ignore[no-any-return]


def refund(order_id: int, line_id: int, grams: int) -> None:
    made = payments.request_refund(operator(), order_id, lines=[LineRefund(line_id, grams)], reason="bruised")
    payments.process_refund(made.id)


def navel_bonus(client: FlaskClient, shop: Shop) -> dict[str, Any]:
    """A sponsor programme paying farms 1 yuan a kg on every line from now on."""
    programme = client.post(
        "/api/v1/premium-programmes",
        json={
            "name": "Navel bonus", "sponsor": "County co-op", "funded_by": "sponsor", "rate_per_kg": 100,
            "budget_cap": 100_000, "valid_from": (utcnow() - timedelta(days=1)).isoformat(),
        },
        headers=shop.operator_h,
    )  # fmt: skip
    assert programme.status_code == 201, programme.json
    return programme.json  # type: ignore[no-any-return]


def bank_details(client: FlaskClient, shop: Shop, farm_id: int) -> dict[str, Any]:
    body = {
        "method": "bank_transfer",
        "account_holder": "刘长生",
        "bank_name": "中国农业银行 寻乌支行",
        "account_number": "6228 4800 1234 5678 901",
    }
    response = client.post(f"/api/v1/farms/{farm_id}/payout-account", json=body, headers=headers_of(shop, farm_id))
    assert response.status_code == 200, response.json
    return response.json  # type: ignore[no-any-return]


def account_updated(client: FlaskClient, fake: FakeStripe, account: dict[str, Any], created: int | None = None) -> Any:
    payload = fake.event("account.updated", account)
    if created is not None:
        payload = json.dumps(json.loads(payload) | {"created": created}).encode()
    return client.post(
        "/api/v1/webhooks/stripe",
        data=payload,
        headers={"Stripe-Signature": sign(payload, WEBHOOK_SECRET), "Content-Type": "application/json"},
    )


def connect_stripe(client: FlaskClient, shop: Shop, fake: FakeStripe, farm_id: int) -> PayoutAccount:
    """The farmer asks for Stripe, the worker makes the account and link,
    the farmer finishes onboarding and Stripe says so by webhook."""
    response = client.post(
        f"/api/v1/farms/{farm_id}/payout-account", json={"method": "stripe"}, headers=headers_of(shop, farm_id)
    )
    assert response.status_code == 200, response.json
    account = payouts.connect_account(farm_id)
    assert account is not None and account.stripe_account_id is not None
    assert account_updated(client, fake, fake.finish_onboarding(account.stripe_account_id)).status_code == 200
    db.session.expire_all()
    return db.session.scalars(select(PayoutAccount).where(PayoutAccount.farm_id == farm_id)).one()


def run(client: FlaskClient, shop: Shop, period_end: date | None = None, **headers: str) -> Any:
    return client.post(
        "/api/v1/payout-runs",
        json={"period_end": (period_end or business_today()).isoformat()},
        headers=shop.operator_h | headers,
    )


def queued(task: str) -> list[dict[str, Any]]:
    return [m.kwargs for m in db.session.scalars(select(OutboxMessage).where(OutboxMessage.task == task))]


def payment_of(order_id: int) -> Payment:
    return db.session.scalars(select(Payment).where(Payment.order_id == order_id)).one()
