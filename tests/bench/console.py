"""Console: every operator console page over HTTP, signed in as an
operator, at the size of the payout and browse benchmarks.

    .venv/bin/python -m tests.bench.console [--lines 1000000 --farms 10000 --listings 1000000] [--reuse]

Loads into its own database (`bench_console`; --reuse keeps an earlier
load) what the payout benchmark loads (delivered orders of four lines, their
payments, captured lines and sale entries: tests/bench/payout_run.py), then
as many listings as the browse benchmark over the same farms
(tests/bench/common.py), records each order's capture at a moment of the
last 12 weeks, and makes one payout run over every line. It times the
Impact page's reads in-process with every day read live, then after
summing the closed days (`reports.roll_up_days`). Then it
serves the app with gunicorn, signs in to the console as the operator and
times each page (sequential requests, after a few to warm up), printing
p50/p99 per page.
"""

from __future__ import annotations

import argparse
import http.cookiejar
import re
import statistics
import time
import urllib.parse
import urllib.request
from datetime import timedelta
from typing import Any

import psycopg
from argon2 import PasswordHasher
from sqlalchemy import delete

from market.accounts.models import Role
from market.auth import Actor
from market.db import business_day, utcnow
from market.extensions import db
from market.payouts import service as payouts
from market.reports import service as reports
from market.reports.models import ImpactDay, ImpactDayFigure
from tests.bench import payout_run
from tests.bench.browse import percentile
from tests.bench.common import (
    CATEGORIES,
    PORT,
    REDIS_URL,
    bench_app,
    database_url,
    gunicorn,
    insert_listings,
    plain_url,
    recreate_database,
    reset_redis,
    say,
    table,
    write_results,
)

PASSWORD = "bench-password"
WARM_UP = 3
# A page is timed this many times, or for this long, whichever ends first.
MAX_SECONDS_PER_PAGE = 30
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
CAPTURE_SPREAD_SECONDS = 84 * 24 * 3600  # the Impact page's 12 weeks


def load(url: str, *, lines: int, farms: int, listings: int) -> None:
    """The payout benchmark's lines, the browse benchmark's listings over
    the same farms, the operator's password, and one payout run over every line."""
    recreate_database(url)
    operator = payout_run.seed(url, lines=lines, farms=farms)
    say(f"  {listings:,} listings over the {farms:,} farms")
    with psycopg.connect(plain_url(url)) as conn:
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO categories (id, code, name_zh, name_en) VALUES (%s, %s, %s, %s)",
                [(i, *c) for i, c in enumerate(CATEGORIES, start=1) if i > 1],  # the payout load made the first
            )
        conn.execute("SELECT setval(pg_get_serial_sequence('categories', 'id'), (SELECT max(id) FROM categories))")
        insert_listings(conn, listings=listings, stock_g=50_000, farms=farms, sku_prefix="BROWSE-")
        conn.execute(
            "UPDATE users SET password_hash = %s, confirmed_at = now() WHERE id = %s",
            (PasswordHasher().hash(PASSWORD), operator),
        )
        # Each order's capture as settlement records it (the ledger
        # transaction the impact report places captured produce by), spread
        # over the impact page's 12 weeks up to now; its entries are left
        # out, as the payout load leaves out the sales' (no page sums them).
        conn.execute(
            f"""INSERT INTO ledger_transactions (kind, reference, order_id, memo, created_at)
                SELECT 'capture', 'payment:' || id || ':capture', order_id, '',
                       now() - make_interval(secs => (id * 7919) % {CAPTURE_SPREAD_SECONDS})
                FROM payments ORDER BY id"""  # noqa: S608 (a module constant)
        )
    with psycopg.connect(plain_url(url), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    say("  a payout run over every line ...")
    app = bench_app(url)
    with app.app_context():
        period_end = business_day(utcnow() - timedelta(days=payout_run.SETTLED_DAYS_AGO - 5))
        payouts.create_run(Actor(user_id=operator, roles=frozenset({Role.OPERATOR})), period_end=period_end)


def impact_in_process(url: str, operator: int) -> dict[str, float]:
    """The Impact page's two reads in-process (the 12 weeks' report by
    county and its weekly totals), timed once with every day read live,
    then after beat's roll-up of the closed days (which it also times)."""
    app = bench_app(url)
    actor = Actor(user_id=operator, roles=frozenset({Role.OPERATOR}))
    with app.app_context():
        today = business_day(utcnow())
        first = today - timedelta(weeks=12) + timedelta(days=1)
        weeks = [(first + timedelta(weeks=n), first + timedelta(weeks=n, days=6)) for n in range(12)]

        def page() -> float:
            started = time.perf_counter()
            reports.impact(actor, start=first, end=today, group_by="county")
            reports.impact_totals(actor, periods=weeks, group_by="county")
            return round((time.perf_counter() - started) * 1000)

        db.session.execute(delete(ImpactDayFigure))
        db.session.execute(delete(ImpactDay))
        db.session.commit()
        live = page()
        started = time.perf_counter()
        days = reports.roll_up_days()
        rolled_up = round((time.perf_counter() - started) * 1000)
        return {"live_ms": live, "roll_up_ms": rolled_up, "days": days, "rolled_up_ms": page()}


def pages(url: str) -> dict[str, str]:
    """Each console page, on rows the load made."""
    with psycopg.connect(plain_url(url)) as conn:
        run_id, payout_id = conn.execute(
            "SELECT run_id, min(id) FROM payouts GROUP BY run_id ORDER BY run_id DESC LIMIT 1"
        ).fetchone() or (0, 0)
        order_id = conn.execute("SELECT max(id) FROM orders").fetchone()
    return {
        "today": "/console/",
        "orders": "/console/orders",
        "orders, by state": "/console/orders?status=delivered",
        "orders, by farm id": "/console/orders?farm_id=17",
        "orders, by buyer text": "/console/orders?buyer=user10500%40",
        "orders, by farm name": "/console/orders?farm=Bench+farm+17",
        "orders, overdue for pickup": "/console/orders?overdue_for_pickup=true",
        "orders CSV, one farm": "/console/orders.csv?farm_id=17",
        "an order": f"/console/orders/{order_id[0] if order_id else 1}",
        "payments needing attention": "/console/attention/payments",
        "card holds about to lapse": "/console/attention/holds",
        "webhook deliveries failed": "/console/attention/webhook-deliveries",
        "sales channels in error": "/console/attention/sales-channels",
        "impact (12 weeks, by county)": "/console/impact",
        "impact (12 weeks, by programme)": "/console/impact?group_by=programme",
        "impact CSV": "/console/impact.csv",
        "payout runs": "/console/payout-runs",
        "a payout run": f"/console/payout-runs/{run_id}",
        "a payout run's bank file": f"/console/payout-runs/{run_id}/bank-file.csv",
        "a payout's statement": f"/console/payouts/{payout_id}/statement.csv",
        "reconciliations": "/console/reconciliations",
        "people search": "/console/people?q=user1050",
        "farms": "/console/farms",
        "farms, pending": "/console/farms?status=pending",
        "fulfilment points": "/console/points",
    }


def signed_in(email: str) -> urllib.request.OpenerDirector:
    """An HTTP client holding an operator's console session."""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    base = f"http://127.0.0.1:{PORT}"
    form = opener.open(f"{base}/console/sign-in", timeout=30).read().decode()
    match = CSRF.search(form)
    assert match, "no CSRF token on the sign-in page"
    body = urllib.parse.urlencode({"email": email, "password": PASSWORD, "csrf_token": match.group(1)}).encode()
    today = opener.open(f"{base}/console/sign-in", data=body, timeout=60)
    assert today.url.rstrip("/").endswith("/console"), f"not signed in: {today.url}"
    return opener


def time_page(opener: urllib.request.OpenerDirector, path: str, requests: int) -> dict[str, Any]:
    url = f"http://127.0.0.1:{PORT}{path}"
    size = 0
    for _ in range(WARM_UP):
        with opener.open(url, timeout=120) as response:
            assert response.status == 200 and response.url == url, (path, response.status, response.url)
            size = len(response.read())
    timings: list[float] = []
    began = time.perf_counter()
    while len(timings) < requests and time.perf_counter() - began < MAX_SECONDS_PER_PAGE:
        started = time.perf_counter()
        with opener.open(url, timeout=120) as response:
            response.read()
        timings.append((time.perf_counter() - started) * 1000)
    return {
        "requests": len(timings),
        "p50_ms": statistics.median(timings),
        "p99_ms": percentile(timings, 99),
        "max_ms": max(timings),
        "kb": round(size / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000, help="captured lines (a multiple of 4)")
    parser.add_argument("--farms", type=int, default=10_000)
    parser.add_argument("--listings", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=30, help="timed requests per page")
    parser.add_argument("--reuse", action="store_true", help="keep the data loaded by an earlier run")
    args = parser.parse_args()
    url = database_url("bench_console")
    if not args.reuse:
        say(f"loading {args.lines:,} lines and {args.listings:,} listings on {args.farms:,} farms ...")
        started = time.perf_counter()
        load(url, lines=args.lines, farms=args.farms, listings=args.listings)
        say(f"  loaded in {time.perf_counter() - started:.0f} s")
    say("the Impact page's reads in-process, live and after the roll-up of closed days ...")
    impact = impact_in_process(url, args.farms + 1)
    reset_redis()
    operator_email = f"user{args.farms + 1}@bench.test"
    env = {
        "DATABASE_URL": url,
        "REDIS_URL": REDIS_URL,
        "SECRET_KEY": "bench",
        "CONSOLE_INSECURE_COOKIE": "1",  # served over plain http on 127.0.0.1
    }
    rows: list[dict[str, Any]] = []
    with gunicorn("wsgi:app", workers=2, threads=2, env=env):
        opener = signed_in(operator_email)
        shown = pages(url)
        for number, (name, path) in enumerate(shown.items(), start=1):
            say(f"[{number}/{len(shown)}] {name} ...")
            rows.append({"page": name, "path": path, **time_page(opener, path, args.requests)})
    print(
        f"\nConsole pages over HTTP, signed in as an operator: {args.lines:,} captured lines "
        f"({args.lines // payout_run.LINES_PER_ORDER:,} orders), {args.listings:,} listings, {args.farms:,} farms"
    )
    print(table(rows, ["page", "requests", "p50_ms", "p99_ms", "max_ms", "kb"]))
    print(
        f"\nImpact, 12 weeks by county, in-process: {impact['live_ms']:,} ms read live; roll-up of "
        f"{impact['days']} closed days {impact['roll_up_ms']:,} ms; then {impact['rolled_up_ms']:,} ms"
    )
    path = write_results("console", {"settings": vars(args), "rows": rows, "impact": impact})
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
