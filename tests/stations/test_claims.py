"""Claiming the account a station opened for a villager: a code texted to
the number, then an email and a password; its orders stay with it.
Registration with that number opens no second account."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from market.accounts.models import User
from market.db import utcnow
from market.extensions import db
from market.notifications import service as notifications
from market.notifications.models import Channel, Notification
from market.stations.models import ClaimCode
from tests.conftest import needs
from tests.factories import confirmation_token, emails_to
from tests.shop import Shop
from tests.stations.test_villager_orders import PHONE, place_for_villager

CLAIMS = "/api/v1/accounts/claims"
CONFIRM = f"{CLAIMS}/confirmation"
CONFIRM_ADDRESS = "/api/v1/accounts/confirmation"
PASSWORD = "a long village password"


@pytest.fixture(autouse=True)
def _postgresql() -> None:
    needs("postgresql")


def claim_codes(phone: str = PHONE) -> list[str]:
    rows = db.session.scalars(
        select(Notification.body)
        .where(Notification.recipient == phone, Notification.event == "account.claim_code")
        .order_by(Notification.id)
    ).all()
    return [re.findall(r"\b\d{6}\b", body)[0] for body in rows]


def ask(client: FlaskClient, phone: str = PHONE) -> dict:  # type: ignore[type-arg]
    response = client.post(CLAIMS, json={"phone": phone})
    assert response.status_code == 202, response.json
    return response.json  # type: ignore[no-any-return]


def claim(client: FlaskClient, code: str, email: str = "li@example.test", **extra: str):  # type: ignore[no-untyped-def]
    body = {"phone": PHONE, "code": code, "email": email, "password": PASSWORD} | extra
    return client.post(CONFIRM, json=body)


def villager() -> User:
    return db.session.scalars(select(User).where(User.phone == PHONE)).one()


def test_a_villager_claims_the_account_and_keeps_its_orders(client: FlaskClient, shop: Shop) -> None:
    order = place_for_villager(client, shop, (shop.oranges, 2000))
    ask(client)
    (code,) = claim_codes()
    stored = db.session.scalars(select(ClaimCode)).one()
    assert code not in stored.code_hash  # only its keyed hash is kept
    wrong = claim(client, "000000" if code != "000000" else "111111")
    assert wrong.status_code == 422 and "code" in wrong.json["errors"]

    before = utcnow()
    done = claim(client, code, email="Li@Example.test", name="Li Guifen")
    assert done.status_code == 200, done.json
    assert (done.json["email"], done.json["name"], done.json["phone_verified"]) == (
        "li@example.test",
        "Li Guifen",
        True,
    )
    db.session.expire_all()
    assert villager().confirmed_at is None  # the code proved the number, the link proves the address
    confirmed = client.post(CONFIRM_ADDRESS, json={"token": confirmation_token("li@example.test")})
    assert confirmed.status_code == 200
    db.session.expire_all()
    assert villager().confirmed_at is not None
    proven = villager().phone_verified_at
    assert proven is not None and proven >= before  # the texted code proved the number
    assert db.session.scalars(select(ClaimCode)).all() == []
    assert claim(client, code).status_code == 422  # claimed: the code is spent

    login = client.post("/api/v1/auth/tokens", json={"email": "li@example.test", "password": PASSWORD, "name": "phone"})
    assert login.status_code == 201, login.json
    mine = client.get("/api/v1/orders", headers={"Authorization": f"Bearer {login.json['token']}"})
    assert [o["id"] for o in mine.json["items"]] == [order["id"]]
    # Orders placed for the number from now on go to the same account.
    place_for_villager(client, shop, (shop.oranges, 1000))
    assert db.session.scalar(select(func.count()).select_from(User).where(User.phone == PHONE)) == 1


def test_asking_answers_the_same_for_every_number(client: FlaskClient, shop: Shop) -> None:
    place_for_villager(client, shop, (shop.oranges, 1000))
    unclaimed = client.post(CLAIMS, json={"phone": PHONE})
    unknown = client.post(CLAIMS, json={"phone": "+8613900000001"})
    assert unclaimed.status_code == unknown.status_code == 202
    assert unclaimed.json["detail"] == unknown.json["detail"]
    assert len(claim_codes()) == 1 and claim_codes("+8613900000001") == []


def test_codes_are_capped_per_number_and_wrong_ones_per_code(client: FlaskClient, shop: Shop) -> None:
    place_for_villager(client, shop, (shop.oranges, 1000))
    for n in range(5):
        response = client.post(CLAIMS, json={"phone": PHONE}, headers={"X-Forwarded-For": f"10.8.0.{n}"})
        assert response.status_code == 202
    assert len(claim_codes()) == 3  # CLAIM_CODES_PER_PHONE: 3 per hour
    code = claim_codes()[-1]
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(client.application.config["VILLAGER_CODE_MAX_FAILURES"]):
        assert claim(client, wrong).status_code == 422
    refused = claim(client, code)
    assert refused.status_code == 429
    db.session.expire_all()
    assert villager().email is None


def test_an_expired_code_claims_nothing(client: FlaskClient, shop: Shop) -> None:
    place_for_villager(client, shop, (shop.oranges, 1000))
    ask(client)
    stored = db.session.scalars(select(ClaimCode)).one()
    stored.expires_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    # The same 422 as a wrong code: a 409 would tell that the number has an account.
    refused = claim(client, claim_codes()[-1])
    assert refused.status_code == 422 and "code" in refused.json["errors"]
    db.session.expire_all()
    assert villager().password_hash is None


def test_an_email_another_account_has_is_refused(client: FlaskClient, shop: Shop) -> None:
    place_for_villager(client, shop, (shop.oranges, 1000))
    ask(client)
    taken = db.session.scalars(select(User.email).where(User.id == shop.buyer.id)).one()
    response = claim(client, claim_codes()[-1], email=taken or "")
    assert response.status_code == 409 and "email" in response.json["errors"]
    db.session.expire_all()
    assert villager().email is None


def test_registering_with_the_number_of_an_unclaimed_account_texts_a_claim_code(
    client: FlaskClient, shop: Shop
) -> None:
    place_for_villager(client, shop, (shop.oranges, 1000))
    body = {"email": "li@example.test", "password": PASSWORD, "name": "Li", "roles": ["buyer"], "phone": PHONE}
    response = client.post("/api/v1/accounts", json=body)
    other = client.post("/api/v1/accounts", json=body | {"email": "wang@example.test", "phone": "+8613900000002"})
    assert response.status_code == other.status_code == 202
    assert response.json["detail"] == other.json["detail"]
    assert db.session.scalar(select(func.count()).select_from(User).where(User.phone == PHONE)) == 1
    assert db.session.scalars(select(User.id).where(User.email == "li@example.test")).all() == []
    assert claim(client, claim_codes()[-1]).status_code == 200
    # A number no unclaimed account has registers as ever.
    assert db.session.scalars(select(User.id).where(User.email == "wang@example.test")).one()
    bad_roles = client.post("/api/v1/accounts", json=body | {"roles": ["operator"]})
    assert bad_roles.status_code == 422


def test_a_buyer_who_types_a_villagers_number_gets_neither_their_orders_nor_their_account(
    client: FlaskClient, shop: Shop
) -> None:
    typed = client.patch("/api/v1/me", json={"phone": PHONE}, headers=shop.buyer_h)
    assert typed.status_code == 200 and typed.json["phone_verified"] is False

    order = place_for_villager(client, shop, (shop.oranges, 2000))
    assert order["buyer_id"] != shop.buyer.id  # a new account for the villager, the number proven
    opened = db.session.get(User, order["buyer_id"])
    assert opened is not None and (opened.email, opened.phone) == (None, PHONE)
    assert opened.phone_verified_at is not None
    mine = client.get("/api/v1/orders", headers=shop.buyer_h).json
    assert order["id"] not in [o["id"] for o in mine["items"]]
    assert client.get(f"/api/v1/orders/{order['id']}", headers=shop.buyer_h).status_code in (403, 404)

    # The villager still claims their account, and with it the order.
    ask(client)
    codes = db.session.scalars(
        select(Notification.user_id).where(Notification.recipient == PHONE, Notification.event == "account.claim_code")
    ).all()
    assert codes == [opened.id]
    done = claim(client, claim_codes()[-1])
    assert done.status_code == 200, done.json
    assert done.json["id"] == opened.id
    assert client.post(CONFIRM_ADDRESS, json={"token": confirmation_token("li@example.test")}).status_code == 200
    login = client.post("/api/v1/auth/tokens", json={"email": "li@example.test", "password": PASSWORD, "name": "phone"})
    theirs = client.get("/api/v1/orders", headers={"Authorization": f"Bearer {login.json['token']}"}).json
    assert [o["id"] for o in theirs["items"]] == [order["id"]]


def test_a_claim_does_not_take_an_address_nobody_confirmed(client: FlaskClient, shop: Shop) -> None:
    """The texted code proves the number, not the address typed with it:
    whoever holds a number a station opened an account for could otherwise
    give that account anybody's address, confirmed, and its owner could
    never register it."""
    order = place_for_villager(client, shop, (shop.oranges, 1000))
    ask(client)
    done = claim(client, claim_codes()[-1], email="someone.else@example.test")
    assert done.status_code == 200, done.json
    login = {"email": "someone.else@example.test", "password": PASSWORD, "name": "phone"}
    assert client.post("/api/v1/auth/tokens", json=login).status_code == 401  # not confirmed yet

    # The address's owner registers it: theirs is a new account, without the villager's orders.
    owner = {"email": "someone.else@example.test", "password": "the owner's own secret", "name": "Owner"}
    assert client.post("/api/v1/accounts", json=owner | {"roles": ["buyer"]}).status_code == 202
    assert client.post(CONFIRM_ADDRESS, json={"token": confirmation_token(owner["email"])}).status_code == 200
    token = client.post("/api/v1/auth/tokens", json={k: owner[k] for k in ("email", "password")}).json["token"]
    owners = client.get("/api/v1/orders", headers={"Authorization": f"Bearer {token}"}).json
    assert order["id"] not in [o["id"] for o in owners["items"]]
    db.session.expire_all()
    assert villager().id != db.session.scalars(select(User.id).where(User.email == owner["email"])).one()
    assert villager().confirmed_at is None  # the villager's to claim again, with their own address


def test_a_claimed_account_logs_in_once_its_address_is_confirmed(client: FlaskClient, shop: Shop) -> None:
    order = place_for_villager(client, shop, (shop.oranges, 1000))
    ask(client)
    assert claim(client, claim_codes()[-1], email="li@example.test").status_code == 200
    login = {"email": "li@example.test", "password": PASSWORD, "name": "phone"}
    assert client.post("/api/v1/auth/tokens", json=login).status_code == 401
    assert client.post(CONFIRM_ADDRESS, json={"token": confirmation_token("li@example.test")}).status_code == 200
    token = client.post("/api/v1/auth/tokens", json=login).json["token"]
    mine = client.get("/api/v1/orders", headers={"Authorization": f"Bearer {token}"}).json
    assert [o["id"] for o in mine["items"]] == [order["id"]]


def test_until_its_address_is_confirmed_a_claimed_account_is_not_emailed_its_orders(
    client: FlaskClient, shop: Shop
) -> None:
    place_for_villager(client, shop, (shop.oranges, 1000))
    ask(client)
    assert claim(client, claim_codes()[-1], email="someone.else@example.test").status_code == 200
    db.session.expire_all()
    assert notifications.channels_for(villager(), "order.paid") == [Channel.SMS]  # texted, as before the claim
    assert [e.event for e in emails_to("someone.else@example.test")] == ["account.confirmation"]
    assert (
        client.post(CONFIRM_ADDRESS, json={"token": confirmation_token("someone.else@example.test")}).status_code == 200
    )
    db.session.expire_all()
    assert Channel.EMAIL in notifications.channels_for(villager(), "order.paid")
