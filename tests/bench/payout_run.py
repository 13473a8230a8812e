"""Payout run: `create_run` over 1,000,000 settled captured lines, against a
plain SQL aggregation of the same per-farm sums.

    .venv/bin/python -m tests.bench.payout_run [--lines 1000000 --farms 10000] [--reuse] [--stripe]

Bulk-loads (generate_series) farms with bank payout accounts (with
--stripe: Stripe connected accounts, each payment by card with its charge,
so the run also plans one transfer per order drawn on its charge), delivered
orders of four lines each, their payments, captured lines and the `sale`
farm entry a capture writes for each line into its own database
(`bench_payouts`; --reuse keeps an earlier load, which a run has paid out,
so it is reset first), then times the plain aggregation (its settled
orders found two ways) and `create_run` for a period covering every line,
and checks that the payouts add up to the aggregation farm by farm and
that every sale entry was settled by one payout (its order part's
coverage). The statements the run sent, with their time, go to
bench-results/payout_run-statements.txt.
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import timedelta
from typing import Any

import psycopg
from sqlalchemy import event

from market.accounts.models import Role
from market.auth import Actor
from market.db import business_day, utcnow
from market.extensions import db
from market.payouts import service as payouts
from tests.bench.common import (
    REDIS_URL,
    RESULTS,
    bench_app,
    database_url,
    plain_url,
    recreate_database,
    reset_redis,
    say,
    table,
    write_results,
)

LINES_PER_ORDER = 4
COMMISSION_PERCENT = 5
SETTLED_DAYS_AGO = 10

# The same entries create_run pays (the sale entries of settled orders, of
# farms ready for payouts, that no payout or reversal has settled yet, nor
# a payout's coverage of their order part),
# summed per farm in one statement. The seeded lines carry no premium and
# have no refunds, so each entry's `net` (amount - commission) is all the
# farm is owed for its line. The settled orders two ways: each order's first
# settling event found by grouping them (the aggregation the run was first
# measured against), and a semi-join on any settling event older than the
# cutoff (as create_run finds them since part totals: the faster of the two).
AGGREGATION = """
WITH settled AS ({settled})
SELECT f.farm_id, count(*) AS lines, sum(f.net) AS amount
FROM farm_entries f
JOIN settled s ON s.order_id = f.order_id
JOIN payout_accounts a ON a.farm_id = f.farm_id AND (a.bank_account_number IS NOT NULL OR a.transfers_active)
WHERE f.kind = 'sale' AND f.payout_id IS NULL AND f.reversal_id IS NULL
  AND NOT EXISTS (SELECT 1 FROM payout_coverage c
                  WHERE c.order_id = f.order_id AND c.farm_id = f.farm_id AND f.id <= c.last_entry_id)
GROUP BY f.farm_id
"""
SETTLED = {
    "grouped": """
    SELECT e.order_id
    FROM order_events e JOIN orders o ON o.id = e.order_id
    WHERE e.type IN ('order.delivered', 'order.collected', 'order.completed')
      AND o.status IN ('delivered', 'collected', 'completed')
    GROUP BY e.order_id
    HAVING min(e.created_at) < %(cutoff)s""",
    "semi-join": """
    SELECT o.id AS order_id
    FROM orders o
    WHERE o.status IN ('delivered', 'collected', 'completed')
      AND EXISTS (SELECT 1 FROM order_events e
                  WHERE e.order_id = o.id AND e.created_at < %(cutoff)s
                    AND e.type IN ('order.delivered', 'order.collected', 'order.completed'))""",
}


def seed(url: str, *, lines: int, farms: int, stripe: bool = False) -> int:
    """Farms with bank accounts (or Stripe ones), one operator, delivered
    orders with their payments (offline, or by card with a charge each),
    captured lines and sale entries. Returns the operator's user id."""
    orders = lines // LINES_PER_ORDER
    operator = farms + 1
    buyers = 1000
    # Line l (1-based) is line k = (l - 1) % 4 of order (l - 1) / 4 + 1; an
    # order buys from one farm, its k-th listing. Grams and price are spread
    # deterministically so the sums are not trivial, and kept low enough
    # (about 12 yuan a line) that the run's total over 1,000,000 lines fits
    # payout_runs.total, a 32-bit integer.
    grams = "(1000 + (l::bigint * 37) % 4000)"
    price = "(100 + (l::bigint * 7919) % 600)"
    amount = f"({grams} * {price} / 1000)"
    with psycopg.connect(plain_url(url)) as conn:
        method = "stripe" if stripe else "bank_transfer"
        say(f"  users and {farms:,} farms with {method} payout accounts")
        conn.execute(
            """INSERT INTO users (id, email, name, language, password_hash)
               SELECT i, 'user' || i || '@bench.test', 'Bench user ' || i, 'zh', 'not-a-login'
               FROM generate_series(1, %s) AS i""",
            (operator + buyers,),
        )
        conn.execute("INSERT INTO user_roles (user_id, role) VALUES (%s, 'operator')", (operator,))
        conn.execute("INSERT INTO categories (id, code, name_zh, name_en) VALUES (1, 'citrus', '柑橘', 'Citrus')")
        conn.execute(
            """INSERT INTO farms (id, owner_id, name, village, county, province, description, status, payout_method)
               SELECT i, i, 'Bench farm ' || i, 'Village', '寻乌县', '江西省', '', 'verified', %s
               FROM generate_series(1, %s) AS i""",
            (method, farms),
        )
        if stripe:
            conn.execute(
                """INSERT INTO payout_accounts (farm_id, method, stripe_account_id, payouts_enabled,
                                                details_submitted, transfers_active)
                   SELECT i, 'stripe', 'acct_bench_' || i, true, true, true FROM generate_series(1, %s) AS i""",
                (farms,),
            )
        else:
            conn.execute(
                """INSERT INTO payout_accounts (farm_id, method, bank_account_holder, bank_name, bank_account_number,
                                                bank_account_masked)
                   SELECT i, 'bank_transfer', 'Holder ' || i, 'Bench bank', lpad(i::text, 16, '6'),
                          '************' || right(lpad(i::text, 16, '6'), 4)
                   FROM generate_series(1, %s) AS i""",
                (farms,),
            )
        conn.execute(
            f"""INSERT INTO listings (id, farm_id, category_id, sku, product_name, variety, grade, origin_county,
                                      price_per_kg, stock_g, min_order_g, step_g, description, photo_urls, status)
                SELECT i, 1 + (i - 1) / {LINES_PER_ORDER}, 1, 'SKU-' || i, 'Navel orange', 'Gannan', 'A', '寻乌县',
                       1000, 0, 500, 500, '', '[]', 'sold_out'
                FROM generate_series(1, %s) AS i""",  # noqa: S608 (module constants only)
            (farms * LINES_PER_ORDER,),
        )
        say(f"  {orders:,} delivered orders, one part and one payment each")
        order_total = (
            f"(SELECT sum({amount}) FROM generate_series((o - 1) * {LINES_PER_ORDER} + 1, o * {LINES_PER_ORDER}) AS l)"  # noqa: S608
        )
        conn.execute(
            f"""INSERT INTO orders (id, version, buyer_id, status, fulfilment, delivery_address, notes, currency,
                                    total, max_total, created_at, expires_at, paid_at, closed_at)
                SELECT o, 1, {operator} + 1 + o % {buyers}, 'delivered', 'delivery', 'Bench address', '', 'CNY',
                       t, t, now() - interval '12 days', now() - interval '12 days' + interval '30 minutes',
                       now() - interval '12 days', now() - interval '{SETTLED_DAYS_AGO} days'
                FROM generate_series(1, {orders}) AS o, LATERAL (SELECT {order_total} AS t) AS totals"""  # noqa: S608
        )
        conn.execute(
            f"""INSERT INTO order_parts (id, order_id, farm_id, status, subtotal)
                SELECT id, id, 1 + (id - 1) % {farms}, 'delivered', total FROM orders""",  # noqa: S608
        )
        conn.execute(
            """INSERT INTO payments (id, order_id, provider, status, currency, amount, amount_captured,
                                     stripe_charge_id)
               SELECT id, id, %s, 'captured', 'CNY', total, total, CASE WHEN %s THEN 'ch_bench_' || id END
               FROM orders""",
            ("stripe" if stripe else "offline", stripe),
        )
        conn.execute(
            f"""INSERT INTO order_events (order_id, part_id, type, actor_id, detail, created_at)
                SELECT id, id, 'order.delivered', {operator}, '', now() - interval '{SETTLED_DAYS_AGO} days'
                FROM orders"""  # noqa: S608 (module constants only)
        )
        say(f"  {orders * LINES_PER_ORDER:,} order lines, captured lines and sale entries")
        order_of_line = f"((l - 1) / {LINES_PER_ORDER} + 1)"
        farm_of_line = f"(1 + ({order_of_line} - 1) % {farms})"
        listing_of_line = f"(({farm_of_line} - 1) * {LINES_PER_ORDER} + (l - 1) % {LINES_PER_ORDER} + 1)"
        conn.execute(
            f"""INSERT INTO order_lines (id, order_id, part_id, farm_id, listing_id, product_name, price_per_kg,
                                         ordered_g, weighed_g, amount, max_amount)
                SELECT l, {order_of_line}, {order_of_line}, {farm_of_line}, {listing_of_line}, 'Navel orange',
                       {price}, {grams}, {grams}, {amount}, {amount}
                FROM generate_series(1, {orders * LINES_PER_ORDER}) AS l"""  # noqa: S608 (integers only)
        )
        conn.execute(
            f"""INSERT INTO captured_lines (id, payment_id, order_line_id, farm_id, grams, price_per_kg, amount,
                                            commission)
                SELECT id, order_id, id, farm_id, weighed_g, price_per_kg, amount,
                       amount * {COMMISSION_PERCENT} / 100
                FROM order_lines"""  # noqa: S608 (module constants only)
        )
        # What recording the capture writes for each captured line
        # (market/settlement/service.py record_capture): its farm's sale.
        conn.execute(
            """INSERT INTO farm_entries (reference, farm_id, kind, order_id, order_line_id, grams, produce,
                                         commission, premium, net, created_at)
               SELECT 'line:' || c.order_line_id || ':sale', c.farm_id, 'sale', p.order_id, c.order_line_id,
                      c.grams, c.amount, c.commission, 0, c.amount - c.commission, o.paid_at
               FROM captured_lines c JOIN payments p ON p.id = c.payment_id JOIN orders o ON o.id = p.order_id
               ORDER BY c.id"""
        )
        # What recording the capture adds to each order part's totals
        # (market/settlement/service.py add_earned): one sale per line.
        conn.execute(
            """INSERT INTO part_totals (order_id, farm_id, last_entry_id, entries, lines, grams, sales, commission,
                                        premiums, refunds, net)
               SELECT order_id, farm_id, max(id), count(*), count(*), sum(grams), sum(produce + premium),
                      sum(commission), 0, 0, sum(net)
               FROM farm_entries GROUP BY order_id, farm_id"""
        )
        for table_name in ("users", "categories", "farms", "listings", "orders", "order_parts", "payments",
                           "order_lines", "captured_lines"):  # fmt: skip
            # The ids above were given explicitly; move each sequence past them.
            conn.execute(
                "SELECT setval(pg_get_serial_sequence(%s, 'id'), (SELECT max(id) FROM "  # noqa: S608 (fixed names)
                + table_name
                + "))",
                (table_name,),
            )
    with psycopg.connect(plain_url(url), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return operator


def unpay(url: str) -> None:
    """Undo an earlier run so --reuse times the same work again: the
    entries it settled are unsettled, and what it wrote (payout entries,
    reversals, payouts, the run, ledger rows, outbox) is deleted. The seed
    writes no ledger rows, so all of them are the run's. farm_entries
    refers to payouts and transfer_reversals, so those are deleted rather
    than truncated (a TRUNCATE would have to cascade to the entries)."""
    with psycopg.connect(plain_url(url)) as conn:
        conn.execute(
            """UPDATE farm_entries SET payout_id = NULL, reversal_id = NULL
               WHERE (payout_id IS NOT NULL OR reversal_id IS NOT NULL)
                 AND kind NOT IN ('payout', 'transfer_reversal')"""
        )
        conn.execute("DELETE FROM farm_entries WHERE kind IN ('payout', 'transfer_reversal')")
        conn.execute("TRUNCATE payout_coverage")
        conn.execute("DELETE FROM transfer_reversals")
        conn.execute("DELETE FROM payout_transfers")
        conn.execute("DELETE FROM payouts")
        conn.execute("DELETE FROM payout_runs")
        conn.execute("TRUNCATE ledger_entries, ledger_transactions, outbox")
    with psycopg.connect(plain_url(url), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def aggregate(url: str, cutoff: Any, settled: str) -> tuple[float, dict[int, tuple[int, int]]]:
    with psycopg.connect(plain_url(url)) as conn:
        started = time.perf_counter()
        rows = conn.execute(AGGREGATION.format(settled=SETTLED[settled]), {"cutoff": cutoff}).fetchall()
        seconds = time.perf_counter() - started
    return seconds, {farm: (count, total) for farm, count, total in rows}


def main() -> None:  # noqa: PLR0915 (one straight script: load, time both, check, report)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000, help="captured lines (a multiple of 4)")
    parser.add_argument("--farms", type=int, default=10_000)
    parser.add_argument("--reuse", action="store_true", help="keep the lines loaded by an earlier run")
    parser.add_argument("--stripe", action="store_true", help="farms paid by Stripe transfers from card charges")
    args = parser.parse_args()
    url = database_url("bench_payouts")
    operator = args.farms + 1
    if args.reuse:
        say("resetting the payouts of an earlier run ...")
        unpay(url)
    else:
        say(f"loading {args.lines:,} captured lines across {args.farms:,} farms (generate_series) ...")
        started = time.perf_counter()
        recreate_database(url)
        operator = seed(url, lines=args.lines, farms=args.farms, stripe=args.stripe)
        say(f"  loaded in {time.perf_counter() - started:.0f} s")
    reset_redis()
    # The run queues its dispatch task through the outbox; it goes to the
    # benchmark's own Redis database, where no worker consumes it.
    os.environ["REDIS_URL"] = REDIS_URL
    app = bench_app(url)
    with app.app_context():  # the business day is the marketplace's (MARKET_TIMEZONE)
        period_end = business_day(utcnow() - timedelta(days=SETTLED_DAYS_AGO - 5))
        cutoff = payouts.run_cutoff(period_end, utcnow(), app.config["PAYOUT_HOLD_DAYS"])

    say("plain SQL aggregation ...")
    sql_seconds, expected = aggregate(url, cutoff, "grouped")
    say(f"  {sql_seconds:.2f} s, {len(expected):,} farms")
    say("plain SQL aggregation, settled orders by a semi-join ...")
    semi_seconds, semi_expected = aggregate(url, cutoff, "semi-join")
    say(f"  {semi_seconds:.2f} s, {len(semi_expected):,} farms")
    if semi_expected != expected:
        raise SystemExit("the two aggregations disagree")

    statements: list[tuple[float, str]] = []

    def _start(conn: Any, *_: Any) -> None:
        conn.info["bench_started"] = time.perf_counter()

    def _end(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        statements.append((time.perf_counter() - conn.info.pop("bench_started"), statement))

    say("create_run ...")
    with app.app_context():
        event.listen(db.engine, "before_cursor_execute", _start)
        event.listen(db.engine, "after_cursor_execute", _end)
        started = time.perf_counter()
        run = payouts.create_run(Actor(user_id=operator, roles=frozenset({Role.OPERATOR})), period_end=period_end)
        run_seconds = time.perf_counter() - started
        event.remove(db.engine, "before_cursor_execute", _start)
        event.remove(db.engine, "after_cursor_execute", _end)
        run_id, payouts_count, run_total = run.id, run.payouts_count, run.total
    say(f"  {run_seconds:.2f} s, {payouts_count:,} payouts")

    with psycopg.connect(plain_url(url)) as conn:
        paid = {
            farm: (count, amount)
            for farm, count, amount in conn.execute(
                "SELECT farm_id, lines_count, amount FROM payouts WHERE run_id = %s", (run_id,)
            )
        }
        # Covered by the run's payouts (its order part's coverage, or its own row).
        covered = conn.execute(
            """SELECT count(*) FROM farm_entries f
               LEFT JOIN payout_coverage c
                 ON c.order_id = f.order_id AND c.farm_id = f.farm_id AND f.id <= c.last_entry_id
               JOIN payouts ON payouts.id = coalesce(f.payout_id, c.payout_id)
               WHERE payouts.run_id = %s AND f.kind = 'sale'""",
            (run_id,),
        ).fetchone()
        payout_entries = conn.execute(
            """SELECT count(*) FROM farm_entries f JOIN payouts ON payouts.id = f.payout_id
               WHERE payouts.run_id = %s AND f.kind = 'payout' AND f.net = -payouts.amount""",
            (run_id,),
        ).fetchone()
        # Stripe payouts: each is the sum of its transfers, one per order's charge.
        transfers = conn.execute(
            """SELECT count(*), count(t.stripe_charge_id),
                      count(*) FILTER (WHERE t.stripe_charge_id IS NOT NULL AND t.stripe_charge_id
                                       <> 'ch_bench_' || t.order_id),
                      (SELECT count(*) FROM payouts p WHERE p.run_id = %(run)s AND p.method = 'stripe'
                         AND p.amount <> (SELECT coalesce(sum(amount), 0) FROM payout_transfers
                                          WHERE payout_id = p.id))
               FROM payout_transfers t JOIN payouts ON payouts.id = t.payout_id WHERE payouts.run_id = %(run)s""",
            {"run": run_id},
        ).fetchone()
    assert transfers is not None
    expected_total = sum(total for _, total in expected.values())
    checks = {
        "payouts_total": run_total,
        "aggregation_total": expected_total,
        "totals_equal": run_total == expected_total,
        "per_farm_equal": paid == expected,
        "lines_covered": covered[0] if covered else 0,
        "lines_expected": sum(count for count, _ in expected.values()),
        "payout_entries": payout_entries[0] if payout_entries else 0,
        "transfers": transfers[0],
        "transfers_from_charges": transfers[1],
        "transfers_on_another_charge": transfers[2],
        "payouts_not_their_transfers": transfers[3],
    }
    slowest = sorted(statements, reverse=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "payout_run-statements.txt").write_text(
        "\n\n".join(f"-- {seconds:.3f} s\n{statement}" for seconds, statement in slowest)
    )
    rows = [
        {"what": "plain SQL aggregation (settled orders grouped)", "seconds": round(sql_seconds, 2)},
        {"what": "plain SQL aggregation (settled orders by semi-join)", "seconds": round(semi_seconds, 2)},
        {
            "what": "create_run",
            "seconds": round(run_seconds, 2),
            "ratio": f"{run_seconds / sql_seconds:.1f}x, {run_seconds / semi_seconds:.1f}x",
        },
    ] + [
        {"what": "  " + " ".join(statement.split())[:70], "seconds": round(seconds, 2)}
        for seconds, statement in slowest[:6]
    ]
    print(f"\n{args.lines:,} captured lines, {args.farms:,} farms, {payouts_count:,} payouts\n")
    print(table(rows, ["what", "seconds", "ratio"]))
    print("\nchecks: " + ", ".join(f"{k}={v}" for k, v in checks.items()))
    path = write_results(
        "payout_run",
        {
            "lines": args.lines,
            "farms": args.farms,
            "stripe": args.stripe,
            "payouts": payouts_count,
            "aggregation_seconds": round(sql_seconds, 3),
            "aggregation_semi_join_seconds": round(semi_seconds, 3),
            "create_run_seconds": round(run_seconds, 3),
            "ratio": round(run_seconds / sql_seconds, 2),
            "ratio_semi_join": round(run_seconds / semi_seconds, 2),
            "statements": [{"seconds": round(s, 3), "sql": " ".join(q.split())[:300]} for s, q in slowest[:15]],
            "checks": checks,
        },
    )
    print(f"\nwritten to {path}")
    if not (checks["totals_equal"] and checks["per_farm_equal"]):
        raise SystemExit("the payouts do not add up to the aggregation")
    if checks["lines_covered"] != checks["lines_expected"] or checks["payout_entries"] != payouts_count:
        raise SystemExit("the run did not settle every sale entry once, with one payout entry per payout")
    if checks["transfers_on_another_charge"] or checks["payouts_not_their_transfers"]:
        raise SystemExit("a Stripe payout is not the sum of its transfers, each on its own order's charge")


if __name__ == "__main__":
    main()
