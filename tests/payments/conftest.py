from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

import config
from tests.conftest import DATABASE_URL, REDIS_URL
from tests.fakes.stripe_server import FakeStripe, FakeStripeServer
from tests.workers.conftest import celery_app, worker  # noqa: F401 (fixtures for this package)

WEBHOOK_SECRET = "whsec_test_secret"


@pytest.fixture
def stripe_server() -> Iterator[FakeStripeServer]:
    with FakeStripeServer() as server:
        yield server


@pytest.fixture
def fake_stripe(stripe_server: FakeStripeServer) -> FakeStripe:
    return stripe_server.fake


def stripe_settings(server: FakeStripeServer) -> dict[str, Any]:
    return {
        "STRIPE_SECRET_KEY": "sk_test_fake",
        "STRIPE_API_BASE": server.url,
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
    }


def _process_env(server: FakeStripeServer, env: dict[str, str]) -> dict[str, str]:
    """A real process's environment: the test database and Redis, the fake Stripe."""
    return (
        os.environ
        | {
            "DATABASE_URL": DATABASE_URL,
            "REDIS_URL": REDIS_URL,
            "STRIPE_SECRET_KEY": "sk_test_fake",
            "STRIPE_API_BASE": server.url,
            "CELERY_VISIBILITY_TIMEOUT": "3",
        }
        | env
    )


def start_worker_process(server: FakeStripeServer, *options: str, **env: str) -> subprocess.Popen[bytes]:
    """A real `celery -A workers worker` process against the fake Stripe, on
    the test database and Redis, that a test may SIGKILL mid-task (a message
    it held comes back after CELERY_VISIBILITY_TIMEOUT); with the solo pool
    unless `options` say otherwise."""
    command = [sys.executable, "-m", "celery", "-A", "workers", "worker", *(options or ["--pool=solo"])]
    return subprocess.Popen(  # noqa: S603 (our own command line)
        [*command, "--loglevel=WARNING"], cwd=config.ROOT, env=_process_env(server, env)
    )


def start_relay_process(server: FakeStripeServer, **env: str) -> subprocess.Popen[bytes]:
    """A real `flask --app wsgi relay` process (OUTBOX_RELAY=listener), as
    `start_worker_process` starts a worker."""
    return subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "wsgi", "relay"],
        cwd=config.ROOT,
        env=_process_env(server, {"OUTBOX_RELAY": "listener", **env}),
    )
