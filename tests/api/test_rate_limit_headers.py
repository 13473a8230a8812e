"""Rate-limited endpoints say their limit on every answer, and say to wait
(Retry-After) only when the client should: on the 429."""

from __future__ import annotations

from flask.testing import FlaskClient

from market.accounts.models import Role
from tests.factories import PASSWORD, user_with_token
from tests.shop import Shop


def test_a_placed_order_shows_the_limit_but_no_retry_after(client: FlaskClient, shop: Shop) -> None:
    body = {"lines": [{"listing_id": shop.oranges.id, "grams": 1000}], "fulfilment_point_id": shop.station.id}
    placed = client.post("/api/v1/orders", json=body, headers=shop.buyer_h)
    assert placed.status_code == 201
    assert "Retry-After" not in placed.headers
    assert placed.headers["X-RateLimit-Limit"] == "20"
    assert placed.headers["X-RateLimit-Remaining"] == "19"
    assert int(placed.headers["X-RateLimit-Reset"]) > 0


def test_a_refusal_other_than_429_on_a_limited_endpoint_has_no_retry_after(client: FlaskClient, shop: Shop) -> None:
    body = {"lines": [{"listing_id": shop.oranges.id, "grams": 10_000_000}], "fulfilment_point_id": shop.station.id}
    short = client.post("/api/v1/orders", json=body, headers=shop.buyer_h)
    assert short.status_code == 409
    assert "Retry-After" not in short.headers and "X-RateLimit-Limit" in short.headers


def test_a_successful_login_has_no_retry_after_and_the_429_has_one(client: FlaskClient) -> None:
    user, _ = user_with_token(Role.BUYER)
    login = {"email": user.email, "password": PASSWORD}
    issued = client.post("/api/v1/auth/tokens", json=login)
    assert issued.status_code == 201, issued.json
    assert "Retry-After" not in issued.headers and issued.headers["X-RateLimit-Remaining"] == "9"
    answers = [client.post("/api/v1/auth/tokens", json=login) for _ in range(10)]
    assert [a.status_code for a in answers] == [201] * 9 + [429]
    assert all("Retry-After" not in a.headers for a in answers[:9])
    assert 1 <= int(answers[-1].headers["Retry-After"]) <= 60
