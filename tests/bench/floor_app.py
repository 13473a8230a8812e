"""The floor: the order's logical transaction in the fewest statements the
fixed stack allows, served by the same gunicorn settings as the market.

Flask reads the same JSON body; psycopg, with no ORM or Core in between,
runs one transaction on the market's own tables: the Idempotency-Key's
record (`INSERT ... ON CONFLICT DO NOTHING`, a repeat is a 409), a guarded
stock decrement per line in listing order (a shortfall is a 409 and
nothing is written), the order, its parts and its lines in one INSERT
each, one outbox row, the key's answer, commit. The token is looked up
once per process. No rate limit, premiums, budgets, events or schema:
what any order placement on Flask, psycopg and PostgreSQL costs at the
least on this machine, beside the bare endpoint's ceiling.

`one_call` is the same transaction as one round trip: a PL/pgSQL function
(`PLACE_FUNCTION`, installed by `install_place_function`) runs every
statement above inside PostgreSQL, called once per order on a connection
in autocommit, so the call is the transaction and its commit. What the
stack costs when Python sends one statement an order and the order's
rules live in the database.

`gunicorn tests.bench.floor_app:app` (or `:one_call`) with DATABASE_URL set.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from flask import Flask, request

from tests.bench.common import plain_url

app = Flask(__name__)
_local = threading.local()
_users: dict[str, int] = {}

_CLAIM = (
    "INSERT INTO idempotency_keys (user_id, key, request_hash, locked_until) VALUES (%s, %s, %s, now())"
    " ON CONFLICT DO NOTHING RETURNING id"
)
_TAKE = (
    "UPDATE listings SET stock_g = stock_g - %s, updated_at = now()"
    " WHERE id = %s AND status = 'active' AND stock_g >= %s RETURNING farm_id, price_per_kg, product_name"
)
_ORDER = (
    "INSERT INTO orders (version, buyer_id, status, fulfilment, fulfilment_point_id, notes, currency,"
    " total, max_total, expires_at) VALUES (1, %s, 'pending_payment', 'pickup', %s, '', 'CNY', %s, %s, %s)"
    " RETURNING id"
)
_PARTS = (
    "INSERT INTO order_parts (order_id, farm_id, status, subtotal)"
    " SELECT %s, farm_id, 'pending', subtotal FROM unnest(%s::int[], %s::bigint[]) AS part(farm_id, subtotal)"
    " RETURNING farm_id, id"
)
_LINES = (
    "INSERT INTO order_lines (order_id, part_id, farm_id, listing_id, product_name, price_per_kg,"
    " ordered_g, amount, max_amount) SELECT %s, part_id, farm_id, listing_id, name, price, grams, amount, amount"
    " FROM unnest(%s::int[], %s::int[], %s::int[], %s::text[], %s::bigint[], %s::bigint[], %s::bigint[])"
    " AS line(part_id, farm_id, listing_id, name, price, grams, amount)"
)
_OUTBOX = "INSERT INTO outbox (task, kwargs) VALUES ('floor.order_placed', %s)"
_ANSWER = "UPDATE idempotency_keys SET response_status = 201, response_body = %s, locked_until = NULL WHERE id = %s"

# The statements above, in order, as one function: the key's claim (0 when
# it was used), a guarded decrement per line in the order given (sorted by
# the caller, so concurrent orders lock listings in one order), raising on
# a shortfall so the call writes nothing, then order, parts, lines, outbox
# row and the key's answer. Returns the order's id and total.
PLACE_FUNCTION = """
CREATE OR REPLACE FUNCTION floor_place(
    p_user integer, p_key text, p_hash text, p_point integer, p_listings integer[], p_grams bigint[],
    p_expires timestamptz, OUT order_id integer, OUT total bigint
) LANGUAGE plpgsql AS $$
DECLARE
    claim integer;
    farms integer[] := '{}';
    prices bigint[] := '{}';
    names text[] := '{}';
    amounts bigint[] := '{}';
    farm integer;
    price bigint;
    name text;
BEGIN
    INSERT INTO idempotency_keys (user_id, key, request_hash, locked_until) VALUES (p_user, p_key, p_hash, now())
        ON CONFLICT DO NOTHING RETURNING id INTO claim;
    IF claim IS NULL THEN
        order_id := 0;
        RETURN;
    END IF;
    FOR i IN 1 .. cardinality(p_listings) LOOP
        UPDATE listings SET stock_g = stock_g - p_grams[i], updated_at = now()
            WHERE id = p_listings[i] AND status = 'active' AND stock_g >= p_grams[i]
            RETURNING listings.farm_id, listings.price_per_kg, listings.product_name INTO farm, price, name;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'listing % is short', p_listings[i] USING ERRCODE = 'P0001';
        END IF;
        farms := farms || farm;
        prices := prices || price;
        names := names || name;
        amounts := amounts || price * p_grams[i] / 1000;
    END LOOP;
    total := (SELECT sum(a) FROM unnest(amounts) AS a);
    INSERT INTO orders (version, buyer_id, status, fulfilment, fulfilment_point_id, notes, currency,
        total, max_total, expires_at)
        VALUES (1, p_user, 'pending_payment', 'pickup', p_point, '', 'CNY', total, total, p_expires)
        RETURNING id INTO order_id;
    WITH sums AS (
        SELECT f AS farm_id, sum(a) AS subtotal FROM unnest(farms, amounts) AS t(f, a) GROUP BY f
    ), parts AS (
        INSERT INTO order_parts (order_id, farm_id, status, subtotal)
            SELECT order_id, sums.farm_id, 'pending', sums.subtotal FROM sums ORDER BY sums.farm_id
            RETURNING order_parts.farm_id, order_parts.id
    )
    INSERT INTO order_lines (order_id, part_id, farm_id, listing_id, product_name, price_per_kg,
        ordered_g, amount, max_amount)
        SELECT order_id, parts.id, line.f, line.l, line.n, line.p, line.g, line.a, line.a
        FROM unnest(farms, p_listings, names, prices, p_grams, amounts) AS line(f, l, n, p, g, a)
        JOIN parts ON parts.farm_id = line.f;
    INSERT INTO outbox (task, kwargs) VALUES ('floor.order_placed', json_build_object('order_id', order_id));
    UPDATE idempotency_keys SET response_status = 201, locked_until = NULL,
        response_body = convert_to(json_build_object('id', order_id, 'status', 'pending_payment',
            'total', total)::text, 'UTF8')
        WHERE id = claim;
END $$
"""


def install_place_function(url: str) -> None:
    """Create (or replace) `floor_place` in the database at `url`."""
    with psycopg.connect(plain_url(url), autocommit=True) as conn:
        conn.execute(PLACE_FUNCTION)


def _connection(*, autocommit: bool = False) -> psycopg.Connection[Any]:
    conn: psycopg.Connection[Any] | None = getattr(_local, "conn", None)
    if conn is None or conn.closed:
        conn = psycopg.connect(plain_url(os.environ["DATABASE_URL"]), autocommit=autocommit)
        _local.conn = conn
    return conn


def _user_id(conn: psycopg.Connection[Any], token: str) -> int | None:
    token_hash = hashlib.sha256(token.encode()).hexdigest()
    if token_hash not in _users:
        row = conn.execute(
            "SELECT user_id FROM api_tokens WHERE token_hash = %s AND revoked_at IS NULL AND expires_at > now()",
            (token_hash,),
        ).fetchone()
        conn.commit()
        if row is None:
            return None
        _users[token_hash] = row[0]
    return _users[token_hash]


class Refused(Exception):
    """A 409: the transaction it is raised in rolls back."""


@app.post("/api/v1/orders")
def place_order() -> tuple[dict[str, Any], int]:
    raw = request.get_data()
    body = json.loads(raw)
    conn = _connection()
    user_id = _user_id(conn, request.headers.get("Authorization", "").removeprefix("Bearer "))
    if user_id is None:
        return {"title": "Unauthorized"}, 401
    lines = sorted((int(line["listing_id"]), int(line["grams"])) for line in body["lines"])
    try:
        return _place(conn, user_id, raw, body, lines), 201
    except Refused as refused:
        return {"title": "Conflict", "detail": str(refused)}, 409


def _place(
    conn: psycopg.Connection[Any], user_id: int, raw: bytes, body: dict[str, Any], lines: list[tuple[int, int]]
) -> dict[str, Any]:
    with conn.transaction():
        claimed = conn.execute(
            _CLAIM, (user_id, request.headers["Idempotency-Key"], hashlib.sha256(raw).hexdigest())
        ).fetchone()
        if claimed is None:
            raise Refused("this Idempotency-Key was used")
        # One list a column of order_lines, in listing order.
        farms, prices, names, amounts = [], [], [], []
        for listing_id, grams in lines:
            row = conn.execute(_TAKE, (grams, listing_id, grams)).fetchone()
            if row is None:
                raise Refused(f"listing {listing_id} is short")
            farms.append(row[0])
            prices.append(row[1])
            names.append(row[2])
            amounts.append(row[1] * grams // 1000)
        total = sum(amounts)
        expires = datetime.now(UTC) + timedelta(minutes=30)
        ordered = conn.execute(_ORDER, (user_id, body["fulfilment_point_id"], total, total, expires)).fetchone()
        assert ordered is not None
        order_id = ordered[0]
        subtotals: dict[int, int] = {}
        for farm_id, amount in zip(farms, amounts, strict=True):
            subtotals[farm_id] = subtotals.get(farm_id, 0) + amount
        part_of = dict(conn.execute(_PARTS, (order_id, list(subtotals), list(subtotals.values()))).fetchall())
        parts = [part_of[farm_id] for farm_id in farms]
        listings = [listing_id for listing_id, _ in lines]
        ordered_g = [g for _, g in lines]
        conn.execute(_LINES, (order_id, parts, farms, listings, names, prices, ordered_g, amounts))
        conn.execute(_OUTBOX, (json.dumps({"order_id": order_id}),))
        answer = {"id": order_id, "status": "pending_payment", "total": total}
        conn.execute(_ANSWER, (json.dumps(answer).encode(), claimed[0]))
    return answer


one_call = Flask(__name__)


@one_call.post("/api/v1/orders")
def place_order_in_one_call() -> tuple[dict[str, Any], int]:
    raw = request.get_data()
    body = json.loads(raw)
    conn = _connection(autocommit=True)
    user_id = _user_id(conn, request.headers.get("Authorization", "").removeprefix("Bearer "))
    if user_id is None:
        return {"title": "Unauthorized"}, 401
    lines = sorted((int(line["listing_id"]), int(line["grams"])) for line in body["lines"])
    expires = datetime.now(UTC) + timedelta(minutes=30)
    arguments = (
        user_id,
        request.headers["Idempotency-Key"],
        hashlib.sha256(raw).hexdigest(),
        body["fulfilment_point_id"],
        [listing_id for listing_id, _ in lines],
        [grams for _, grams in lines],
        expires,
    )
    try:
        placed = conn.execute("SELECT * FROM floor_place(%s, %s, %s, %s, %s, %s, %s)", arguments).fetchone()
    except psycopg.errors.RaiseException as short:
        return {"title": "Conflict", "detail": short.diag.message_primary or ""}, 409
    assert placed is not None
    if placed[0] == 0:
        return {"title": "Conflict", "detail": "this Idempotency-Key was used"}, 409
    return {"id": placed[0], "status": "pending_payment", "total": placed[1]}, 201
