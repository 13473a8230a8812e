"""A real Celery worker (in a thread of this process) on Redis."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest
from celery import Celery
from celery.contrib.testing.worker import start_worker
from flask import Flask

from tests.conftest import needs
from tests.ports import free_port
from workers import configure


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


@pytest.fixture
def celery_app(app: Flask) -> Celery:
    needs("redis")
    celery: Celery = app.extensions["celery"]
    configure(celery, app)
    celery.control.purge()
    return celery


@pytest.fixture
def worker(celery_app: Celery) -> Iterator[object]:
    with start_worker(celery_app, pool="solo", perform_ping_check=False, shutdown_timeout=10) as controller:
        yield controller


class RedisServer:
    """A private redis-server, so a test can take the broker down and up."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed"
        self.process = subprocess.Popen(  # noqa: S603 (a fixed local binary)
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        assert wait_for(self._accepting, timeout=5), "redis-server did not start"

    def _accepting(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
        except OSError:
            return False
        return True

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=5)
            self.process = None


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    needs("redis")
    server = RedisServer()
    yield server
    server.stop()
