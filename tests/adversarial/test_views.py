"""Views that show more than their reader may see: station staff reading
what an order cost, anybody reading the listings of a farm that was never
verified and is now suspended.

Each test is one attempt to read what is not shown; it passes when the
answer shows nothing of it."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from market.accounts.models import Role
from market.catalog.models import FarmStatus
from tests.factories import FarmFactory, ListingFactory, bearer, token_for, user_with_token
from tests.shop import Shop, part_of, pay, place

PROBLEM = "application/problem+json"
LINE_MONEY = ("price_per_kg", "amount", "premium_amount", "premiums")


def ship_to_station(client: FlaskClient, shop: Shop) -> dict[str, Any]:
    """An order of both farms, paid, packed and shipped to the station."""
    order = place(client, shop, (shop.oranges, 2000), (shop.nuts, 1000))
    pay(order["id"])
    for farm, headers in ((shop.orchard, shop.orchard_h), (shop.chestnuts, shop.chestnut_h)):
        part = part_of(order, farm)
        base = f"/api/v1/orders/{order['id']}/parts/{part['id']}"
        weighed = {"weights": [{"line_id": line["id"], "weighed_g": line["ordered_g"]} for line in part["lines"]]}
        assert client.post(f"{base}/pack", json=weighed, headers=headers).status_code == 200
        assert client.post(f"{base}/ship", json=None, headers=headers).status_code == 200
    return order


def assert_no_money(order: dict[str, Any]) -> None:
    assert (order["total"], order["max_total"], order["pickup_code"]) == (None, None, None)
    assert order["parts"], "staff see every part"
    for part in order["parts"]:
        assert part["subtotal"] is None
        assert part["lines"], "and every line"
        for line in part["lines"]:
            assert {name: line[name] for name in LINE_MONEY} == dict.fromkeys(LINE_MONEY)
            assert line["ordered_g"] > 0 and line["product_name"]


def test_station_staff_read_no_money_of_an_order(client: FlaskClient, shop: Shop) -> None:
    order = ship_to_station(client, shop)
    read = client.get(f"/api/v1/orders/{order['id']}", headers=shop.staff_h)
    assert read.status_code == 200
    assert_no_money(read.json)
    listed = client.get("/api/v1/orders", headers=shop.staff_h).json["items"]
    assert [o["id"] for o in listed] == [order["id"]]
    assert_no_money(listed[0])
    part = read.json["parts"][0]
    received = client.post(f"/api/v1/orders/{order['id']}/parts/{part['id']}/receive", headers=shop.staff_h)
    assert received.status_code == 200
    assert_no_money(received.json)
    # The buyer, for whom the money is, still sees it all.
    mine = client.get(f"/api/v1/orders/{order['id']}", headers=shop.buyer_h).json
    assert mine["total"] > 0 and all(p["subtotal"] > 0 for p in mine["parts"])
    assert all(line["amount"] > 0 for p in mine["parts"] for line in p["lines"])


def test_staff_who_farm_see_their_own_parts_money_and_no_other(client: FlaskClient, shop: Shop) -> None:
    order = ship_to_station(client, shop)
    staff_user = shop.orchard.owner
    client.post(
        f"/api/v1/fulfilment-points/{shop.station.id}/staff", json={"user_id": staff_user.id}, headers=shop.operator_h
    )
    read = client.get(f"/api/v1/orders/{order['id']}", headers=shop.orchard_h).json
    own, other = part_of(read, shop.orchard), part_of(read, shop.chestnuts)
    assert own["subtotal"] > 0 and own["lines"][0]["amount"] > 0
    assert other["subtotal"] is None and other["lines"][0]["amount"] is None
    assert read["total"] is None


def test_the_documented_schema_says_staff_get_null(client: FlaskClient) -> None:
    schemas = client.get("/api/v1/openapi.json").json["components"]["schemas"]
    assert schemas["OrderPart"]["properties"]["subtotal"]["nullable"] is True
    for name in LINE_MONEY:
        assert schemas["OrderLine"]["properties"][name]["nullable"] is True


@pytest.fixture
def never_verified(client: FlaskClient, shop: Shop) -> dict[str, Any]:
    """A farm an operator suspended without ever verifying it, with a
    listing its farmer set active and another paused."""
    farm = FarmFactory(status=FarmStatus.PENDING)
    active = ListingFactory(farm=farm)
    paused = ListingFactory(farm=farm, status="paused")
    suspended = client.post(f"/api/v1/farms/{farm.id}/suspend", headers=shop.operator_h)
    assert suspended.status_code == 200 and suspended.json["status"] == "suspended"
    return {"farm": farm.id, "listings": [active.id, paused.id], "owner": bearer(token_for(farm.owner))}


@pytest.mark.parametrize("reader", ["anonymous", "buyer", "other farmer"])
def test_a_farm_suspended_before_it_was_ever_verified_keeps_its_listings_hidden(
    client: FlaskClient, shop: Shop, never_verified: dict[str, Any], reader: str
) -> None:
    headers = {"anonymous": {}, "buyer": shop.buyer_h, "other farmer": shop.orchard_h}[reader]
    for listing_id in never_verified["listings"]:
        for url in (f"/api/v1/listings/{listing_id}", f"/api/v1/listings/{listing_id}/lots"):
            hidden = client.get(url, headers=headers)
            assert hidden.status_code == 404 and hidden.content_type == PROBLEM, url
    listed = client.get("/api/v1/listings", headers=headers).json["items"]
    assert not {item["id"] for item in listed} & set(never_verified["listings"])
    assert client.get(f"/api/v1/farms/{never_verified['farm']}", headers=headers).status_code == 404


def test_its_farmer_and_the_operators_still_see_them(
    client: FlaskClient, shop: Shop, never_verified: dict[str, Any]
) -> None:
    for headers in (never_verified["owner"], shop.operator_h):
        for listing_id in never_verified["listings"]:
            assert client.get(f"/api/v1/listings/{listing_id}", headers=headers).status_code == 200


def test_a_farm_verified_then_suspended_keeps_its_listings_readable_by_id(client: FlaskClient, shop: Shop) -> None:
    farm = FarmFactory(status=FarmStatus.PENDING)
    listing = ListingFactory(farm=farm)
    assert client.post(f"/api/v1/farms/{farm.id}/verify", headers=shop.operator_h).status_code == 200
    assert client.post(f"/api/v1/farms/{farm.id}/suspend", headers=shop.operator_h).status_code == 200
    _, buyer = user_with_token(Role.BUYER)
    assert client.get(f"/api/v1/listings/{listing.id}", headers=buyer).status_code == 200  # old orders keep links
    listed = client.get("/api/v1/listings", headers=buyer).json["items"]
    assert listing.id not in {item["id"] for item in listed}  # but it is not for sale
