"""Workers: tasks per second through the outbox relay, Redis and a real
Celery worker, and how long the backlog takes to drain after Redis was down.

    .venv/bin/python -m tests.bench.workers [--events 300 --seconds-down 30 --concurrency 2 --producers 8]

Runs everything as production does, on its own PostgreSQL database
(`bench_workers`, BENCH_DATABASE_URL to change) and a private redis-server on
a free port that the script starts, stops and starts again (the shared Redis
is never touched): `celery -A workers worker --loglevel=INFO` (prefork,
--concurrency processes) and `celery -A workers beat` with the production
relay settings, and email going to a local SMTP server (aiosmtpd) in this
process. The worker's INFO log (bench-results/workers-worker.log) says when
each task, named by its outbox row, succeeded.

Orders are placed through the service layer by --producers threads (as many
as gunicorn 2 x 4 serves at once). Each order writes outbox rows for
payments.open, notifications.handle_event and inventory.queue_push (one per
line), published right after commit; handle_event then writes and queues one
notifications.send per farm, which emails the farmer: about six tasks per
order, two of them one after the other before the email leaves.

1. Together: --events orders at full speed while the worker runs; tasks per
   second from the first outbox row written to the last task done, the
   latency of each task (outbox row written to task done) and of each email
   (order committed to email accepted by the SMTP server).
2. Worker alone: the worker is stopped, --events orders are placed (their
   first tasks wait in Redis), then the worker is started; tasks per second
   from the worker being ready to the last task done.
3. Outage: the private Redis is stopped for --seconds-down while the
   producers keep placing orders (they must still commit), then started
   again (empty, as a Redis without persistence comes back); the drain runs
   until every task has run.

Every task of every phase is then checked to have run exactly once (by its
task id in the worker's log), every order to have its payment, and every
farm's email to have arrived once.
"""

from __future__ import annotations

import argparse
import email.parser
import logging
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from flask import Flask

import config
from market import create_app
from market.accounts.models import Role
from market.auth import Actor
from market.orders.service import LineRequest, place_order
from tests.bench.common import (
    BUYERS,
    FARMS,
    POINT_ID,
    RESULTS,
    active_listing_ids,
    database_url,
    plain_url,
    process_cpu_seconds,
    recreate_database,
    say,
    seed,
    table,
    write_results,
)
from tests.bench.orders_http import busy_cpu_seconds
from tests.ports import free_port

LISTINGS = 10_000
STOCK_G = 1_000_000_000  # a tonne per listing: nothing sells out
WARMUP_ORDERS = 10
PROGRESS_EVERY = 3.0
# Give up waiting for tasks after this long without one finishing.
STALL_SECONDS = 180.0


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


# --- the private Redis, the SMTP sink, the Celery processes -------------------


class PrivateRedis:
    """A redis-server of our own on a free port, without persistence, that
    the benchmark stops and starts by its PID."""

    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server is not installed: `apt-get install -y redis-server`")
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 (a fixed local binary)
                [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit(f"redis-server did not start on port {self.port}; see {self.log}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None


class SmtpSink:
    """A real SMTP server on 127.0.0.1 that keeps, per message, the
    notification's idempotency key and when it arrived."""

    def __init__(self) -> None:
        self.port = free_port()
        self.arrivals: list[tuple[str, float]] = []
        self.lock = threading.Lock()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.parser = email.parser.BytesHeaderParser()
        self.started = False

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content if isinstance(envelope.content, bytes) else str(envelope.content).encode()
        key = str(self.parser.parsebytes(content)["X-Market-Notification"])
        with self.lock:
            self.arrivals.append((key, time.time()))
        return "250 OK"

    def count(self) -> int:
        with self.lock:
            return len(self.arrivals)

    def snapshot(self) -> list[tuple[str, float]]:
        with self.lock:
            return list(self.arrivals)


def start_celery(kind: str, args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`celery -A workers <kind>` in a session of its own, so stopping it
    also reaches the pool processes it forked."""
    with log.open("ab") as out:
        return subprocess.Popen(  # noqa: S603 (our own fixed command line)
            [sys.executable, "-m", "celery", "-A", "workers", kind, "--loglevel=INFO", *args],
            cwd=config.ROOT,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_celery(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)  # warm shutdown: finish the task at hand
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the group we started, pool processes included
        process.wait()


# --- the worker's log: which task ran when ------------------------------------

LOG_LINE = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}): \w+/[\w-]+\] (.*)$")
TASK_LINE = re.compile(r"^Task ([\w.]+)\[([^\]]+)\] (received|succeeded|retry|raised)")
CONNECTED = re.compile(r"^Connected to redis://")
READY = re.compile(r"^\S+@\S+ ready\.$")


class WorkerLog:
    """Reads the worker's INFO log as it grows: for every task id, when it
    succeeded (each time), how often it was retried or raised."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.rest = b""
        self.succeeded: dict[str, list[float]] = defaultdict(list)
        self.retried: Counter[str] = Counter()
        self.raised: Counter[str] = Counter()
        self.names: dict[str, str] = {}
        self.connected: list[float] = []
        self.ready: list[float] = []

    def poll(self) -> None:
        with self.path.open("rb") as log:
            log.seek(self.offset)
            chunk = log.read()
        self.offset += len(chunk)
        *lines, self.rest = (self.rest + chunk).split(b"\n")
        for raw in lines:
            match = LOG_LINE.match(raw.decode(errors="replace"))
            if match is None:
                continue
            stamp, millis, message = match.groups()
            at = time.mktime(time.strptime(stamp, "%Y-%m-%d %H:%M:%S")) + int(millis) / 1000
            if CONNECTED.match(message):
                self.connected.append(at)
            if READY.match(message):
                self.ready.append(at)
            task = TASK_LINE.match(message)
            if task is None:
                continue
            name, task_id, what = task.groups()
            self.names[task_id] = name
            if what == "succeeded":
                self.succeeded[task_id].append(at)
            elif what == "retry":
                self.retried[task_id] += 1
            elif what == "raised":
                self.raised[task_id] += 1

    def done(self, outbox_id: int) -> bool:
        return bool(self.succeeded.get(f"outbox-{outbox_id}"))


# --- placing orders -------------------------------------------------------------


@dataclass
class Placing:
    """Orders placed by the producer threads, and how long each took."""

    placed: int = 0
    failed: int = 0
    seconds: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)


def place_orders(
    app: Flask,
    listing_ids: list[int],
    *,
    producers: int,
    count: int,
    keep_going: Callable[[], bool] = lambda: True,
) -> tuple[Placing, list[threading.Thread]]:
    """Start `producers` threads placing up to `count` orders of 1 to 3 lines
    (random buyer, random listings, 1 to 2 kg each) while `keep_going()`."""
    placing = Placing()
    numbers = iter(range(count))
    numbers_lock = threading.Lock()

    def produce(seed_value: int) -> None:
        rng = random.Random(seed_value)
        with app.app_context():
            while keep_going():
                with numbers_lock:
                    if next(numbers, None) is None:
                        return
                buyer = FARMS + rng.randint(1, BUYERS)
                lines = [
                    LineRequest(listing_id, rng.choice((1000, 1500, 2000)))
                    for listing_id in rng.sample(listing_ids, rng.randint(1, 3))
                ]
                actor = Actor(user_id=buyer, roles=frozenset({Role.BUYER}))
                started = time.perf_counter()
                try:
                    place_order(actor, lines=lines, fulfilment_point_id=POINT_ID)
                except Exception as exc:  # counted and shown: an order that does not commit is a finding
                    with placing.lock:
                        placing.failed += 1
                        placing.errors[f"{type(exc).__name__}: {str(exc)[:120]}"] += 1
                    continue
                with placing.lock:
                    placing.placed += 1
                    placing.seconds.append(time.perf_counter() - started)

    threads = [threading.Thread(target=produce, args=(n,), daemon=True) for n in range(producers)]
    for thread in threads:
        thread.start()
    return placing, threads


# --- watching the outbox drain ---------------------------------------------------------


@dataclass
class Outbox:
    rows: int
    unsent: int
    not_done: int


def outbox_state(conn: psycopg.Connection[Any], log: WorkerLog, after_id: int) -> Outbox:
    rows = conn.execute("SELECT id, sent_at IS NULL FROM outbox WHERE id > %s", (after_id,)).fetchall()
    log.poll()
    return Outbox(
        rows=len(rows),
        unsent=sum(1 for _, unsent in rows if unsent),
        not_done=sum(1 for outbox_id, _ in rows if not log.done(outbox_id)),
    )


def wait_until_done(
    conn: psycopg.Connection[Any],
    log: WorkerLog,
    sink: SmtpSink,
    after_id: int,
    *,
    placing_done: Callable[[], bool],
    label: Callable[[], str],
    started: float,
) -> dict[str, float | None]:
    """Wait until the producers are done and every outbox row after
    `after_id` has run; print progress. Returns when the relay had published
    everything and when the last task finished (epoch seconds)."""
    published_at: float | None = None
    last_progress = 0.0
    last_change = time.monotonic()
    previous_done = -1
    while True:
        producers_done = placing_done()
        state = outbox_state(conn, log, after_id)
        now = time.time()
        if producers_done and state.unsent == 0 and published_at is None:
            published_at = now
        if state.rows - state.not_done != previous_done:
            previous_done = state.rows - state.not_done
            last_change = time.monotonic()
        if time.monotonic() - last_progress >= PROGRESS_EVERY:
            last_progress = time.monotonic()
            say(
                f"  {now - started:6.1f} s  {label()}  outbox rows {state.rows:,} (unsent {state.unsent:,})"
                f"  tasks done {state.rows - state.not_done:,}  emails {sink.count():,}"
            )
        if producers_done and state.rows and state.not_done == 0:
            return {"published_at": published_at, "done_at": now}
        if time.monotonic() - last_change > STALL_SECONDS:
            say(f"  no task finished for {STALL_SECONDS:.0f} s: {state.not_done:,} tasks never ran; giving up")
            return {"published_at": published_at, "done_at": None}
        time.sleep(0.5)


def max_outbox_id(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT coalesce(max(id), 0) FROM outbox").fetchone()
    return int(row[0]) if row else 0


# --- figures ---------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def task_figures(conn: psycopg.Connection[Any], log: WorkerLog, after_id: int, until_id: int) -> dict[str, Any]:
    """Per task: outbox row written (transaction start, PostgreSQL's now())
    to the worker's 'succeeded' line; and how many tasks ran 0 or 2+ times."""
    rows = conn.execute(
        """SELECT id, task, extract(epoch FROM created_at)::float8, attempts
           FROM outbox WHERE id > %s AND id <= %s ORDER BY id""",
        (after_id, until_id),
    ).fetchall()
    latencies: list[float] = []
    per_task: Counter[str] = Counter()
    lost: list[int] = []
    twice: list[int] = []
    first_written = min((created for _, _, created, _ in rows), default=None)
    last_done: float | None = None
    for outbox_id, task, created, _attempts in rows:
        runs = log.succeeded.get(f"outbox-{outbox_id}", [])
        per_task[task] += 1
        if not runs:
            lost.append(outbox_id)
            continue
        if len(runs) > 1:
            twice.append(outbox_id)
        latencies.append(runs[0] - created)
        last_done = max(last_done or runs[0], runs[0])
    span = (last_done - first_written) if (last_done and first_written) else None
    return {
        "tasks": len(rows),
        "by_task": dict(per_task),
        "first_row_written": first_written,
        "last_task_done": last_done,
        "span_seconds": round(span, 2) if span else None,
        "tasks_per_second": round(len(rows) / span, 1) if span else None,
        "task_p50_ms": ms(percentile(latencies, 50)),
        "task_p99_ms": ms(percentile(latencies, 99)),
        "task_max_ms": ms(max(latencies, default=None)),
        "publish_attempts_over_one": sum(1 for *_, attempts in rows if attempts > 1),
        "never_ran": len(lost),
        "ran_twice": len(twice),
        "never_ran_ids": lost[:20],
        "ran_twice_ids": twice[:20],
        "retried": sum(log.retried.get(f"outbox-{r[0]}", 0) for r in rows),
        "raised": sum(log.raised.get(f"outbox-{r[0]}", 0) for r in rows),
    }


def email_figures(conn: psycopg.Connection[Any], sink: SmtpSink, after_id: int, until_id: int) -> dict[str, Any]:
    """Order committed (the handle_event row's created_at) to the email
    accepted by the SMTP server, for the notifications of these rows."""
    rows = conn.execute(
        """SELECT n.id, n.status::text, extract(epoch FROM o.created_at)::float8
           FROM notifications n JOIN outbox o ON n.occurrence = 'outbox-' || o.id
           WHERE o.id > %s AND o.id <= %s""",
        (after_id, until_id),
    ).fetchall()
    arrivals: dict[str, list[float]] = defaultdict(list)
    for key, at in sink.snapshot():
        arrivals[key].append(at)
    latencies = []
    missing = duplicated = 0
    for notification_id, _status, created in rows:
        got = arrivals.get(f"notification-{notification_id}", [])
        if not got:
            missing += 1
            continue
        duplicated += len(got) > 1
        latencies.append(min(got) - created)
    return {
        "notifications": len(rows),
        "by_status": dict(Counter(status for _, status, _ in rows)),
        "emails_missing": missing,
        "emails_twice": duplicated,
        "email_p50_ms": ms(percentile(latencies, 50)),
        "email_p99_ms": ms(percentile(latencies, 99)),
    }


def placing_figures(placing: Placing, wall: float) -> dict[str, Any]:
    return {
        "orders_placed": placing.placed,
        "orders_failed": placing.failed,
        "errors": dict(placing.errors),
        "placing_seconds": round(wall, 2),
        "orders_per_second": round(placing.placed / wall, 1) if wall else None,
        "place_p50_ms": ms(percentile(placing.seconds, 50)),
        "place_p99_ms": ms(percentile(placing.seconds, 99)),
        "place_max_ms": ms(max(placing.seconds, default=None)),
    }


def consistency(conn: psycopg.Connection[Any], after_id: int) -> dict[str, Any]:
    """Each order has its payment, and each farm part its notification."""
    first_order = conn.execute(
        "SELECT coalesce(min((kwargs->>'order_id')::int), 0) FROM outbox WHERE id > %s AND task = 'payments.open'",
        (after_id,),
    ).fetchone()
    since = int(first_order[0]) if first_order else 0
    row = conn.execute(
        """SELECT (SELECT count(*) FROM orders WHERE id >= %(since)s),
                  (SELECT count(*) FROM payments WHERE order_id >= %(since)s),
                  (SELECT count(*) FROM order_parts WHERE order_id >= %(since)s),
                  (SELECT count(*) FROM notifications WHERE event = 'order.placed'
                     AND occurrence IN (SELECT 'outbox-' || id FROM outbox WHERE id > %(after)s))""",
        {"since": since, "after": after_id},
    ).fetchone()
    assert row is not None
    orders, payments, parts, notifications = row
    return {"orders": orders, "payments": payments, "farm_parts": parts, "order_placed_notifications": notifications}


# --- the run ----------------------------------------------------------------------------


class PublishFailures(logging.Handler):
    """Counts the relay's 'not published' warnings instead of printing one
    line per order while Redis is down."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


@dataclass
class Bench:
    args: argparse.Namespace
    app: Flask
    env: dict[str, str]
    listing_ids: list[int]
    conn: psycopg.Connection[Any]
    log: WorkerLog
    sink: SmtpSink
    worker_log: Path
    processes: list[subprocess.Popen[bytes]]
    worker: subprocess.Popen[bytes] | None = None
    publish_failures: PublishFailures = field(default_factory=PublishFailures)

    def start_worker(self) -> subprocess.Popen[bytes]:
        self.worker = start_celery("worker", [f"--concurrency={self.args.concurrency}"], self.env, self.worker_log)
        self.processes.append(self.worker)
        return self.worker

    def stop_worker(self) -> None:
        if self.worker is not None:
            stop_celery(self.worker)
            self.processes.remove(self.worker)
            self.worker = None

    def place(
        self, count: int, *, producers: int | None = None, keep_going: Callable[[], bool] = lambda: True
    ) -> Callable[[], tuple[Placing, list[threading.Thread]]]:
        return lambda: place_orders(
            self.app, self.listing_ids, producers=producers or self.args.producers, count=count, keep_going=keep_going
        )


def measure_phase(
    bench: Bench,
    start: Callable[[], tuple[Placing, list[threading.Thread]]],
    *,
    label: str,
    total: int | None,
    during: Callable[[Placing, list[threading.Thread]], None] | None = None,
) -> dict[str, Any]:
    """Place orders with `start`, call `during` while they are placed, wait
    until every task they caused has run, and gather the figures."""
    conn = bench.conn
    after_id = max_outbox_id(conn)
    load_before = load_average()
    worker_before = bench.worker.pid if bench.worker else None
    cpu_before = process_cpu_seconds(worker_before) if worker_before else 0.0
    machine_before = busy_cpu_seconds()
    failures_before = bench.publish_failures.count
    started = time.time()
    placing, threads = start()
    placed_in: list[float] = []

    def placing_done() -> bool:
        finished = not any(t.is_alive() for t in threads)
        if finished and not placed_in:
            placed_in.append(time.time() - started)
        return finished

    def progress() -> str:
        of = f"/{total:,}" if total else ""
        return f"{label}: orders {placing.placed:,}{of}" + (f" ({placing.failed} failed)" if placing.failed else "")

    if during is not None:
        during(placing, threads)
    times = wait_until_done(
        conn, bench.log, bench.sink, after_id, placing_done=placing_done, label=progress, started=started
    )
    wall = time.time() - started
    until_id = max_outbox_id(conn)
    assert bench.worker is not None
    # A worker started during the phase used all its CPU in the phase.
    worker_cpu = process_cpu_seconds(bench.worker.pid) - (cpu_before if bench.worker.pid == worker_before else 0.0)
    tasks = task_figures(conn, bench.log, after_id, until_id)
    return {
        "started_at": started,
        "outbox_ids": [after_id + 1, until_id],
        **placing_figures(placing, placed_in[0] if placed_in else wall),
        "failed_publishes": bench.publish_failures.count - failures_before,
        **tasks,
        **email_figures(conn, bench.sink, after_id, until_id),
        "consistency": consistency(conn, after_id),
        "all_published_after_s": round(times["published_at"] - started, 2) if times["published_at"] else None,
        "all_done_after_s": round(times["done_at"] - started, 2) if times["done_at"] else None,
        "wall_seconds": round(wall, 2),
        "worker_cpu_seconds": round(worker_cpu, 2),
        "worker_cpu_ms_per_task": round(worker_cpu * 1000 / tasks["tasks"], 1) if tasks["tasks"] else None,
        "worker_cpu_cores": round(worker_cpu / wall, 2),
        "machine_cpu_cores": round((busy_cpu_seconds() - machine_before) / wall, 2),
        "load_average_before": load_before,
        "load_average_after": load_average(),
    }


def together(bench: Bench) -> dict[str, Any]:
    """Orders placed at full speed while the worker runs: the whole pipeline
    on the machine at once."""
    n = bench.args.events
    say(f"[1/3] orders and worker together: {n:,} orders from {bench.args.producers} threads ...")
    return measure_phase(bench, bench.place(n), label="together", total=n)


def worker_alone(bench: Bench) -> dict[str, Any]:
    """The worker stopped while the orders are placed (their first tasks wait
    in Redis), then started: what the worker gets through with the machine
    to itself."""
    n = bench.args.events
    say(f"[2/3] queued, then the worker alone: stopping the worker, placing {n:,} orders ...")
    bench.stop_worker()
    ready: dict[str, float] = {}

    def start_worker_when_placed(placing: Placing, threads: list[threading.Thread]) -> None:
        for thread in threads:
            thread.join()
        say(f"  {placing.placed:,} orders placed; starting the worker ...")
        bench.log.poll()
        earlier = len(bench.log.ready)
        worker = bench.start_worker()
        deadline = time.monotonic() + 60
        while len(bench.log.ready) == earlier and time.monotonic() < deadline:
            time.sleep(0.05)
            bench.log.poll()
        if len(bench.log.ready) > earlier:
            ready["at"] = bench.log.ready[earlier]
            ready["cpu"] = process_cpu_seconds(worker.pid)  # its start-up, left out of the figures

    result = measure_phase(bench, bench.place(n), label="worker alone", total=n, during=start_worker_when_placed)
    if ready and result["last_task_done"]:
        span = result["last_task_done"] - ready["at"]
        cpu = result["worker_cpu_seconds"] - ready["cpu"]
        result |= {
            "worker_ready_at": ready["at"],
            "span_seconds": round(span, 2),
            "tasks_per_second": round(result["tasks"] / span, 1),
            "worker_cpu_seconds": round(cpu, 2),
            "worker_cpu_ms_per_task": round(cpu * 1000 / result["tasks"], 1),
            "worker_cpu_cores": round(cpu / span, 2),
        }
    return result


def outage(bench: Bench, redis_server: PrivateRedis) -> dict[str, Any]:
    """Redis stopped for --seconds-down while the producers keep placing
    orders, then started again (empty); the drain until every task ran."""
    seconds = bench.args.seconds_down
    pid = redis_server.process.pid if redis_server.process else None
    say(f"[3/3] outage: stopping the private Redis (pid {pid}) for {seconds} s, placing orders meanwhile ...")
    window: dict[str, float] = {}
    redis_server.stop()
    down_at = time.time()

    def while_down(placing: Placing, threads: list[threading.Thread]) -> None:
        next_line = PROGRESS_EVERY
        while time.time() - down_at < seconds:
            if time.time() - down_at >= next_line:
                next_line += PROGRESS_EVERY
                unsent = bench.conn.execute("SELECT count(*) FROM outbox WHERE sent_at IS NULL").fetchone()
                say(
                    f"  {time.time() - down_at:6.1f} s  Redis down: orders committed {placing.placed:,}"
                    f" ({placing.failed} failed), unsent outbox rows {unsent[0] if unsent else 0:,}"
                )
            time.sleep(0.2)
        window["placed_while_down"] = placing.placed
        unsent = bench.conn.execute("SELECT count(*) FROM outbox WHERE sent_at IS NULL").fetchone()
        window["unsent_at_restart"] = unsent[0] if unsent else 0
        redis_server.start()
        window["up_at"] = time.time()
        say(f"  Redis up again after {window['up_at'] - down_at:.1f} s; draining ...")

    result = measure_phase(
        bench,
        bench.place(bench.args.outage_events, keep_going=lambda: time.time() - down_at < seconds),
        label="drain",
        total=None,
        during=while_down,
    )
    up_at = window["up_at"]
    reconnected = [t for t in bench.log.connected if t >= up_at - 1]
    published = result["all_published_after_s"]
    return result | {
        "seconds_down": round(up_at - down_at, 1),
        "orders_placed_while_down": window["placed_while_down"],
        "unsent_rows_at_restart": window["unsent_at_restart"],
        "worker_reconnected_after_s": round(reconnected[0] - up_at, 1) if reconnected else None,
        "relay_caught_up_after_s": round(result["started_at"] + published - up_at, 1) if published else None,
        "drain_seconds": round(result["last_task_done"] - up_at, 1) if result["last_task_done"] else None,
    }


def report(
    args: argparse.Namespace, phases: dict[str, dict[str, Any]], checks: dict[str, Any], code: dict[str, Any]
) -> None:
    print(
        f"\nWorkers: outbox relay -> private Redis -> celery worker (prefork, {args.concurrency} processes) + beat;"
        f" {args.producers} threads placing orders; load average {load_average()}"
    )
    print(
        f"code: {code['commit']}"
        + (f" with uncommitted {', '.join(code['uncommitted'])}" if code["uncommitted"] else "")
    )
    throughput = [{"phase": name, **phases[name]} for name in ("together", "worker alone")]
    print(
        table(
            throughput,
            [
                "phase",
                "orders_placed",
                "orders_per_second",
                "tasks",
                "span_seconds",
                "tasks_per_second",
                "task_p50_ms",
                "task_p99_ms",
                "email_p50_ms",
                "email_p99_ms",
                "worker_cpu_ms_per_task",
                "worker_cpu_cores",
                "machine_cpu_cores",
            ],
        )
    )
    print()
    print(
        table(
            [phases["outage"]],
            [
                "seconds_down",
                "orders_placed_while_down",
                "place_p50_ms",
                "place_max_ms",
                "failed_publishes",
                "unsent_rows_at_restart",
                "worker_reconnected_after_s",
                "relay_caught_up_after_s",
                "drain_seconds",
                "tasks",
                "task_p99_ms",
                "email_p99_ms",
            ],
        )
    )
    print()
    print(table([checks], list(checks)))


def totals(phases: dict[str, dict[str, Any]]) -> dict[str, int]:
    """What every phase must show none of (tasks lost or run twice, emails
    lost or sent twice), summed."""
    return {
        key: sum(phase[source] for phase in phases.values())
        for key, source in [
            ("tasks", "tasks"),
            ("never_ran", "never_ran"),
            ("ran_twice", "ran_twice"),
            ("emails_missing", "emails_missing"),
            ("emails_twice", "emails_twice"),
            ("orders_failed", "orders_failed"),
            ("tasks_retried", "retried"),
            ("tasks_raised", "raised"),
        ]
    }


def code_state() -> dict[str, Any]:
    """The commit, and the files under test that differ from it: the
    figures belong to the working tree as it was when the run started."""

    def git(*command: str) -> str:
        return subprocess.run(  # noqa: S603 (a fixed git command)
            [shutil.which("git") or "git", *command], cwd=config.ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()

    changed = git("status", "--porcelain", "--", "market", "workers", "config", "migrations")
    return {"commit": git("rev-parse", "--short", "HEAD"), "uncommitted": changed.splitlines()}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300, help="orders placed in each throughput phase")
    parser.add_argument("--outage-events", type=int, default=1000, help="most orders placed while Redis is down")
    parser.add_argument("--seconds-down", type=int, default=30)
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes (prefork)")
    parser.add_argument("--producers", type=int, default=8, help="threads placing orders")
    return parser.parse_args()


def main() -> None:
    args = parse_args()

    url = database_url("bench_workers")
    RESULTS.mkdir(exist_ok=True)
    worker_log = RESULTS / "workers-worker.log"
    beat_log = RESULTS / "workers-beat.log"
    for path in (worker_log, beat_log):
        path.write_bytes(b"")
    load_start = load_average()
    code = code_state()
    say(f"load average {load_start}; seeding {FARMS:,} farms, {LISTINGS:,} listings, {BUYERS:,} buyers ...")
    redis_server = PrivateRedis(RESULTS / "workers-redis.log")
    sink = SmtpSink()
    processes: list[subprocess.Popen[bytes]] = []
    publish_failures = PublishFailures()
    relay_log = logging.getLogger("market.outbox")
    relay_log.addHandler(publish_failures)
    relay_log.propagate = False
    with tempfile.TemporaryDirectory() as tmp:
        try:
            redis_server.start()
            sink.controller.start()
            sink.started = True
            env = {
                "DATABASE_URL": url,
                "REDIS_URL": redis_server.url,
                "SECRET_KEY": "bench",
                "SMTP_HOST": "127.0.0.1",
                "SMTP_PORT": str(sink.port),
                "SMTP_TLS": "0",
                "NOTIFICATION_MAILBOX": str(Path(tmp) / "outbox.mbox"),
                "MARKET_INSTANCE": tmp,
            }
            recreate_database(url)
            seed(url, listings=LISTINGS, stock_g=STOCK_G)
            app = create_app(config.load({**os.environ, **env}))
            say(f"private redis-server on port {redis_server.port}, SMTP sink on port {sink.port}")
            with psycopg.connect(plain_url(url), autocommit=True) as conn:
                bench = Bench(
                    args=args,
                    app=app,
                    env=env,
                    listing_ids=active_listing_ids(url),
                    conn=conn,
                    log=WorkerLog(worker_log),
                    sink=sink,
                    worker_log=worker_log,
                    processes=processes,
                    publish_failures=publish_failures,
                )
                bench.start_worker()
                processes.append(start_celery("beat", ["--schedule", str(Path(tmp) / "schedule")], env, beat_log))
                say(f"warm-up: {WARMUP_ORDERS} orders ...")
                measure_phase(bench, bench.place(WARMUP_ORDERS, producers=2), label="warm-up", total=WARMUP_ORDERS)
                phases = {"together": together(bench), "worker alone": worker_alone(bench)}
                phases["outage"] = outage(bench, redis_server)
                bench.log.poll()
        finally:
            for process in reversed(processes):
                stop_celery(process)
            redis_server.stop()
            if sink.started:
                sink.controller.stop()

    checks = totals(phases)
    report(args, phases, checks, code)
    path = write_results(
        "workers",
        {
            "settings": {**vars(args), "listings": LISTINGS, "farms": FARMS, "buyers": BUYERS},
            "code": code,
            "relay": {
                name: app.config[name]
                for name in ("OUTBOX_RELAY_INTERVAL_SECONDS", "OUTBOX_RESEND_AFTER_SECONDS", "CELERY")
            },
            "phases": phases,
            "checks": checks,
            "load_average_start": load_start,
            "load_average_end": load_average(),
            "logs": [str(worker_log), str(beat_log)],
        },
    )
    print(f"\nwritten to {path}")
    if checks["never_ran"] or checks["ran_twice"] or checks["emails_missing"] or checks["emails_twice"]:
        raise SystemExit("a task never ran or ran twice, or an email was lost or sent twice")


if __name__ == "__main__":
    main()
