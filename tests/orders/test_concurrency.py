"""Concurrency on PostgreSQL over real connections: no oversell, no deadlock,
stock returned exactly once."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import select

from market import create_app
from market.accounts.models import Role
from market.auth import Actor
from market.catalog.models import Listing
from market.db import utcnow
from market.errors import DomainError
from market.extensions import db
from market.orders import service
from market.orders.service import LineRequest
from tests.conftest import needs, settings_for
from tests.factories import FarmFactory, FulfilmentPointFactory, ListingFactory, UserFactory

BUYERS = 200


@pytest.fixture
def pg_app(app: Flask, database_url: str) -> Iterator[Flask]:
    """A second app on the same database with a pool big enough for the race."""
    needs("postgresql")
    settings = settings_for(database_url)
    settings["SQLALCHEMY_ENGINE_OPTIONS"] = {"pool_size": 40, "max_overflow": 0, "pool_timeout": 60}
    racing = create_app(settings)
    yield racing
    with racing.app_context():
        db.engine.dispose()


def race(app: Flask, calls: list[Callable[[], object]]) -> Counter[str]:
    """Run every call in its own thread, all released at once; count outcomes."""
    barrier = threading.Barrier(len(calls))
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def run(call: Callable[[], object]) -> None:
        with app.app_context():
            barrier.wait()
            try:
                call()
                outcome = "ok"
            except DomainError as error:
                db.session.rollback()
                outcome = type(error).__name__
            finally:
                db.session.remove()
        with lock:
            outcomes[outcome] += 1

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return outcomes


def buyers(n: int) -> list[Actor]:
    return [Actor(user_id=UserFactory(roles=[Role.BUYER]).id, roles=frozenset({Role.BUYER})) for _ in range(n)]


def stock_of(listing_id: int) -> int:
    db.session.expire_all()
    return db.session.scalar(select(Listing.stock_g).where(Listing.id == listing_id)) or 0


def test_200_buyers_race_for_100_orders_and_exactly_100_win(app: Flask, pg_app: Flask) -> None:
    listing = ListingFactory(stock_g=100 * 1000, min_order_g=1000, step_g=1000)
    point = FulfilmentPointFactory()
    actors = buyers(BUYERS)
    listing_id, point_id = listing.id, point.id

    def buy(actor: Actor) -> Callable[[], object]:
        return lambda: service.place_order(actor, lines=[LineRequest(listing_id, 1000)], fulfilment_point_id=point_id)

    outcomes = race(pg_app, [buy(actor) for actor in actors])
    assert outcomes == Counter({"ok": 100, "Shortfall": 100})
    assert stock_of(listing_id) == 0


def test_multi_line_orders_in_opposite_orders_do_not_deadlock(app: Flask, pg_app: Flask) -> None:
    farm = FarmFactory()
    first = ListingFactory(farm=farm, stock_g=1_000_000, min_order_g=500, step_g=500)
    second = ListingFactory(farm=farm, stock_g=1_000_000, min_order_g=500, step_g=500)
    a, b = first.id, second.id
    actors = buyers(60)

    def buy(actor: Actor, ids: tuple[int, int]) -> Callable[[], object]:
        lines = [LineRequest(ids[0], 500), LineRequest(ids[1], 1000)]
        return lambda: service.place_order(actor, lines=lines, delivery_address="Lane 1, Xunwu")

    calls = [buy(actor, (a, b) if i % 2 else (b, a)) for i, actor in enumerate(actors)]
    outcomes = race(pg_app, calls)
    assert outcomes == Counter({"ok": 60})
    assert stock_of(a) + stock_of(b) == 2_000_000 - 60 * 1500


def test_concurrent_expiry_runs_return_stock_exactly_once(app: Flask, pg_app: Flask) -> None:
    listing = ListingFactory(stock_g=50_000, min_order_g=1000, step_g=1000)
    listing_id = listing.id
    for actor in buyers(20):
        service.place_order(actor, lines=[LineRequest(listing_id, 1000)], delivery_address="Lane 1, Xunwu")
    assert stock_of(listing_id) == 30_000
    later = utcnow() + timedelta(hours=2)
    expired: list[int] = []

    def expire() -> None:
        expired.append(service.expire_unpaid(later))

    race(pg_app, [expire for _ in range(6)])
    assert sum(expired) == 20
    assert stock_of(listing_id) == 50_000


def test_concurrent_cancel_and_late_payment_return_stock_once(app: Flask, pg_app: Flask) -> None:
    listing = ListingFactory(stock_g=10_000, min_order_g=1000, step_g=1000)
    listing_id = listing.id
    (actor,) = buyers(1)
    order = service.place_order(actor, lines=[LineRequest(listing_id, 4000)], delivery_address="Lane 1, Xunwu")
    order_id = order.id

    def cancel() -> None:
        service.cancel_order(actor, order_id, "changed my mind")

    def pay() -> None:
        service.mark_paid(order_id)
        db.session.commit()

    outcomes = race(pg_app, [cancel] * 8 + [pay] * 2)
    assert outcomes["ok"] >= 1
    assert set(outcomes) <= {"ok", "InvalidTransition", "Conflict", "ConcurrentChange"}
    assert stock_of(listing_id) == 10_000
