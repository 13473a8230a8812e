"""The README's run command: API, worker and beat on the embedded default
(SQLite and the SQLite-backed broker), started and stopped together."""

from __future__ import annotations

import json
import mailbox
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import config
from tests.ports import free_port

BOOT_SECONDS = 120  # a loaded CI machine boots API, worker and beat slowly


def get(url: str, token: str | None = None, body: dict[str, object] | None = None) -> tuple[int, dict[str, object]]:
    """GET `url`, or POST `body` as JSON to it."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = None
    if body is not None:
        headers["Content-Type"] = "application/json"
        data = json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=2) as response:  # noqa: S310 (a loopback URL)
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_serve_runs_api_worker_and_beat_until_interrupted(tmp_path: Path, stop: signal.Signals) -> None:
    """Stopped by Ctrl-C, or by SIGTERM as a process manager stops it: the
    API, worker and beat stop with it either way."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL")}
    env |= {"MARKET_INSTANCE": str(tmp_path), "OUTBOX_RELAY_INTERVAL_SECONDS": "1"}
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: S603 (our own command)
            [sys.executable, "-m", "flask", "--app", "wsgi", "serve", "--port", str(port)],
            cwd=config.ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + BOOT_SECONDS
        status = 0
        while time.monotonic() < deadline and status != 200:
            time.sleep(0.5)
            try:
                status, _ = get(f"http://127.0.0.1:{port}/readyz")
            except OSError:
                continue
        output = log.read_text()
        assert status == 200, output

        console = f"Operator console on http://127.0.0.1:{port}/console/ ; sign in as operator@farm-market.test"
        assert console in output
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/console/sign-in", timeout=2) as page:
            assert page.status == 200
            cookie = page.headers["Set-Cookie"] or ""
            assert "HttpOnly" in cookie and "Secure" not in cookie  # served over plain http

        token = next(line.split()[1] for line in output.splitlines() if "buyer@farm-market.test" in line)
        status, me = get(f"http://127.0.0.1:{port}/api/v1/me", token)
        assert status == 200
        assert me["email"] == "buyer@farm-market.test"

        # An order placed by the demo buyer: its farmer's SMS lands in the
        # mailbox file, as the README says, since the demo accounts have phones.
        with sqlite3.connect(tmp_path / "market.sqlite3") as database:
            listing_id, farmer_phone = database.execute(
                "SELECT listings.id, users.phone FROM listings JOIN farms ON farms.id = listings.farm_id "
                "JOIN users ON users.id = farms.owner_id WHERE listings.sku = 'XW-NAVEL-80'"
            ).fetchone()
            (station_id,) = database.execute(
                "SELECT id FROM fulfilment_points WHERE name = '吉潭镇上车村服务站'"
            ).fetchone()
        status, order = get(
            f"http://127.0.0.1:{port}/api/v1/orders",
            token,
            {"lines": [{"listing_id": listing_id, "grams": 5000}], "fulfilment_point_id": station_id},
        )
        assert status == 201, order
        assert farmer_phone

        def texted() -> bool:
            path = tmp_path / "outbox.mbox"
            return path.exists() and any(
                message["X-Market-Channel"] == "sms" and message["To"] == farmer_phone for message in mailbox.mbox(path)
            )

        assert_eventually(texted, timeout=60)

        # Beat schedules the outbox relay and the worker runs it.
        assert_eventually(lambda: "Task outbox.relay" in log.read_text() and "succeeded" in log.read_text())
        assert (tmp_path / "market.sqlite3").exists()
        assert (tmp_path / "broker.sqlite3").exists()
    finally:
        process.send_signal(stop)
        process.wait(timeout=30)
    assert_all_stopped(log.read_text(), port, tmp_path, stop)


def assert_all_stopped(output: str, port: int, instance: Path, stop: signal.Signals) -> None:
    assert "worker: Warm shutdown" in output
    assert "Shutting down: Master" in output  # gunicorn
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, f"the API still listens after {stop.name}"
    beat = subprocess.run(["pgrep", "-f", str(instance / "celerybeat-schedule")], capture_output=True, check=False)  # noqa: S603, S607
    assert beat.returncode == 1, f"beat still runs after {stop.name}"


def assert_eventually(predicate, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError("condition not met in time")
