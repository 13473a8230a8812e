"""Order placement over HTTP: gunicorn on PostgreSQL, driven by wrk.

    .venv/bin/python -m tests.bench.orders_http [--workers 2 --threads 4 --seconds 30]

Seeds 1,000 farms with 10,000 listings and 1,000 buyers with tokens (bulk
SQL), then 16 connections POST /api/v1/orders with 1 to 3 lines and a unique
Idempotency-Key each, for --seconds after a warm-up. The same gunicorn
settings then serve a bare Flask app (tests/bench/bare_app.py) with the same
requests: the ceiling. Afterwards stock is checked: no listing below zero,
and the grams ordered equal the stock taken.
"""

from __future__ import annotations

import argparse
import os
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

from tests.bench.common import (
    BUYERS,
    FARMS,
    POINT_ID,
    REDIS_URL,
    UNCAPPED_BUYERS,
    WRK_DONE,
    active_listing_ids,
    database_url,
    get,
    gunicorn,
    plain_url,
    process_cpu_seconds,
    recreate_database,
    require_wrk,
    reset_redis,
    run_wrk,
    say,
    seed,
    table,
    token_for_buyer,
    write_results,
)

LISTINGS = 10_000
STOCK_G = 1_000_000_000  # a tonne per listing: the run measures placing, not selling out

LUA = """
local tokens = {%(tokens)s}
local listings = {%(listings)s}
local counter = 0
local nonce = "x"

function setup(thread)
  thread:set("tid", tostring(math.random(1, 1000000000)))
end

function init(args)
  nonce = args[1] .. "-" .. tid
  math.randomseed(tonumber(tid))
end

function request()
  counter = counter + 1
  local n = math.random(1, 3)
  local used = {}
  local lines = {}
  while #lines < n do
    local id = listings[math.random(#listings)]
    if not used[id] then
      used[id] = true
      lines[#lines + 1] = string.format('{"listing_id":%%d,"grams":%%d}', id, 1000 + 500 * math.random(0, 2))
    end
  end
  local body = '{"fulfilment_point_id":%(point)d,"lines":[' .. table.concat(lines, ",") .. ']}'
  local headers = {}
  headers["Content-Type"] = "application/json"
  headers["Authorization"] = "Bearer " .. tokens[math.random(#tokens)]
  headers["Idempotency-Key"] = nonce .. "-" .. counter
  return wrk.format("POST", nil, headers, body)
end
"""


def write_script(listing_ids: list[int], directory: Path) -> Path:
    tokens = ",".join(f'"{token_for_buyer(n)}"' for n in range(1, BUYERS + 1))
    lua = LUA % {"tokens": tokens, "listings": ",".join(map(str, listing_ids)), "point": POINT_ID}
    script = directory / "orders.lua"
    script.write_text(lua + WRK_DONE)
    return script


def busy_cpu_seconds() -> float:
    """CPU seconds the whole machine spent busy so far (all cores), from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields) - idle) / os.sysconf("SC_CLK_TCK")


def load(script: Path, *, seconds: int, warmup: int, connections: int, server_pid: int) -> dict[str, Any]:
    nonce = secrets.token_hex(4)
    say(f"  warm-up {warmup} s ...")
    run_wrk_with_args(script, nonce + "w", connections=connections, seconds=warmup)
    say(f"  measuring {seconds} s with {connections} connections ...")
    server_before = process_cpu_seconds(server_pid)
    machine_before = busy_cpu_seconds()
    started = time.perf_counter()
    report = run_wrk_with_args(script, nonce + "m", connections=connections, seconds=seconds)
    wall = time.perf_counter() - started
    report["server_cpu_cores"] = round((process_cpu_seconds(server_pid) - server_before) / wall, 2)
    report["machine_cpu_cores"] = round((busy_cpu_seconds() - machine_before) / wall, 2)
    return report


def run_wrk_with_args(script: Path, nonce: str, *, connections: int, seconds: int) -> dict[str, Any]:
    # wrk passes what follows "--" to the script's init(args).
    return run_wrk(
        script, path="/api/v1/orders", connections=connections, threads=1, seconds=seconds, script_args=[nonce]
    )


def check_stock(url: str) -> dict[str, Any]:
    with psycopg.connect(plain_url(url)) as conn:
        negative = conn.execute("SELECT count(*) FROM listings WHERE stock_g < 0").fetchone()
        taken = conn.execute("SELECT sum(%s - stock_g) FROM listings", (STOCK_G,)).fetchone()
        ordered = conn.execute("SELECT coalesce(sum(ordered_g), 0) FROM order_lines").fetchone()
        orders = conn.execute("SELECT count(*) FROM orders").fetchone()
        outbox = conn.execute("SELECT count(*) FROM outbox").fetchone()
    assert negative and taken and ordered and orders and outbox
    result = {
        "listings_below_zero": negative[0],
        "grams_taken": int(taken[0]),
        "grams_ordered": int(ordered[0]),
        "orders": orders[0],
        "outbox_rows": outbox[0],
    }
    result["consistent"] = result["listings_below_zero"] == 0 and result["grams_taken"] == result["grams_ordered"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    require_wrk()
    url = database_url("bench")
    say(f"seeding {FARMS:,} farms, {LISTINGS:,} listings, {BUYERS:,} buyers ...")
    started = time.perf_counter()
    recreate_database(url)
    reset_redis()
    seed(url, listings=LISTINGS, stock_g=STOCK_G)
    say(f"  seeded in {time.perf_counter() - started:.1f} s")
    listing_ids = active_listing_ids(url)
    env = {"DATABASE_URL": url, "REDIS_URL": REDIS_URL, "SECRET_KEY": "bench", **UNCAPPED_BUYERS}
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        script = write_script(listing_ids, Path(tmp))
        settings = f"{args.workers} workers x {args.threads} threads"
        say(f"market app, {settings}:")
        with gunicorn("wsgi:app", workers=args.workers, threads=args.threads, env=env) as server:
            get("/healthz")
            market = load(
                script, seconds=args.seconds, warmup=args.warmup, connections=args.connections, server_pid=server.pid
            )
        rows.append({"app": "market POST /orders", **market})
        say(f"bare Flask app, {settings}:")
        with gunicorn("tests.bench.bare_app:app", workers=args.workers, threads=args.threads, env={}) as server:
            bare = load(
                script, seconds=args.seconds, warmup=args.warmup, connections=args.connections, server_pid=server.pid
            )
        rows.append({"app": "bare Flask (ceiling)", **bare})
    stock = check_stock(url)
    ratio = market["rps"] / bare["rps"]
    columns = ["app", "rps", "p50_ms", "p95_ms", "p99_ms", "non_2xx", "socket_errors", "server_cpu_cores"]
    columns += ["machine_cpu_cores", "wrk_cpu_share_of_one_core"]
    print(
        f"\nOrder placement over HTTP: gunicorn {settings} (gthread), {args.connections} connections, {args.seconds} s"
    )
    print(table(rows, columns))
    print(f"\nmarket / ceiling: {ratio:.1%}")
    print(table([stock], list(stock)))
    path = write_results(
        "orders_http",
        {
            "settings": {**vars(args), "listings": LISTINGS, "farms": FARMS, "buyers": BUYERS},
            "market": market,
            "ceiling": bare,
            "ratio_to_ceiling": round(ratio, 4),
            "stock_check": stock,
        },
    )
    print(f"\nwritten to {path}")
    if not stock["consistent"]:
        raise SystemExit("stock check failed: oversold or grams lost")


if __name__ == "__main__":
    main()
