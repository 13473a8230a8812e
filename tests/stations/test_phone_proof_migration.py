"""The migration that records proven numbers: accounts stations opened
for villagers, and those claimed from them with the number they still
hold, are proven; a number typed into a profile is not."""

from __future__ import annotations

from flask.testing import FlaskClient
from flask_migrate import downgrade, upgrade
from sqlalchemy import select

import config
from market.accounts.models import User
from market.extensions import db
from tests.factories import confirmation_token
from tests.shop import Shop
from tests.stations.test_claims import PASSWORD, ask, claim_codes
from tests.stations.test_villager_orders import place_for_villager

MIGRATIONS = str(config.ROOT / "migrations")
BEFORE_PROOF = "c6a4e2b9d7f3"
CLAIMED, WAITING, MOVED = "+8613900000077", "+8613900000078", "+8613900000079"


def claim(client: FlaskClient, phone: str, email: str) -> dict:  # type: ignore[type-arg]
    ask(client, phone)
    body = {"phone": phone, "code": claim_codes(phone)[-1], "email": email, "password": PASSWORD}
    response = client.post("/api/v1/accounts/claims/confirmation", json=body)
    assert response.status_code == 200, response.json
    confirmed = client.post("/api/v1/accounts/confirmation", json={"token": confirmation_token(email)})
    assert confirmed.status_code == 200, confirmed.json
    return response.json  # type: ignore[no-any-return]


def test_villager_accounts_and_those_claimed_with_their_number_are_proven(client: FlaskClient, shop: Shop) -> None:
    for phone in (CLAIMED, WAITING, MOVED):
        place_for_villager(client, shop, (shop.oranges, 1000), phone=phone)
    claimed = claim(client, CLAIMED, "li@example.test")["id"]
    moved = claim(client, MOVED, "wu@example.test")
    token = client.post(
        "/api/v1/auth/tokens", json={"email": "wu@example.test", "password": PASSWORD, "name": "phone"}
    ).json["token"]
    changed = client.patch("/api/v1/me", json={"phone": "+8613900000080"}, headers={"Authorization": f"Bearer {token}"})
    assert changed.status_code == 200, changed.json
    assert client.patch("/api/v1/me", json={"phone": WAITING}, headers=shop.buyer_h).status_code == 200
    waiting = db.session.scalars(select(User.id).where(User.phone == WAITING, User.email.is_(None))).one()
    db.session.remove()

    downgrade(directory=MIGRATIONS, revision=BEFORE_PROOF)
    db.session.remove()
    upgrade(directory=MIGRATIONS)

    proven = set(db.session.scalars(select(User.id).where(User.phone_verified_at.is_not(None))))
    assert proven == {claimed, waiting}  # not the claimed account that changed its number, nor the typist
    assert moved["id"] not in proven and shop.buyer.id not in proven
