"""One hot listing: 1,000 buyers at once want 1 kg of a listing that has
500 kg. Exactly 500 orders must succeed, the other 500 get 409 (out of
stock), and the stock must end at 0.

    .venv/bin/python -m tests.bench.hot_listing [--workers 2 --threads 4 --attempts 1000]

Runs against gunicorn on its own PostgreSQL database (`bench`), each attempt
a separate connection from its own thread, all released at once.
"""

from __future__ import annotations

import argparse
import http.client
import json
import threading
import time
from collections import Counter
from typing import Any

import psycopg

from tests.bench.common import (
    BOOT_SECONDS,
    BUYERS,
    POINT_ID,
    PORT,
    REDIS_URL,
    UNCAPPED_BUYERS,
    database_url,
    get,
    gunicorn,
    plain_url,
    recreate_database,
    reset_redis,
    say,
    seed,
    table,
    token_for_buyer,
    write_results,
)

GRAMS = 1000


def attempt(
    number: int, listing_id: int, start: threading.Barrier, outcomes: Counter[int], lock: threading.Lock
) -> None:
    body = json.dumps({"fulfilment_point_id": POINT_ID, "lines": [{"listing_id": listing_id, "grams": GRAMS}]})
    headers = {
        "Content-Type": "application/json",
        "Authorization": f"Bearer {token_for_buyer(1 + number % BUYERS)}",
        "Idempotency-Key": f"hot-{number}",
    }
    start.wait()
    status = 0  # a connection that failed outright
    try:
        conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=120)
        conn.request("POST", "/api/v1/orders", body=body, headers=headers)
        status = conn.getresponse().status
        conn.close()
    except OSError as exc:
        say(f"  attempt {number}: {exc}")
    with lock:
        outcomes[status] += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--attempts", type=int, default=1000)
    parser.add_argument("--orders", type=int, default=500, help="how many orders the stock is enough for")
    args = parser.parse_args()
    url = database_url("bench")
    say("seeding ...")
    recreate_database(url)
    reset_redis()
    seed(url, listings=100, stock_g=10_000_000)
    with psycopg.connect(plain_url(url)) as conn:
        row = conn.execute(
            "UPDATE listings SET stock_g = %s WHERE id = (SELECT min(id) FROM listings WHERE status = 'active') "
            "RETURNING id",
            (args.orders * GRAMS,),
        ).fetchone()
    assert row is not None
    listing_id = row[0]
    env = {"DATABASE_URL": url, "REDIS_URL": REDIS_URL, "SECRET_KEY": "bench", **UNCAPPED_BUYERS}
    outcomes: Counter[int] = Counter()
    lock = threading.Lock()
    start = threading.Barrier(args.attempts + 1)
    with gunicorn("wsgi:app", workers=args.workers, threads=args.threads, env=env):
        get("/healthz", timeout=BOOT_SECONDS)
        threads = [
            threading.Thread(target=attempt, args=(n, listing_id, start, outcomes, lock)) for n in range(args.attempts)
        ]
        for thread in threads:
            thread.start()
        say(f"{args.attempts} attempts on listing {listing_id} ({args.orders * GRAMS:,} g) ...")
        start.wait()
        began = time.perf_counter()
        for number, thread in enumerate(threads, start=1):
            thread.join()
            if number % 250 == 0:
                say(f"  {number} answered")
        elapsed = time.perf_counter() - began
    with psycopg.connect(plain_url(url)) as conn:
        stock = conn.execute("SELECT stock_g, status FROM listings WHERE id = %s", (listing_id,)).fetchone()
        lines = conn.execute(
            "SELECT count(*), coalesce(sum(ordered_g), 0) FROM order_lines WHERE listing_id = %s", (listing_id,)
        ).fetchone()
    assert stock is not None and lines is not None
    result: dict[str, Any] = {
        "attempts": args.attempts,
        "created_201": outcomes[201],
        "out_of_stock_409": outcomes[409],
        "other": sum(v for k, v in outcomes.items() if k not in (201, 409)),
        "stock_left_g": stock[0],
        "listing_status": stock[1],
        "order_lines": lines[0],
        "seconds": round(elapsed, 2),
    }
    result["correct"] = (
        result["created_201"] == args.orders
        and result["out_of_stock_409"] == args.attempts - args.orders
        and result["stock_left_g"] == 0
        and result["order_lines"] == args.orders
    )
    print(
        f"\nHot listing: {args.attempts} concurrent attempts, stock for {args.orders} orders,"
        f" gunicorn {args.workers} workers x {args.threads} threads"
    )
    print(table([result], list(result)))
    path = write_results("hot_listing", {"settings": vars(args), "result": result, "statuses": dict(outcomes)})
    print(f"\nwritten to {path}")
    if not result["correct"]:
        raise SystemExit("hot listing check failed")


if __name__ == "__main__":
    main()
