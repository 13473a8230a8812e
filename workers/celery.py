"""The Celery entry point for `celery -A workers worker|beat`."""

from market import create_app
from workers import configure

flask_app = create_app()
app = configure(flask_app.extensions["celery"], flask_app)
