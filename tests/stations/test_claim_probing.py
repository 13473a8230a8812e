"""Probing which numbers have an account a station opened: every answer
of a claim is the same for a number with one as for a number without."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from market.db import utcnow
from market.extensions import db
from market.stations.models import ClaimCode
from tests.conftest import needs
from tests.shop import Shop
from tests.stations.test_claims import CONFIRM, PASSWORD, ask, claim_codes, villager
from tests.stations.test_villager_orders import PHONE, place_for_villager


@pytest.fixture(autouse=True)
def _postgresql() -> None:
    needs("postgresql")


@pytest.fixture
def app_overrides() -> dict[str, Any]:
    # One proxy in front: each test client "address" is the X-Forwarded-For it
    # sends, so the per-address limit is not what answers.
    return {"TRUSTED_PROXY_COUNT": 1}


def test_claiming_answers_alike_for_a_number_with_an_account_and_one_without(client: FlaskClient, shop: Shop) -> None:
    """Wrong codes past the tries allowed, and a code gone stale, answer the
    same whether a station opened an account for the number or not: the
    answers do not tell which numbers have accounts."""
    place_for_villager(client, shop, (shop.oranges, 1000))
    nobody = "+8613900000001"
    addresses = iter(range(1, 250))

    def attempt(phone: str, code: str) -> tuple[int, object, object, object]:
        body = {"phone": phone, "code": code, "email": f"x{phone[-4:]}@example.test", "password": PASSWORD}
        response = client.post(CONFIRM, json=body, headers={"X-Forwarded-For": f"10.7.0.{next(addresses)}"})
        problem = response.json or {}
        return response.status_code, problem.get("title"), problem.get("detail"), problem.get("errors")

    ask(client)
    ask(client, nobody)
    (code,) = claim_codes()
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(client.application.config["VILLAGER_CODE_MAX_FAILURES"]):
        assert attempt(PHONE, wrong) == attempt(nobody, wrong)
    past_the_tries = attempt(PHONE, wrong), attempt(nobody, wrong)
    assert past_the_tries[0] == past_the_tries[1]
    assert past_the_tries[0][0] == 429

    ask(client)
    ask(client, nobody)
    stored = db.session.scalars(select(ClaimCode)).one()
    stored.expires_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    stale = attempt(PHONE, claim_codes()[-1]), attempt(nobody, claim_codes()[-1])
    assert stale[0] == stale[1]
    db.session.expire_all()
    assert villager().email is None
