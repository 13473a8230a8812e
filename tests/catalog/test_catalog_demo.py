from __future__ import annotations

from flask.testing import FlaskClient
from sqlalchemy import func, select

from market import demo
from market.catalog.models import Farm, FulfilmentPoint, Listing, Lot
from market.extensions import db


def counts() -> dict[str, int]:
    return {
        model.__name__: db.session.scalar(select(func.count()).select_from(model)) or 0
        for model in (Farm, Listing, Lot, FulfilmentPoint)
    }


def test_demo_catalogue_is_seeded_once_and_on_sale(client: FlaskClient) -> None:
    demo.seed()
    first = counts()
    demo.seed()
    assert counts() == first
    assert first["Farm"] == len(demo.FARMS)

    page = client.get("/api/v1/listings", query_string={"sort": "price"}).json["items"]
    assert {item["farm"]["county"] for item in page} == {"寻乌县", "青龙满族自治县", "永顺县"}
    assert all(item["purchasable"] and item["current_lot"] for item in page)
    oranges = client.get("/api/v1/listings", query_string={"brand": "gannan-navel-orange"}).json["items"]
    assert {item["sku"] for item in oranges} == {"XW-NAVEL-80", "XW-NAVEL-70"}
    stations = client.get("/api/v1/fulfilment-points", query_string={"kind": "village_station"}).json["items"]
    assert all(station["parent_id"] for station in stations)
