"""A 201 says where the new thing is: its `Location` answers a GET with it."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient

from tests.shop import Shop


def created_at(client: FlaskClient, url: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[str, Any]:
    response = client.post(url, json=body, headers=headers)
    assert response.status_code == 201, response.json
    return response.headers["Location"], response.json


def test_what_a_post_creates_is_at_its_location(client: FlaskClient, shop: Shop) -> None:
    lot = {"code": "XW-2026-11-20", "harvest_date": "2026-11-20", "grams": 300_000}
    order = {"lines": [{"listing_id": shop.oranges.id, "grams": 1000}], "fulfilment_point_id": shop.station.id}
    programme = {"name": "Xunwu navel bonus", "sponsor": "Fresh Mart", "rate_per_kg": 100, "funded_by": "buyer"}
    programme["valid_from"] = "2026-01-01T00:00:00+08:00"
    farm = {"name": "Hillside", "village": "下廖村", "county": "寻乌县", "province": "江西省"}
    for url, body, headers in (
        ("/api/v1/farms", farm, shop.orchard_h),
        (f"/api/v1/listings/{shop.oranges.id}/lots", lot, shop.orchard_h),
        ("/api/v1/orders", order, shop.buyer_h),
        ("/api/v1/premium-programmes", programme, shop.operator_h),
    ):
        location, created = created_at(client, url, body, headers)
        assert location == f"{url}/{created['id']}" or location.endswith(f"/lots/{created['id']}"), location
        read = client.get(location, headers=headers)
        assert read.status_code == 200, (location, read.json)
        assert read.json["id"] == created["id"]


def test_a_vocabulary_entry_is_at_the_path_that_edits_it(client: FlaskClient, shop: Shop) -> None:
    body = {"code": "citrus", "name_zh": "柑橘", "name_en": "Citrus"}
    location, created = created_at(client, "/api/v1/categories", body, shop.operator_h)
    assert location == f"/api/v1/categories/{created['id']}"
    renamed = client.patch(location, json={"name_en": "Citrus fruit"}, headers=shop.operator_h)
    assert renamed.status_code == 200


def test_a_replayed_create_says_the_same_location(client: FlaskClient, shop: Shop) -> None:
    order = {"lines": [{"listing_id": shop.oranges.id, "grams": 1000}], "fulfilment_point_id": shop.station.id}
    headers = shop.buyer_h | {"Idempotency-Key": "order-location-1"}
    first = client.post("/api/v1/orders", json=order, headers=headers)
    again = client.post("/api/v1/orders", json=order, headers=headers)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Location"] == first.headers["Location"] == f"/api/v1/orders/{first.json['id']}"
