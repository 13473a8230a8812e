from tests.payments.conftest import fake_stripe, stripe_server  # noqa: F401 (fixtures for this package)
from tests.workers.conftest import celery_app, worker  # noqa: F401 (fixtures for this package)
