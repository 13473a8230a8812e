from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

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
