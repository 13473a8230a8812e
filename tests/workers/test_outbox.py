"""The outbox with a real worker: a task runs once after commit, never after
a rollback, and still runs when the broker was down at commit time. Rows
are published by the process's relay thread, never by the thread that
committed them."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
import redis
from celery import Celery, shared_task
from celery.contrib.testing.worker import start_worker
from celery.signals import before_task_publish
from flask import Flask
from sqlalchemy import event, func, insert, select, text

from market import outbox
from market.extensions import db
from market.outbox import OutboxMessage
from tests.conftest import DATABASE_URL, is_postgres, needs
from tests.workers.conftest import RedisServer, wait_for
from workers.outbox import relay_stuck

runs: list[str] = []
runs_lock = threading.Lock()


@shared_task(name="tests.record")
def record(marker: str) -> None:
    with runs_lock:
        runs.append(marker)


def ran(marker: str) -> int:
    with runs_lock:
        return runs.count(marker)


def test_task_runs_once_after_commit(app: Flask, worker: object) -> None:
    message = outbox.enqueue("tests.record", marker="committed")
    assert ran("committed") == 0
    db.session.commit()
    assert wait_for(lambda: ran("committed") == 1)
    # The beat job finds nothing left to send, so nothing runs twice.
    assert outbox.relay(older_than=timedelta(0)) == 0
    time.sleep(0.5)
    assert ran("committed") == 1
    assert db.session.get(OutboxMessage, message.id).sent_at is not None  # type: ignore[union-attr]


def test_the_committing_thread_hands_its_rows_to_the_relay_thread(app: Flask, worker: object) -> None:
    publishers: list[str] = []

    def _publishing(**_: object) -> None:
        publishers.append(threading.current_thread().name)

    before_task_publish.connect(_publishing, weak=False)
    try:
        outbox.enqueue("tests.record", marker="handed-over")
        db.session.commit()
        assert outbox.relay_of(app).wait()
    finally:
        before_task_publish.disconnect(_publishing)
    assert publishers == ["outbox-relay"]
    assert wait_for(lambda: ran("handed-over") == 1)


def test_rows_committed_while_the_relay_publishes_go_out_together(app: Flask, worker: object) -> None:
    """The relay claims what gathered while it was busy in one transaction:
    under load, one claim and one mark serve the rows of many commits."""
    claims: list[str] = []
    first_publish = threading.Event()
    go_on = threading.Event()

    def _claim(conn: object, cursor: object, statement: str, *_: object) -> None:
        if statement.startswith("UPDATE outbox SET claimed_until"):
            claims.append(statement)

    def _hold_first(**_: object) -> None:
        if not first_publish.is_set():
            first_publish.set()
            go_on.wait(10)

    event.listen(db.engine, "before_cursor_execute", _claim)
    before_task_publish.connect(_hold_first, weak=False)
    try:
        outbox.enqueue("tests.record", marker="together-0")
        db.session.commit()
        assert first_publish.wait(10)  # the relay is publishing the first row
        for n in (1, 2):
            outbox.enqueue("tests.record", marker=f"together-{n}")
            db.session.commit()
        go_on.set()
        assert outbox.relay_of(app).wait()
    finally:
        go_on.set()
        before_task_publish.disconnect(_hold_first)
        event.remove(db.engine, "before_cursor_execute", _claim)
    assert len(claims) == 2
    assert wait_for(lambda: all(ran(f"together-{n}") == 1 for n in range(3)))


def test_task_enqueued_in_a_rolled_back_transaction_never_runs(app: Flask, worker: object) -> None:
    outbox.enqueue("tests.record", marker="rolled-back")
    db.session.rollback()
    assert outbox.relay(older_than=timedelta(0)) == 0
    time.sleep(0.5)
    assert ran("rolled-back") == 0
    assert db.session.scalars(select(OutboxMessage)).all() == []


def test_task_is_delivered_after_the_broker_comes_back(
    app: Flask, celery_app: Celery, private_redis: RedisServer
) -> None:
    celery_app.conf.broker_url = private_redis.url
    app.config["OUTBOX_RESEND_AFTER_SECONDS"] = 0

    message = outbox.enqueue("tests.record", marker="broker-down")
    db.session.commit()  # the broker is not running: publishing fails, the row stays
    assert outbox.relay_of(app).wait()
    stored = db.session.get(OutboxMessage, message.id)
    assert stored is not None
    db.session.refresh(stored)
    assert stored.sent_at is None
    assert stored.last_error

    private_redis.start()
    with start_worker(celery_app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        assert relay_stuck() == 1  # what the beat job runs
        assert wait_for(lambda: ran("broker-down") == 1)
        assert relay_stuck() == 0
        time.sleep(0.5)
    assert ran("broker-down") == 1
    db.session.refresh(stored)
    assert stored.sent_at is not None


def test_beat_schedule_runs_the_relay(celery_app: Celery) -> None:
    schedule = celery_app.conf.beat_schedule
    assert schedule["relay-outbox"]["task"] == "outbox.relay"
    assert schedule["roll-up-impact-days"]["task"] == "reports.roll_up_days"
    assert {entry["task"] for entry in schedule.values()} <= set(celery_app.tasks)


def test_a_batch_whose_broker_is_down_is_released_whole_and_sent_whole_later(
    app: Flask, celery_app: Celery, private_redis: RedisServer
) -> None:
    celery_app.conf.broker_url = private_redis.url
    messages = [outbox.enqueue("tests.record", marker=f"batch-{n}") for n in range(3)]
    db.session.commit()  # one relay call for the three rows; the first publish fails
    assert outbox.relay_of(app).wait()
    stored = [db.session.get(OutboxMessage, m.id) for m in messages]
    for row in stored:
        assert row is not None
        db.session.refresh(row)
        assert row.sent_at is None
        assert row.claimed_until is None  # free for the next relay at once
    assert stored[0] is not None and stored[0].last_error

    private_redis.start()
    with start_worker(celery_app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        assert outbox.relay(older_than=timedelta(0)) == 3
        assert wait_for(lambda: all(ran(f"batch-{n}") == 1 for n in range(3)))
        assert outbox.relay(older_than=timedelta(0)) == 0


def test_the_beat_job_sends_a_row_that_failed_at_once_and_drains_more_than_a_batch(
    app: Flask, celery_app: Celery, private_redis: RedisServer
) -> None:
    """Rows that could not be published wait for no resend age (only rows
    never tried do), and one beat run sends the whole backlog, not one batch."""
    app.config["OUTBOX_RESEND_AFTER_SECONDS"] = 3600
    celery_app.conf.broker_url = private_redis.url
    for n in range(outbox.BATCH + 5):
        outbox.enqueue("tests.never-consumed", n=n)
    db.session.commit()  # the broker is down: the first publish fails, all rows wait
    assert outbox.relay_of(app).wait()
    unsent = select(OutboxMessage.id).where(OutboxMessage.sent_at.is_(None))
    assert len(db.session.scalars(unsent).all()) == outbox.BATCH + 5

    # A row no relay has tried yet (written as a caller's commit would, minus
    # the publish that follows it): younger than the resend age, it waits.
    fresh = db.session.execute(
        insert(OutboxMessage).values(task="tests.never-consumed", kwargs={"n": -1}).returning(OutboxMessage.id)
    ).scalar_one()
    db.session.commit()

    private_redis.start()
    assert relay_stuck() == outbox.BATCH + 5
    assert db.session.scalars(unsent).all() == [fresh]


# OUTBOX_RELAY = listener: only the relay process publishes, running
# outbox.listen (here in threads of the test process). On PostgreSQL it
# looks on its own once a minute here, so a row that runs at once was
# published on the commit's NOTIFY; SQLite has none, and is looked for
# every second.
LISTENER_RELAY = {"OUTBOX_RELAY": "listener", "OUTBOX_POLL_SECONDS": 60 if is_postgres(DATABASE_URL) else 1}
POLLING_LISTENER = {"OUTBOX_RELAY": "listener", "OUTBOX_POLL_SECONDS": 1}


@contextmanager
def listening(app: Flask, listeners: int = 1) -> Iterator[None]:
    """`listeners` relays, as `flask relay` runs one, until the block ends."""
    stop = threading.Event()
    threads = [
        threading.Thread(target=outbox.listen, args=(app, stop), name="outbox-listener") for _ in range(listeners)
    ]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    assert not any(thread.is_alive() for thread in threads), "a listener did not stop"


@pytest.mark.parametrize("app_overrides", [LISTENER_RELAY])
def test_with_the_listener_relay_a_commit_wakes_the_listener(app: Flask, worker: object) -> None:
    publishers: list[str] = []

    def _publishing(**_: object) -> None:
        publishers.append(threading.current_thread().name)

    # Committed before any relay listens: published when the first one starts.
    outbox.enqueue("tests.record", marker="before-listening")
    db.session.commit()
    before_task_publish.connect(_publishing, weak=False)
    try:
        with listening(app):
            assert wait_for(lambda: ran("before-listening") == 1)
            for n in range(3):
                outbox.enqueue("tests.record", marker=f"listened-{n}")
                db.session.commit()
            assert wait_for(lambda: all(ran(f"listened-{n}") == 1 for n in range(3)))
            # The committing process publishes nothing itself.
            assert outbox.relay_of(app).wait(0)
    finally:
        before_task_publish.disconnect(_publishing)
    assert set(publishers) == {"outbox-listener"}
    assert len(publishers) == 4
    assert outbox.relay(older_than=timedelta(0)) == 0


@pytest.mark.parametrize("app_overrides", [LISTENER_RELAY])
def test_with_the_listener_relay_no_relay_running_means_the_rows_wait(app: Flask) -> None:
    """Without a relay process the rows stay unsent, for the first relay (or
    the beat job) to publish: committing never publishes."""
    outbox.enqueue("tests.record", marker="waiting")
    db.session.commit()
    assert outbox.relay_of(app).wait(0)
    assert db.session.scalars(select(OutboxMessage.sent_at)).one() is None
    assert ran("waiting") == 0


@pytest.mark.parametrize("app_overrides", [POLLING_LISTENER])
def test_relays_racing_for_the_same_commits_publish_each_row_once(app: Flask, worker: object) -> None:
    """Three relays woken by the same commits: each row is claimed, so
    published, once."""
    with listening(app, listeners=3):
        for n in range(40):
            outbox.enqueue("tests.record", marker=f"raced-{n}")
            db.session.commit()
        assert wait_for(lambda: all(ran(f"raced-{n}") >= 1 for n in range(40)), 20)
    time.sleep(0.5)
    assert [ran(f"raced-{n}") for n in range(40)] == [1] * 40
    assert db.session.scalar(select(func.count()).where(OutboxMessage.sent_at.is_(None))) == 0


LISTENERS = text("SELECT pid FROM pg_stat_activity WHERE query LIKE 'LISTEN %' AND datname = current_database()")


def _listener_pids() -> list[int]:
    # In autocommit: pg_stat_activity keeps its first snapshot for the rest of a transaction.
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        return list(conn.scalars(LISTENERS))


@pytest.mark.parametrize("app_overrides", [POLLING_LISTENER])
def test_a_relay_whose_connection_is_cut_listens_again(app: Flask, worker: object) -> None:
    """PostgreSQL ends the relay's connection (a restart, a failover): it
    connects again and publishes what was committed meanwhile."""
    needs("postgresql")
    with listening(app):
        assert wait_for(lambda: len(_listener_pids()) == 1)
        (cut,) = _listener_pids()
        with db.engine.connect() as conn:
            assert conn.scalar(text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": cut})
        outbox.enqueue("tests.record", marker="after-the-cut")
        db.session.commit()
        assert wait_for(lambda: ran("after-the-cut") == 1, 20)
        # Listening again, on a new connection.
        assert wait_for(lambda: len(_listener_pids()) == 1 and _listener_pids() != [cut])


def _reads(broker: redis.Redis) -> int:
    """The requests Redis has read from its clients' sockets (this one
    included): one per round trip, however many commands a pipeline carries."""
    return int(broker.info("stats")["total_reads_processed"])


@pytest.mark.parametrize("app_overrides", [LISTENER_RELAY])
def test_a_batch_goes_to_redis_in_one_round_trip_and_each_row_runs_once(
    app: Flask, celery_app: Celery, private_redis: RedisServer
) -> None:
    celery_app.conf.broker_url = private_redis.url
    private_redis.start()
    broker = redis.Redis.from_url(private_redis.url)
    reads = []
    for batch in range(2):
        for n in range(100):
            outbox.enqueue("tests.record", marker=f"piped-{batch * 100 + n}")
        db.session.commit()  # the listener relay is not running: nothing is published yet
        before = _reads(broker)
        assert outbox.relay(older_than=timedelta(0)) == 100
        reads.append(_reads(broker) - before)
    # The first batch also sets up the connection and declares the queue. A
    # row a round trip, as before batches, would be 100 and more each.
    assert reads[1] < 20, reads
    with start_worker(celery_app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        assert wait_for(lambda: all(ran(f"piped-{n}") == 1 for n in range(200)))
    assert [ran(f"piped-{n}") for n in range(200)] == [1] * 200


@pytest.mark.parametrize("app_overrides", [LISTENER_RELAY])
def test_a_batch_redis_refuses_counts_as_not_sent_and_goes_again_whole(
    app: Flask, celery_app: Celery, private_redis: RedisServer
) -> None:
    """Redis takes the connection but refuses the writes (out of memory): the
    pipeline fails, so no row of the batch is marked sent, all are released
    at once, and the first keeps the error."""
    celery_app.conf.broker_url = private_redis.url
    private_redis.start()
    broker = redis.Redis.from_url(private_redis.url)
    broker.config_set("maxmemory", 1)
    messages = [outbox.enqueue("tests.record", marker=f"refused-{n}") for n in range(3)]
    db.session.commit()
    assert outbox.relay(older_than=timedelta(0)) == 0
    rows = [db.session.get(OutboxMessage, m.id) for m in messages]
    for row in rows:
        assert row is not None
        db.session.refresh(row)
        assert (row.sent_at, row.claimed_until) == (None, None)
    assert rows[0] is not None and "maxmemory" in (rows[0].last_error or "")

    broker.config_set("maxmemory", 0)
    with start_worker(celery_app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        assert outbox.relay(older_than=timedelta(0)) == 3
        assert wait_for(lambda: all(ran(f"refused-{n}") == 1 for n in range(3)))
    assert [ran(f"refused-{n}") for n in range(3)] == [1] * 3
