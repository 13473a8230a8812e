from __future__ import annotations

from dataclasses import dataclass

import pytest
from flask import Flask
from flask.testing import FlaskClient

from market.accounts.models import Role, User
from market.catalog.models import Farm, Listing
from tests.factories import FarmFactory, ListingFactory, bearer, token_for, user_with_token

# Local receivers, the fast-retry settings and the real worker.
from tests.notifications.conftest import celery_app, channels, receiver, smtp, worker  # noqa: F401

CHANNELS = "/api/v1/sales-channels"


@dataclass
class Stall:
    """A farm with two listings sold elsewhere too, and its farmer's token."""

    farm: Farm
    farmer: User
    farmer_h: dict[str, str]
    oranges: Listing
    chestnuts: Listing


@pytest.fixture
def stall(channels: Flask) -> Stall:  # noqa: F811 (pytest passes the imported fixture by name)
    farm = FarmFactory()
    return Stall(
        farm=farm,
        farmer=farm.owner,
        farmer_h=bearer(token_for(farm.owner)),
        oranges=ListingFactory(farm=farm, sku="ORANGE", stock_g=50_000),
        chestnuts=ListingFactory(farm=farm, sku="CHESTNUT", stock_g=20_000),
    )


def create_channel(client: FlaskClient, stall: Stall, **fields: object) -> dict:  # type: ignore[type-arg]
    response = client.post(
        CHANNELS, json={"farm_id": stall.farm.id, "name": "Village shop", **fields}, headers=stall.farmer_h
    )
    assert response.status_code == 201, response.json
    return response.json  # type: ignore[no-any-return]


def other_farmer() -> dict[str, str]:
    return user_with_token(Role.FARMER)[1]
