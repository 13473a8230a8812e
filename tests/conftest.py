"""Test fixtures.

The suite runs on SQLite by default. With DATABASE_URL (PostgreSQL) and
REDIS_URL set, the same tests run there, and the integration tests that need
them run too. MARKET_REQUIRE_SERVICES=1 (set by .ci/run) turns "PostgreSQL or
Redis missing" from a skip into a failure.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask_migrate import upgrade
from sqlalchemy import create_engine, text

import config
from market import create_app
from market.extensions import db, limiter
from tests.shop import Shop, make_shop

REQUIRE_SERVICES = os.environ.get("MARKET_REQUIRE_SERVICES") == "1"
DATABASE_URL = os.environ.get("DATABASE_URL", "")
REDIS_URL = os.environ.get("REDIS_URL", "")


def _database_url(tmp_root: Path) -> str:
    return config.load({"DATABASE_URL": DATABASE_URL or f"sqlite:///{tmp_root / 'test.sqlite3'}"})[
        "SQLALCHEMY_DATABASE_URI"
    ]


def is_postgres(url: str) -> bool:
    return url.startswith("postgresql")


def needs(service: str) -> None:
    """Skip (or, under .ci/run, fail) a test that needs `service`."""
    available = {"postgresql": is_postgres(DATABASE_URL), "redis": bool(REDIS_URL)}[service]
    if available:
        return
    message = f"needs {service}: set {'DATABASE_URL' if service == 'postgresql' else 'REDIS_URL'}"
    if REQUIRE_SERVICES:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = _database_url(tmp_path_factory.mktemp("db"))
    if REQUIRE_SERVICES and not is_postgres(url):
        pytest.fail("MARKET_REQUIRE_SERVICES=1 but DATABASE_URL is not PostgreSQL")
    if is_postgres(url):
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        engine.dispose()
    app = create_app({"SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        upgrade(directory=str(config.ROOT / "migrations"))
        db.engine.dispose()
    return url


def settings_for(database_url: str) -> dict[str, Any]:
    broker = REDIS_URL or "memory://"
    settings = config.load({"DATABASE_URL": database_url, "REDIS_URL": REDIS_URL, "SECRET_KEY": "test"})
    settings["CELERY"]["broker_url"] = broker
    settings["TESTING"] = True
    return settings


@pytest.fixture
def app_overrides() -> dict[str, Any]:
    """Settings a test module changes for its app (override this fixture)."""
    return {}


@pytest.fixture
def app(database_url: str, app_overrides: dict[str, Any]) -> Iterator[Flask]:
    app = create_app(settings_for(database_url) | app_overrides)
    with app.app_context():
        limiter.reset()
        yield app
        db.session.remove()
        _empty_tables()
        db.engine.dispose()


def _empty_tables() -> None:
    tables = [t.name for t in db.metadata.sorted_tables]
    with db.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for table in reversed(db.metadata.sorted_tables):
                conn.execute(table.delete())


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def shop(app: Flask) -> Shop:
    return make_shop()
