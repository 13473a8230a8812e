"""Column types shared by every domain's models, and the transaction
helpers every service uses."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import ColumnElement, DateTime, Dialect, Engine, Enum, Select, event, func, insert, inspect, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.types import TypeDecorator

from market.errors import NotFound
from market.extensions import db

T = TypeVar("T")
Row = TypeVar("Row", bound=tuple[Any, ...])
Model = TypeVar("Model")


@contextmanager
def unit_of_work() -> Iterator[None]:
    """One service call's transaction: everything written in the block is
    committed when it ends, and rolled back when it raises."""
    try:
        yield
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise


def outside_transaction(call: Callable[[], T]) -> T:
    """Call a provider with no transaction open and no row locked: what was
    decided is committed first. Whatever the call answers is recorded
    afterwards on rows locked afresh (`locked`) and checked again, since
    anything may have changed while the provider worked."""
    db.session.commit()
    return call()


def locked(stmt: Select[Row]) -> Select[Row]:
    """`stmt` locking its rows and reading them afresh, over whatever the
    session still holds from before."""
    return stmt.with_for_update().execution_options(populate_existing=True)


def upsert(model: type[Any]) -> Any:
    """An INSERT into `model` with the ON CONFLICT clauses of the session's
    database (PostgreSQL or SQLite)."""
    insert = pg_insert if db.session.get_bind().dialect.name == "postgresql" else sqlite_insert
    return insert(model)


def insert_if_absent(model: type[Any], key: list[str], *rows: dict[str, Any]) -> None:
    """INSERT each row unless one with the same `key` columns exists (written
    meanwhile by a concurrent caller, say), on PostgreSQL and SQLite alike."""
    db.session.execute(upsert(model).values(list(rows)).on_conflict_do_nothing(index_elements=key))


def insert_new(objects: Sequence[Any]) -> None:
    """Write new `objects` of one model, each with the same attributes set,
    in one Core INSERT, reading back every column they left unset (ids,
    defaults), so they hold what was stored as if loaded. Their foreign keys
    must be set: nothing is taken from their relationships, and they are not
    added to the session (`session.add` them, with all they cascade to, once
    every one is written). Unlike a flush, nothing is sorted, diffed or
    synchronised: the cheap way to write a new graph on the hot path."""
    if not objects:
        return
    mapper = inspect(type(objects[0]))
    keys = {column: mapper.get_property_by_column(column).key for column in mapper.local_table.columns}
    given = inspect(objects[0]).dict.keys() & set(keys.values())
    stored = [column for column, key in keys.items() if key not in given]
    rows = db.session.execute(
        insert(mapper.local_table).returning(*stored, sort_by_parameter_order=True),
        [{column.key: getattr(obj, key) for column, key in keys.items() if key in given} for obj in objects],
    ).all()
    for obj, row in zip(objects, rows, strict=True):
        for column, value in zip(stored, row, strict=True):
            setattr(obj, keys[column], value)
        make_transient_to_detached(obj)


def holds_text(column: Any, text: str) -> ColumnElement[bool]:
    """`column` holds `text`, case aside; `%`, `_` and `\\` in `text` are
    characters to find, not patterns."""
    pattern = "%" + text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    return func.lower(column).like(pattern, escape="\\")


def get_or_404(
    model: type[Model], ident: int, name: str, *, lock: bool = False, missing: type[NotFound] = NotFound
) -> Model:
    """The `model` row with id `ident` (locked and read afresh with `lock`),
    or `missing` ("<name> <ident> not found.")."""
    stmt = select(model).where(model.id == ident)  # type: ignore[attr-defined]
    row = db.session.scalars(locked(stmt) if lock else stmt).one_or_none()
    if row is None:
        raise missing(f"{name} {ident} not found.")
    return row


# Set in a session's info while its commit is left to whoever set it.
COMMIT_DEFERRED = "market.commit_deferred"


def commit_keeping_state() -> None:
    """Commit without expiring what the session holds, for a response built
    from the objects the transaction just wrote (they are what was stored;
    the next request starts a new session). Where the commit is deferred
    (`idempotency.idempotent_in_one_transaction`), only flush: the caller
    commits this work together with its own."""
    session = db.session()
    if session.info.get(COMMIT_DEFERRED):
        session.flush()
        return
    session.expire_on_commit = False
    try:
        session.commit()
    finally:
        session.expire_on_commit = True


def utcnow() -> datetime:
    return datetime.now(UTC)


def market_zone() -> ZoneInfo:
    """The marketplace's time zone (MARKET_TIMEZONE), which says what a
    business day is. Timestamps are stored and compared in UTC."""
    return ZoneInfo(current_app.config["MARKET_TIMEZONE"])


def local_time(moment: datetime) -> str:
    """`moment` as people of the marketplace read it: minutes, in its time
    zone (MARKET_TIMEZONE), with the zone's abbreviation or offset."""
    return moment.astimezone(market_zone()).strftime("%Y-%m-%d %H:%M %Z")


def business_day(moment: datetime) -> date:
    """The marketplace's calendar day `moment` falls on: in Asia/Shanghai,
    2026-03-01 17:00 UTC is already 2 March."""
    return moment.astimezone(market_zone()).date()


def business_today() -> date:
    return business_day(utcnow())


# The field error of a business day that has not come yet (a harvest, a
# deposit received, a cash-up).
NOT_AFTER_TODAY = "Must not be after today (a business day in MARKET_TIMEZONE)."


def business_day_range(first: date, last: date | None = None) -> tuple[datetime, datetime]:
    """The UTC moments [start, end) of the business days `first` to `last`
    (both whole; `first` alone without `last`): from the first one's
    midnight to the next midnight after the last, in the marketplace's zone."""
    zone = market_zone()
    start = _utc(datetime.combine(first, time.min, zone))
    last = last or first
    end = _utc(datetime.combine(last + timedelta(days=1), time.min, zone)) if last < date.max else _END_OF_TIME
    return start, end


_START_OF_TIME = datetime.min.replace(tzinfo=UTC)
_END_OF_TIME = datetime.max.replace(tzinfo=UTC)


def _utc(moment: datetime) -> datetime:
    """`moment` in UTC; on the calendar's first or last day, where a zone
    away from UTC would step past the calendar, the calendar's own end."""
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        return _START_OF_TIME if moment.year == 1 else _END_OF_TIME


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend.

    PostgreSQL keeps the zone; SQLite drops it, so values are normalised to
    UTC on the way in and marked UTC on the way out.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        moment = datetime.fromisoformat(value) if isinstance(value, str) else value
        if not isinstance(moment, datetime):
            raise TypeError(f"expected a datetime from the database, got {type(moment).__name__}")
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def enum_column(enum: type[StrEnum], name: str) -> Enum:
    """Store a StrEnum by value, checked by a named constraint on every backend."""
    return Enum(
        enum,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=32,
        values_callable=lambda e: [m.value for m in e],
        validate_strings=True,
    )


def advisory_key(*names: object) -> int:
    """The PostgreSQL advisory lock (a signed 64-bit number) named by
    `names`; two names sharing one only make each other wait a moment."""
    text = "\n".join(str(name) for name in names)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big", signed=True)


def lock_sqlite_for_locked_reads(engine: Engine) -> None:
    """On an SQLite `engine`, a locked read (FOR UPDATE) outside a write
    transaction first begins one IMMEDIATE: it takes the database's write
    lock, waiting (the driver's `timeout`) for whoever holds it, and keeps
    it until the transaction ends.

    SQLite ignores FOR UPDATE, and Python's sqlite3 opens a transaction only
    at the first INSERT, UPDATE or DELETE: a row read "locked" to be checked
    and then written over (a stock count, an ETag, a payment's refunded
    amount) was read outside any transaction, and a writer committing
    between the read and the write was lost. Now what such a transaction
    reads locked stays as it read it until it commits, as row locks make
    it on PostgreSQL. Reads that lock nothing stay outside transactions and
    wait for nobody; a transaction that wrote already holds the lock."""

    @event.listens_for(engine, "before_cursor_execute")
    def _begin_immediate(conn: Any, _cursor: Any, _sql: str, _params: Any, context: Any, _many: bool) -> None:
        compiled = getattr(context, "compiled", None)
        if compiled is not None and getattr(compiled.statement, "_for_update_arg", None) is not None:
            _hold_sqlite_write_lock(conn)


def _hold_sqlite_write_lock(conn: Any) -> None:
    dbapi_connection = conn.connection.dbapi_connection
    if not dbapi_connection.in_transaction:
        dbapi_connection.execute("BEGIN IMMEDIATE")


def hold_until_commit(*names: object) -> None:
    """Wait for, then hold until this transaction ends, the advisory lock
    named by `names`: what is looked up and written under it by one caller
    is seen by the next. On SQLite the transaction takes the database's
    write lock instead (`lock_sqlite_for_locked_reads`)."""
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(select(func.pg_advisory_xact_lock(advisory_key(*names))))
    else:
        _hold_sqlite_write_lock(db.session.connection())
