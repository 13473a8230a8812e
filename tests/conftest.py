"""Test fixtures.

The suite runs on SQLite by default. With DATABASE_URL (PostgreSQL) and
REDIS_URL set, the same tests run there, and the integration tests that need
them run too. MARKET_REQUIRE_SERVICES=1 (set by .ci/run) turns "PostgreSQL or
Redis missing" from a skip into a failure.

Under pytest-xdist (the default, see pyproject.toml) each worker process
gets its own database (`test` -> `test_gw0`, created when missing), its own
Redis database number (REDIS_URL's plus the worker's index, so Celery
brokers and rate limits never mix) and its own temporary instance folder:
tests empty every table and purge the queue between tests, so two workers
must never share any of them. Without xdist the URLs are used as given.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask_migrate import upgrade
from sqlalchemy import create_engine, make_url, text

import config
from market import create_app
from market.extensions import db, limiter
from tests.shop import Shop, make_shop

REQUIRE_SERVICES = os.environ.get("MARKET_REQUIRE_SERVICES") == "1"
# "gw0", "gw1"... in a pytest-xdist worker; "" in a run without xdist.
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
WORKER_COUNT = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
REDIS_DATABASES = 16  # Redis' default `databases`: numbers 0-15


def worker_database_url(url: str, worker: str = WORKER) -> str:
    """The worker's own database: `test` -> `test_gw0` on PostgreSQL, `x.sqlite3` -> `x_gw0.sqlite3`."""
    if not url or not worker:
        return url
    parsed = make_url(config.load({"DATABASE_URL": url})["SQLALCHEMY_DATABASE_URI"])
    if parsed.get_backend_name() == "postgresql":
        parsed = parsed.set(database=f"{parsed.database}_{worker}")
    elif parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        path = Path(parsed.database)
        parsed = parsed.set(database=str(path.with_stem(f"{path.stem}_{worker}")))
    return parsed.render_as_string(hide_password=False)


def _redis_db(url: str) -> int:
    """The database number of a Redis URL: the path of redis:// and rediss://, `?db=` of unix://."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return int(parse_qs(parts.query).get("db", ["0"])[0])
    return int(parts.path.strip("/") or 0)


def _with_redis_db(url: str, number: int) -> str:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        query = {k: v for k, v in parse_qs(parts.query).items() if k != "db"} | {"db": [str(number)]}
        return f"unix://{parts.path}?{urlencode(query, doseq=True)}"
    return urlunsplit(parts._replace(path=f"/{number}"))


def redis_overflow(url: str, workers: int) -> str | None:
    """Why `workers` xdist workers cannot each have a Redis database from `url`'s on, if they cannot."""
    base = _redis_db(url)
    if base + workers <= REDIS_DATABASES:
        return None
    return (
        f"REDIS_URL={url} with {workers} xdist workers needs Redis databases {base}-{base + workers - 1}, "
        f"but Redis has 0-{REDIS_DATABASES - 1}: use a lower database number in REDIS_URL or fewer workers (-n)"
    )


def worker_redis_url(url: str, worker: str = WORKER, workers: int = WORKER_COUNT) -> str:
    """The worker's own Redis database: REDIS_URL's number plus the worker's index."""
    if not url or not worker:
        return url
    problem = redis_overflow(url, workers)
    if problem:
        raise pytest.UsageError(problem)
    # A worker that replaces a crashed one gets the next id (gw4 of 4): the
    # modulo hands it the crashed worker's database.
    index = int(worker.removeprefix("gw")) % workers
    return _with_redis_db(url, _redis_db(url) + index)


DATABASE_URL = worker_database_url(os.environ.get("DATABASE_URL", ""))
REDIS_URL = worker_redis_url(os.environ.get("REDIS_URL", ""))


def pytest_configure(config: pytest.Config) -> None:
    """Refuse, before starting any worker, more xdist workers than Redis has databases for."""
    workers = getattr(config.option, "numprocesses", None)
    redis_url = os.environ.get("REDIS_URL", "")
    if not WORKER and redis_url and isinstance(workers, int) and workers > 1:
        problem = redis_overflow(redis_url, workers)
        if problem:
            raise pytest.UsageError(problem)


def _database_url(tmp_root: Path) -> str:
    return config.load({"DATABASE_URL": DATABASE_URL or f"sqlite:///{tmp_root / 'test.sqlite3'}"})[
        "SQLALCHEMY_DATABASE_URI"
    ]


def is_postgres(url: str) -> bool:
    return url.startswith("postgresql")


def needs(service: str) -> None:
    """Skip (or, under .ci/run, fail) a test that needs `service`."""
    available = {"postgresql": is_postgres(DATABASE_URL), "redis": bool(REDIS_URL)}[service]
    if available:
        return
    message = f"needs {service}: set {'DATABASE_URL' if service == 'postgresql' else 'REDIS_URL'}"
    if REQUIRE_SERVICES:
        pytest.fail(message)
    pytest.skip(message)


def wait_for_backends(where: str, count: int, what: str) -> None:
    """Wait until `count` PostgreSQL backends of this database match `where`
    (a condition on pg_stat_activity), up to 30 s: on a busy machine the
    threads under test start late. Fails saying it never saw `what`."""
    query = text(f"SELECT count(*) FROM pg_stat_activity WHERE ({where}) AND datname = current_database()")  # noqa: S608 (the tests' own conditions)
    # Autocommit: a transaction reads pg_stat_activity once and keeps that
    # snapshot, so what was seen at the first look would stay all it sees.
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as watcher:
        for _ in range(1500):
            if watcher.execute(query).scalar() == count:
                return
            time.sleep(0.02)
    raise AssertionError(f"never saw {what}")


def _create_database(url: str) -> None:
    """Create the worker's PostgreSQL database unless it exists (through the `postgres` maintenance database)."""
    target = make_url(url)
    engine = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            exists = conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": target.database})
            if not exists:
                conn.execute(text(f"CREATE DATABASE {conn.dialect.identifier_preparer.quote(target.database)}"))
    finally:
        engine.dispose()


@pytest.fixture(scope="session", autouse=True)
def instance_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The app's instance folder (mailbox, embedded broker files), one per
    test process and never the checkout's `instance/`; the worker processes
    tests start inherit it."""
    path = tmp_path_factory.mktemp("instance")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MARKET_INSTANCE", str(path))
        yield path


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = _database_url(tmp_path_factory.mktemp("db"))
    if REQUIRE_SERVICES and not is_postgres(url):
        pytest.fail("MARKET_REQUIRE_SERVICES=1 but DATABASE_URL is not PostgreSQL")
    if is_postgres(url) and WORKER:
        _create_database(url)
    if is_postgres(url):
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        engine.dispose()
    migrate_to_head(url)
    return url


def migrate_to_head(url: str) -> None:
    app = create_app({"SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        upgrade(directory=str(config.ROOT / "migrations"))
        db.engine.dispose()


def settings_for(database_url: str) -> dict[str, Any]:
    broker = REDIS_URL or "memory://"
    settings = config.load(
        {
            "DATABASE_URL": database_url,
            "REDIS_URL": REDIS_URL,
            "SECRET_KEY": "test",
            "MARKET_INSTANCE": os.environ.get("MARKET_INSTANCE", ""),
        }
    )
    settings["CELERY"]["broker_url"] = broker
    settings["TESTING"] = True
    return settings


@pytest.fixture
def app_overrides() -> dict[str, Any]:
    """Settings a test module changes for its app (override this fixture)."""
    return {}


@pytest.fixture
def app(database_url: str, app_overrides: dict[str, Any]) -> Iterator[Flask]:
    app = create_app(settings_for(database_url) | app_overrides)
    with app.app_context():
        limiter.reset()
        yield app
        db.session.remove()
        empty_tables()
        db.engine.dispose()


# Ids start again at 1 in each test, as with TRUNCATE ... RESTART IDENTITY.
RESTART_SEQUENCES = (
    "SELECT setval(c.oid, 1, false) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE c.relkind = 'S' AND n.nspname = current_schema()"
)


def empty_tables() -> None:
    """Empty every table after a test, children first. On PostgreSQL one
    round trip of DELETEs and a sequence reset: a test leaves a few rows,
    and TRUNCATE of every table (new files for each) costs 40 times as much."""
    tables = list(reversed(db.metadata.sorted_tables))
    with db.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            deletes = [str(table.delete().compile(dialect=conn.dialect)) for table in tables]
            conn.exec_driver_sql("; ".join([*deletes, RESTART_SEQUENCES]))
        else:
            for table in tables:
                conn.execute(table.delete())


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def shop(app: Flask) -> Shop:
    return make_shop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Show what tests recorded as `counts` (`record_property("counts", {...})`):
    how many requests a property test sent, say, and how they were answered.
    Recorded properties travel from xdist's workers with each report."""
    lines = [
        f"{report.nodeid}: {value}"
        for reports in terminalreporter.stats.values()
        for report in reports
        if getattr(report, "when", None) == "call"
        for name, value in getattr(report, "user_properties", ())
        if name == "counts"
    ]
    if lines:
        terminalreporter.write_sep("-", "counts")
        for line in lines:
            terminalreporter.write_line(line)
