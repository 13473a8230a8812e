"""How each process holds its PostgreSQL connections (docs/performance.md,
"Connections, chosen by measurement"): psycopg prepares the statements a
connection runs again and again unless told not to, and the pool keeps
DATABASE_POOL_SIZE connections open."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import pytest
from flask import Flask
from sqlalchemy import text

import config
from market import create_app
from market.extensions import db
from tests.conftest import needs, settings_for

REPEATS = 6  # psycopg prepares a statement at its fifth run on a connection


@contextmanager
def app_with(database_url: str, env: dict[str, str]) -> Iterator[Flask]:
    options = config.load({"DATABASE_URL": database_url, **env})["SQLALCHEMY_ENGINE_OPTIONS"]
    app = create_app(settings_for(database_url) | {"SQLALCHEMY_ENGINE_OPTIONS": options})
    with app.app_context():
        try:
            yield app
        finally:
            db.engine.dispose()


def prepared_after_repeats(database_url: str, env: dict[str, str]) -> list[str]:
    with app_with(database_url, env), db.engine.connect() as conn:
        for _ in range(REPEATS):
            conn.execute(text("SELECT count(*) FROM listings WHERE id = :id"), {"id": 1})
        return list(conn.execute(text("SELECT statement FROM pg_prepared_statements")).scalars())


def test_a_statement_run_again_and_again_is_prepared_on_its_connection(database_url: str) -> None:
    needs("postgresql")
    assert [s for s in prepared_after_repeats(database_url, {}) if "FROM listings" in s] != []


def test_prepared_statements_can_be_turned_off_for_a_transaction_pooler(database_url: str) -> None:
    needs("postgresql")
    assert prepared_after_repeats(database_url, {"DATABASE_PREPARED_STATEMENTS": "off"}) == []


def test_the_pool_keeps_its_size_open_and_closes_what_it_opened_past_it(database_url: str) -> None:
    needs("postgresql")
    with app_with(database_url, {"DATABASE_POOL_SIZE": "3"}):
        with ExitStack() as held:
            for _ in range(4):
                held.enter_context(db.engine.connect()).execute(text("SELECT 1"))
            assert db.engine.pool.checkedout() == 4  # type: ignore[attr-defined]
        assert db.engine.pool.checkedin() == 3  # type: ignore[attr-defined]


@pytest.mark.parametrize("value", ["0", "many"])
def test_a_pool_size_that_is_not_a_positive_number_is_refused_at_startup(value: str) -> None:
    with pytest.raises(ValueError, match="DATABASE_POOL_SIZE"):
        config.load({"DATABASE_URL": "postgresql://db/market", "DATABASE_POOL_SIZE": value})
