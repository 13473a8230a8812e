"""Guessing and probing accounts: passwords guessed from many addresses,
addresses forged behind a proxy, registration used to learn who has an
account or to take an address over, and login answers left in caches.

Each test is one attack; it passes when the attack is refused (and what was
refused wrote nothing)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from market.accounts.models import ApiToken, User
from market.accounts.service import CONFIRMATION_SALT, WRONG_LOGIN
from market.extensions import db
from market.notifications.models import Notification
from tests.factories import PASSWORD, UserFactory, bearer, confirmation_token, emails_to, token_for

PROBLEM = "application/problem+json"
LOGIN = "/api/v1/auth/tokens"
REGISTER = "/api/v1/accounts"
CONFIRM = "/api/v1/accounts/confirmation"
REGISTRATION = {"email": "lan@example.test", "password": "her own long secret", "name": "Lan", "roles": ["buyer"]}
FAILURES = 3  # LOGIN_FAILURES_PER_ACCOUNT in these tests


@pytest.fixture
def app_overrides() -> dict[str, Any]:
    # One proxy in front: each test client "address" is the X-Forwarded-For it sends.
    return {"TRUSTED_PROXY_COUNT": 1, "LOGIN_FAILURES_PER_ACCOUNT": FAILURES, "LOGIN_LOCKOUT_SECONDS": 1}


def count(model: type) -> int:
    return db.session.scalar(select(func.count()).select_from(model)) or 0


def login(client: FlaskClient, email: str, password: str, address: str) -> TestResponse:
    return client.post(LOGIN, json={"email": email, "password": password}, headers={"X-Forwarded-For": address})


def shape(response: TestResponse) -> tuple[int, str | None, Any, bool]:
    """What a client can tell of a refusal from its status, type and body.
    Retry-After is there or not; its value is the longer of the account's
    lock and the client address's window, which depends on the address."""
    return response.status_code, response.content_type, response.get_json(), "Retry-After" in response.headers


def test_guessing_one_password_from_many_addresses_locks_the_account(client: FlaskClient) -> None:
    user = UserFactory()
    guesses = [login(client, user.email, f"guess number {n}", f"198.51.100.{n}") for n in range(FAILURES)]
    assert [g.status_code for g in guesses] == [401] * FAILURES
    locked = login(client, user.email, "one more guess", "198.51.100.200")
    assert locked.status_code == 429 and locked.content_type == PROBLEM
    assert int(locked.headers["Retry-After"]) >= locked.json["retry_after"] >= 1
    # While locked, the right password is refused too: a lucky guess learns nothing.
    right = login(client, user.email, PASSWORD, "198.51.100.201")
    assert right.status_code == 429
    assert count(ApiToken) == 0


def test_the_lock_doubles_with_each_failure_after_it(client: FlaskClient) -> None:
    user = UserFactory()
    for n in range(FAILURES):
        login(client, user.email, "wrong", f"198.51.100.{n}")
    waits = []
    for lock in (1, 2):
        refused = login(client, user.email, "wrong", "203.0.113.9")
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) >= refused.json["retry_after"]
        waits.append(refused.json["retry_after"])
        time.sleep(lock + 0.2)
        assert login(client, user.email, "wrong", "203.0.113.9").status_code == 401  # the next failure locks longer
    assert waits == [1, 2]
    last = login(client, user.email, "wrong", "203.0.113.9")
    assert last.status_code == 429 and 3 <= last.json["retry_after"] <= 4


def test_the_limit_answers_an_unknown_address_as_it_answers_a_known_one(client: FlaskClient) -> None:
    known = UserFactory()
    answers = {}
    for email in (known.email, "nobody-at-all@example.test"):
        answers[email] = [shape(login(client, email, "wrong password", f"192.0.2.{n}")) for n in range(FAILURES + 2)]
    first, second = answers.values()
    assert first == second
    assert [status for status, *_ in first] == [401] * FAILURES + [429, 429]
    assert first[0][2]["detail"] == WRONG_LOGIN


def test_a_successful_login_forgets_the_failures(client: FlaskClient) -> None:
    user = UserFactory()
    for round_ in range(3):
        for n in range(FAILURES - 1):
            assert login(client, user.email, "wrong", f"192.0.2.{round_}{n}").status_code == 401
        assert login(client, user.email, PASSWORD, "192.0.2.99").status_code == 201


def test_locking_an_account_out_does_not_cut_off_its_running_clients(client: FlaskClient) -> None:
    user = UserFactory()
    headers = bearer(token_for(user))
    for n in range(FAILURES + 1):
        login(client, user.email, "attacker's guess", f"198.51.100.{n}")
    assert login(client, user.email, PASSWORD, "198.51.100.50").status_code == 429
    assert client.get("/api/v1/me", headers=headers).status_code == 200


def test_clients_behind_the_proxy_each_have_their_own_address_limit(client: FlaskClient) -> None:
    # Ten per minute per address (RATELIMIT_LOGIN); a new email each time, so no account lock.
    first = [login(client, f"a{n}@example.test", "wrong", "203.0.113.1").status_code for n in range(11)]
    assert first == [401] * 10 + [429]
    assert login(client, "b@example.test", "wrong", "203.0.113.2").status_code == 401


def test_a_forged_x_forwarded_for_does_not_escape_the_address_limit(client: FlaskClient) -> None:
    # The client writes its own X-Forwarded-For; the proxy appends the address it saw.
    statuses = [login(client, f"c{n}@example.test", "wrong", f"10.0.0.{n}, 203.0.113.7").status_code for n in range(11)]
    assert statuses == [401] * 10 + [429]


@pytest.mark.parametrize("app_overrides", [{"TRUSTED_PROXY_COUNT": 0}])
def test_without_a_trusted_proxy_x_forwarded_for_is_ignored(client: FlaskClient) -> None:
    statuses = [login(client, f"d{n}@example.test", "wrong", f"203.0.113.{n}").status_code for n in range(11)]
    assert statuses == [401] * 10 + [429]


def test_login_answers_are_never_cached(client: FlaskClient) -> None:
    user = UserFactory()
    for response in (login(client, user.email, PASSWORD, "192.0.2.1"), login(client, user.email, "no", "192.0.2.1")):
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["Pragma"] == "no-cache"


def test_registration_answers_alike_for_a_new_and_a_known_address(client: FlaskClient) -> None:
    known = UserFactory(email="known@example.test")
    answers = [
        client.post(REGISTER, json=REGISTRATION | {"email": email}, headers={"X-Forwarded-For": f"192.0.2.{n}"})
        for n, email in enumerate(("known@example.test", "new@example.test"))
    ]
    assert [a.status_code for a in answers] == [202, 202]
    assert [a.json["email"] for a in answers] == ["known@example.test", "new@example.test"]
    assert answers[0].json["detail"] == answers[1].json["detail"]
    assert sorted(answers[0].json) == sorted(answers[1].json) == ["detail", "email"]
    # Only the mail tells them apart, and only the address's owner reads it.
    assert [e.event for e in emails_to("known@example.test")] == ["account.registration_attempted"]
    assert [e.event for e in emails_to("new@example.test")] == ["account.confirmation"]
    # The known account is untouched: its password still works, the new one does not.
    assert login(client, known.email, PASSWORD, "192.0.2.50").status_code == 201
    assert login(client, known.email, REGISTRATION["password"], "192.0.2.51").status_code == 401


def test_an_unconfirmed_account_answers_a_login_like_a_wrong_password(client: FlaskClient) -> None:
    client.post(REGISTER, json=REGISTRATION)
    unconfirmed = login(client, REGISTRATION["email"], REGISTRATION["password"], "192.0.2.1")
    unknown = login(client, "nobody@example.test", REGISTRATION["password"], "192.0.2.2")
    assert shape(unconfirmed) == shape(unknown)
    assert count(ApiToken) == 0


def test_registering_someone_elses_address_first_does_not_take_it_over(client: FlaskClient) -> None:
    attacker = REGISTRATION | {"password": "the attacker's password", "name": "Not Lan"}
    assert client.post(REGISTER, json=attacker, headers={"X-Forwarded-For": "198.51.100.66"}).status_code == 202
    attackers_link = confirmation_token(REGISTRATION["email"])
    # The owner registers too; her registration replaces the pending one.
    assert client.post(REGISTER, json=REGISTRATION, headers={"X-Forwarded-For": "192.0.2.8"}).status_code == 202
    owners_link = confirmation_token(REGISTRATION["email"])
    assert owners_link != attackers_link
    # The link sent for the attacker's registration confirms nothing any more.
    stale = client.post(CONFIRM, json={"token": attackers_link})
    assert stale.status_code == 422 and stale.content_type == PROBLEM
    assert db.session.scalars(select(User.confirmed_at)).one() is None
    assert client.post(CONFIRM, json={"token": owners_link}).status_code == 200
    assert login(client, REGISTRATION["email"], "the attacker's password", "198.51.100.66").status_code == 401
    assert login(client, REGISTRATION["email"], REGISTRATION["password"], "192.0.2.8").status_code == 201
    assert (
        client.get("/api/v1/me", headers=bearer(token_for(db.session.scalars(select(User)).one()))).json["name"]
        == "Lan"
    )


@pytest.mark.parametrize(
    "forge",
    [
        lambda token: token[:-2] + ("AA" if not token.endswith("AA") else "BB"),  # tampered signature
        lambda token: URLSafeTimedSerializer("another key", salt=CONFIRMATION_SALT).dumps({"user": 1, "check": "x"}),
        lambda token: URLSafeTimedSerializer("test", salt="another-purpose").dumps({"user": 1, "check": "x"}),
        lambda token: URLSafeTimedSerializer("test", salt=CONFIRMATION_SALT).dumps(["not", "a", "mapping"]),
        lambda token: "x" * 500,
    ],
    ids=["tampered", "other-key", "other-salt", "wrong-shape", "garbage"],
)
def test_a_forged_confirmation_token_confirms_nothing(client: FlaskClient, forge: Any) -> None:
    client.post(REGISTER, json=REGISTRATION)
    response = client.post(CONFIRM, json={"token": forge(confirmation_token(REGISTRATION["email"]))})
    assert response.status_code == 422 and response.content_type == PROBLEM
    assert "token" in response.json["errors"]
    assert db.session.scalars(select(User.confirmed_at)).one() is None


def test_an_expired_confirmation_link_is_refused(app: Flask, client: FlaskClient) -> None:
    client.post(REGISTER, json=REGISTRATION)
    token = confirmation_token(REGISTRATION["email"])
    app.config["ACCOUNT_CONFIRM_HOURS"] = 0
    time.sleep(1.1)
    response = client.post(CONFIRM, json={"token": token})
    assert response.status_code == 422 and response.json["errors"] == {"token": ["Expired."]}
    assert db.session.scalars(select(User.confirmed_at)).one() is None


def test_registration_cannot_flood_an_inbox(client: FlaskClient) -> None:
    victim = UserFactory(email="victim@example.test")
    answers = [
        client.post(REGISTER, json=REGISTRATION | {"email": victim.email}, headers={"X-Forwarded-For": f"10.9.0.{n}"})
        for n in range(6)
    ]
    assert {a.status_code for a in answers} == {202}
    assert len({a.get_data() for a in answers}) == 1
    assert len(emails_to(victim.email)) == 3  # REGISTRATION_EMAILS_PER_ADDRESS: 3 per hour
    assert count(Notification) == 3
