"""Domain exceptions and their `application/problem+json` rendering (RFC 9457).

Services raise the exceptions below; one handler turns each into a problem
document. HTTP errors from Flask, webargs and Flask-Limiter go through the same
renderer, so no HTML page or stack trace ever leaves the API.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, json, request
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import OperationalError as DatabaseUnavailable
from werkzeug.exceptions import HTTPException, InternalServerError

PROBLEM_JSON = "application/problem+json"
# How long a client should wait before retrying after losing the database:
# the pool reconnects on the next checkout, so a retry soon after succeeds.
DATABASE_RETRY_AFTER_SECONDS = 1
log = logging.getLogger(__name__)


class DomainError(Exception):
    """A business rule refused the operation; nothing was written."""

    status = 400
    slug = "bad-request"
    title = "Bad request"

    def __init__(self, detail: str, errors: Mapping[str, Any] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = dict(errors) if errors else None
        self.extra = extra


class NotFound(DomainError):
    status = 404
    slug = "not-found"
    title = "Not found"


class Unauthenticated(DomainError):
    status = 401
    slug = "unauthenticated"
    title = "Authentication required"


class NotAllowed(DomainError):
    status = 403
    slug = "forbidden"
    title = "Not allowed"


class Conflict(DomainError):
    status = 409
    slug = "conflict"
    title = "Conflict"


class NotReadyYet(Conflict):
    """What was asked for is still being made or changed (by a worker, or
    by the same request sent earlier): asked again in `retry_after`
    seconds, the same request should succeed. Answered with Retry-After."""

    slug = "not-ready-yet"
    title = "Not ready yet"

    def __init__(self, detail: str, *, retry_after: int, **extra: Any) -> None:
        super().__init__(detail, retry_after=retry_after, **extra)
        self.retry_after = retry_after


class InvalidTransition(Conflict):
    slug = "invalid-transition"
    title = "Invalid state transition"


class Invalid(DomainError):
    """Input that is well-formed but breaks a rule; `errors` maps field -> messages."""

    status = 422
    slug = "validation-error"
    title = "Validation failed"


class RateLimited(DomainError):
    """Too many tries of something; `retry_after` seconds until the next may pass."""

    status = 429
    slug = "rate-limited"
    title = "Too many requests"

    def __init__(self, detail: str, *, retry_after: int, **extra: Any) -> None:
        # In the body too: a limiter on the same endpoint may raise the
        # Retry-After header to when its own window ends.
        super().__init__(detail, retry_after=retry_after, **extra)
        self.retry_after = retry_after


class ServiceUnavailable(DomainError):
    status = 503
    slug = "service-unavailable"
    title = "Service unavailable"


def field_errors(errors: Mapping[Any, Any], prefix: str = "") -> dict[str, Any]:
    """Messages by field as one flat map, a nested field named by its dotted
    path: marshmallow's `{"lines": {0: {"grams": [...]}}}` is
    `{"lines.0.grams": [...]}`. Messages about a whole nested object
    (marshmallow's `_schema`) are under the object's own path."""
    flat: dict[str, Any] = {}
    for key, value in errors.items():
        path = prefix if key == "_schema" and prefix else ".".join(filter(None, (prefix, str(key))))
        if isinstance(value, Mapping):
            for field, messages in field_errors(value, path).items():
                flat[field] = _merged(flat.get(field), messages)
        else:
            flat[path] = _merged(flat.get(path), value)
    return flat


def _merged(before: Any, messages: Any) -> Any:
    if before is None:
        return messages
    return [*_as_list(before), *_as_list(messages)]


def _as_list(messages: Any) -> list[Any]:
    return list(messages) if isinstance(messages, list) else [messages]


def problem(
    status: int,
    title: str,
    detail: str | None = None,
    *,
    slug: str | None = None,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> Response:
    body: dict[str, Any] = {
        "type": f"/problems/{slug}" if slug else "about:blank",
        "title": title,
        "status": status,
    }
    if detail:
        body["detail"] = detail
    body["instance"] = request.path
    if isinstance(extra.get("errors"), Mapping):
        extra["errors"] = field_errors(extra["errors"])
    body.update({k: v for k, v in extra.items() if v is not None})
    response = Response(json.dumps(body), status=status, mimetype=PROBLEM_JSON)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _flatten_webargs(errors: Mapping[str, Any]) -> dict[str, Any]:
    """webargs nests messages under the location ("json", "query"); callers
    care about the field, so lift the fields to the top (keeping the location
    only where two locations are involved)."""
    if len(errors) == 1:
        (only,) = errors.values()
        return dict(only) if isinstance(only, Mapping) else {"_schema": only}
    flat: dict[str, Any] = {}
    for location, fields in errors.items():
        if isinstance(fields, Mapping):
            for field, messages in fields.items():
                flat[f"{location}.{field}"] = messages
        else:
            flat[location] = fields
    return flat


def handle_domain_error(error: DomainError) -> Response:
    headers = {}
    if isinstance(error, Unauthenticated):
        headers["WWW-Authenticate"] = 'Bearer realm="market"'
    if isinstance(error, (RateLimited, NotReadyYet)):
        headers["Retry-After"] = str(error.retry_after)
    return problem(
        error.status, error.title, error.detail, slug=error.slug, headers=headers, errors=error.errors, **error.extra
    )


def handle_http_exception(error: HTTPException) -> Response:
    status = error.code or 500
    data = getattr(error, "data", None) or {}
    # Keep what the exception itself says in headers (Allow on 405,
    # Retry-After on 429), but never its HTML content type.
    headers = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
    headers.update(data.get("headers") or {})
    if status == 401:
        headers.setdefault("WWW-Authenticate", 'Bearer realm="market"')
    errors = data.get("messages") or data.get("errors")
    if status == 422 and errors:
        return problem(
            422,
            "Validation failed",
            "The request has invalid or unknown fields; see errors.",
            slug="validation-error",
            headers=headers,
            errors=_flatten_webargs(errors),
        )
    detail = data.get("message") or error.description
    if status >= 500:
        detail = "The server could not complete the request; it has been logged."
    return problem(status, error.name, detail, headers=headers)


def handle_database_error(error: DBAPIError) -> Response:
    """The connection was lost (the server restarted or ended our backend)
    or PostgreSQL gave up on the transaction (deadlock, lock timeout): the
    transaction rolled back whole, so the request can be retried as it was.
    Any other database error is a bug: a 500."""
    if not (error.connection_invalidated or isinstance(error, DatabaseUnavailable)):
        return handle_unexpected(error)
    from market.extensions import db  # noqa: PLC0415 (market.extensions imports market.api, which imports this module)

    log.warning("database unavailable on %s %s: %s", request.method, request.path, error.orig)
    # The session held the lost connection; roll it back so the next use of
    # this session checks out a fresh one. The rollback can itself fail on
    # what is left of the connection (psycopg: "another command is already
    # in progress"); then drop the connection without asking the server.
    try:
        db.session.rollback()
    except DBAPIError:
        db.session().invalidate()
    return problem(
        503,
        "Service unavailable",
        "The database connection was lost; nothing was changed. Retry the request.",
        slug="database-unavailable",
        headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
    )


def handle_unexpected(error: Exception) -> Response:
    if isinstance(error, HTTPException):
        return handle_http_exception(error)
    log.exception("unhandled error on %s %s", request.method, request.path)
    return handle_http_exception(InternalServerError())


def register(app: Flask) -> None:
    app.register_error_handler(DomainError, handle_domain_error)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(DBAPIError, handle_database_error)
    app.register_error_handler(Exception, handle_unexpected)
