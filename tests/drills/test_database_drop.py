"""Drill: PostgreSQL ends the app's connections in the middle of requests.
Each request that lost its connection answers a clean 503 problem, nothing
is left half-written, and the next requests succeed without a restart."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event, func, select

from market.catalog.models import Listing
from market.extensions import db
from market.orders.models import Order, OrderLine
from tests.conftest import needs
from tests.shop import Shop, place

GRAMS = 1000
# More statements than placing an order sends: ending the connections before
# each one in turn reaches every step of placing it (auth, checks, stock,
# the order, commit) until the first order placed whole.
STATEMENTS = 40


class ConnectionKiller:
    """Ends every other backend of the app's database from its own
    connection, just before the `at`-th statement the request sends next.
    Statements of other threads (the outbox relay, woken by a commit) do not
    count: the moment must fall inside the request, not after it."""

    def __init__(self, app: Flask) -> None:
        self.url = app.config["SQLALCHEMY_DATABASE_URI"].replace("postgresql+psycopg://", "postgresql://")
        self.countdown: int | None = None
        self.thread: int | None = None
        self.fired = 0

    def arm(self, at: int) -> None:
        self.countdown, self.thread = at, threading.get_ident()

    def disarm(self) -> None:
        self.countdown = None

    def before_execute(self, *_: Any) -> None:
        if self.countdown is None or threading.get_ident() != self.thread:
            return
        self.countdown -= 1
        if self.countdown == 0:
            self.countdown = None
            self.terminate()

    def terminate(self) -> None:
        # Waiting (up to 5 s) for each backend to end: a connection the pool
        # checks after this finds it gone rather than still going.
        with psycopg.connect(self.url, autocommit=True) as conn:
            ended = conn.execute(
                "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchone()
        self.fired += ended[0] if ended else 0


@pytest.fixture
def killer(app: Flask) -> Iterator[ConnectionKiller]:
    needs("postgresql")
    killer = ConnectionKiller(app)
    event.listen(db.engine, "before_cursor_execute", killer.before_execute)
    yield killer
    event.remove(db.engine, "before_cursor_execute", killer.before_execute)


def assert_clean_503(response: Any) -> None:
    text = response.get_data(as_text=True)
    assert response.status_code == 503, text
    assert response.content_type == "application/problem+json"
    assert response.headers["Retry-After"].isdigit()
    body = response.get_json(force=True)
    assert body["status"] == 503
    assert body["type"] == "/problems/database-unavailable"
    assert "Traceback" not in text
    assert "psycopg" not in text


def stock_taken(shop: Shop, stock_before: int) -> int:
    db.session.expire_all()
    listing = db.session.get(Listing, shop.oranges.id)
    assert listing is not None
    return stock_before - listing.stock_g


def test_orders_losing_their_connection_answer_503_and_write_nothing_partial(
    app: Flask, client: FlaskClient, shop: Shop, killer: ConnectionKiller
) -> None:
    stock_before = shop.oranges.stock_g
    body = {"lines": [{"listing_id": shop.oranges.id, "grams": GRAMS}], "fulfilment_point_id": shop.station.id}
    statuses = []
    for at in range(1, STATEMENTS + 1):
        killer.arm(at)
        response = client.post("/api/v1/orders", json=body, headers=shop.buyer_h)
        killer.disarm()
        statuses.append(response.status_code)
        if response.status_code != 201:
            assert_clean_503(response)
        # Whatever the moment, each order exists whole with its stock taken,
        # or not at all.
        orders = db.session.scalars(select(Order)).all()
        for order in orders:
            assert [line.ordered_g for line in order.lines] == [GRAMS]
        lines = db.session.scalar(select(func.coalesce(func.sum(OrderLine.ordered_g), 0)))
        assert stock_taken(shop, stock_before) == lines == GRAMS * len(orders)
        if response.status_code == 201:
            break  # every statement of placing it came before the kill
    assert killer.fired > 0
    assert statuses[-1] == 201, f"an order takes more than {STATEMENTS} statements"
    assert 503 in statuses

    # Recovered without a restart: the pool replaces the dead connections.
    orders_before = len(db.session.scalars(select(Order)).all())
    for _ in range(3):
        place(client, shop, (shop.oranges, GRAMS))
    assert len(db.session.scalars(select(Order)).all()) == orders_before + 3
    assert client.get("/api/v1/orders", headers=shop.buyer_h).status_code == 200


def test_a_read_that_loses_its_connection_answers_503_then_recovers(
    client: FlaskClient, shop: Shop, killer: ConnectionKiller
) -> None:
    headers = shop.buyer_h
    killer.arm(1)
    assert_clean_503(client.get("/api/v1/orders", headers=headers))
    killer.disarm()
    assert client.get("/api/v1/orders", headers=headers).status_code == 200
