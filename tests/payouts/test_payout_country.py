"""Farms Stripe cannot pay: Stripe makes no connected accounts in mainland
China, and this marketplace's Express accounts are made in
STRIPE_CONNECT_COUNTRY only. Such a farm gets the bank-file payout without
asking, and asking for Stripe is a problem that names the bank file."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from market.catalog.models import Farm
from market.extensions import db
from market.outbox import OutboxMessage
from market.payouts import service as payouts
from market.payouts.models import PayoutAccount
from tests.fakes.stripe_server import FakeStripe, FakeStripeServer
from tests.payouts.conftest import queued, stripe_overrides
from tests.shop import Shop

BANK = {"account_holder": "刘长生", "bank_name": "中国农业银行 寻乌支行", "account_number": "6228 4800 1234 5678 901"}


@pytest.fixture
def app_overrides(stripe_server: FakeStripeServer) -> dict[str, Any]:
    return stripe_overrides(stripe_server)


def move(farm: Farm, country: str) -> None:
    farm.country = country
    db.session.commit()


def set_up(client: FlaskClient, shop: Shop, **body: Any) -> Any:
    return client.post(f"/api/v1/farms/{shop.orchard.id}/payout-account", json=body, headers=shop.orchard_h)


def test_a_farm_in_mainland_china_gets_the_bank_file_without_asking(
    client: FlaskClient, shop: Shop, fake: FakeStripe
) -> None:
    move(shop.orchard, "CN")

    response = set_up(client, shop, **BANK)

    assert response.status_code == 200, response.json
    assert (response.json["method"], response.json["status"]) == ("bank_transfer", "ready")
    assert response.json["bank_account_masked"].endswith("8901")
    assert db.session.get(Farm, shop.orchard.id).payout_method == "bank_transfer"  # type: ignore[union-attr]
    assert queued("payouts.connect_account") == []
    assert fake.calls["POST /v1/accounts"] == 0


def test_asking_stripe_to_pay_a_farm_in_mainland_china_is_a_problem_that_names_the_bank_file(
    client: FlaskClient, shop: Shop, fake: FakeStripe
) -> None:
    move(shop.orchard, "CN")

    response = set_up(client, shop, method="stripe")

    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    problem = response.json
    assert problem["type"] == "/problems/stripe-cannot-pay-farm"
    assert "mainland China (CN)" in problem["detail"]
    assert "bank file" in problem["detail"]
    assert problem["payout_method"] == "bank_transfer"
    assert problem["errors"] == {"method": ["Stripe cannot pay a farm in CN; use bank_transfer."]}
    # Nothing was written, nothing queued, Stripe never asked.
    assert db.session.scalar(select(func.count()).select_from(PayoutAccount)) == 0
    assert db.session.scalar(select(func.count()).select_from(OutboxMessage)) == 0
    assert db.session.get(Farm, shop.orchard.id).payout_method is None  # type: ignore[union-attr]
    assert fake.calls["POST /v1/accounts"] == 0


def test_a_farm_outside_the_connect_country_is_paid_by_the_bank_file_too(client: FlaskClient, shop: Shop) -> None:
    move(shop.orchard, "TH")

    refused = set_up(client, shop, method="stripe")
    assert refused.status_code == 422
    assert "for farms in SG only" in refused.json["detail"]
    # Without a choice it is the bank file, which needs the bank details.
    incomplete = set_up(client, shop)
    assert incomplete.status_code == 422
    assert set(incomplete.json["errors"]) == {"account_holder", "bank_name", "account_number"}
    assert set_up(client, shop, **BANK).json["method"] == "bank_transfer"


def test_a_farm_in_the_connect_country_gets_stripe_without_asking(client: FlaskClient, shop: Shop) -> None:
    response = set_up(client, shop)

    assert response.status_code == 200, response.json
    assert (response.json["method"], response.json["status"]) == ("stripe", "connecting")
    assert queued("payouts.connect_account") == [{"farm_id": shop.orchard.id}]


def test_a_farm_that_moved_to_mainland_china_after_choosing_stripe_gets_no_stripe_account(
    client: FlaskClient, shop: Shop, fake: FakeStripe
) -> None:
    assert set_up(client, shop, method="stripe").status_code == 200
    move(shop.orchard, "CN")

    account = payouts.connect_account(shop.orchard.id)

    assert account is not None and account.stripe_account_id is None
    assert account.attention is not None and "bank_transfer" in account.attention
    assert fake.calls["POST /v1/accounts"] == 0


def test_moving_from_stripe_to_the_bank_file_clears_the_stripe_warning(
    client: FlaskClient, shop: Shop, fake: FakeStripe
) -> None:
    assert set_up(client, shop, method="stripe").status_code == 200
    move(shop.orchard, "CN")
    warned = payouts.connect_account(shop.orchard.id)
    assert warned is not None and warned.attention is not None

    moved = set_up(client, shop, method="bank_transfer", **BANK)

    assert moved.status_code == 200, moved.json
    assert (moved.json["method"], moved.json["status"], moved.json["attention"]) == ("bank_transfer", "ready", None)
    # A Stripe worker's failure that lands after the move warns of nothing.
    payouts.flag_account(shop.orchard.id, "Stripe answered 500 after all retries.")
    shown = client.get(f"/api/v1/farms/{shop.orchard.id}/payout-account", headers=shop.orchard_h).json
    assert shown["attention"] is None


def test_a_farm_says_its_country_and_cannot_choose_stripe_where_stripe_cannot_pay(
    client: FlaskClient, shop: Shop
) -> None:
    farm = client.get(f"/api/v1/farms/{shop.orchard.id}", headers=shop.orchard_h).json
    assert farm["country"] == "SG"
    url = f"/api/v1/farms/{shop.orchard.id}"
    assert client.patch(url, json={"country": "china"}, headers=shop.orchard_h).status_code == 422

    assert client.patch(url, json={"payout_method": "stripe"}, headers=shop.orchard_h).status_code == 200
    moved = client.patch(url, json={"country": "CN"}, headers=shop.orchard_h)
    assert moved.status_code == 422
    assert moved.json["type"] == "/problems/stripe-cannot-pay-farm"
    assert db.session.get(Farm, shop.orchard.id).country == "SG"  # type: ignore[union-attr]
    assert (
        client.patch(url, json={"country": "CN", "payout_method": "bank_transfer"}, headers=shop.orchard_h).json[
            "country"
        ]
        == "CN"
    )
