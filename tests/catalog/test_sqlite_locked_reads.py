"""The embedded database: a locked read holds SQLite's write lock.

SQLite ignores FOR UPDATE, and Python's sqlite3 opens a transaction only at
the first write: a row read "locked" to be checked and then written over
(an ETag, a running total) was read outside any transaction, and a writer
that committed between the read and the write was lost. A locked read now
begins its transaction IMMEDIATE (`market.db.lock_sqlite_for_locked_reads`).
These tests run on an SQLite file whatever DATABASE_URL says. Another
connection holds the write lock while two writers start: before, both read
while it was held and both wrote after."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import Update, select, update

from market import create_app
from market.catalog.models import Listing
from market.db import locked
from market.extensions import db
from tests.catalog.test_catalog_conditional import etag, farmer_with_listing, stock_of
from tests.conftest import empty_tables, migrate_to_head, settings_for

# Long enough for both writers to reach the database while the lock is held.
HELD_SECONDS = 0.5


@pytest.fixture(scope="module")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{Path(tmp_path_factory.mktemp('embedded')) / 'market.sqlite3'}"
    migrate_to_head(url)
    return url


@pytest.fixture
def sqlite_app(sqlite_url: str) -> Iterator[Flask]:
    app = create_app(settings_for(sqlite_url))
    with app.app_context():
        yield app
        db.session.remove()
        empty_tables()
        db.engine.dispose()


def hold(listing_id: int) -> Update:
    """A write that changes nothing but takes SQLite's write lock."""
    return update(Listing).where(Listing.id == listing_id).values(stock_g=Listing.stock_g)


def while_another_writes(app: Flask, write: Update, *writers: Callable[[], None]) -> None:
    """Start `writers` while another connection holds SQLite's write lock
    (it made `write` and has not committed), then let go. The test's own
    transaction ends first: it would hold the lock too."""
    db.session.commit()
    with db.engine.connect() as holder:
        holder.execute(write)

        def run(writer: Callable[[], None]) -> None:
            with app.app_context():
                writer()

        threads = [threading.Thread(target=run, args=(writer,)) for writer in writers]
        for thread in threads:
            thread.start()
        time.sleep(HELD_SECONDS)
        holder.rollback()
    for thread in threads:
        thread.join()


def test_two_patches_with_the_same_etag_never_both_win(sqlite_app: Flask) -> None:
    listing, headers = farmer_with_listing(price_per_kg=1000)
    listing_id = listing.id
    url = f"/api/v1/listings/{listing_id}"
    read = etag(sqlite_app.test_client(), url)
    statuses: list[int] = []

    def patch(price: int) -> Callable[[], None]:
        def send() -> None:
            statuses.append(
                sqlite_app.test_client()
                .patch(url, json={"price_per_kg": price}, headers=headers | {"If-Match": read})
                .status_code
            )

        return send

    while_another_writes(sqlite_app, hold(listing_id), patch(1100), patch(1200))

    assert sorted(statuses) == [200, 412]


def test_a_total_read_locked_and_written_back_loses_no_writers_share(sqlite_app: Flask) -> None:
    """How a payment's refunded amount and a farm's premium usage are kept:
    read under `locked`, added to, written back."""
    listing, _ = farmer_with_listing(stock_g=1000)
    listing_id = listing.id

    def add_500() -> None:
        row = db.session.scalars(locked(select(Listing).where(Listing.id == listing_id))).one()
        row.stock_g += 500
        db.session.commit()

    while_another_writes(sqlite_app, hold(listing_id), add_500, add_500)

    assert stock_of(listing_id) == 2000
