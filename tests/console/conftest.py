"""Console fixtures: a signed-in operator's browser session in the Flask test client."""

from __future__ import annotations

import re

import pytest
from flask.testing import FlaskClient

from market.accounts.models import Role, User
from tests.factories import PASSWORD, UserFactory
from tests.payments.conftest import fake_stripe, stripe_server  # noqa: F401 (fixtures for the card holds)

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_token(client: FlaskClient, path: str = "/console/sign-in") -> str:
    """The CSRF token a console form on `path` carries."""
    match = CSRF.search(client.get(path).get_data(as_text=True))
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def sign_in(client: FlaskClient, user: User, password: str = PASSWORD) -> None:
    response = client.post(
        "/console/sign-in", data={"email": user.email, "password": password, "csrf_token": csrf_token(client)}
    )
    assert response.status_code == 302, response.get_data(as_text=True)


@pytest.fixture
def operator_user(app: object) -> User:
    return UserFactory(roles=[Role.OPERATOR])  # type: ignore[no-any-return]


@pytest.fixture
def console(client: FlaskClient, operator_user: User) -> FlaskClient:
    """The test client, signed in to the console as an operator."""
    sign_in(client, operator_user)
    return client
