"""Instructions per order placed, counted by valgrind: a measure of the
server's own work that the machine's other load does not move.

    .venv/bin/python -m tests.bench.order_instructions [--orders 20] [--warm-up 10] [--reuse]

Seeds the order benchmark's data (tests.bench.orders_http: 1,000 farms,
10,000 listings, 1,000 buyers) into `bench_instructions`, then runs a
process under `valgrind --tool=callgrind` that places orders in-process
(POST /api/v1/orders through the test client, as wrk's requests are: 1 to 3
lines, a random buyer, an Idempotency-Key) with the server's settings.
Counting starts after --warm-up orders (imports, caches, prepared statements) and
covers --orders orders, each followed by the publishing of its outbox rows,
so every order costs the same relay work. With OUTBOX_RELAY=listener in the
environment the process publishes nothing (the relay process would): the
count is the request's alone. Prints the instructions per order.
Needs valgrind (Debian: `apt-get install valgrind`).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import config
from market import create_app
from market.outbox import relay_of
from tests.bench.common import (
    BUYERS,
    POINT_ID,
    active_listing_ids,
    database_url,
    recreate_database,
    reset_redis,
    say,
    seed,
    token_for_buyer,
    write_results,
)
from tests.bench.orders_http import LISTINGS, STOCK_G, server_env

READY = "ready to count"


def place_orders(url: str, orders: int, warm_up: int, go: Path) -> None:
    """The counted process: warm up, say so, wait for `go`, then place `orders`."""
    app = create_app(config.load({**os.environ, **server_env(url)}))
    client = app.test_client()
    listing_ids = sorted(active_listing_ids(url))
    chosen = random.Random(7)
    nonce = secrets.token_hex(4)
    for number in range(warm_up + orders):
        if number == warm_up:
            print(READY, flush=True)
            while not go.exists():
                time.sleep(0.1)
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
        relay_of(app).wait()


def count(url: str, orders: int, warm_up: int) -> int:
    """Run `place_orders` under callgrind, counting only the orders."""
    with tempfile.TemporaryDirectory() as tmp:
        go = Path(tmp) / "go"
        command = [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={Path(tmp) / 'callgrind.out'}",
            sys.executable,
            "-m",
            "tests.bench.order_instructions",
            "--child",
            str(orders),
            str(warm_up),
            str(go),
        ]
        child = subprocess.Popen(  # noqa: S603 (our own fixed command line)
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "BENCH_URL": url}
        )
        assert child.stdout is not None
        output = []
        for line in child.stdout:
            output.append(line)
            if line.strip() == READY:
                subprocess.run(["callgrind_control", "-i", "on", str(child.pid)], check=True, capture_output=True)  # noqa: S603, S607
                go.touch()
        if child.wait() != 0:
            raise SystemExit("the counted process failed:\n" + "".join(output[-30:]))
    collected = re.search(r"Collected : (\d+)", "".join(output))
    if collected is None:
        raise SystemExit("valgrind printed no count:\n" + "".join(output[-30:]))
    return int(collected.group(1))


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        place_orders(os.environ["BENCH_URL"], int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=20)
    parser.add_argument(
        "--warm-up", type=int, default=10, help="orders placed before counting: more, to count statements already built"
    )
    parser.add_argument("--reuse", action="store_true", help="keep the data an earlier run seeded")
    args = parser.parse_args()
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise SystemExit("valgrind is not installed: `apt-get install -y valgrind`")
    url = database_url("bench_instructions")
    if not args.reuse:
        say("seeding ...")
        recreate_database(url)
        reset_redis()
        seed(url, listings=LISTINGS, stock_g=STOCK_G)
    say(f"placing {args.warm_up} orders to warm up, then counting {args.orders} under callgrind (minutes) ...")
    instructions = count(url, args.orders, args.warm_up)
    per_order = instructions / args.orders
    print(f"\n{instructions:,} instructions for {args.orders} orders: {per_order / 1e6:.1f} million per order")
    write_results("order_instructions", {"orders": args.orders, "instructions": instructions, "per_order": per_order})


if __name__ == "__main__":
    main()
