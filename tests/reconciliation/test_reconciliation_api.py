"""The reconciliation API: who may use it, what a period must be, and
repeated requests."""

from __future__ import annotations

from datetime import timedelta

from flask.testing import FlaskClient
from sqlalchemy import func, select

from market.db import utcnow
from market.extensions import db
from market.reconciliation.models import ReconciliationRun
from tests.shop import Shop


def period(days_ago: int = 2, length: int = 1) -> dict[str, str]:
    start = utcnow() - timedelta(days=days_ago)
    return {"period_start": start.isoformat(), "period_end": (start + timedelta(days=length)).isoformat()}


def test_only_operators_reconcile(client: FlaskClient, shop: Shop) -> None:
    for headers in (shop.buyer_h, shop.orchard_h):
        assert client.post("/api/v1/reconciliations", json=period(), headers=headers).status_code == 403
        assert client.get("/api/v1/reconciliations", headers=headers).status_code == 403
    assert client.get("/api/v1/reconciliations").status_code == 401


def test_a_period_must_have_ended_and_end_after_it_starts(client: FlaskClient, shop: Shop) -> None:
    future = client.post("/api/v1/reconciliations", json=period(days_ago=0), headers=shop.operator_h)
    assert future.status_code == 422
    assert "period_end" in future.json["errors"]
    backwards = period()
    backwards["period_start"], backwards["period_end"] = backwards["period_end"], backwards["period_start"]
    reversed_ = client.post("/api/v1/reconciliations", json=backwards, headers=shop.operator_h)
    assert reversed_.status_code == 422
    assert "period_end" in reversed_.json["errors"]
    ancient = client.post(
        "/api/v1/reconciliations",
        json={"period_start": "0001-01-01T00:00:00Z", "period_end": "1980-01-01T00:00:00Z"},
        headers=shop.operator_h,
    )
    assert ancient.status_code == 422
    assert db.session.scalar(select(func.count(ReconciliationRun.id))) == 0


def test_a_repeated_key_starts_one_run(client: FlaskClient, shop: Shop) -> None:
    headers = shop.operator_h | {"Idempotency-Key": "recon-1"}
    body = period()
    first = client.post("/api/v1/reconciliations", json=body, headers=headers)
    again = client.post("/api/v1/reconciliations", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json == first.json
    assert first.json["status"] == "pending"
    listed = client.get("/api/v1/reconciliations", headers=shop.operator_h).json
    assert [run["id"] for run in listed["items"]] == [first.json["id"]]


def test_unknown_runs_and_items_are_404(client: FlaskClient, shop: Shop) -> None:
    run_id = client.post("/api/v1/reconciliations", json=period(), headers=shop.operator_h).json["id"]
    assert client.get(f"/api/v1/reconciliations/{run_id + 1}", headers=shop.operator_h).status_code == 404
    assert client.get(f"/api/v1/reconciliations/{run_id + 1}/items", headers=shop.operator_h).status_code == 404
    assert client.get(f"/api/v1/reconciliations/{run_id + 1}/items.csv", headers=shop.operator_h).status_code == 404
    missing = client.post(
        f"/api/v1/reconciliations/{run_id}/items/1/resolve", json={"note": "x"}, headers=shop.operator_h
    )
    assert missing.status_code == 404
