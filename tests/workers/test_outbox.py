"""The outbox with a real worker: a task runs once after commit, never after
a rollback, and still runs when the broker was down at commit time."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from celery import Celery, shared_task
from celery.contrib.testing.worker import start_worker
from flask import Flask
from sqlalchemy import insert, select

from market import outbox
from market.extensions import db
from market.outbox import OutboxMessage
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
    assert "outbox.relay" in celery_app.tasks


def test_a_batch_whose_broker_is_down_is_released_whole_and_sent_whole_later(
    app: Flask, celery_app: Celery, private_redis: RedisServer
) -> None:
    celery_app.conf.broker_url = private_redis.url
    messages = [outbox.enqueue("tests.record", marker=f"batch-{n}") for n in range(3)]
    db.session.commit()  # one relay call for the three rows; the first publish fails
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
