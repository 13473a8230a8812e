"""What every benchmark shares: the machine it ran on, a scratch PostgreSQL
database migrated to head and seeded in bulk SQL, a gunicorn server on
127.0.0.1, wrk, and the results table and JSON file.

Benchmarks never touch the test databases or Redis databases 0-2: they use
their own database (`bench` by default, BENCH_DATABASE_URL to change it) and
Redis database 5.
"""

from __future__ import annotations

import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import redis
from argon2 import PasswordHasher
from flask import Flask

import config
from market import create_app

ROOT = config.ROOT
RESULTS = ROOT / "bench-results"
ADMIN_URL = os.environ.get("BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/5")
# The benchmark's few thousand buyers each place many orders: the per-buyer
# caps and the per-account order limit are still checked on every order,
# but set past what the load reaches, so they refuse nothing.
UNCAPPED_BUYERS = {
    "BUYER_MAX_UNPAID_ORDERS": "1000000000",
    "BUYER_MAX_UNPAID_G": "1000000000000",
    "RATELIMIT_ORDERS": "1000000000 per minute",
}
FORBIDDEN_DATABASES = {"test", "catalog_test", "notif_test", "postgres"}
PORT = int(os.environ.get("BENCH_PORT", "8765"))
# How long the first request may wait for a worker to boot: gunicorn listens
# before its workers have imported the app, and on a loaded machine a
# worker takes well over ten seconds to.
BOOT_SECONDS = 120
FARMS = 1000
BUYERS = 1000
POINT_ID = 1
COUNTIES = ["寻乌县", "安远县", "定南县", "会昌县", "信丰县", "青龙满族自治县", "永顺县", "龙南市", "全南县", "瑞金市"]
PROVINCES = {"青龙满族自治县": "河北省", "永顺县": "湖南省"}
CATEGORIES = [
    ("citrus", "柑橘", "Citrus"),
    ("nuts", "坚果", "Nuts"),
    ("tea", "茶叶", "Tea"),
    ("vegetables", "蔬菜", "Vegetables"),
]
PRODUCTS = ["Navel orange", "Chestnut", "Berry tea", "Pomelo", "Mandarin", "Walnut", "Cabbage", "Green tea"]


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- the machine --------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")
    )
    with psycopg.connect(ADMIN_URL) as conn:
        pg = conn.execute("SHOW server_version").fetchone()
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "postgresql": pg[0] if pg else "unknown",
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


# --- results ------------------------------------------------------------------


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) if cells else len(c) for i, c in enumerate(columns)]
    line = "| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)) + " |"
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) + " |" for r in cells]
    return "\n".join([line, rule, *body])


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def write_results(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    data = {"benchmark": name, "at": stamp, "machine": machine(), **data}
    path = RESULTS / f"{name}-{stamp}.json"
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str))
    (RESULTS / f"{name}-latest.json").write_text(path.read_text())
    return path


# --- the database -------------------------------------------------------------


def bench_app(url: str) -> Flask:
    """The app on the benchmark's database `url`, set up as a server on it
    would be (its engine options are the URL's, not those of whatever
    DATABASE_URL the shell holds), without rate limits."""
    return create_app({**config.load({**os.environ, "DATABASE_URL": url}), "RATELIMIT_ENABLED": False})


def database_name(url: str) -> str:
    return url.rsplit("/", 1)[1].split("?", maxsplit=1)[0]


def database_url(default_name: str) -> str:
    url = os.environ.get("BENCH_DATABASE_URL") or f"postgresql+psycopg://postgres@127.0.0.1:5432/{default_name}"
    name = database_name(url)
    if name in FORBIDDEN_DATABASES:
        raise SystemExit(f"refusing to benchmark on database {name!r}: it belongs to the tests")
    return url


def plain_url(url: str) -> str:
    """The same database for psycopg, which does not take SQLAlchemy's driver name."""
    return url.replace("postgresql+psycopg://", "postgresql://")


def recreate_database(url: str) -> None:
    """Drop and create the database, then migrate it to head."""
    name = database_name(url)
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    env = {**os.environ, "DATABASE_URL": url, "REDIS_URL": REDIS_URL}
    subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )


def reset_redis() -> None:
    """Empty the benchmark's own Redis database: the tasks a run publishes
    are never consumed (no worker runs), so each run starts from nothing."""
    client = redis.Redis.from_url(REDIS_URL)
    database = client.connection_pool.connection_kwargs.get("db", 0)
    if int(database) <= 2:
        raise SystemExit(f"refusing to empty Redis database {database}: it belongs to the tests and the app")
    client.flushdb()


def token_for_buyer(number: int) -> str:
    return f"fm_bench_buyer_{number:06d}"


def seed(url: str, *, listings: int, stock_g: int) -> None:
    """Farmers, verified farms, buyers with tokens, a fulfilment point and
    `listings` active listings, all in a few set-based statements."""
    password_hash = PasswordHasher().hash("bench-password")
    counties = "ARRAY[" + ",".join(f"'{c}'" for c in COUNTIES) + "]"
    provinces = "ARRAY[" + ",".join(f"'{PROVINCES.get(c, '江西省')}'" for c in COUNTIES) + "]"
    with psycopg.connect(plain_url(url)) as conn:
        conn.execute(
            """INSERT INTO users (id, email, name, language, password_hash)
               SELECT i, 'user' || i || '@bench.test', 'Bench user ' || i, 'zh', %s
               FROM generate_series(1, %s) AS i""",
            (password_hash, FARMS + BUYERS),
        )
        conn.execute(
            """INSERT INTO user_roles (user_id, role)
               SELECT i, CASE WHEN i <= %s THEN 'farmer' ELSE 'buyer' END FROM generate_series(1, %s) AS i""",
            (FARMS, FARMS + BUYERS),
        )
        with conn.cursor() as cur:
            cur.executemany(
                """INSERT INTO api_tokens (user_id, name, token_hash, prefix, expires_at)
                   VALUES (%s, 'bench', encode(sha256(convert_to(%s, 'UTF8')), 'hex'), 'fm_bench',
                           now() + interval '30 days')""",
                [(FARMS + n, token_for_buyer(n)) for n in range(1, BUYERS + 1)],
            )
            cur.executemany(
                "INSERT INTO categories (id, code, name_zh, name_en) VALUES (%s, %s, %s, %s)",
                [(i, *c) for i, c in enumerate(CATEGORIES, start=1)],
            )
        conn.execute(
            # Built from this module's constants only, never from input.
            f"""INSERT INTO farms (id, owner_id, name, village, county, province, description, status, verified_at)
                SELECT i, i, 'Bench farm ' || i, 'Village ' || (i %% 97),
                       ({counties})[1 + i %% {len(COUNTIES)}], ({provinces})[1 + i %% {len(COUNTIES)}], '', 'verified',
                       now()
                FROM generate_series(1, %s) AS i""",  # noqa: S608
            (FARMS,),
        )
        conn.execute(
            """INSERT INTO fulfilment_points (id, kind, name, county, province, address, opening_hours)
               VALUES (%s, 'county_centre', 'Xunwu county centre', '寻乌县', '江西省', '长宁镇', '08:00-18:00')""",
            (POINT_ID,),
        )
        insert_listings(conn, listings=listings, stock_g=stock_g, farms=FARMS)
        for table_name in ("users", "categories", "farms", "fulfilment_points"):
            # The ids above were given explicitly; move each sequence past them.
            conn.execute(
                "SELECT setval(pg_get_serial_sequence(%s, 'id'), (SELECT max(id) FROM "  # noqa: S608 (fixed names)
                + table_name
                + "))",
                (table_name,),
            )
        conn.execute("ANALYZE")


def insert_listings(
    conn: psycopg.Connection[Any], *, listings: int, stock_g: int, farms: int, sku_prefix: str = "SKU-"
) -> None:
    """`listings` listings (one in 50 paused) over farms 1 to `farms` and
    the CATEGORIES (ids 1 up), with `stock_g` each, in one statement; their
    SKUs are `sku_prefix` and a number."""
    counties = "ARRAY[" + ",".join(f"'{c}'" for c in COUNTIES) + "]"
    products = "ARRAY[" + ",".join(f"'{p}'" for p in PRODUCTS) + "]"
    # Listing i belongs to farm 1 + i % farms, so a farm's listings are
    # spread over the id range as they would be in real life.
    conn.execute(
        f"""INSERT INTO listings (farm_id, category_id, sku, product_name, variety, grade, origin_county,
                                  price_per_kg, stock_g, min_order_g, step_g, description, photo_urls,
                                  harvest_date, status)
            SELECT 1 + i %% {farms}, 1 + i %% {len(CATEGORIES)}, %s || i,
                   ({products})[1 + i %% {len(PRODUCTS)}], 'Variety ' || (i %% 13), 'A',
                   ({counties})[1 + (1 + i %% {farms}) %% {len(COUNTIES)}],
                   500 + (i::bigint * 7919) %% 5000, %s, 1000, 500, '', '[]',
                   DATE '2026-11-01' - (i %% 180),
                   CASE WHEN i %% 50 = 0 THEN 'paused' ELSE 'active' END
            FROM generate_series(1, %s) AS i""",  # noqa: S608 (module constants only)
        (sku_prefix, stock_g, listings),
    )


def active_listing_ids(url: str) -> list[int]:
    with psycopg.connect(plain_url(url)) as conn:
        return [r[0] for r in conn.execute("SELECT id FROM listings WHERE status = 'active' ORDER BY id")]


# --- gunicorn -----------------------------------------------------------------


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def worker_pids(pid: int) -> list[int]:
    """The live child processes of `pid` (a gunicorn's workers)."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in children.read_text().split()] if children.exists() else []


def cpu_seconds_by_process(pids: Sequence[int]) -> dict[int, float]:
    """User + system CPU of each process in `pids` still alive, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    found = {}
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        found[p] = (int(fields[11]) + int(fields[12])) / tick
    return found


def postgres_pids(database: str) -> list[int]:
    """PostgreSQL's processes that work for `database`: its backends and
    the server's own (WAL writer, checkpointer...), not the backends or
    autovacuum workers of other databases on the same server."""
    with psycopg.connect(ADMIN_URL) as conn:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s OR datname IS NULL", (database,))
        return [row[0] for row in rows]


def sessions_opened(database: str) -> int:
    """Connections `database` has accepted since its statistics were last
    reset (PostgreSQL 14 and later): the difference over a run shows a pool
    that opens connections instead of reusing them."""
    with psycopg.connect(ADMIN_URL) as conn:
        row = conn.execute("SELECT sessions FROM pg_stat_database WHERE datname = %s", (database,)).fetchone()
        return int(row[0]) if row else 0


def cpu_seconds_since(before: dict[int, float]) -> float:
    """CPU used since `before` (from cpu_seconds_by_process) by those of its
    processes still alive."""
    after = cpu_seconds_by_process(list(before))
    return sum(after[pid] - before[pid] for pid in after)


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its live children, from /proc."""
    return sum(cpu_seconds_by_process([pid, *worker_pids(pid)]).values())


@contextmanager
def gunicorn(app: str, *, workers: int, threads: int, env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """A gunicorn serving `app` on 127.0.0.1:PORT until the block ends.

    Each worker listens on a socket of its own (`--reuse-port`), so the
    kernel spreads new connections over the workers. On one shared socket
    whichever worker wakes first accepts: wrk opens its keep-alive
    connections at once, and in most runs all of them stayed with one
    worker, so one core did the work."""
    if _port_open(PORT):
        raise SystemExit(f"port {PORT} is busy; set BENCH_PORT")
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        app,
        "--bind",
        f"127.0.0.1:{PORT}",
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        "--worker-class",
        "gthread",
        "--keep-alive",
        "5",
        "--backlog",
        "2048",
        "--reuse-port",
        "--log-level",
        "warning",
    ]
    # A connection for each thread and the relay thread, unless the run is
    # about the pool (DATABASE_POOL_SIZE set): past it, connections churn.
    pool = {"DATABASE_POOL_SIZE": os.environ.get("DATABASE_POOL_SIZE") or str(threads + 1)}
    RESULTS.mkdir(exist_ok=True)
    log = (RESULTS / "gunicorn.log").open("ab")
    server = subprocess.Popen(  # noqa: S603 (our own fixed command line)
        command, cwd=ROOT, env={**os.environ, **pool, **env}, stdout=log, stderr=log
    )
    try:
        for _ in range(200):
            if server.poll() is not None:
                raise SystemExit(f"gunicorn exited with {server.returncode}; see {RESULTS / 'gunicorn.log'}")
            if _port_open(PORT):
                break
            time.sleep(0.1)
        else:
            raise SystemExit("gunicorn did not start listening within 20 s")
        yield server
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def get(path: str, timeout: float = 10) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{PORT}{path}", timeout=timeout) as response:
        body: bytes = response.read()
        return body


# --- wrk ----------------------------------------------------------------------


def require_wrk() -> str:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is not installed: `apt-get install -y wrk` (Debian/Ubuntu) or `brew install wrk`")
    return wrk


WRK_REPORT = re.compile(r"^BENCH_JSON (.*)$", re.MULTILINE)


def run_wrk(
    script: Path, *, path: str, connections: int, threads: int, seconds: int, script_args: Sequence[str] = ()
) -> dict[str, Any]:
    """Run wrk with `script` (which prints one BENCH_JSON line in done());
    return its figures plus the CPU seconds wrk itself used."""
    wrk = require_wrk()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    out = subprocess.run(  # noqa: S603 (our own fixed command line)
        [
            wrk,
            "-t",
            str(threads),
            "-c",
            str(connections),
            "-d",
            f"{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            f"http://127.0.0.1:{PORT}{path}",
            "--",
            *script_args,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    match = WRK_REPORT.search(out.stdout)
    if match is None:
        raise SystemExit(f"wrk printed no report:\n{out.stdout}\n{out.stderr}")
    report: dict[str, Any] = json.loads(match.group(1))
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    report["wrk_cpu_seconds"] = round(cpu, 2)
    report["wrk_cpu_share_of_one_core"] = round(cpu / wall, 3)
    return report


# One report line from wrk's done(): counts, rates and latency percentiles (ms).
WRK_DONE = """
function done(summary, latency, requests)
  local s = summary.duration / 1e6
  local errors = summary.errors.status + summary.errors.connect + summary.errors.read
                 + summary.errors.write + summary.errors.timeout
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "seconds": %.3f, "rps": %.1f, "non_2xx": %d, "socket_errors": %d, ' ..
    '"p50_ms": %.2f, "p95_ms": %.2f, "p99_ms": %.2f, "max_ms": %.2f, "mean_ms": %.2f}\\n',
    summary.requests, s, summary.requests / s, summary.errors.status,
    errors - summary.errors.status,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, latency.mean / 1000))
end
"""
