"""Hoarding stock with orders never paid: one buyer placing unpaid orders
until a listing's stock is gone for everybody until they expire, one at a
time, all at once, or as fast as the API takes them.

Each test is one attack; it passes when the attack is refused and the
refusal took no stock and wrote nothing."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from market.db import utcnow
from market.extensions import db
from market.orders import service
from market.orders.models import Order
from market.orders.service import LineRequest
from market.outbox import OutboxMessage
from tests.factories import ListingFactory, UserFactory, bearer, token_for
from tests.orders.test_concurrency import buyers, pg_app, race, stock_of  # noqa: F401 (pg_app: a fixture)
from tests.shop import Shop, pay

PROBLEM = "application/problem+json"
MAX_ORDERS = 3
MAX_G = 10_000


@pytest.fixture
def app_overrides() -> dict[str, Any]:
    return {"BUYER_MAX_UNPAID_ORDERS": MAX_ORDERS, "BUYER_MAX_UNPAID_G": MAX_G, "TRUSTED_PROXY_COUNT": 1}


def count(model: type) -> int:
    return db.session.scalar(select(func.count()).select_from(model)) or 0


def order(client: FlaskClient, shop: Shop, grams: int, headers: dict[str, str] | None = None) -> TestResponse:
    body = {"lines": [{"listing_id": shop.oranges.id, "grams": grams}], "fulfilment_point_id": shop.station.id}
    return client.post("/api/v1/orders", json=body, headers=headers or shop.buyer_h)


def state(shop: Shop) -> tuple[int, int, int]:
    """Orders, outbox rows and the oranges' stock: what a refusal must leave alone."""
    return count(Order), count(OutboxMessage), stock_of(shop.oranges.id)


def assert_refused(response: TestResponse, status: int, slug: str) -> None:
    assert response.status_code == status, response.json
    assert response.content_type == PROBLEM
    assert response.json["type"] == f"/problems/{slug}"


def test_one_buyer_cannot_hold_more_unpaid_orders_than_allowed(client: FlaskClient, shop: Shop) -> None:
    placed = [order(client, shop, 1000) for _ in range(MAX_ORDERS)]
    assert [p.status_code for p in placed] == [201] * MAX_ORDERS
    before = state(shop)
    refused = order(client, shop, 1000)
    assert_refused(refused, 409, "unpaid-orders-limit")
    assert state(shop) == before
    assert (refused.json["unpaid_orders"], refused.json["max_unpaid_orders"]) == (MAX_ORDERS, MAX_ORDERS)
    # Another buyer is not held back by this one.
    assert order(client, shop, 1000, shop.other_buyer_h).status_code == 201
    # Paying one makes room for the next.
    pay(placed[0].json["id"])
    assert order(client, shop, 1000).status_code == 201


def test_one_buyer_cannot_hold_more_unpaid_grams_than_allowed(client: FlaskClient, shop: Shop) -> None:
    assert order(client, shop, 6000).status_code == 201
    before = state(shop)
    refused = order(client, shop, 5000)
    assert_refused(refused, 409, "unpaid-grams-limit")
    assert state(shop) == before
    assert (refused.json["unpaid_g"], refused.json["max_unpaid_g"]) == (6000, MAX_G)
    assert order(client, shop, 4000).status_code == 201  # exactly up to the cap


def test_one_order_beyond_the_gram_cap_is_refused_outright(client: FlaskClient, shop: Shop) -> None:
    before = state(shop)
    refused = order(client, shop, MAX_G + 500)
    assert_refused(refused, 422, "validation-error")
    assert state(shop) == before
    assert "lines" in refused.json["errors"]


def test_cancelled_and_expired_orders_give_their_allowance_back(client: FlaskClient, shop: Shop) -> None:
    first = order(client, shop, 5000).json
    assert order(client, shop, 5000).status_code == 201
    assert_refused(order(client, shop, 1000), 409, "unpaid-grams-limit")
    url = f"/api/v1/orders/{first['id']}/cancel"
    assert client.post(url, json={"reason": "changed my mind"}, headers=shop.buyer_h).status_code == 200
    assert order(client, shop, 5000).status_code == 201
    assert_refused(order(client, shop, 1000), 409, "unpaid-grams-limit")
    assert service.expire_unpaid(utcnow() + timedelta(hours=2)) == 2
    assert order(client, shop, MAX_G).status_code == 201


def test_placing_orders_is_rate_limited_per_account_not_per_address(
    app: Flask, client: FlaskClient, shop: Shop
) -> None:
    app.config.update(RATELIMIT_ORDERS="3 per minute", BUYER_MAX_UNPAID_ORDERS=100)
    # A new address for every order (through the trusted proxy) does not help.
    placed = [
        order(client, shop, 1000, shop.buyer_h | {"X-Forwarded-For": f"198.51.100.{n}"}).status_code for n in range(3)
    ]
    assert placed == [201] * 3
    before = state(shop)
    refused = order(client, shop, 1000, shop.buyer_h | {"X-Forwarded-For": "198.51.100.99"})
    assert refused.status_code == 429 and refused.content_type == PROBLEM
    assert int(refused.headers["Retry-After"]) > 0
    assert state(shop) == before
    # The account's limit is its own: another buyer at the same address still orders.
    other = order(client, shop, 1000, shop.other_buyer_h | {"X-Forwarded-For": "198.51.100.99"})
    assert other.status_code == 201


def test_a_token_the_api_does_not_know_is_refused_before_the_limit_counts_it(client: FlaskClient, shop: Shop) -> None:
    refused = order(client, shop, 1000, bearer("fm_not-a-token"))
    assert refused.status_code == 401 and refused.content_type == PROBLEM
    assert count(Order) == 0


@pytest.mark.parametrize(
    "case",
    [
        ({"BUYER_MAX_UNPAID_ORDERS": MAX_ORDERS}, 1000, 20, {"ok": MAX_ORDERS, "UnpaidOrdersLimit": 17}),
        # 3 x 3000 g fit in 10,000 g; a fourth does not.
        ({"BUYER_MAX_UNPAID_ORDERS": 100, "BUYER_MAX_UNPAID_G": MAX_G}, 3000, 12, {"ok": 3, "UnpaidGramsLimit": 9}),
    ],
    ids=["order-cap", "gram-cap"],
)
def test_many_orders_placed_at_once_by_one_buyer_stop_at_the_cap(
    app: Flask,
    pg_app: Flask,  # noqa: F811
    case: tuple[dict[str, int], int, int, dict[str, int]],
) -> None:
    """Every order in its own thread and connection, released together: the
    buyer's lock counts them one after the other. `case`: the caps, the
    grams of each order, how many orders, the outcomes."""
    caps, grams, attempts, expected = case
    pg_app.config.update(caps)
    listing = ListingFactory(stock_g=100_000, min_order_g=1000, step_g=1000)
    (actor,) = buyers(1)
    listing_id = listing.id

    def buy() -> object:
        return service.place_order(actor, lines=[LineRequest(listing_id, grams)], delivery_address="Lane 1, Xunwu")

    outcomes = race(pg_app, [buy for _ in range(attempts)])
    assert outcomes == Counter(expected)
    assert stock_of(listing_id) == 100_000 - expected["ok"] * grams


def test_the_whole_stock_of_a_listing_cannot_be_taken_by_one_buyer(client: FlaskClient, shop: Shop) -> None:
    """The attack itself: a listing with 100 kg and one buyer ordering 1 kg
    unpaid orders until nothing is left. The caps stop it while most of the
    stock is still there for the others."""
    buyer = UserFactory()
    headers = bearer(token_for(buyer))
    answers = Counter(order(client, shop, 2000, headers).status_code for _ in range(50))
    # Refused by the cap on unpaid orders, and past RATELIMIT_ORDERS (20 a minute) by the rate limit.
    assert answers == Counter({201: MAX_ORDERS, 409: 20 - MAX_ORDERS, 429: 30})
    assert stock_of(shop.oranges.id) == 100_000 - MAX_ORDERS * 2000
    assert order(client, shop, 1000).status_code == 201  # everyone else still buys
