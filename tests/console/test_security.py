"""The console is for operators only, every form needs its CSRF token, every
page carries a strict Content-Security-Policy, and sign-in is limited like
the API's login."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask.testing import FlaskClient

from market.accounts.models import Role, User, UserRole
from market.catalog.models import FarmStatus
from market.extensions import db
from tests.console.conftest import csrf_token
from tests.factories import PASSWORD, FarmFactory, UserFactory

PAGES = [
    "/console/",
    "/console/orders",
    "/console/orders.csv",
    "/console/orders/1",
    "/console/attention/payments",
    "/console/attention/holds",
    "/console/attention/webhook-deliveries",
    "/console/attention/sales-channels",
    "/console/cash-ups",
    "/console/orders?overdue_for_pickup=true",
    "/console/impact",
    "/console/impact.csv",
    "/console/reconciliations",
    "/console/reconciliations/1",
    "/console/payout-runs",
    "/console/payout-runs/1",
    "/console/payout-runs/1/bank-file.csv",
    "/console/payouts/1/statement.csv",
    "/console/people?q=a",
    "/console/farms",
    "/console/points",
    "/console/points/new",
    "/console/points/1/edit",
    "/console/sellers",
    "/console/sellers?kind=host",
    "/console/sellers/new",
    "/console/sellers/1",
    "/console/sellers/1/edit",
    "/console/sellers/1/entries.csv",
    "/console/payout-runs/1/seller-bank-file.csv",
    "/console/seller-payouts/1/statement.csv",
    "/console/impact/sellers.csv",
]
ACTIONS = [
    "/console/orders/1/cancel",
    "/console/orders/1/refund",
    "/console/farms/1/verify",
    "/console/farms/1/suspend",
    "/console/points/1/staff",
    "/console/points/1/staff/1/revoke",
    "/console/points",
    "/console/points/1",
    "/console/reconciliations",
    "/console/reconciliations/1/items/1/resolve",
    "/console/payout-runs",
    "/console/payouts/1/confirm",
    "/console/payouts/1/retry",
    "/console/payouts/1/flag",
    "/console/webhook-endpoints/1/deliveries/1/redeliver",
    "/console/cash-ups/1/deposit",
    "/console/sellers",
    "/console/sellers/1",
    "/console/seller-payouts/1/confirm",
]


@pytest.mark.parametrize("path", PAGES)
def test_a_page_without_a_session_sends_to_sign_in(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/console/sign-in?next=")


@pytest.mark.parametrize("path", ACTIONS)
def test_an_action_without_a_session_does_nothing(client: FlaskClient, path: str) -> None:
    farm = FarmFactory(status=FarmStatus.PENDING)
    response = client.post(path.replace("/1/", f"/{farm.id}/", 1), data={"csrf_token": csrf_token(client)})
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/console/sign-in")
    db.session.refresh(farm)
    assert farm.status == FarmStatus.PENDING


def test_a_buyer_with_the_right_password_is_refused_and_gets_no_session(client: FlaskClient) -> None:
    buyer = UserFactory(roles=[Role.BUYER, Role.FARMER])
    response = client.post(
        "/console/sign-in", data={"email": buyer.email, "password": PASSWORD, "csrf_token": csrf_token(client)}
    )
    assert response.status_code == 403
    assert "operators only" in response.get_data(as_text=True)
    assert client.get("/console/").status_code == 302


def test_losing_the_operator_role_closes_the_console_at_once(console: FlaskClient, operator_user: User) -> None:
    assert console.get("/console/").status_code == 200
    db.session.query(UserRole).filter_by(user_id=operator_user.id).delete()
    db.session.add(UserRole(user_id=operator_user.id, role=Role.BUYER))
    db.session.commit()
    assert console.get("/console/").status_code == 403
    assert console.get("/console/").status_code == 302  # and the session is gone


def test_a_password_change_ends_the_sessions_signed_in_with_the_old_one(
    console: FlaskClient, operator_user: User
) -> None:
    operator_user.password_hash = operator_user.password_hash + "x"
    db.session.commit()
    assert console.get("/console/").status_code == 302


def test_a_wrong_password_is_a_401_with_the_apis_words(client: FlaskClient, operator_user: User) -> None:
    response = client.post(
        "/console/sign-in",
        data={"email": operator_user.email, "password": "wrong", "csrf_token": csrf_token(client)},
    )
    assert response.status_code == 401
    assert "The email or password is wrong" in response.get_data(as_text=True)
    assert client.get("/console/").status_code == 302


def test_sign_out_ends_the_session(console: FlaskClient) -> None:
    response = console.post("/console/sign-out", data={"csrf_token": csrf_token(console, "/console/")})
    assert response.status_code == 200
    assert console.get("/console/").status_code == 302


def test_sign_in_sends_only_to_console_pages(client: FlaskClient, operator_user: User) -> None:
    for target, expected in [
        ("/console/farms", "/console/farms"),
        ("//evil.example/console/", "/console/"),
        ("https://evil.example/console/", "/console/"),
        ("/api/v1/me", "/console/"),
    ]:
        response = client.post(
            "/console/sign-in",
            data={"email": operator_user.email, "password": PASSWORD, "csrf_token": csrf_token(client), "next": target},
        )
        assert response.headers["Location"] == expected, target


def test_sign_in_without_the_csrf_token_is_refused(client: FlaskClient, operator_user: User) -> None:
    client.get("/console/sign-in")
    response = client.post("/console/sign-in", data={"email": operator_user.email, "password": PASSWORD})
    assert response.status_code == 400
    assert client.get("/console/").status_code == 302


@pytest.mark.parametrize("token", [None, "forged"])
def test_an_action_without_a_valid_csrf_token_is_refused(console: FlaskClient, token: str | None) -> None:
    farm = FarmFactory(status=FarmStatus.PENDING)
    data = {"csrf_token": token} if token else {}
    response = console.post(f"/console/farms/{farm.id}/verify", data=data, headers={"Accept-Language": "en"})
    assert response.status_code == 400
    # Refused before the session is read: in the browser's language.
    assert "reload the page" in response.get_data(as_text=True)
    db.session.refresh(farm)
    assert farm.status == FarmStatus.PENDING
    # The same request with the form's token goes through.
    data = {"csrf_token": csrf_token(console, "/console/farms")}
    assert console.post(f"/console/farms/{farm.id}/verify", data=data).status_code == 302
    db.session.refresh(farm)
    assert farm.status == FarmStatus.VERIFIED


def test_the_api_takes_no_csrf_token(client: FlaskClient) -> None:
    """Bearer-token requests carry no cookie to forge, so the API is not CSRF-checked."""
    response = client.post("/api/v1/auth/tokens", json={"email": "nobody@example.test", "password": "x" * 12})
    assert response.status_code == 401


STRICT_CSP = {
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
    "base-uri 'none'",
}


@pytest.mark.parametrize("path", [*PAGES, "/console/sign-in", "/console/no-such-page"])
def test_every_console_page_has_a_strict_csp_and_nothing_inline(console: FlaskClient, path: str) -> None:
    response = console.get(path)
    policy = {part.strip() for part in response.headers["Content-Security-Policy"].split(";")}
    assert policy >= STRICT_CSP
    assert not any("unsafe" in part for part in policy)
    assert response.headers["X-Frame-Options"] == "DENY"
    page = response.get_data(as_text=True)
    assert not re.search(r"<script(?![^>]*\bsrc=)", page), "inline script"
    assert not re.search(r"<style|\sstyle=|\son[a-z]+=", page), "inline style or handler"


def _cookie(response: Any) -> str:
    return next(v for k, v in response.headers.items() if k == "Set-Cookie" and v.startswith("session="))


def test_the_session_cookie_is_httponly_secure_and_lax(client: FlaskClient, operator_user: User) -> None:
    response = client.post(
        "/console/sign-in", data={"email": operator_user.email, "password": PASSWORD, "csrf_token": csrf_token(client)}
    )
    attributes = {part.strip().lower() for part in _cookie(response).split(";")}
    assert {"httponly", "secure", "samesite=lax"} <= attributes


class TestPlainHttp:
    @pytest.fixture
    def app_overrides(self) -> dict[str, Any]:
        return {"CONSOLE_INSECURE_COOKIE": True}

    def test_the_cookie_may_travel_over_http_when_configured(self, client: FlaskClient, operator_user: User) -> None:
        response = client.post(
            "/console/sign-in",
            data={"email": operator_user.email, "password": PASSWORD, "csrf_token": csrf_token(client)},
        )
        attributes = {part.strip().lower() for part in _cookie(response).split(";")}
        assert {"httponly", "samesite=lax"} <= attributes
        assert "secure" not in attributes


class TestSignInLimits:
    @pytest.fixture
    def app_overrides(self) -> dict[str, Any]:
        return {"RATELIMIT_LOGIN": "3 per minute", "LOGIN_FAILURES_PER_ACCOUNT": 100}

    def test_sign_in_is_limited_per_client_address_like_the_api_login(
        self, client: FlaskClient, operator_user: User
    ) -> None:
        token = csrf_token(client)
        answers = [
            client.post(
                "/console/sign-in", data={"email": operator_user.email, "password": "wrong", "csrf_token": token}
            ).status_code
            for _ in range(4)
        ]
        assert answers == [401, 401, 401, 429]
        assert client.get("/console/sign-in").status_code == 200  # reading the form is not counted


class TestAccountLock:
    @pytest.fixture
    def app_overrides(self) -> dict[str, Any]:
        return {"LOGIN_FAILURES_PER_ACCOUNT": 2}

    def test_failures_at_the_api_lock_the_console_too(self, client: FlaskClient, operator_user: User) -> None:
        for _ in range(2):
            client.post("/api/v1/auth/tokens", json={"email": operator_user.email, "password": "wrong-password"})
        response = client.post(
            "/console/sign-in",
            data={"email": operator_user.email, "password": PASSWORD, "csrf_token": csrf_token(client)},
        )
        assert response.status_code == 429
        assert int(response.headers["Retry-After"]) > 0
        assert client.get("/console/").status_code == 302
