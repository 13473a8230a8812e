"""Placing an order with an Idempotency-Key on PostgreSQL: the key is held
by an advisory lock and stored in the order's own transaction."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from market import create_app
from market.catalog.models import Listing
from market.db import advisory_key, utcnow
from market.extensions import db
from market.idempotency import IdempotencyKey, idempotent_in_one_transaction
from market.orders.models import Order
from tests.conftest import needs, settings_for
from tests.shop import Shop

ORDERS = "/api/v1/orders"


@pytest.fixture(autouse=True)
def _postgresql() -> None:
    needs("postgresql")


def body(shop: Shop, grams: int = 2000) -> dict[str, object]:
    return {"lines": [{"listing_id": shop.oranges.id, "grams": grams}], "fulfilment_point_id": shop.station.id}


def orders() -> int:
    return db.session.scalar(select(func.count()).select_from(Order)) or 0


def keys() -> int:
    return db.session.scalar(select(func.count()).select_from(IdempotencyKey)) or 0


def stock(shop: Shop) -> int:
    return db.session.scalar(select(Listing.stock_g).where(Listing.id == shop.oranges.id)) or 0


def test_the_order_and_its_key_are_committed_together(client: FlaskClient, shop: Shop) -> None:
    headers = {**shop.buyer_h, "Idempotency-Key": "k-together"}
    first = client.post(ORDERS, json=body(shop), headers=headers)
    assert first.status_code == 201, first.json
    record = db.session.scalars(select(IdempotencyKey).where(IdempotencyKey.key == "k-together")).one()
    assert record.response_status == 201
    assert record.locked_until is None
    again = client.post(ORDERS, json=body(shop), headers=headers)
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Location"] == first.headers["Location"] == f"/api/v1/orders/{first.json['id']}"
    assert again.json == first.json
    assert (orders(), stock(shop)) == (1, 100_000 - 2000)


def test_a_repeat_while_the_first_holds_the_key_is_409_and_writes_nothing(
    app: Flask, client: FlaskClient, shop: Shop
) -> None:
    headers = {**shop.buyer_h, "Idempotency-Key": "k-held"}
    # The first request's lock, held by another connection as it would be mid-request.
    with db.engine.connect() as first:
        first.execute(select(func.pg_advisory_lock(advisory_key(shop.buyer.id, "k-held"))))
        repeat = client.post(ORDERS, json=body(shop), headers=headers)
        assert repeat.status_code == 409
        assert repeat.content_type == "application/problem+json"
        assert repeat.headers["Retry-After"] == "1"
        assert "still being processed" in repeat.json["detail"]
        assert (orders(), keys(), stock(shop)) == (0, 0, 100_000)
        first.execute(select(func.pg_advisory_unlock(advisory_key(shop.buyer.id, "k-held"))))
    placed = client.post(ORDERS, json=body(shop), headers=headers)
    assert placed.status_code == 201


def test_a_refused_order_keeps_no_key_and_the_same_request_may_succeed_later(client: FlaskClient, shop: Shop) -> None:
    headers = {**shop.buyer_h, "Idempotency-Key": "k-short"}
    short = client.post(ORDERS, json=body(shop, grams=200_000), headers=headers)
    assert short.status_code == 409
    assert (orders(), keys()) == (0, 0)
    restocked = client.patch(f"/api/v1/listings/{shop.oranges.id}", json={"stock_g": 300_000}, headers=shop.orchard_h)
    assert restocked.status_code == 200, restocked.json
    placed = client.post(ORDERS, json=body(shop, grams=200_000), headers=headers)
    assert placed.status_code == 201, placed.json
    assert (orders(), keys()) == (1, 1)


def test_a_repeat_after_the_stock_ran_out_is_still_the_first_answer(client: FlaskClient, shop: Shop) -> None:
    """The key is looked up after the view runs: a repeat the view would now
    refuse (nothing left to sell) replays the order, and a different body
    under the key is 422; neither writes anything."""
    headers = {**shop.buyer_h, "Idempotency-Key": "k-sold-out"}
    first = client.post(ORDERS, json=body(shop), headers=headers)
    assert first.status_code == 201, first.json
    emptied = client.patch(f"/api/v1/listings/{shop.oranges.id}", json={"stock_g": 0}, headers=shop.orchard_h)
    assert emptied.status_code == 200, emptied.json
    again = client.post(ORDERS, json=body(shop), headers=headers)
    assert (again.status_code, again.headers["Idempotent-Replayed"]) == (201, "true")
    assert again.json == first.json
    restocked = client.patch(f"/api/v1/listings/{shop.oranges.id}", json={"stock_g": 50_000}, headers=shop.orchard_h)
    assert restocked.status_code == 200, restocked.json
    other = client.post(ORDERS, json=body(shop, grams=1000), headers=headers)
    assert other.status_code == 422, other.json
    assert (orders(), keys(), stock(shop)) == (1, 1, 50_000)


def test_a_claim_left_by_the_separate_transactions_way_is_respected_then_taken_over(
    client: FlaskClient, shop: Shop
) -> None:
    headers = {**shop.buyer_h, "Idempotency-Key": "k-claimed"}
    first = client.post(ORDERS, json=body(shop), headers={**headers, "Idempotency-Key": "k-probe"})
    probe = db.session.scalars(select(IdempotencyKey).where(IdempotencyKey.key == "k-probe")).one()
    claim = IdempotencyKey(
        user_id=shop.buyer.id,
        key="k-claimed",
        request_hash=probe.request_hash,
        locked_until=utcnow() + timedelta(minutes=1),
    )
    db.session.add(claim)
    db.session.commit()
    assert first.status_code == 201
    held = client.post(ORDERS, json=body(shop), headers=headers)
    assert held.status_code == 409
    claim.locked_until = utcnow() - timedelta(seconds=1)
    db.session.commit()
    taken = client.post(ORDERS, json=body(shop), headers=headers)
    assert taken.status_code == 201, taken.json
    assert orders() == 2


def test_a_view_that_commits_under_the_one_transaction_key_is_refused(
    app: Flask, client: FlaskClient, shop: Shop
) -> None:
    @app.post("/api/v1/test-commits")
    @idempotent_in_one_transaction
    def test_commits() -> tuple[dict[str, object], int]:
        db.session.add(IdempotencyKey(user_id=shop.buyer.id, key="written-by-the-view", request_hash="x"))
        db.session.commit()
        return {}, 201

    app.config["PROPAGATE_EXCEPTIONS"] = False
    answer = client.post("/api/v1/test-commits", json={}, headers={**shop.buyer_h, "Idempotency-Key": "k-commits"})
    assert answer.status_code == 500
    assert keys() == 0


@pytest.fixture
def racing_app(app: Flask, database_url: str) -> Iterator[Flask]:
    settings = settings_for(database_url)
    settings["SQLALCHEMY_ENGINE_OPTIONS"] = {"pool_size": 12, "max_overflow": 0, "pool_timeout": 60}
    racing = create_app(settings)
    yield racing
    with racing.app_context():
        db.engine.dispose()


def test_many_repeats_at_once_place_one_order(racing_app: Flask, shop: Shop) -> None:
    headers = {**shop.buyer_h, "Idempotency-Key": "k-race"}
    payload = body(shop)
    barrier = threading.Barrier(10)
    answers: list[tuple[int, int | None]] = []
    lock = threading.Lock()

    def post() -> None:
        with racing_app.app_context(), racing_app.test_client() as client:
            barrier.wait()
            answer = client.post(ORDERS, json=payload, headers=headers)
            with lock:
                answers.append((answer.status_code, answer.json.get("id") if answer.status_code == 201 else None))

    threads = [threading.Thread(target=post) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = Counter(status for status, _ in answers)
    assert set(statuses) <= {201, 409}, answers
    assert statuses[201] >= 1
    assert len({order_id for status, order_id in answers if status == 201}) == 1
    assert (orders(), keys(), stock(shop)) == (1, 1, 100_000 - 2000)
