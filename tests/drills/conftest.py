from tests.payments.conftest import fake_stripe, stripe_server  # noqa: F401 (fixtures for the drills)
from tests.workers.conftest import celery_app, private_redis, worker  # noqa: F401
