"""`flask --app wsgi ...` commands: operators, demo data, and the one-command run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType

import click
from flask import Flask, current_app
from flask_migrate import upgrade

import config
from market import demo, outbox
from market.accounts import service as accounts
from market.settlement import checks


def register(app: Flask) -> None:
    app.cli.add_command(create_operator)
    app.cli.add_command(seed_demo)
    app.cli.add_command(serve)
    app.cli.add_command(relay)
    app.cli.add_command(ledger_check)


@click.command("create-operator")
@click.option("--email", required=True)
@click.option("--name", required=True)
@click.password_option()
def create_operator(email: str, name: str, password: str) -> None:
    """Create an operator account (operators cannot self-register)."""
    user = accounts.create_operator(email=email, password=password, name=name)
    click.echo(f"operator {user.id} <{user.email}> created")


@click.command("seed-demo")
def seed_demo() -> None:
    """Add the demo accounts and catalogue (once) and print fresh demo tokens."""
    _print_demo(demo.seed())


def _print_demo(tokens: dict[str, str], base_url: str = "http://127.0.0.1:8000") -> None:
    click.echo(f"\nDemo accounts (password for all: {demo.PASSWORD}):")
    for email, token in tokens.items():
        click.echo(f"  {email:<28} {token}")
    first = next(iter(tokens.values()))
    click.echo(f'\nTry:  curl -H "Authorization: Bearer {first}" {base_url}/api/v1/me\n')


@click.command("ledger-check")
def ledger_check() -> None:
    """Check the settlement invariants (docs/settlement.md): every order's
    money, every sponsor budget, every farm's earnings against its payouts
    and payable, every order part's totals against its entries, every
    payout against what it settled, a balanced ledger;
    exit 1 and list every mismatch, naming what breaks it, otherwise."""
    problems = checks.check_ledger()
    for problem in problems:
        click.echo(problem, err=True)
    if problems:
        raise SystemExit(1)
    click.echo(
        "settlement consistent: every transaction balances; every order, sponsor budget, farm, order part, "
        "payout and station's cash matches its records"
    )


def _stopped_by_signals() -> threading.Event:
    """An event set by SIGTERM (a process manager stopping this) or SIGINT
    (Ctrl-C; also `kill -INT` where the shell started it ignoring SIGINT)."""
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    return stop


@click.command("relay")
def relay() -> None:
    """Publish committed outbox rows to the broker until stopped (SIGTERM or
    Ctrl-C): the relay process of OUTBOX_RELAY=listener, woken by
    PostgreSQL's NOTIFY at each commit (docs/reliability.md). Any number may
    run; each row is published once."""
    stop = _stopped_by_signals()
    click.echo(f"relay: publishing outbox rows to {current_app.config['CELERY']['broker_url']}")
    outbox.listen(current_app._get_current_object(), stop)  # type: ignore[attr-defined]


@click.command("serve")
@click.option("--port", default=8000, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
def serve(port: int, host: str) -> None:
    """Migrate, seed demo data, then run the API, a Celery worker and beat
    (and with OUTBOX_RELAY=listener the relay) together until interrupted
    (Ctrl-C or SIGTERM stops them all)."""
    upgrade(directory=str(config.ROOT / "migrations"))
    tokens = demo.seed()
    click.echo(f"database: {current_app.config['SQLALCHEMY_DATABASE_URI']}")
    click.echo(f"broker:   {current_app.config['CELERY']['broker_url']}")
    python = sys.executable
    commands = {
        "worker": [python, "-m", "celery", "-A", "workers", "worker", "--loglevel=INFO", "--concurrency=2"],
        "beat": [
            python, "-m", "celery", "-A", "workers", "beat", "--loglevel=INFO",
            "--schedule", str(Path(current_app.instance_path) / "celerybeat-schedule"),
        ],
        "api": [
            python, "-m", "gunicorn", "wsgi:app", "--bind", f"{host}:{port}",
            "--workers", "2", "--threads", "4", "--access-logfile", "-",
        ],
    }  # fmt: skip
    if current_app.config["OUTBOX_RELAY"] == "listener":
        commands["relay"] = [python, "-m", "flask", "--app", "wsgi", "relay"]
    # Served over plain http: the console's cookie must travel without TLS.
    env = {"CONSOLE_INSECURE_COOKIE": "true", **os.environ}
    # Stopped by Ctrl-C or by SIGTERM alike: either way the others stop with it.
    stop = _stopped_by_signals()
    processes = {
        name: subprocess.Popen(cmd, cwd=config.ROOT, env=env)  # noqa: S603 (our own fixed commands)
        for name, cmd in commands.items()
    }
    _print_demo(tokens, f"http://{host}:{port}")
    click.echo(f"Operator console on http://{host}:{port}/console/ ; sign in as {demo.OPERATOR_EMAIL}, {demo.PASSWORD}")
    click.echo(f"API on http://{host}:{port}/api/v1/docs ; Ctrl-C stops everything.")
    try:
        while not stop.wait(0.5):
            stopped = [name for name, p in processes.items() if p.poll() is not None]
            if stopped:
                click.echo(f"{', '.join(stopped)} stopped; stopping the rest", err=True)
                break
    finally:
        for p in processes.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for p in processes.values():
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
