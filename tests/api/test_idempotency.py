"""The Idempotency-Key mechanism, on a POST that really writes (a token)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from flask import Flask, request
from flask.testing import FlaskClient
from sqlalchemy import func, select

from market.accounts import service as accounts
from market.accounts.models import ApiToken, Role
from market.auth import current_actor
from market.extensions import db
from market.idempotency import IdempotencyKey, idempotent
from tests.factories import user_with_token

release = threading.Event()


@pytest.fixture
def mint(app: Flask) -> str:
    """POST /api/v1/test-mint issues a token for the caller: a real write."""
    release.set()

    @app.post("/api/v1/test-mint")
    @idempotent
    def test_mint() -> tuple[dict[str, object], int]:
        release.wait(timeout=10)
        body = request.get_json()
        issued = accounts.issue_token(current_actor().user_id, name=body.get("name", "x"), ttl=timedelta(days=1))
        if body.get("fail"):
            return {"type": "about:blank", "title": "refused", "status": 400}, 400
        return {"id": issued.token.id, "name": body.get("name")}, 201

    return "/api/v1/test-mint"


def tokens() -> int:
    return db.session.scalar(select(func.count()).select_from(ApiToken)) or 0


def test_same_key_and_body_replays_the_first_response(client: FlaskClient, mint: str) -> None:
    _, headers = user_with_token(Role.FARMER)
    before = tokens()
    first = client.post(mint, json={"name": "a"}, headers={**headers, "Idempotency-Key": "k1"})
    again = client.post(mint, json={"name": "a"}, headers={**headers, "Idempotency-Key": "k1"})
    assert first.status_code == again.status_code == 201
    assert first.json == again.json
    assert again.headers["Idempotent-Replayed"] == "true"
    assert tokens() == before + 1


def test_same_key_with_another_body_is_422(client: FlaskClient, mint: str) -> None:
    _, headers = user_with_token(Role.FARMER)
    client.post(mint, json={"name": "a"}, headers={**headers, "Idempotency-Key": "k1"})
    before = tokens()
    other = client.post(mint, json={"name": "b"}, headers={**headers, "Idempotency-Key": "k1"})
    assert other.status_code == 422
    assert other.content_type == "application/problem+json"
    assert "Idempotency-Key" in other.json["errors"]
    assert tokens() == before


def test_keys_are_per_user(client: FlaskClient, mint: str) -> None:
    _, alice = user_with_token(Role.FARMER)
    _, bob = user_with_token(Role.FARMER)
    a = client.post(mint, json={"name": "a"}, headers={**alice, "Idempotency-Key": "shared"})
    b = client.post(mint, json={"name": "a"}, headers={**bob, "Idempotency-Key": "shared"})
    assert a.json["id"] != b.json["id"]


def test_failed_request_keeps_no_key(client: FlaskClient, mint: str) -> None:
    _, headers = user_with_token(Role.FARMER)
    failed = client.post(mint, json={"name": "a", "fail": True}, headers={**headers, "Idempotency-Key": "k"})
    assert failed.status_code == 400
    assert db.session.scalar(select(func.count()).select_from(IdempotencyKey)) == 0


def test_second_request_while_first_runs_is_409(app: Flask, mint: str) -> None:
    _, headers = user_with_token(Role.FARMER)
    release.clear()
    results: list[int] = []

    def first() -> None:
        with app.test_client() as c:
            results.append(c.post(mint, json={"name": "a"}, headers={**headers, "Idempotency-Key": "slow"}).status_code)

    thread = threading.Thread(target=first)
    thread.start()
    try:
        for _ in range(100):
            if db.session.scalar(select(func.count()).select_from(IdempotencyKey)):
                break
            threading.Event().wait(0.02)
        with app.test_client() as c:
            second = c.post(mint, json={"name": "a"}, headers={**headers, "Idempotency-Key": "slow"})
        assert second.status_code == 409
        assert second.content_type == "application/problem+json"
        assert second.headers["Retry-After"] == "1"
        assert "still being processed" in second.json["detail"]
    finally:
        release.set()
        thread.join()
    assert results == [201]
