"""The migrations build exactly the schema the models describe."""

from __future__ import annotations

import re
import warnings

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask import Flask
from sqlalchemy import Column, Index, inspect, text
from sqlalchemy.exc import SAWarning
from sqlalchemy.schema import CreateIndex

from market.extensions import db

# What SQLAlchemy and Alembic say when they meet an expression index on SQLite.
UNREFLECTED = "Skipped unsupported reflection of expression-based index"
SKIPPED = "autogenerate skipping metadata-specified expression-based index"


def expression_indexes(dialect: str) -> dict[str, Index]:
    """The models' indexes on anything but plain columns (a function, DESC)
    that `dialect` has (search's GIN indexes are PostgreSQL's only)."""
    return {
        str(index.name): index
        for table in db.metadata.tables.values()
        for index in table.indexes
        if not all(isinstance(expression, Column) for expression in index.expressions)
        and (index._ddl_if is None or index._ddl_if.dialect in (None, dialect))
    }


def test_models_and_migrations_agree(app: Flask) -> None:
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        with warnings.catch_warnings():
            if conn.dialect.name == "sqlite":
                # SQLite cannot reflect expression indexes, so both sides leave
                # them out there; the next test compares them instead.
                warnings.filterwarnings("ignore", UNREFLECTED, SAWarning)
                warnings.filterwarnings("ignore", SKIPPED, UserWarning)
            differences = compare_metadata(context, db.metadata)
    assert differences == []


def normalised(create_index: str) -> str:
    return re.sub(r"\s+", " ", create_index.replace('"', "")).strip().lower()


def test_expression_indexes_are_as_the_models_define_them_on_sqlite(app: Flask) -> None:
    """On SQLite, the expression indexes the migrations made, read back as the
    CREATE INDEX that SQLite keeps, are exactly those the models declare."""
    with db.engine.connect() as conn:
        if conn.dialect.name != "sqlite":
            pytest.skip("compare_metadata compares expression indexes itself on PostgreSQL")
        stored = conn.execute(
            text("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")
        ).all()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", UNREFLECTED, SAWarning)
            inspector = inspect(conn)
            reflected = {
                index["name"] for table in inspector.get_table_names() for index in inspector.get_indexes(table)
            }
        made = {name: normalised(sql) for name, sql in stored if name not in reflected}
        declared = {
            name: normalised(str(CreateIndex(index).compile(dialect=conn.dialect)))
            for name, index in expression_indexes(conn.dialect.name).items()
        }
    assert declared  # the browse index on harvest date, at least
    assert made == declared
