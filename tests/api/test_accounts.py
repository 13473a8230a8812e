from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event, func, select, update

from market.accounts.models import ApiToken, Role, User
from market.accounts.service import WRONG_LOGIN
from market.auth import LAST_USED_GRANULARITY, USES_KEY
from market.db import utcnow
from market.extensions import db
from tests.factories import PASSWORD, UserFactory, bearer, register_confirmed, token_for, user_with_token

REGISTRATION = {"email": "Mei@Example.test", "password": "a long secret", "name": "Mei", "roles": ["farmer"]}


def count(model: type) -> int:
    return db.session.scalar(select(func.count()).select_from(model)) or 0


def test_register_confirm_then_login_then_me(client: FlaskClient) -> None:
    created = register_confirmed(client, REGISTRATION)
    assert created["email"] == "mei@example.test"
    assert created["roles"] == ["farmer"]
    assert "password" not in created

    login = client.post("/api/v1/auth/tokens", json={"email": "mei@example.test", "password": "a long secret"})
    assert login.status_code == 201
    token = login.json["token"]
    assert token.startswith("fm_") and login.json["prefix"] == token[:9]

    me = client.get("/api/v1/me", headers=bearer(token))
    assert me.status_code == 200
    assert me.json["name"] == "Mei"
    # The new token's Location reads it back, without its secret.
    shown = client.get(login.headers["Location"], headers=bearer(token))
    assert shown.status_code == 200, shown.json
    assert shown.json == {name: value for name, value in login.json.items() if name != "token"} | {
        "last_used_at": shown.json["last_used_at"]  # used since, to read /me
    }


def test_token_is_stored_hashed(client: FlaskClient) -> None:
    user = UserFactory()
    secret = token_for(user)
    stored = db.session.scalars(select(ApiToken.token_hash)).one()
    assert secret not in stored and len(stored) == 64


def test_an_unconfirmed_account_cannot_log_in(client: FlaskClient) -> None:
    assert client.post("/api/v1/accounts", json=REGISTRATION).status_code == 202
    response = client.post("/api/v1/auth/tokens", json={"email": "mei@example.test", "password": "a long secret"})
    assert response.status_code == 401
    assert response.json["detail"] == WRONG_LOGIN
    assert count(ApiToken) == 0


def test_register_twice_with_same_email_keeps_one_account(client: FlaskClient) -> None:
    register_confirmed(client, REGISTRATION)
    again = client.post("/api/v1/accounts", json={**REGISTRATION, "email": "mei@example.TEST"})
    assert again.status_code == 202
    assert count(User) == 1


def test_operators_cannot_self_register(client: FlaskClient) -> None:
    response = client.post("/api/v1/accounts", json={**REGISTRATION, "roles": ["operator"]})
    assert response.status_code == 422
    assert "roles" in response.json["errors"]
    assert count(User) == 0


def test_wrong_password_is_401_and_issues_nothing(client: FlaskClient) -> None:
    user = UserFactory()
    response = client.post("/api/v1/auth/tokens", json={"email": user.email, "password": "not it at all"})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert count(ApiToken) == 0


def test_login_with_unknown_email_is_the_same_401(client: FlaskClient) -> None:
    response = client.post("/api/v1/auth/tokens", json={"email": "nobody@example.test", "password": PASSWORD})
    assert response.status_code == 401
    assert response.json["detail"] == WRONG_LOGIN


def test_expired_token_is_refused(client: FlaskClient) -> None:
    user = UserFactory()
    token = token_for(user, ttl=timedelta(seconds=-1))
    response = client.get("/api/v1/me", headers=bearer(token))
    assert response.status_code == 401
    assert response.json["detail"] == "The token has expired."


def test_revoked_token_is_refused(client: FlaskClient) -> None:
    user, headers = user_with_token(Role.BUYER)
    token_id = client.get("/api/v1/auth/tokens", headers=headers).json["items"][0]["id"]
    other = bearer(token_for(user))
    revoked = client.delete(f"/api/v1/auth/tokens/{token_id}", headers=other)
    assert revoked.status_code == 200 and revoked.json["revoked_at"]
    assert client.get("/api/v1/me", headers=headers).status_code == 401
    assert client.get("/api/v1/me", headers=other).status_code == 200


def test_cannot_revoke_another_users_token(client: FlaskClient) -> None:
    _, mine = user_with_token(Role.BUYER)
    theirs_user = UserFactory()
    token_for(theirs_user)
    theirs_id = db.session.scalars(select(ApiToken.id).where(ApiToken.user_id == theirs_user.id)).one()
    response = client.delete(f"/api/v1/auth/tokens/{theirs_id}", headers=mine)
    assert response.status_code == 404
    assert client.get(f"/api/v1/auth/tokens/{theirs_id}", headers=mine).status_code == 404
    assert db.session.get(ApiToken, theirs_id).revoked_at is None  # type: ignore[union-attr]


def test_token_list_pages_with_a_cursor(client: FlaskClient) -> None:
    user, headers = user_with_token(Role.FARMER)
    for _ in range(4):
        token_for(user)
    seen: list[int] = []
    cursor = None
    while True:
        query = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = client.get("/api/v1/auth/tokens", headers=headers, query_string=query).json
        seen += [t["id"] for t in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(seen, reverse=True) and len(seen) == 5


def test_last_used_is_recorded(client: FlaskClient) -> None:
    _, headers = user_with_token(Role.BUYER)
    before = utcnow()
    client.get("/api/v1/me", headers=headers)
    used = db.session.scalars(select(ApiToken.last_used_at)).one()
    assert used is not None and used >= before - timedelta(seconds=1)


def test_last_uses_are_written_together_at_most_once_a_minute(app: Flask, client: FlaskClient) -> None:
    """The first use a process notes is written at once; the uses of other
    tokens after it wait, and the next write takes them all in one statement
    and never moves a later use back."""
    tokens = [user_with_token(Role.BUYER) for _ in range(3)]
    for _, headers in tokens:
        assert client.get("/api/v1/me", headers=headers).status_code == 200

    def last_uses() -> list[datetime | None]:
        db.session.expire_all()
        return [
            db.session.scalar(select(ApiToken.last_used_at).where(ApiToken.user_id == user.id)) for user, _ in tokens
        ]

    first, *waiting = last_uses()
    assert first is not None and waiting == [None, None]

    later = utcnow() + timedelta(hours=1)  # another process wrote a later use meanwhile
    db.session.execute(update(ApiToken).where(ApiToken.user_id == tokens[2][0].id).values(last_used_at=later))
    db.session.commit()
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        with app.test_request_context():
            app.extensions[USES_KEY].write_due(utcnow() + LAST_USED_GRANULARITY)
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    assert len([s for s in statements if s.startswith("UPDATE api_tokens")]) == 1
    _, second, third = last_uses()
    assert second is not None and second > first
    assert third == later


def test_login_is_rate_limited_per_client_address(client: FlaskClient) -> None:
    # A new address each time, so only the client's limit applies, not the account's.
    statuses = [
        client.post("/api/v1/auth/tokens", json={"email": f"nobody{n}@example.test", "password": "guess guess"})
        for n in range(11)
    ]
    assert [s.status_code for s in statuses[:10]] == [401] * 10
    assert statuses[10].status_code == 429
    last = client.post("/api/v1/auth/tokens", json={"email": "somebody@example.test", "password": "guess guess"})
    assert last.content_type == "application/problem+json"
    assert "Retry-After" in last.headers


def test_me_can_change_phone_language_and_name(client: FlaskClient) -> None:
    user, headers = user_with_token(Role.BUYER)
    changed = client.patch(
        "/api/v1/me", json={"phone": "+86 139-0000-0001", "language": "zh", "name": "  Wang Li  "}, headers=headers
    )
    assert changed.status_code == 200, changed.json
    profile = (changed.json["phone"], changed.json["language"], changed.json["name"])
    assert profile == ("+8613900000001", "zh", "Wang Li")
    assert client.get("/api/v1/me", headers=headers).json == changed.json

    only_language = client.patch("/api/v1/me", json={"language": "en"}, headers=headers)
    assert (only_language.json["phone"], only_language.json["language"]) == ("+8613900000001", "en")

    removed = client.patch("/api/v1/me", json={"phone": None}, headers=headers)
    assert removed.status_code == 200 and removed.json["phone"] is None
    db.session.expire_all()
    stored = db.session.get(User, user.id)
    assert stored is not None and (stored.phone, stored.language.value, stored.name) == (None, "en", "Wang Li")


def test_a_new_number_is_unproven_until_shown_to_be_the_accounts(client: FlaskClient) -> None:
    user, headers = user_with_token(Role.BUYER)
    db.session.execute(
        update(User).where(User.id == user.id).values(phone="+8613900000001", phone_verified_at=utcnow())
    )
    db.session.commit()
    assert client.get("/api/v1/me", headers=headers).json["phone_verified"] is True
    # Another field, or the same number again, keeps the proof.
    same = client.patch("/api/v1/me", json={"phone": "+86 139 0000 0001", "name": "Wang"}, headers=headers)
    assert same.status_code == 200 and same.json["phone_verified"] is True

    changed = client.patch("/api/v1/me", json={"phone": "+8613900000002"}, headers=headers)
    assert changed.status_code == 200 and changed.json["phone_verified"] is False
    db.session.expire_all()
    stored = db.session.get(User, user.id)
    assert stored is not None and (stored.phone, stored.phone_verified_at) == ("+8613900000002", None)
    # Back to the number it had proven: typed, so unproven all the same.
    back = client.patch("/api/v1/me", json={"phone": "+8613900000001"}, headers=headers)
    assert back.json["phone_verified"] is False


def test_a_number_given_at_registration_is_unproven(client: FlaskClient) -> None:
    created = register_confirmed(client, REGISTRATION | {"phone": "+8613900000003"})
    assert (created["phone"], created["phone_verified"]) == ("+8613900000003", False)


def test_me_refuses_a_bad_phone_language_or_name_and_changes_nothing(client: FlaskClient) -> None:
    _, headers = user_with_token(Role.BUYER)
    before = client.get("/api/v1/me", headers=headers).json
    for body, field in [
        ({"phone": "13900000001", "name": "Wang"}, "phone"),  # no country code
        ({"phone": "+0 139 0000 0001"}, "phone"),
        ({"phone": "+86" + "1" * 20}, "phone"),
        ({"phone": "+8613900000001\n+8613900000002"}, "phone"),
        ({"language": "fr", "phone": "+8613900000001"}, "language"),
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "Wang\r\nBcc: x@example.test"}, "name"),
        ({"name": "W" * 121}, "name"),
        ({"email": "other@example.test"}, "email"),
        ({"roles": ["operator"]}, "roles"),
    ]:
        response = client.patch("/api/v1/me", json=body, headers=headers)
        assert response.status_code == 422, body
        assert response.mimetype == "application/problem+json"
        assert field in response.json["errors"], (body, response.json)
    assert client.get("/api/v1/me", headers=headers).json == before


def test_me_cannot_be_changed_without_a_token(client: FlaskClient) -> None:
    assert client.patch("/api/v1/me", json={"name": "Nobody"}).status_code == 401
