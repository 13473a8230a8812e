"""A second app on PostgreSQL with a pool large enough for the races."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask

from market import create_app
from market.extensions import db
from tests.conftest import needs, settings_for


@pytest.fixture
def pg_app(app: Flask, database_url: str) -> Iterator[Flask]:
    """An app of its own for threads racing each other, each in its own context."""
    needs("postgresql")
    settings = settings_for(database_url)
    settings["SQLALCHEMY_ENGINE_OPTIONS"] = {"pool_size": 20, "max_overflow": 0, "pool_timeout": 60}
    racing = create_app(settings)
    yield racing
    with racing.app_context():
        db.engine.dispose()
