"""Liveness and readiness probes for load balancers and the run command."""

from __future__ import annotations

from typing import Any

from celery import Celery
from flask import Blueprint, Response, current_app
from sqlalchemy import text

from market.errors import problem
from market.extensions import db

blp = Blueprint("health", __name__)


@blp.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


def _check_database() -> str | None:
    try:
        db.session.execute(text("SELECT 1"))
    except Exception as exc:  # any driver error means "not ready"
        db.session.rollback()
        return f"{type(exc).__name__}: {exc}"[:300]
    return None


def _check_broker() -> str | None:
    celery: Celery = current_app.extensions["celery"]
    try:
        with celery.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except Exception as exc:  # kombu raises per transport; all mean "not ready"
        return f"{type(exc).__name__}: {exc}"[:300]
    return None


@blp.get("/readyz")
def readyz() -> Response | tuple[dict[str, Any], int]:
    checks = {"database": _check_database(), "broker": _check_broker()}
    summary = {name: "failed" if error else "ok" for name, error in checks.items()}
    failed = "; ".join(f"{name}: {error}" for name, error in checks.items() if error)
    if failed:
        return problem(503, "Not ready", failed, slug="not-ready", checks=summary)
    return {"status": "ready", "checks": summary}, 200
