"""The transactional outbox (docs/reliability.md).

`enqueue()` adds a row in the caller's transaction, so a task exists if and
only if the state change that needs it was committed. Who publishes it is
OUTBOX_RELAY:

- `committer`: after the commit the row ids go to this process's relay
  thread (`Relay`), which publishes them to Celery at once, the rows of many
  commits in one batch, while the request that wrote them answers without
  waiting on the broker.
- `listener`: the committing process only writes the rows. A relay process
  (`flask --app wsgi relay`) runs `listen()`, woken by the NOTIFY that
  PostgreSQL sends when a transaction that wrote outbox rows commits (a
  trigger on `outbox`), and publishes every unsent row, those of all the
  processes' commits together.

A beat job publishes again whatever is still unsent (the broker was down,
the process died with ids not yet published), so Redis being down delays
work and never loses it. Tasks are idempotent, so the rare second publish
is harmless.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from contextlib import closing
from datetime import datetime, timedelta
from typing import Any

import psycopg
from celery import Celery
from flask import Flask, current_app
from sqlalchemy import JSON, Integer, String, Text, event, func, inspect, or_, select, update
from sqlalchemy.orm import Mapped, Session, SessionTransaction, mapped_column

from market.db import UTCDateTime, utcnow
from market.extensions import db

log = logging.getLogger(__name__)
PENDING_KEY = "outbox_pending"
COMMITTED_KEY = "outbox_committed"
# How long a relay owns a row while publishing it, so two relays never
# publish the same row at once.
CLAIM = timedelta(seconds=30)
# Rows one relay call claims at most.
BATCH = 500
# The channel of the NOTIFY each commit that wrote outbox rows sends on
# PostgreSQL (migration b4e7a1c9d3f2).
CHANNEL = "market_outbox"
# How long the relay process waits, once woken, for more commits to publish
# with the first: a task starts this much later, under any load.
GATHER_SECONDS = 0.05
# How soon the relay process notices it is asked to stop.
STOP_SECONDS = 0.5


class OutboxMessage(db.Model):  # type: ignore[name-defined]
    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(primary_key=True)
    task: Mapped[str] = mapped_column(String(120))
    kwargs: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now())
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)


def enqueue(task: str, **kwargs: Any) -> OutboxMessage:
    """Schedule Celery task `task` with JSON-able `kwargs` (ids, not objects)
    in the current transaction; it is published only if that transaction commits."""
    message = OutboxMessage(task=task, kwargs=kwargs)
    db.session.add(message)
    # Written with the caller's other rows at the next flush, in one batch.
    db.session.info.setdefault(PENDING_KEY, []).append(message)
    return message


def _celery() -> Celery:
    celery: Celery = current_app.extensions["celery"]
    return celery


def relay(ids: list[int] | None = None, *, older_than: timedelta | None = None) -> int:
    """Publish unsent outbox rows (those in `ids`, or all older than
    `older_than` or already tried) and mark them sent, at most BATCH of
    them. Returns how many were published.

    The rows are claimed in one short transaction and marked in another,
    outside the caller's session, so a broker failure never touches the
    caller's work. A failure (the broker is down) leaves the rows not known
    to be sent (`_publish`) unsent: the first keeps its error, and all are
    released at once for the next relay. A process that dies mid-batch
    leaves its claims to expire (CLAIM), and the rows are published again:
    tasks are idempotent.
    """
    now = utcnow()
    unsent = [
        OutboxMessage.sent_at.is_(None),
        or_(OutboxMessage.claimed_until.is_(None), OutboxMessage.claimed_until < now),
    ]
    if ids is not None:
        unsent.append(OutboxMessage.id.in_(ids))
    if older_than is not None:
        # A row an earlier relay failed to publish has no relay waiting on
        # it: it goes at once, without waiting to be `older_than`.
        unsent.append(or_(OutboxMessage.created_at < now - older_than, OutboxMessage.attempts > 0))
    with db.engine.begin() as conn:
        candidates = select(OutboxMessage.id).where(*unsent).order_by(OutboxMessage.id).limit(BATCH)
        claimed = conn.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(candidates.scalar_subquery()), *unsent)
            .values(claimed_until=now + CLAIM, attempts=OutboxMessage.attempts + 1)
            .returning(OutboxMessage.id, OutboxMessage.task, OutboxMessage.kwargs)
        ).all()
    if not claimed:
        return 0
    sent, failure = _publish(sorted(claimed, key=lambda row: row.id))
    with db.engine.begin() as conn:
        if sent:
            conn.execute(
                update(OutboxMessage).where(OutboxMessage.id.in_(sent)).values(sent_at=utcnow(), last_error=None)
            )
        if failure is not None:
            failed_id, error = failure
            unsent_ids = [row.id for row in claimed if row.id not in sent]
            conn.execute(update(OutboxMessage).where(OutboxMessage.id.in_(unsent_ids)).values(claimed_until=None))
            conn.execute(update(OutboxMessage).where(OutboxMessage.id == failed_id).values(last_error=error))
    return len(sent)


def _publish(messages: list[Any]) -> tuple[list[int], tuple[int, str] | None]:
    """Send `messages` (outbox rows, in order) to the broker. Returns the
    ids sent and, if publishing failed, the first row not sent with the
    error.

    On Redis the whole batch goes in one pipeline (kombu's publish batch):
    one round trip and one Redis client, where each row took one of each.
    It is delivered whole, or, when the pipeline fails, possibly in part:
    then none of it counts as sent and all of it goes again (tasks are
    idempotent). Brokers without batches publish each row at once, and
    the rows before a failure are sent."""
    celery = _celery()
    published: list[int] = []
    batched = False
    try:
        with celery.producer_or_acquire() as producer:
            batched = producer.supports_batch_publish
            with producer.batch():
                for message in messages:
                    celery.send_task(
                        message.task,
                        kwargs=message.kwargs,
                        task_id=f"outbox-{message.id}",
                        retry=False,
                        producer=producer,
                    )
                    published.append(message.id)
    except Exception as exc:  # kombu raises many kinds; each means "not now"
        sent = [] if batched else published
        failed = messages[len(sent)].id
        log.warning("outbox %s not published: %s", failed, exc)
        return sent, (failed, str(exc)[:2000])
    return published, None


def relay_all(*, older_than: timedelta | None = None) -> int:
    """`relay()` batch after batch until none is left (after an outage the
    backlog drains at the broker's pace); stops at the first failure."""
    total = 0
    while (sent := relay(older_than=older_than)) == BATCH:
        total += sent
    return total + sent


def listen(app: Flask, stop: threading.Event) -> None:
    """Publish every committed row soon after its commit, until `stop` is
    set: the relay process when OUTBOX_RELAY is `listener`. On
    PostgreSQL it waits on a connection of its own for the NOTIFY a commit
    sends, and looks anyway every OUTBOX_POLL_SECONDS; elsewhere it looks
    every OUTBOX_POLL_SECONDS. Several may listen: each row is claimed by
    one of them (`relay()`)."""
    with app.app_context():
        poll = app.config["OUTBOX_POLL_SECONDS"]
        while not stop.is_set():
            try:
                if db.engine.dialect.name == "postgresql":
                    _listen_for_notifications(poll, stop)
                else:
                    relay_all()
                    stop.wait(poll)
            except Exception:  # the database or the broker is down: look again later
                log.exception("outbox listener failed; trying again in %s s", poll)
                stop.wait(poll)


def _listen_for_notifications(poll: float, stop: threading.Event) -> None:
    url = db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"LISTEN {CHANNEL}")
        # Rows committed before this connection listened have sent their
        # notification already.
        relay_all()
        looked = time.monotonic()
        while not stop.is_set():
            # Notifications that arrive while relay_all() publishes wait in
            # the connection, so a commit is never missed. Waiting in short
            # slices lets `stop` end the loop soon.
            with closing(conn.notifies(timeout=STOP_SECONDS, stop_after=1)) as notifications:
                woken = next(notifications, None) is not None
            if woken:
                # Wait a moment for the commits right behind this one, so
                # that under load one claim and one mark serve the rows of
                # many orders (a relay call costs as much as publishing ten
                # rows). Their notifications are spent: this relay takes
                # their rows.
                stop.wait(GATHER_SECONDS)
                for _ in conn.notifies(timeout=0):
                    pass
            elif time.monotonic() - looked < poll:
                continue
            relay_all()
            looked = time.monotonic()


def _after_commit(session: Session) -> None:
    # Publishing needs a connection of its own; the session still holds its
    # connection here, so wait until the transaction has given it back
    # (after_transaction_end), or a full pool would wait on itself.
    messages: list[OutboxMessage] = session.info.pop(PENDING_KEY, [])
    if current_app.config["OUTBOX_RELAY"] != "committer":
        return  # the relay process publishes them
    # Only messages that were written: one added in a savepoint that was
    # rolled back has no identity.
    identities: list[tuple[Any, ...] | None] = [inspect(message).identity for message in messages]
    ids = [int(identity[0]) for identity in identities if identity is not None]
    if ids:
        session.info.setdefault(COMMITTED_KEY, []).extend(ids)


def _after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        ids = session.info.pop(COMMITTED_KEY, [])
        if ids:
            relay_of(current_app).submit(ids)


class Relay:
    """Publishes the outbox rows this process commits, from a thread of its
    own: a request hands over the ids it committed and answers; the thread
    publishes whatever has gathered meanwhile, a batch at a time (one claim
    and one mark transaction for the rows of many orders). The thread starts
    on the first ids (so in each process a server forks, after the fork) and
    ends after IDLE_SECONDS without any. Ids it has not published when the
    process ends are left to the beat job, like those of a process that
    died."""

    IDLE_SECONDS = 5.0

    def __init__(self, app: Flask) -> None:
        self._app = app
        self._reset()
        _relays.add(self)

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._pending: list[int] = []
        self._busy = False
        self._thread: threading.Thread | None = None

    def submit(self, ids: list[int]) -> None:
        if self._pid != os.getpid():  # forked: the parent's thread and lock are not ours
            self._reset()
        with self._lock:
            self._pending.extend(ids)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="outbox-relay", daemon=True)
                self._thread.start()
            self._changed.notify_all()

    def wait(self, timeout: float = 10.0) -> bool:
        """Until every id submitted so far was published or tried; False if
        `timeout` seconds passed first."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._pending or self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
        return True

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._pending:
                    self._changed.wait(self.IDLE_SECONDS)
                if not self._pending:
                    self._thread = None
                    return
                ids, self._pending = self._pending, []
                self._busy = True
            try:
                with self._app.app_context():
                    # A bulk change can write more rows than one relay call
                    # takes. With the broker down each call fails at its
                    # first row at once, and every row is left as tried,
                    # for the beat job.
                    for start in range(0, len(ids), BATCH):
                        relay(ids[start : start + BATCH])
            except Exception:  # the rows stay unsent, for the beat job
                log.exception("outbox relay failed on %d rows", len(ids))
            finally:
                with self._lock:
                    self._busy = False
                    self._changed.notify_all()


_relays: weakref.WeakSet[Relay] = weakref.WeakSet()
RELAY_KEY = "outbox_relay"
# At exit, what a short-lived process (a command) committed is published
# before it ends, rather than by the beat job later.
EXIT_WAIT_SECONDS = 5.0


def relay_of(app: Flask) -> Relay:
    relay_: Relay = app.extensions[RELAY_KEY]
    return relay_


@atexit.register
def _publish_before_exit() -> None:
    for relay_ in list(_relays):
        relay_.wait(EXIT_WAIT_SECONDS)


def _after_rollback(session: Session) -> None:
    session.info.pop(PENDING_KEY, None)


def install(app: Flask) -> None:
    """Publish outbox rows right after the session that wrote them commits."""
    app.extensions[RELAY_KEY] = Relay(app)
    if not event.contains(db.session, "after_commit", _after_commit):
        event.listen(db.session, "after_commit", _after_commit)
        event.listen(db.session, "after_transaction_end", _after_transaction_end)
        event.listen(db.session, "after_rollback", _after_rollback)
