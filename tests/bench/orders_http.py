"""Order placement over HTTP: gunicorn on PostgreSQL, driven by wrk.

    .venv/bin/python -m tests.bench.orders_http [--workers 2 --threads 4 --seconds 30 --rounds 2]

Seeds 1,000 farms with 10,000 listings and 1,000 buyers with tokens (bulk
SQL), then 16 connections POST /api/v1/orders with 1 to 3 lines and a unique
Idempotency-Key each, for --seconds after a warm-up. The market runs twice
per round: publishing its outbox rows from each gunicorn worker's relay
thread (OUTBOX_RELAY=committer), and leaving them to the relay process
(OUTBOX_RELAY=listener: `flask --app wsgi relay`, woken by PostgreSQL's
NOTIFY), whose CPU counts as the server's. Nothing consumes the tasks.
The same gunicorn settings serve the floor (tests/bench/floor_app.py: the
same transaction in the fewest psycopg statements, nothing else; and as one
call to a PL/pgSQL function) and a bare Flask app (tests/bench/bare_app.py)
with the same requests: the ceiling. The five are measured in turns,
--rounds times each. Each run records the CPU of every gunicorn worker (a run where one
worker did most of the work is measured again) and of PostgreSQL, per
request. Then orders placed in-process count the statements and commits per
order. Afterwards stock is checked: no listing below zero, and the grams
ordered equal the stock taken.
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import event

import config
from market import create_app
from market.extensions import db
from tests.bench.common import (
    BOOT_SECONDS,
    BUYERS,
    FARMS,
    POINT_ID,
    REDIS_URL,
    UNCAPPED_BUYERS,
    WRK_DONE,
    active_listing_ids,
    cpu_seconds_by_process,
    cpu_seconds_since,
    database_name,
    database_url,
    get,
    gunicorn,
    plain_url,
    postgres_pids,
    process_cpu_seconds,
    recreate_database,
    require_wrk,
    reset_redis,
    run_wrk,
    say,
    seed,
    sessions_opened,
    table,
    token_for_buyer,
    worker_pids,
    write_results,
)
from tests.bench.floor_app import install_place_function

LISTINGS = 10_000
STOCK_G = 1_000_000_000  # a tonne per listing: the run measures placing, not selling out
FLOOR_APP = "tests.bench.floor_app:app"
FLOOR_ONE_CALL = "tests.bench.floor_app:one_call"

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


# A run where one worker did more than this share of the workers' CPU is
# measured again on new connections (the kernel spreads them by a hash of
# their ports, which now and then lands most of them on one worker).
LOPSIDED_SHARE = 0.65
MEASURE_TRIES = 3


def load(
    script: Path,
    *,
    seconds: int,
    warmup: int,
    connections: int,
    server_pid: int,
    database: str,
    relay_pid: int | None = None,
) -> dict[str, Any]:
    nonce = secrets.token_hex(4)
    say(f"  warm-up {warmup} s ...")
    run_wrk_with_args(script, nonce + "w", connections=connections, seconds=warmup)
    for attempt in range(1, MEASURE_TRIES + 1):
        report = measure(
            script,
            f"{nonce}m{attempt}",
            seconds=seconds,
            connections=connections,
            server_pid=server_pid,
            database=database,
            relay_pid=relay_pid,
        )
        report["attempts"] = attempt
        if report["busiest_worker_share"] <= LOPSIDED_SHARE:
            break
        say(f"  lopsided: one worker did {report['busiest_worker_share']:.0%} of the work; measuring again")
    return report


def measure(
    script: Path,
    nonce: str,
    *,
    seconds: int,
    connections: int,
    server_pid: int,
    database: str,
    relay_pid: int | None,
) -> dict[str, Any]:
    """One wrk run, with the CPU each part spent on it. The server's CPU is
    gunicorn's and, where the relay process publishes, the relay's."""
    say(f"  measuring {seconds} s with {connections} connections ...")
    workers = worker_pids(server_pid)
    workers_before = cpu_seconds_by_process(workers)
    database_before = cpu_seconds_by_process(postgres_pids(database))
    sessions_before = sessions_opened(database)
    relay_before = process_cpu_seconds(relay_pid) if relay_pid else 0.0
    server_before = process_cpu_seconds(server_pid)
    machine_before = busy_cpu_seconds()
    started = time.perf_counter()
    report = run_wrk_with_args(script, nonce, connections=connections, seconds=seconds)
    wall = time.perf_counter() - started
    relay = process_cpu_seconds(relay_pid) - relay_before if relay_pid else 0.0
    server = process_cpu_seconds(server_pid) - server_before + relay
    workers_after = cpu_seconds_by_process(workers)
    per_worker = [workers_after[p] - workers_before[p] for p in workers if p in workers_after]
    # Backends started during the run (a pool opening connections) count
    # whole; those that also ended are lost, and sessions opened shows them.
    started_during = [p for p in postgres_pids(database) if p not in database_before]
    database_cpu = cpu_seconds_since(database_before) + sum(cpu_seconds_by_process(started_during).values())
    done = max(report["requests"] - report["non_2xx"], 1)
    report["server_cpu_cores"] = round(server / wall, 2)
    report["worker_cpu_cores"] = [round(cpu / wall, 2) for cpu in per_worker]
    report["busiest_worker_share"] = round(max(per_worker) / max(sum(per_worker), 1e-9), 2)
    report["server_cpu_ms_per_request"] = round(server * 1000 / done, 2)
    report["relay_process_cpu_ms_per_request"] = round(relay * 1000 / done, 2)
    report["postgres_cpu_cores"] = round(database_cpu / wall, 2)
    report["postgres_cpu_ms_per_request"] = round(database_cpu * 1000 / done, 2)
    report["postgres_sessions_opened"] = sessions_opened(database) - sessions_before
    report["machine_cpu_cores"] = round((busy_cpu_seconds() - machine_before) / wall, 2)
    return report


def server_env(url: str) -> dict[str, str]:
    """The environment the benchmark's server runs with."""
    return {"DATABASE_URL": url, "REDIS_URL": REDIS_URL, "SECRET_KEY": "bench", **UNCAPPED_BUYERS}


@contextmanager
def relay_process(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`flask --app wsgi relay`: the relay process of OUTBOX_RELAY=listener."""
    with log.open("ab") as out:
        relay = subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "wsgi", "relay"],
            cwd=config.ROOT,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + BOOT_SECONDS
        while "relay: publishing" not in log.read_text(errors="replace"):
            if relay.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the relay process did not start; see {log}")
            time.sleep(0.2)
        yield relay
    finally:
        relay.send_signal(signal.SIGTERM)
        relay.wait(timeout=30)


def statements_per_order(url: str, listing_ids: list[int], orders: int = 200) -> dict[str, float]:
    """Place `orders` orders in-process, as wrk's requests do, counting the
    SQL statements and commits each sends to PostgreSQL."""
    # The server's settings, read from the same environment: its database,
    # its Redis as broker and rate-limit store, the caps past the load.
    app = create_app(config.load({**os.environ, **server_env(url)}))
    client = app.test_client()
    with app.app_context():
        engine = db.engine
    counts = {"statements": 0, "commits": 0}

    @event.listens_for(engine, "before_cursor_execute")
    def _statement(*_: Any) -> None:
        counts["statements"] += 1

    @event.listens_for(engine, "commit")
    def _commit(*_: Any) -> None:
        counts["commits"] += 1

    chosen = random.Random(7)
    nonce = secrets.token_hex(4)
    for number in range(orders):
        lines = [{"listing_id": i, "grams": 1000} for i in chosen.sample(listing_ids, chosen.randint(1, 3))]
        response = client.post(
            "/api/v1/orders",
            json={"fulfilment_point_id": POINT_ID, "lines": lines},
            headers={
                "Authorization": f"Bearer {token_for_buyer(chosen.randint(1, BUYERS))}",
                "Idempotency-Key": f"{nonce}-{number}",
            },
        )
        assert response.status_code == 201, response.get_data(as_text=True)
    return {name: round(count / orders, 1) for name, count in counts.items()}


def run_wrk_with_args(script: Path, nonce: str, *, connections: int, seconds: int) -> dict[str, Any]:
    # wrk passes what follows "--" to the script's init(args).
    return run_wrk(
        script, path="/api/v1/orders", connections=connections, threads=1, seconds=seconds, script_args=[nonce]
    )


def wait_until_published(url: str, timeout: float = 60) -> int:
    """Outbox rows left unsent once the relay process has caught up (0
    unless it fell behind for good)."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(plain_url(url), autocommit=True) as conn:
        while True:
            row = conn.execute("SELECT count(*) FROM outbox WHERE sent_at IS NULL").fetchone()
            unsent = int(row[0]) if row else 0
            if unsent == 0 or time.monotonic() > deadline:
                return unsent
            time.sleep(0.2)


def set_aside_floor_rows(url: str) -> None:
    """Mark the floor's outbox rows sent, so the market's next relay does
    not spend its CPU publishing them."""
    with psycopg.connect(plain_url(url)) as conn:
        conn.execute("UPDATE outbox SET sent_at = now() WHERE task = 'floor.order_placed' AND sent_at IS NULL")


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


def run_rounds(args: argparse.Namespace, url: str, listing_ids: list[int]) -> list[dict[str, Any]]:
    """The market with each relay, and the ceiling, in turns, --rounds times."""
    settings = f"{args.workers} workers x {args.threads} threads"
    rows: list[dict[str, Any]] = []
    # The app, and who publishes its outbox rows.
    apps = {
        "market, committer relays": ("wsgi:app", "committer"),
        "market, relay process": ("wsgi:app", "listener"),
        "floor (psycopg, one transaction)": (FLOOR_APP, None),
        "floor (one call to a PL/pgSQL function)": (FLOOR_ONE_CALL, None),
        "bare Flask (ceiling)": ("tests.bench.bare_app:app", None),
    }
    with tempfile.TemporaryDirectory() as tmp:
        script = write_script(listing_ids, Path(tmp))
        # Market and ceiling taken in turns, so a change in the machine's
        # other work shows as a change in all.
        for round_number in range(1, args.rounds + 1):
            for name, (app, relay) in apps.items():
                say(f"round {round_number}: {name}, {settings}:")
                env = {**server_env(url), "OUTBOX_RELAY": relay or "committer"}
                with ExitStack() as running:
                    relay_pid = (
                        running.enter_context(relay_process(env, Path(tmp) / f"relay-{round_number}.log")).pid
                        if relay == "listener"
                        else None
                    )
                    server = running.enter_context(gunicorn(app, workers=args.workers, threads=args.threads, env=env))
                    if app == "wsgi:app":
                        get("/healthz", timeout=BOOT_SECONDS)
                    report = load(
                        script,
                        seconds=args.seconds,
                        warmup=args.warmup,
                        connections=args.connections,
                        server_pid=server.pid,
                        database=database_name(url),
                        relay_pid=relay_pid,
                    )
                    if relay_pid is not None:
                        report["unsent_after_run"] = wait_until_published(url)
                    if app in (FLOOR_APP, FLOOR_ONE_CALL):
                        set_aside_floor_rows(url)
                rows.append({"round": round_number, "app": name, **report})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2, help="market and ceiling runs, taken in turns")
    args = parser.parse_args()
    require_wrk()
    url = database_url("bench")
    say(f"seeding {FARMS:,} farms, {LISTINGS:,} listings, {BUYERS:,} buyers ...")
    started = time.perf_counter()
    recreate_database(url)
    reset_redis()
    seed(url, listings=LISTINGS, stock_g=STOCK_G)
    install_place_function(url)
    say(f"  seeded in {time.perf_counter() - started:.1f} s")
    listing_ids = active_listing_ids(url)
    settings = f"{args.workers} workers x {args.threads} threads"
    rows = run_rounds(args, url, listing_ids)
    market = [row for row in rows if row["app"] == "market, committer relays"]
    floor = [row for row in rows if row["app"].startswith("floor (psycopg")]
    bare = [row for row in rows if row["app"].startswith("bare")]
    say("statements per order (in-process) ...")
    statements = statements_per_order(url, listing_ids)
    stock = check_stock(url)
    ratio = statistics.median(r["rps"] for r in market) / statistics.median(r["rps"] for r in bare)
    to_floor = statistics.median(r["rps"] for r in market) / statistics.median(r["rps"] for r in floor)
    columns = ["round", "app", "rps", "p50_ms", "p99_ms", "non_2xx", "attempts", "worker_cpu_cores"]
    columns += ["server_cpu_ms_per_request", "relay_process_cpu_ms_per_request", "postgres_cpu_ms_per_request"]
    columns += ["postgres_sessions_opened"]
    columns += ["machine_cpu_cores"]
    columns += ["wrk_cpu_share_of_one_core"]
    print(
        f"\nOrder placement over HTTP: gunicorn {settings} (gthread, --reuse-port), "
        f"{args.connections} connections, {args.seconds} s, {args.rounds} rounds"
    )
    print(table(rows, columns))
    print(f"\nmarket / ceiling (medians): {ratio:.1%}; market / floor: {to_floor:.1%}")
    print(f"per order, in-process: {statements['statements']} statements, {statements['commits']} commits")
    print(table([stock], list(stock)))
    path = write_results(
        "orders_http",
        {
            "settings": {**vars(args), "listings": LISTINGS, "farms": FARMS, "buyers": BUYERS},
            "runs": rows,
            "ratio_to_ceiling": round(ratio, 4),
            "ratio_to_floor": round(to_floor, 4),
            "per_order": statements,
            "stock_check": stock,
        },
    )
    print(f"\nwritten to {path}")
    if not stock["consistent"]:
        raise SystemExit("stock check failed: oversold or grams lost")


if __name__ == "__main__":
    main()
