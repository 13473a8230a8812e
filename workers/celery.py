"""The Celery entry point for `celery -A workers worker|beat`."""

from celery.signals import worker_process_init

from market import create_app
from market.extensions import db
from workers import configure

flask_app = create_app()
app = configure(flask_app.extensions["celery"], flask_app)


@worker_process_init.connect
def _own_connections(**_: object) -> None:
    """A pool process starts with none of the database connections of the
    worker it was forked from: two processes on one connection mix up each
    other's statements and results. The worker's own process holds some
    while its outbox listener runs (OUTBOX_RELAY=workers); they stay open
    for it."""
    with flask_app.app_context():
        db.engine.dispose(close=False)
