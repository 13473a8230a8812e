"""Cursor (keyset) pagination: a stable order and a next cursor, no OFFSET."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Generic, NamedTuple, TypeVar

import marshmallow as ma
from sqlalchemy import BigInteger, ColumnElement, Integer, Select, column, func, literal, select, tuple_

from market import errors
from market.api import MAX_ID, StrictSchema, as_utc, has_unstorable_text
from market.extensions import db
from market.money import MAX_BIGINT

T = TypeVar("T")


# The longest cursor taken: ours are a few sort values (a number, a date,
# an id), well under it.
MAX_CURSOR_LENGTH = 200


class PageArgsSchema(StrictSchema):
    limit = ma.fields.Integer(load_default=20, validate=ma.validate.Range(min=1, max=100))
    cursor = ma.fields.String(
        validate=ma.validate.Length(max=MAX_CURSOR_LENGTH),
        metadata={"description": "next_cursor from the previous page."},
    )


_page_schemas: dict[str, type[ma.Schema]] = {}


def page_schema(item: type[ma.Schema]) -> type[ma.Schema]:
    """The envelope of one page of `item`: `{"items": [...], "next_cursor": ...}`."""
    name = item.__name__.removesuffix("Schema") + "PageSchema"
    if name not in _page_schemas:
        _page_schemas[name] = type(
            name,
            (ma.Schema,),
            {
                "items": ma.fields.List(ma.fields.Nested(item), required=True),
                "next_cursor": ma.fields.String(
                    allow_none=True, required=True, metadata={"description": "Pass as cursor for the next page."}
                ),
            },
        )
    return _page_schemas[name]


@dataclass(frozen=True)
class SortKey:
    column: Any
    attr: str
    descending: bool = False


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


def _encode_cursor(values: Sequence[Any]) -> str:
    plain = [v.isoformat() if isinstance(v, (date, datetime)) else v for v in values]
    raw = json.dumps(plain, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _cursor_value(key: SortKey, value: Any) -> Any:
    """`value` from a cursor as `key`'s column holds it: a number within the
    column's range, a date, a time in UTC, or text the database can store;
    None for anything else (a cursor is client input: nested, out of range
    or of another type, it would be a database error rather than a 422)."""
    python_type = key.column.type.python_type
    if python_type is int:
        limit = MAX_BIGINT if isinstance(key.column.type, BigInteger) else MAX_ID
        in_range = type(value) is int and -limit - 1 <= value <= limit
        return value if in_range else None
    if python_type in (date, datetime) and isinstance(value, str) and value.isascii():
        try:
            moment = python_type.fromisoformat(value)
        except ValueError:
            return None
        return as_utc(moment) if isinstance(moment, datetime) else moment
    if python_type is str and isinstance(value, str) and not has_unstorable_text(value):
        return value
    return None


def _invalid_cursor() -> errors.Invalid:
    return errors.Invalid("The cursor is not valid for this list.", {"cursor": ["Not a valid cursor."]})


def _decode_cursor(cursor: str, keys: Sequence[SortKey]) -> list[Any]:
    invalid = _invalid_cursor()
    try:
        plain = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, RecursionError):
        raise invalid from None
    if not isinstance(plain, list) or len(plain) != len(keys):
        raise invalid
    values = [_cursor_value(key, value) for key, value in zip(keys, plain, strict=True)]
    if any(value is None for value in values):
        raise invalid
    return values


def _after(keys: Sequence[SortKey], values: Sequence[Any]) -> ColumnElement[bool]:
    """The rows after `values` in the order of `keys`: a row comparison,
    `(a, id) < (x, y)`, so PostgreSQL starts the index scan at the cursor
    (the same condition spelled as ORs is applied as a filter from the start
    of the index, and a deep page reads every row before it)."""
    columns = tuple_(*(key.column for key in keys))
    bound = tuple_(*(literal(value, key.column.type) for key, value in zip(keys, values, strict=True)))
    return columns < bound if keys[0].descending else columns > bound


def keyset_page(
    stmt: Select[Any],
    keys: Sequence[SortKey],
    *,
    limit: int,
    cursor: str | None,
    sparse: Sparse | None = None,
) -> Page[Any]:
    """One page of `stmt` in a stable order, continuing after `cursor`.

    The last key must be unique (the primary key) so the order is total and
    a page boundary never skips or repeats a row, even while rows are added.
    All keys sort the same way (one index can then serve the order and the
    cursor). `sparse` is a further condition that may hold for few rows (a
    search): see `_read`.
    """
    if len({key.descending for key in keys}) != 1:
        raise ValueError("keyset_page: every sort key must sort the same way")
    after = _decode_cursor(cursor, keys) if cursor else None
    rows = _read(stmt, keys, after, limit + 1, sparse)
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = _encode_cursor([getattr(rows[-1], k.attr) for k in keys]) if more else None
    return Page(items=rows, next_cursor=next_cursor)


def count_rows(stmt: Select[Any]) -> int:
    """How many rows `stmt` gives: the size of the list a page comes from."""
    counted = select(func.count()).select_from(stmt.order_by(None).subquery())
    return int(db.session.scalar(counted) or 0)


# A tiered page's cursor starts with the tier of its last row.
_TIER = SortKey(column("tier", Integer()), "tier")


def tiered_page(
    tiers: Sequence[tuple[Select[Any], Sparse | None]],
    keys: Sequence[SortKey],
    *,
    limit: int,
    cursor: str | None,
) -> Page[Any]:
    """One page over `tiers` in turn: every row of the first in the order of
    `keys`, then every row of the second, and so on (a ranking in bands).
    Each tier is its rows and the sparse condition they must also meet (as
    `keyset_page`'s). The tiers must not share rows. Each is read by its own
    keyset query, so a later tier is queried only once the earlier ones run
    out."""
    start, after = 0, None
    if cursor:
        decoded = _decode_cursor(cursor, [_TIER, *keys])
        if not 0 <= decoded[0] < len(tiers):
            raise _invalid_cursor()
        start, after = decoded[0], decoded[1:]
    found: list[tuple[int, Any]] = []
    for tier in range(start, len(tiers)):
        stmt, sparse = tiers[tier]
        rows = _read(stmt, keys, after if tier == start else None, limit + 1 - len(found), sparse)
        found.extend((tier, row) for row in rows)
        if len(found) > limit:
            break
    more = len(found) > limit
    found = found[:limit]
    next_cursor = None
    if more:
        tier, last = found[-1]
        next_cursor = _encode_cursor([tier, *(getattr(last, k.attr) for k in keys)])
    return Page(items=[row for _, row in found], next_cursor=next_cursor)


# How many rows a sparse read walks in order before it looks the rest up
# through the condition's own index (docs/search.md).
SPARSE_WALK_ROWS = 1000


class Sparse(NamedTuple):
    """A condition that may hold for few rows (a search), written twice for
    the two ways `_read` finds them: `each_row` as it is cheapest checked on
    a row already read (walking the rows in order), `indexed` as its index
    looks the rows up. Both must hold for the same rows."""

    each_row: ColumnElement[bool]
    indexed: ColumnElement[bool]


def _order(columns: Sequence[Any], keys: Sequence[SortKey]) -> list[Any]:
    return [c.desc() if k.descending else c.asc() for c, k in zip(columns, keys, strict=True)]


def _read(
    stmt: Select[Any],
    keys: Sequence[SortKey],
    after: Sequence[Any] | None,
    limit: int,
    sparse: Sparse | None,
) -> list[Any]:
    """Up to `limit` rows of `stmt` meeting `sparse`, in the order of `keys`,
    after the row whose keys are `after`.

    PostgreSQL plans `sparse` (a text search) on a guess of how many rows
    meet it: half a percent for a word its statistics do not list. It then
    walks the sort order's index expecting to meet enough of them soon, and
    for a word that no row or one row holds, it walks every row (seconds at
    a million). So on PostgreSQL the walk is bounded here: the first
    SPARSE_WALK_ROWS rows in order, stopping as soon as `limit` of them
    meet the condition (a common word: the usual plan); if they run out,
    the rows after them that meet it are found through the condition's
    index (a materialised CTE, planned without the order) and only those
    are sorted (a rare word: a few rows). The walk checks each row with
    `sparse.each_row`, the look-up uses `sparse.indexed`.
    """
    if after is not None:
        stmt = stmt.where(_after(keys, after))
    order = _order([key.column for key in keys], keys)
    if sparse is None or db.session.get_bind().dialect.name != "postgresql":
        if sparse is not None:
            stmt = stmt.where(sparse.each_row)
        return list(db.session.scalars(stmt.order_by(*order).limit(limit)))
    labels = [key.column.label(f"key_{n}") for n, key in enumerate(keys)]
    hit = sparse.each_row.label("hit")
    window = stmt.with_only_columns(*labels, hit).order_by(*order).limit(SPARSE_WALK_ROWS).subquery()
    walked = [window.c[label.name] for label in labels]
    hits = select(walked[-1]).where(window.c.hit).order_by(*_order(walked, keys)).limit(limit)
    rows = list(db.session.scalars(stmt.where(keys[-1].column.in_(hits)).order_by(*order)))
    if len(rows) == limit:
        return rows
    boundary = db.session.execute(
        stmt.with_only_columns(*labels).order_by(*order).offset(SPARSE_WALK_ROWS - 1).limit(1)
    ).first()
    if boundary is None:  # fewer rows than the walk: all of them were looked at
        return rows
    found = stmt.with_only_columns(*labels).where(sparse.indexed, _after(keys, list(boundary))).cte("found")
    found = found.prefix_with("MATERIALIZED")
    rest = [found.c[label.name] for label in labels]
    ids = select(rest[-1]).order_by(*_order(rest, keys)).limit(limit - len(rows))
    return rows + list(db.session.scalars(stmt.where(keys[-1].column.in_(ids)).order_by(*order)))
