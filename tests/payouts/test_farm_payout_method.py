"""A farm's `payout_method` and its payout account's method are one: the
account decides how payout runs pay the farm, so the farm cannot be edited
to show another method, and an account asked for without a method takes
the one the farmer gave on the farm."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask_migrate import downgrade, upgrade
from sqlalchemy import event, select, update

import config
from market.catalog.models import Farm, PayoutMethod
from market.extensions import db
from market.payouts.models import PayoutAccount
from tests.conftest import needs, wait_for_backends
from tests.fakes.stripe_server import FakeStripeServer
from tests.payouts.conftest import queued, stripe_overrides
from tests.shop import Shop

MIGRATIONS = str(config.ROOT / "migrations")
BEFORE_ALIGNING = "c7e2a9f4b1d6"
BANK = {
    "method": "bank_transfer",
    "account_holder": "刘长生",
    "bank_name": "中国农业银行 寻乌支行",
    "account_number": "6228 4800 1234 5678 901",
}


@pytest.fixture
def app_overrides(stripe_server: FakeStripeServer) -> dict[str, Any]:
    return stripe_overrides(stripe_server)


def farm_url(shop: Shop) -> str:
    return f"/api/v1/farms/{shop.orchard.id}"


def methods(farm_id: int) -> tuple[str | None, str | None]:
    """The farm's payout method and its account's, as stored."""
    farm = db.session.scalars(select(Farm.payout_method).where(Farm.id == farm_id)).one()
    account = db.session.scalars(select(PayoutAccount.method).where(PayoutAccount.farm_id == farm_id)).first()
    return farm, account


def test_a_farm_paid_through_its_account_cannot_be_edited_to_show_another_method(
    client: FlaskClient, shop: Shop
) -> None:
    connected = client.post(f"{farm_url(shop)}/payout-account", json=BANK, headers=shop.orchard_h)
    assert connected.json["method"] == "bank_transfer"
    before = client.get(farm_url(shop), headers=shop.orchard_h).json
    assert before["payout_method"] == "bank_transfer"

    for other in ("stripe", None):
        refused = client.patch(
            farm_url(shop), json={"payout_method": other, "description": "Hillside"}, headers=shop.orchard_h
        )
        assert refused.status_code == 409, refused.json
        assert refused.mimetype == "application/problem+json"
        assert "POST /api/v1/farms" in refused.json["detail"] and "/payout-account" in refused.json["detail"]
        assert refused.json["errors"] == {"payout_method": ["The payout account pays by bank_transfer."]}
        assert refused.json["payout_method"] == "bank_transfer"
    # Nothing of the refused edits was written.
    assert client.get(farm_url(shop), headers=shop.orchard_h).json == before
    assert methods(shop.orchard.id) == ("bank_transfer", "bank_transfer")

    same = client.patch(
        farm_url(shop), json={"payout_method": "bank_transfer", "name": "Liu's"}, headers=shop.orchard_h
    )
    assert same.status_code == 200, same.json
    assert same.json["name"] == "Liu's"


def test_the_account_changes_the_method_and_the_farm_shows_it(client: FlaskClient, shop: Shop) -> None:
    client.post(f"{farm_url(shop)}/payout-account", json=BANK, headers=shop.orchard_h)

    moved = client.post(f"{farm_url(shop)}/payout-account", json={"method": "stripe"}, headers=shop.orchard_h)

    assert moved.json["method"] == "stripe"
    assert client.get(farm_url(shop), headers=shop.orchard_h).json["payout_method"] == "stripe"
    assert methods(shop.orchard.id) == ("stripe", "stripe")


def test_an_account_asked_for_without_a_method_takes_the_farms(client: FlaskClient, shop: Shop) -> None:
    # Stripe could pay this farm (it is in the connect country), but the
    # farmer said bank transfer on the farm before there was an account.
    assert (
        client.patch(farm_url(shop), json={"payout_method": "bank_transfer"}, headers=shop.orchard_h).status_code == 200
    )

    url = f"{farm_url(shop)}/payout-account"
    incomplete = client.post(url, json={}, headers=shop.orchard_h)
    assert incomplete.status_code == 422
    assert set(incomplete.json["errors"]) == {"account_holder", "bank_name", "account_number"}
    details = {name: value for name, value in BANK.items() if name != "method"}
    connected = client.post(url, json=details, headers=shop.orchard_h)

    assert connected.json["method"] == "bank_transfer"
    assert queued("payouts.connect_account") == []
    # New bank details without a method keep the bank file.
    again = client.post(
        f"{farm_url(shop)}/payout-account",
        json={**BANK, "account_number": "6228 4800 0000 1111 222"},
        headers=shop.orchard_h,
    )
    assert (again.json["method"], again.json["bank_account_masked"][-4:]) == ("bank_transfer", "1222")
    assert methods(shop.orchard.id) == ("bank_transfer", "bank_transfer")


# The statement after which the first request is held, while the other runs.
HELD_AFTER = {"connect": "INSERT INTO payout_accounts", "edit": "SELECT payout_accounts.method"}


@pytest.mark.parametrize("first", ["connect", "edit"])
def test_a_method_edited_while_the_account_is_made_ends_as_the_account_pays(
    app: Flask, client: FlaskClient, shop: Shop, first: str
) -> None:
    """The farm is locked while its account is made and while its method is
    edited, so the two never leave the farm showing a method the account
    does not pay by. An edit that comes second sees the account and is
    refused; an account made second waits for the edit, then sets the
    farm's method to its own."""
    needs("postgresql")
    held, release = threading.Event(), threading.Event()
    answers: dict[str, Any] = {}
    url, headers = farm_url(shop), shop.orchard_h
    # The farm says bank transfer already, so making the account writes
    # nothing to the farm's row: only the lock keeps the edit out.
    assert client.patch(url, json={"payout_method": "bank_transfer"}, headers=headers).status_code == 200

    def connect() -> None:
        with app.test_client() as own:
            answers["connect"] = own.post(f"{url}/payout-account", json=BANK, headers=headers)

    def edit() -> None:
        with app.test_client() as own:
            answers["edit"] = own.patch(url, json={"payout_method": "stripe"}, headers=headers)

    requests = {"connect": connect, "edit": edit}
    holding = threading.Thread(target=requests[first])
    waiting = threading.Thread(target=requests["edit" if first == "connect" else "connect"])

    def hold(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if threading.current_thread() is holding and statement.startswith(HELD_AFTER[first]):
            held.set()
            assert release.wait(30)

    event.listen(db.engine, "after_cursor_execute", hold)
    try:
        holding.start()
        assert held.wait(30)
        waiting.start()
        wait_for_backends("wait_event_type = 'Lock'", 1, "the second request waiting on the farm's row")
        release.set()
        holding.join(30)
        waiting.join(30)
    finally:
        release.set()
        event.remove(db.engine, "after_cursor_execute", hold)

    assert answers["connect"].status_code == 200, answers["connect"].json
    assert answers["edit"].status_code == (409 if first == "connect" else 200), answers["edit"].json
    assert methods(shop.orchard.id) == ("bank_transfer", "bank_transfer")


def test_the_migration_gives_each_farm_its_accounts_method(app: Flask, client: FlaskClient, shop: Shop) -> None:
    orchard, chestnuts = shop.orchard.id, shop.chestnuts.id
    client.post(f"{farm_url(shop)}/payout-account", json=BANK, headers=shop.orchard_h)
    db.session.remove()
    downgrade(directory=MIGRATIONS, revision=BEFORE_ALIGNING)
    # As a PATCH could leave it before: the farm showing Stripe, the account
    # paying by the bank file; and a farm with no account keeps its own.
    db.session.execute(update(Farm).where(Farm.id.in_([orchard, chestnuts])).values(payout_method=PayoutMethod.STRIPE))
    db.session.commit()
    db.session.remove()

    upgrade(directory=MIGRATIONS)

    assert methods(orchard) == ("bank_transfer", "bank_transfer")
    assert methods(chestnuts) == ("stripe", None)
