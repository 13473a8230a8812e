"""Extensions, created without an app and bound in `create_app`."""

from __future__ import annotations

import time
from typing import Any

from celery import Celery, Task
from flask import Flask, Response
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

from market.api import MarketApi

# Named constraints, so migrations can drop and alter them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


db = SQLAlchemy(model_class=Base)
migrate = Migrate()
api = MarketApi()
limiter = Limiter(key_func=get_remote_address, default_limits=[])
# The console's forms; the API takes bearer tokens and needs none.
csrf = CSRFProtect()


def rate_limit_headers(response: Response) -> Response:
    """Every answer of a rate-limited endpoint says its limit, what is left
    of it and when it resets (X-RateLimit-Limit, -Remaining, -Reset, Unix
    seconds); only a 429 says to wait (Retry-After, in seconds, the longer
    of the limit's window and any lock the refusal itself gave).
    Flask-Limiter's own headers (RATELIMIT_HEADERS_ENABLED, off) put
    Retry-After on every answer, and raised the Retry-After of a 409 or 503
    to the window's end."""
    current = limiter.current_limit if limiter.enabled else None
    if current is None:
        return response
    reset_at = current.reset_at
    response.headers["X-RateLimit-Limit"] = str(current.limit.amount)
    response.headers["X-RateLimit-Remaining"] = str(current.remaining)
    response.headers["X-RateLimit-Reset"] = str(reset_at)
    if response.status_code == 429:
        own = response.headers.get("Retry-After", "")
        wait = max(reset_at - int(time.time()), int(own) if own.isdigit() else 0, 1)
        response.headers["Retry-After"] = str(wait)
    return response


class TransientError(Exception):
    """A failure worth retrying: a network blip, a 5xx from a provider."""


def celery_init_app(app: Flask) -> Celery:
    """Bind a Celery app whose tasks run inside this Flask app's context.

    Tasks are retried with exponential backoff on `TransientError`; every task
    is acknowledged late so a worker killed mid-task hands it to another.
    """

    class FlaskTask(Task):
        autoretry_for = (TransientError,)
        retry_backoff = 2
        retry_backoff_max = 600
        retry_jitter = True
        max_retries = 8

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            with app.app_context():
                try:
                    return self.run(*args, **kwargs)
                finally:
                    db.session.remove()

    celery = Celery(app.import_name, task_cls=FlaskTask, include=["workers.tasks"])
    celery.config_from_object(app.config["CELERY"])
    app.extensions["celery"] = celery
    return celery
