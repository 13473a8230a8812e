"""Idempotency keys for POSTs (docs/reliability.md), as decorators.

The first request with a key claims it (a unique row per user and key);
its response is stored; a repeat with the same body replays it, with another
body is a 422, and one arriving while the first still runs is a 409.

`idempotent` claims the key in a transaction of its own before the view
runs and stores the response in another after it, whatever the view
commits in between. `idempotent_in_one_transaction`, for views whose work
is one transaction (placing an order), holds the key with a PostgreSQL
advisory lock instead and stores the response in the view's own
transaction: one commit for the work and its key.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from flask import Response, current_app, make_response, request
from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    bindparam,
    delete,
    event,
    func,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column
from werkzeug.exceptions import HTTPException

from market.api import IN_FLIGHT
from market.auth import optional_actor
from market.db import COMMIT_DEFERRED, UTCDateTime, advisory_key, utcnow
from market.errors import DomainError, Invalid, NotReadyYet
from market.extensions import db

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
# The header as the OpenAPI document shows it, on every operation that takes it.
PARAMETER = {
    "in": "header",
    "name": HEADER,
    "required": False,
    "description": "Any text of yours naming this request: a repeat with the same key and body replays "
    "the first answer (Idempotent-Replayed: true), another body with the key is a 422.",
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH},
}
# A repeat that finds the first request still running is told to come back
# this many seconds later: most requests end well within it, and the repeat
# then replays their answer (or, past the lease, takes the key over).
IN_FLIGHT_RETRY_AFTER_SECONDS = 1
F = TypeVar("F", bound=Callable[..., Any])


class IdempotencyKey(db.Model):  # type: ignore[name-defined]
    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("user_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(MAX_KEY_LENGTH))
    request_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now())
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_headers: Mapped[str | None] = mapped_column(String(2000))
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary)


def _request_hash() -> str:
    digest = hashlib.sha256()
    digest.update(f"{request.method} {request.path}?{request.query_string.decode()}\n".encode())
    body = request.get_data(cache=True)
    try:
        canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    except ValueError:
        canonical = body
    digest.update(canonical)
    return digest.hexdigest()


# Built once: every request with a key runs them.
_EARLIER = select(IdempotencyKey).where(
    IdempotencyKey.user_id == bindparam("user_id"), IdempotencyKey.key == bindparam("key")
)
# The key's record, unless the key has one: then nothing, and no id. Into
# the table, not the model: the ORM's bulk insert costs more than the statement.
_KEYS = IdempotencyKey.__table__
_RECORD = pg_insert(_KEYS).on_conflict_do_nothing(index_elements=["user_id", "key"]).returning(_KEYS.c.id)
_TRY_LOCK = select(func.pg_try_advisory_xact_lock(bindparam("lock", type_=BigInteger)))


def _earlier(user_id: int, key: str, request_hash: str) -> IdempotencyKey | None:
    """The record of an earlier request with `key`, if there is one; a 422
    if that request was another one."""
    existing = db.session.scalars(_EARLIER, {"user_id": user_id, "key": key}).one_or_none()
    if existing is not None and existing.request_hash != request_hash:
        raise Invalid(
            "This Idempotency-Key was used with a different request.",
            {HEADER: ["Already used with another body or path; use a new key."]},
        )
    return existing


def _in_flight() -> NotReadyYet:
    return NotReadyYet(
        f"{IN_FLIGHT}; retry shortly.",
        retry_after=IN_FLIGHT_RETRY_AFTER_SECONDS,
    )


def _claim(user_id: int, key: str, request_hash: str) -> IdempotencyKey | None:
    """Claim `key` for this request; return the earlier record if it exists."""
    lease = timedelta(seconds=current_app.config["IDEMPOTENCY_LEASE_SECONDS"])
    now = utcnow()
    db.session.add(IdempotencyKey(user_id=user_id, key=key, request_hash=request_hash, locked_until=now + lease))
    try:
        db.session.commit()
        return None
    except IntegrityError:
        db.session.rollback()
    existing = _earlier(user_id, key, request_hash)
    if existing is None:  # the other request failed and let the key go meanwhile
        return _claim(user_id, key, request_hash)
    if existing.response_status is not None:
        return existing
    # Still running, unless its lease ran out (the first request died): then
    # this request takes the key over.
    taken = db.session.execute(
        update(IdempotencyKey)
        .where(
            IdempotencyKey.id == existing.id,
            IdempotencyKey.response_status.is_(None),
            IdempotencyKey.locked_until < now,
        )
        .values(locked_until=now + lease)
    )
    db.session.commit()
    if taken.rowcount == 1:  # type: ignore[attr-defined]
        return None
    raise _in_flight()


def _kept(response: Response) -> bool:
    # Only successes are kept: a refused request wrote nothing, so running it
    # again is safe, and the client may fix what was wrong and retry.
    return 200 <= response.status_code < 300


def _stored(response: Response) -> dict[str, Any]:
    headers = {k: v for k, v in response.headers.items() if k in ("Content-Type", "Location", "ETag")}
    return {
        "response_status": response.status_code,
        "response_headers": json.dumps(headers),
        "response_body": response.get_data(),
        "locked_until": None,
    }


def _finish(user_id: int, key: str, response: Response) -> None:
    if _kept(response):
        db.session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.user_id == user_id, IdempotencyKey.key == key)
            .values(**_stored(response))
        )
        db.session.commit()
    else:
        _release(user_id, key)


def _release(user_id: int, key: str) -> None:
    db.session.execute(delete(IdempotencyKey).where(IdempotencyKey.user_id == user_id, IdempotencyKey.key == key))
    db.session.commit()


def _replay(record: IdempotencyKey) -> Response:
    response = Response(record.response_body, status=record.response_status)
    for name, value in json.loads(record.response_headers or "{}").items():
        response.headers[name] = value
    response.headers["Idempotent-Replayed"] = "true"
    return response


def _respond(view: Callable[..., Any], *args: Any, **kwargs: Any) -> Response:
    """The view's response, a refusal it raised included (its work rolled back)."""
    try:
        return make_response(view(*args, **kwargs))
    except (HTTPException, DomainError) as exc:
        db.session.rollback()
        return make_response(current_app.handle_user_exception(exc))


def _in_separate_transactions(view: Callable[..., Any], user_id: int, key: str, *args: Any, **kwargs: Any) -> Response:
    earlier = _claim(user_id, key, _request_hash())
    if earlier is not None:
        return _replay(earlier)
    try:
        response = _respond(view, *args, **kwargs)
    except Exception:
        db.session.rollback()
        _release(user_id, key)
        raise
    _finish(user_id, key, response)
    return response


def _in_one_transaction(view: Callable[..., Any], user_id: int, key: str, *args: Any, **kwargs: Any) -> Response:
    session = db.session()
    request_hash = _request_hash()
    # Held until this transaction ends: a repeat that finds it taken is in
    # flight, and one that takes it after the commit finds the response.
    if not session.scalar(_TRY_LOCK, {"lock": advisory_key(user_id, key)}):
        session.rollback()
        raise _in_flight()
    # The view runs before the key is looked up: a first use, by far the
    # most common, then costs one INSERT. A key used before is found when
    # that INSERT meets its record, or when the view refuses (a repeat of a
    # placed order after stock ran out is still its first answer).
    session.info[COMMIT_DEFERRED] = True
    try:
        response = _respond(view, *args, **kwargs)
    except Exception:
        session.rollback()
        raise
    finally:
        session.info.pop(COMMIT_DEFERRED, None)
    record = {"user_id": user_id, "key": key, "request_hash": request_hash, **_stored(response)}
    if _kept(response) and session.scalar(_RECORD, record) is not None:
        session.commit()
        return response
    try:
        earlier = _earlier(user_id, key, request_hash)
    except Invalid:
        session.rollback()
        raise
    if earlier is not None and earlier.response_status is not None:
        session.rollback()
        return _replay(earlier)
    if earlier is not None and earlier.locked_until is not None and earlier.locked_until >= utcnow():
        # A claim made the other way (another process of an earlier release):
        # in flight while its lease runs.
        session.rollback()
        raise _in_flight()
    if not _kept(response):
        session.rollback()
        return response
    # The key is free after all: a claim whose lease ran out is taken over,
    # and one released meanwhile is gone.
    if earlier is not None:
        session.delete(earlier)
        session.flush()
    if session.scalar(_RECORD, record) is None:  # claimed again meanwhile
        session.rollback()
        raise _in_flight()
    session.commit()
    return response


def _refuse_commit_while_deferred(session: Session) -> None:
    if session.info.get(COMMIT_DEFERRED):
        raise RuntimeError("A view under idempotent_in_one_transaction committed: its key would not be held")


def install() -> None:
    """Refuse a commit inside a view whose commit is its key's (a bug, caught by any test of it)."""
    if not event.contains(db.session, "before_commit", _refuse_commit_while_deferred):
        event.listen(db.session, "before_commit", _refuse_commit_while_deferred)


def idempotent(view: F) -> F:
    """Make a POST view replay its first response for a repeated key."""
    return _wrap(view, one_transaction=False)


def idempotent_in_one_transaction(view: F) -> F:
    """`idempotent`, for a view whose writes are one transaction it leaves
    uncommitted (`commit_keeping_state` only flushes within it): on
    PostgreSQL the key and the response are written in that transaction.
    On SQLite, one writer at a time, the key is claimed as by `idempotent`."""
    return _wrap(view, one_transaction=True)


def _wrap(view: F, *, one_transaction: bool) -> F:
    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        key = request.headers.get(HEADER)
        actor = optional_actor()
        if key is None or actor is None:
            return view(*args, **kwargs)
        if not key.strip() or len(key) > MAX_KEY_LENGTH:
            raise Invalid("The Idempotency-Key header is empty or too long.", {HEADER: ["1 to 255 characters."]})
        if one_transaction and db.session.get_bind().dialect.name == "postgresql":
            return _in_one_transaction(view, actor.user_id, key, *args, **kwargs)
        return _in_separate_transactions(view, actor.user_id, key, *args, **kwargs)

    # Documented as flask-smorest documents its own arguments; functools.wraps
    # shares the view's dict, so the header goes on a copy.
    doc = copy.deepcopy(getattr(view, "_apidoc", {}))
    doc.setdefault("arguments", {}).setdefault("parameters", []).append(dict(PARAMETER))
    doc["idempotent"] = True  # MarketBlueprint.route documents the in-flight 409
    wrapper._apidoc = doc  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]
