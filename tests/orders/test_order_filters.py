"""The order list's filters match only what the caller is shown of an
order: a farmer, who sees a buyer's name and its own farms' parts, cannot
find orders by the buyer's email or phone, nor learn which other farms
share an order with it; an operator finds by all of them."""

from __future__ import annotations

from flask.testing import FlaskClient

from market.extensions import db
from tests.shop import Shop, place


def found(client: FlaskClient, headers: dict[str, str], **query: object) -> list[int]:
    response = client.get("/api/v1/orders", query_string=query, headers=headers)
    assert response.status_code == 200, response.json
    return [order["id"] for order in response.json["items"]]


def test_each_caller_filters_on_what_it_is_shown(client: FlaskClient, shop: Shop) -> None:
    shop.buyer.name, shop.buyer.phone = "Chen Meiling", "+8613800000002"
    db.session.commit()
    email, orchard, chestnuts = shop.buyer.email, shop.orchard, shop.chestnuts
    assert email is not None
    shared = place(client, shop, (shop.oranges, 2000), (shop.nuts, 1000))["id"]

    # The chestnut farmer sees the buyer's name and its own part only.
    farmer = shop.chestnut_h
    assert found(client, farmer) == [shared]
    assert found(client, farmer, buyer="meiling") == [shared]
    assert found(client, farmer, buyer=email[:6]) == []
    assert found(client, farmer, buyer="+86138") == []
    assert found(client, farmer, farm_id=chestnuts.id) == [shared]
    assert found(client, farmer, farm_id=orchard.id) == []
    assert found(client, farmer, farm=orchard.name) == []
    assert found(client, farmer, farm=chestnuts.name) == [shared]

    # The station's staff see every part of an order at their station, and
    # the buyer's name.
    assert found(client, shop.staff_h, farm_id=orchard.id) == [shared]
    assert found(client, shop.staff_h, buyer="+86138") == []
    assert found(client, shop.staff_h, buyer="Chen") == [shared]

    # The buyer sees the whole order; an operator finds it by anything.
    assert found(client, shop.buyer_h, farm_id=orchard.id) == [shared]
    for query in ({"buyer": email[:6]}, {"buyer": "+86138"}, {"farm_id": orchard.id}, {"farm": orchard.name}):
        assert found(client, shop.operator_h, **query) == [shared], query


def test_a_date_range_that_ends_before_it_starts_is_refused(client: FlaskClient, shop: Shop) -> None:
    place(client, shop, (shop.oranges, 2000))
    query = {"created_from": "2026-12-03", "created_to": "2026-12-01"}
    response = client.get("/api/v1/orders", query_string=query, headers=shop.buyer_h)
    assert response.status_code == 422, response.json
    assert response.json["errors"] == {"created_to": ["Must not be before created_from."]}
    one_day = {"created_from": "2026-12-01", "created_to": "2026-12-01"}
    assert client.get("/api/v1/orders", query_string=one_day, headers=shop.buyer_h).status_code == 200
