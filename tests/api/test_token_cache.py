"""A process remembers the tokens it checked for TOKEN_CACHE_SECONDS: a token
revoked through this process is refused at once, one revoked elsewhere
(another server process) within those seconds, and none outlives its own
expiry."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update

from market.accounts.models import ApiToken, Role
from market.auth import Actor, TokenCache
from market.db import utcnow
from market.extensions import db
from tests.factories import UserFactory, bearer, token_for


def revoke_elsewhere(token_id: int) -> None:
    """What another process revoking the token writes, on a connection of its own."""
    with db.engine.begin() as conn:
        conn.execute(update(ApiToken).where(ApiToken.id == token_id).values(revoked_at=utcnow()))


def me(client: FlaskClient, headers: dict[str, str]) -> int:
    return client.get("/api/v1/me", headers=headers).status_code


@pytest.mark.parametrize("app_overrides", [{"TOKEN_CACHE_SECONDS": 1}])
def test_a_token_revoked_by_another_process_is_refused_within_the_cache_seconds(client: FlaskClient) -> None:
    headers = bearer(token_for(UserFactory()))
    assert me(client, headers) == 200
    (token,) = client.get("/api/v1/auth/tokens", headers=headers).json["items"]
    revoke_elsewhere(token["id"])
    assert me(client, headers) == 200  # remembered: the database is not read
    time.sleep(1.2)
    assert me(client, headers) == 401


@pytest.mark.parametrize("app_overrides", [{"TOKEN_CACHE_SECONDS": 0}])
def test_without_the_cache_every_request_reads_the_token(client: FlaskClient) -> None:
    headers = bearer(token_for(UserFactory()))
    assert me(client, headers) == 200
    (token,) = client.get("/api/v1/auth/tokens", headers=headers).json["items"]
    revoke_elsewhere(token["id"])
    assert me(client, headers) == 401


def test_a_token_revoked_through_this_process_is_refused_at_once(client: FlaskClient) -> None:
    user = UserFactory()
    headers, other = bearer(token_for(user)), bearer(token_for(user))
    assert me(client, headers) == 200
    assert me(client, other) == 200
    tokens = client.get("/api/v1/auth/tokens", headers=other).json["items"]
    first = min(tokens, key=lambda t: t["id"])  # the older: the one `headers` holds
    assert client.delete(f"/api/v1/auth/tokens/{first['id']}", headers=other).status_code == 200
    assert me(client, headers) == 401
    assert me(client, other) == 200


def test_a_remembered_token_is_refused_once_it_expires(client: FlaskClient) -> None:
    headers = bearer(token_for(UserFactory(), ttl=timedelta(seconds=1)))
    assert me(client, headers) == 200
    time.sleep(1.2)
    assert me(client, headers) == 401


def test_a_read_that_began_before_the_revocation_does_not_remember_the_token(app: Flask) -> None:
    """Two threads of one process: one reads the token (not revoked yet)
    while the other revokes it and forgets it; the reader remembers it
    only after. The token must still be refused at once, not for the
    cache's seconds."""
    cache = TokenCache(60)
    actor = Actor(user_id=1, roles=frozenset({Role.BUYER}), token_id=1)
    expires = utcnow() + timedelta(days=1)
    cache.forget("hash-of-the-token")  # the revoking thread, after its commit
    cache.put("hash-of-the-token", actor, expires)  # the reading thread, with what it read before
    assert cache.get("hash-of-the-token") is None
    cache.put("hash-of-another", actor, expires)
    assert cache.get("hash-of-another") == actor
