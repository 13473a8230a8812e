"""Browse: GET /api/v1/listings with typical filters over 1,000,000 listings.

    .venv/bin/python -m tests.bench.browse [--listings 1000000 --requests 200] [--reuse]

Bulk-loads the listings with generate_series into its own database
(`bench_browse`; --reuse keeps an earlier load), then times each query shape
through the app in-process (routing, auth, query, serialisation; no network),
first page and the page after it, and prints p50/p99 per shape. The EXPLAIN
(ANALYZE, BUFFERS) of each shape's listings query goes to
bench-results/browse-explain.txt, with the indexes it used in the table.
"""

from __future__ import annotations

import argparse
import re
import statistics
import time
from typing import Any

import psycopg
from sqlalchemy import create_engine, event

from market.catalog.models import Listing, backfill_search
from market.extensions import db
from tests.bench.common import (
    RESULTS,
    bench_app,
    database_url,
    plain_url,
    recreate_database,
    say,
    seed,
    table,
    write_results,
)

# Query shapes a buyer's app sends: the first page, and the next page of
# the same query (keyset pagination).
SHAPES: dict[str, dict[str, str]] = {
    "newest": {},
    "category": {"category": "citrus"},
    "county": {"county": "寻乌县"},
    "province": {"province": "河北省"},
    "category+in_stock+price sort": {"category": "nuts", "in_stock": "true", "sort": "price"},
    "price range, cheapest first": {"price_min": "1000", "price_max": "1500", "sort": "price"},
    "most expensive first": {"sort": "-price"},
    "harvest date": {"sort": "harvest_date"},
    "text search": {"q": "pomelo"},
    "search, another sort": {"q": "pomelo", "sort": "price"},
    "search, rare word (SKU)": {"q": "sku-777777"},
    "search, Chinese county prefix": {"q": "寻乌"},
    "search, pinyin": {"q": "xunwu"},
    "search, category name": {"q": "柑橘"},
    "search, farm name, two words": {"q": "bench farm 17"},
    "search, nothing found": {"q": "durian"},
    "category by name": {"category": "坚果"},
    "farm": {"farm_id": "17"},
    "one SKU, across farms": {"sku": "SKU-777777"},
    "updated since": {"updated_since": "2026-01-01T00:00:00+00:00"},
}
SEARCH_INDEXES = {"ix_listings_search_own", "ix_listings_search_text"}
INDEX_SCAN = re.compile(r"(?:Index|Index Only|Bitmap Index) Scan(?: Backward)? (?:using|on) (\w+)")


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def main() -> None:  # noqa: PLR0915 (one straight script: load, time each shape, report)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listings", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=200, help="timed requests per shape and page")
    parser.add_argument("--reuse", action="store_true", help="keep the listings loaded by an earlier run")
    args = parser.parse_args()
    url = database_url("bench_browse")
    if not args.reuse:
        say(f"loading {args.listings:,} listings (generate_series) ...")
        started = time.perf_counter()
        recreate_database(url)
        seed(url, listings=args.listings, stock_g=50_000)
        with psycopg.connect(plain_url(url)) as conn:
            # Some sold out, as on a real market.
            conn.execute("UPDATE listings SET stock_g = 0, status = 'sold_out' WHERE id % 7 = 0 AND status = 'active'")
        say("  search tokens for every row ...")
        engine = create_engine(url)
        gin = [index for index in Listing.__table__.indexes if index.name in SEARCH_INDEXES]
        with engine.begin() as conn:
            # As the migration does: the tokens first, the indexes after.
            for index in gin:
                index.drop(conn)
            backfill_search(conn)
            for index in gin:
                index.create(conn)
        engine.dispose()
        with psycopg.connect(plain_url(url), autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
        say(f"  loaded in {time.perf_counter() - started:.0f} s")
    app = bench_app(url)
    client = app.test_client()
    captured: list[tuple[str, Any]] = []
    with app.app_context():
        engine = db.engine

    @event.listens_for(engine, "before_cursor_execute")
    def _capture(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().startswith("SELECT") and "FROM listings" in statement:
            captured.append((statement, parameters))

    rows: list[dict[str, Any]] = []
    explains: list[str] = []
    for number, (shape, query) in enumerate(SHAPES.items(), start=1):
        say(f"[{number}/{len(SHAPES)}] {shape} ...")
        first = client.get("/api/v1/listings", query_string=query)
        assert first.status_code == 200, first.get_data(as_text=True)
        cursor = first.json["next_cursor"]
        pages = {"page 1": query, "page 2": {**query, "cursor": cursor} if cursor else None}
        for page, params in pages.items():
            if params is None:
                continue
            for _ in range(10):  # warm caches and prepared statements
                client.get("/api/v1/listings", query_string=params)
            timings = []
            for _ in range(args.requests):
                started = time.perf_counter()
                response = client.get("/api/v1/listings", query_string=params)
                timings.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200
            captured.clear()
            items = len(client.get("/api/v1/listings", query_string=params).json["items"])
            statement, parameters = captured[0]
            with engine.connect() as conn:
                plan = "\n".join(
                    row[0] for row in conn.exec_driver_sql(f"EXPLAIN (ANALYZE, BUFFERS) {statement}", parameters)
                )
            explains.append(f"== {shape}, {page}: {params}\n{plan}\n")
            indexes = sorted(set(INDEX_SCAN.findall(plan)))
            rows.append(
                {
                    "shape": shape,
                    "page": page,
                    "items": items,
                    "p50_ms": statistics.median(timings),
                    "p99_ms": percentile(timings, 99),
                    "max_ms": max(timings),
                    "indexes": ", ".join(indexes) or "none (sequential scan)",
                }
            )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "browse-explain.txt").write_text("\n".join(explains))
    print(
        f"\nBrowse GET /api/v1/listings over {args.listings:,} listings, {args.requests} requests per row (in-process)"
    )
    print(table(rows, ["shape", "page", "items", "p50_ms", "p99_ms", "max_ms", "indexes"]))
    path = write_results("browse", {"settings": vars(args), "rows": rows})
    print(f"\nEXPLAIN output in {RESULTS / 'browse-explain.txt'}; written to {path}")


if __name__ == "__main__":
    main()
