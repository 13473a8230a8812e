from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import event, func, select

from market.accounts.models import Role
from market.catalog.models import Category, Farm, FarmStatus, Listing, ListingStatus, Lot
from market.db import business_today
from market.extensions import db
from tests.conftest import needs
from tests.factories import (
    BrandFactory,
    CategoryFactory,
    FarmFactory,
    ListingFactory,
    user_with_token,
)


def count(model: type) -> int:
    return db.session.scalar(select(func.count()).select_from(model)) or 0


def farmer_with_farm(**farm: Any) -> tuple[Farm, dict[str, str]]:
    user, headers = user_with_token(Role.FARMER)
    return FarmFactory(owner=user, **farm), headers


def listing_body(farm: Farm, **changes: Any) -> dict[str, Any]:
    category = db.session.scalar(select(Category).where(Category.code == "citrus")) or CategoryFactory(code="citrus")
    body = {
        "farm_id": farm.id,
        "sku": "XW-NAVEL-80",
        "product_name": "赣南脐橙",
        "category": category.code,
        "variety": "纽荷尔",
        "grade": "80mm+",
        "price_per_kg": 1200,
        "stock_g": 50_000,
        "min_order_g": 2500,
        "step_g": 2500,
        "photo_urls": ["https://img.example.test/navel.jpg"],
    }
    return body | changes


def stored(listing_id: int) -> Listing:
    db.session.expire_all()
    listing = db.session.get(Listing, listing_id)
    assert listing is not None
    return listing


def test_farmer_creates_a_draft_listing_in_the_market_currency(client: FlaskClient) -> None:
    farm, headers = farmer_with_farm()
    response = client.post("/api/v1/listings", json=listing_body(farm), headers=headers)
    assert response.status_code == 201, response.json
    listing = response.json
    assert listing["status"] == "draft"
    assert listing["currency"] == "CNY"
    assert listing["origin_county"] == farm.county
    assert listing["farm"] == {
        "id": farm.id,
        "name": farm.name,
        "village": farm.village,
        "county": farm.county,
        "province": farm.province,
    }
    assert listing["category"] == "citrus" and listing["brand"] is None
    assert listing["purchasable"] is False


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"price_per_kg": 0}, "price_per_kg"),
        ({"price_per_kg": -100}, "price_per_kg"),
        ({"price_per_kg": 12.5}, "price_per_kg"),
        ({"stock_g": 1.5}, "stock_g"),
        ({"stock_g": -1}, "stock_g"),
        ({"min_order_g": 2500.5}, "min_order_g"),
        ({"step_g": 0}, "step_g"),
        ({"min_order_g": 2500, "step_g": 1000}, "step_g"),
        ({"category": "spaceships"}, "category"),
        ({"brand": "nope"}, "brand"),
        ({"photo_urls": ["ftp://img.example.test/a.jpg"]}, "photo_urls.0"),
        ({"colour": "orange"}, "colour"),
    ],
)
def test_bad_listing_input_is_a_422_naming_the_field(client: FlaskClient, changes: dict[str, Any], field: str) -> None:
    farm, headers = farmer_with_farm()
    response = client.post("/api/v1/listings", json=listing_body(farm, **changes), headers=headers)
    assert response.status_code == 422, response.json
    assert response.content_type == "application/problem+json"
    assert field in response.json["errors"]
    assert count(Listing) == 0


def test_a_brand_is_allowed_only_in_its_counties(client: FlaskClient) -> None:
    brand = BrandFactory(code="gannan-navel")
    xunwu, headers = farmer_with_farm(county="寻乌县")
    allowed = client.post("/api/v1/listings", json=listing_body(xunwu, brand="gannan-navel"), headers=headers)
    assert allowed.status_code == 201, allowed.json
    assert allowed.json["brand"] == brand.code

    moved = client.patch(f"/api/v1/listings/{allowed.json['id']}", json={"origin_county": "永顺县"}, headers=headers)
    assert moved.status_code == 422 and "origin_county" in moved.json["errors"]

    yongshun, other = farmer_with_farm(county="永顺县")
    refused = client.post(
        "/api/v1/listings", json=listing_body(yongshun, sku="YS-1", brand="gannan-navel"), headers=other
    )
    assert refused.status_code == 422
    assert "寻乌县" in refused.json["errors"]["brand"][0]
    assert count(Listing) == 1


def test_a_sku_is_unique_per_farm(client: FlaskClient) -> None:
    farm, headers = farmer_with_farm()
    body = listing_body(farm)
    assert client.post("/api/v1/listings", json=body, headers=headers).status_code == 201
    again = client.post("/api/v1/listings", json=body, headers=headers)
    assert again.status_code == 409 and "sku" in again.json["errors"]

    second_farm = FarmFactory(owner=farm.owner)
    elsewhere = client.post("/api/v1/listings", json={**body, "farm_id": second_farm.id}, headers=headers)
    assert elsewhere.status_code == 201


def test_listing_on_another_farmers_farm_is_not_found(client: FlaskClient) -> None:
    farm = FarmFactory()
    _, other = farmer_with_farm()
    response = client.post("/api/v1/listings", json=listing_body(farm), headers=other)
    assert response.status_code == 404
    assert count(Listing) == 0


def test_lifecycle_draft_active_paused_sold_out_archived(client: FlaskClient) -> None:
    farm, headers = farmer_with_farm()
    listing_id = client.post("/api/v1/listings", json=listing_body(farm, stock_g=0), headers=headers).json["id"]

    def act(action: str) -> Any:
        return client.post(f"/api/v1/listings/{listing_id}/{action}", headers=headers)

    assert act("pause").status_code == 409
    assert act("activate").json["status"] == "sold_out"
    restocked = client.patch(f"/api/v1/listings/{listing_id}", json={"stock_g": 5000}, headers=headers)
    assert restocked.json["status"] == "active" and restocked.json["purchasable"] is True
    assert act("pause").json["status"] == "paused"
    assert act("activate").json["status"] == "active"
    assert act("archive").json["status"] == "archived"
    assert act("activate").status_code == 409
    refused = client.patch(f"/api/v1/listings/{listing_id}", json={"price_per_kg": 900}, headers=headers)
    assert refused.status_code == 409
    assert stored(listing_id).price_per_kg == 1200
    assert client.get(f"/api/v1/listings/{listing_id}").json["status"] == "archived"


def test_lots_add_stock_and_the_latest_harvest_is_current(client: FlaskClient) -> None:
    farm, headers = farmer_with_farm()
    listing = ListingFactory(farm=farm, stock_g=0, status=ListingStatus.SOLD_OUT)

    def add(code: str, harvested: str, grams: float) -> Any:
        body = {"code": code, "harvest_date": harvested, "plot": "东坡 3 号地", "grade": "特级", "grams": grams}
        return client.post(f"/api/v1/listings/{listing.id}/lots", json=body, headers=headers)

    first = add("XW-2026-11-20", "2026-11-20", 300_000)
    assert first.status_code == 201, first.json
    add("XW-2026-11-10", "2026-11-10", 200_000)
    shown = client.get(f"/api/v1/listings/{listing.id}").json
    assert shown["stock_g"] == 500_000
    assert shown["status"] == "active"
    assert shown["current_lot"]["code"] == "XW-2026-11-20"
    assert shown["harvest_date"] == "2026-11-20"

    duplicate = add("XW-2026-11-20", "2026-11-21", 1000)
    assert duplicate.status_code == 409 and "code" in duplicate.json["errors"]
    fractional = add("XW-frac", "2026-11-21", 1000.5)
    assert fractional.status_code == 422 and "grams" in fractional.json["errors"]
    assert count(Lot) == 2
    lots = client.get(f"/api/v1/listings/{listing.id}/lots").json["items"]
    assert [lot["code"] for lot in lots] == ["XW-2026-11-20", "XW-2026-11-10"]


def test_a_lot_not_yet_harvested_or_from_before_2000_is_refused(client: FlaskClient) -> None:
    farm, headers = farmer_with_farm()
    listing = ListingFactory(farm=farm, stock_g=1000)
    url = f"/api/v1/listings/{listing.id}/lots"
    today = business_today()

    for harvested in (today + timedelta(days=1), date(2027 + 100, 1, 1), date(1999, 12, 31)):
        body = {"code": "XW-LATE", "harvest_date": harvested.isoformat(), "grams": 5000}
        refused = client.post(url, json=body, headers=headers)
        assert refused.status_code == 422, (harvested, refused.json)
        assert refused.mimetype == "application/problem+json"
        assert list(refused.json["errors"]) == ["harvest_date"]
    assert count(Lot) == 0
    assert stored(listing.id).stock_g == 1000

    harvested_today = {"code": "XW-TODAY", "harvest_date": today.isoformat(), "grams": 5000}
    assert client.post(url, json=harvested_today, headers=headers).status_code == 201
    assert stored(listing.id).stock_g == 6000


def test_bulk_stock_update_sets_many_by_id_or_sku(client: FlaskClient) -> None:
    farm, headers = farmer_with_farm()
    oranges = ListingFactory(farm=farm, sku="NAVEL", stock_g=10_000)
    pomelos = ListingFactory(farm=farm, sku="POMELO", stock_g=10_000)
    body = {
        "items": [
            {"listing_id": oranges.id, "stock_g": 0},
            {"sku": "POMELO", "farm_id": farm.id, "stock_g": 80_000},
        ]
    }
    response = client.post("/api/v1/listings/stock", json=body, headers=headers)
    assert response.status_code == 200, response.json
    assert [(i["id"], i["stock_g"], i["status"]) for i in response.json["items"]] == [
        (oranges.id, 0, "sold_out"),
        (pomelos.id, 80_000, "active"),
    ]


def test_a_farmer_with_one_farm_sets_stock_by_sku_alone(client: FlaskClient) -> None:
    farm, headers = farmer_with_farm()
    pomelos = ListingFactory(farm=farm, sku="POMELO", stock_g=10_000)
    ListingFactory(sku="POMELO", stock_g=10_000)  # another farmer's farm uses the same SKU
    response = client.post(
        "/api/v1/listings/stock", json={"items": [{"sku": "POMELO", "stock_g": 4_000}]}, headers=headers
    )
    assert response.status_code == 200, response.json
    assert [(i["id"], i["stock_g"]) for i in response.json["items"]] == [(pomelos.id, 4_000)]


def test_a_farmer_with_several_farms_names_the_farm_of_each_sku(client: FlaskClient) -> None:
    farm, headers = farmer_with_farm()
    FarmFactory(owner=farm.owner)
    navel = ListingFactory(farm=farm, sku="NAVEL", stock_g=10_000)
    body = {"items": [{"listing_id": navel.id, "stock_g": 1}, {"sku": "NAVEL", "stock_g": 2}]}
    response = client.post("/api/v1/listings/stock", json=body, headers=headers)
    assert response.status_code == 422
    assert response.json["errors"] == {"items.1.farm_id": ["Required with sku unless you have exactly one farm."]}
    assert "give farm_id" in response.json["detail"]
    assert stored(navel.id).stock_g == 10_000
    named = {"items": [{"sku": "NAVEL", "farm_id": farm.id, "stock_g": 2}]}
    assert client.post("/api/v1/listings/stock", json=named, headers=headers).status_code == 200
    _, operator = user_with_token(Role.OPERATOR)
    refused = client.post("/api/v1/listings/stock", json={"items": [{"sku": "NAVEL", "stock_g": 3}]}, headers=operator)
    assert refused.status_code == 422 and list(refused.json["errors"]) == ["items.0.farm_id"]


@pytest.mark.parametrize(
    ("item", "status", "field"),
    [
        ({"listing_id": 999_999, "stock_g": 5}, 422, "items.1.listing_id"),
        ({"sku": "NOPE", "farm_id": 1, "stock_g": 5}, 422, "items.1.sku"),
        ({"listing_id": "other", "stock_g": 5}, 422, "items.1.listing_id"),
        ({"listing_id": "archived", "stock_g": 5}, 409, "items.1.listing_id"),
        ({"listing_id": "first", "stock_g": 5}, 422, "items.1.listing_id"),
    ],
)
def test_bulk_stock_update_is_all_or_nothing(
    client: FlaskClient, item: dict[str, Any], status: int, field: str
) -> None:
    farm, headers = farmer_with_farm()
    first = ListingFactory(farm=farm, stock_g=10_000)
    named = {
        "other": ListingFactory().id,
        "archived": ListingFactory(farm=farm, status=ListingStatus.ARCHIVED).id,
        "first": first.id,
    }
    if item.get("listing_id") in named:
        item = {**item, "listing_id": named[item["listing_id"]]}
    body = {"items": [{"listing_id": first.id, "stock_g": 1}, item]}
    response = client.post("/api/v1/listings/stock", json=body, headers=headers)
    assert response.status_code == status, response.json
    assert field in response.json["errors"]
    assert stored(first.id).stock_g == 10_000


def test_bulk_stock_update_refuses_negative_and_fractional_grams(client: FlaskClient) -> None:
    farm, headers = farmer_with_farm()
    listing = ListingFactory(farm=farm, stock_g=10_000)
    body = {"items": [{"listing_id": listing.id, "stock_g": 5}, {"listing_id": listing.id, "stock_g": -5}]}
    negative = client.post("/api/v1/listings/stock", json=body, headers=headers)
    assert negative.status_code == 422
    assert list(negative.json["errors"]) == ["items.1.stock_g"]
    fractional = client.post(
        "/api/v1/listings/stock", json={"items": [{"listing_id": listing.id, "stock_g": 2.5}]}, headers=headers
    )
    assert fractional.status_code == 422
    assert stored(listing.id).stock_g == 10_000


def test_bulk_stock_update_replays_for_the_same_idempotency_key(client: FlaskClient) -> None:
    farm, headers = farmer_with_farm()
    listing = ListingFactory(farm=farm, stock_g=10_000)
    keyed = headers | {"Idempotency-Key": "stock-sync-42"}
    body = {"items": [{"listing_id": listing.id, "stock_g": 7_000}]}
    first = client.post("/api/v1/listings/stock", json=body, headers=keyed)
    assert first.status_code == 200
    client.patch(f"/api/v1/listings/{listing.id}", json={"stock_g": 3_000}, headers=headers)

    replay = client.post("/api/v1/listings/stock", json=body, headers=keyed)
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json == first.json
    assert stored(listing.id).stock_g == 3_000
    other_body = client.post(
        "/api/v1/listings/stock", json={"items": [{"listing_id": listing.id, "stock_g": 1}]}, headers=keyed
    )
    assert other_body.status_code == 422


@pytest.mark.parametrize("created", ["farm", "listing", "lot"])
def test_a_create_retried_with_its_idempotency_key_makes_one_and_answers_it_again(
    client: FlaskClient, created: str
) -> None:
    """A sync client whose POST timed out sends it again with the same key:
    one farm, listing or lot (and its grams added once), the first answer
    replayed; the key with another body is a 422 that makes nothing."""
    farm, headers = farmer_with_farm()
    listing = ListingFactory(farm=farm, stock_g=10_000)
    url, body, other, model = {
        "farm": ("/api/v1/farms", {"name": "果园", "village": "上车村", "county": "寻乌县", "province": "江西省"},
                 {"name": "另一个果园", "village": "上车村", "county": "寻乌县", "province": "江西省"}, Farm),
        "listing": ("/api/v1/listings", listing_body(farm, sku=None), listing_body(farm, sku="OTHER"), Listing),
        "lot": (f"/api/v1/listings/{listing.id}/lots", {"code": "LOT-1", "harvest_date": "2026-11-20", "grams": 5_000},
                {"code": "LOT-2", "harvest_date": "2026-11-20", "grams": 5_000}, Lot),
    }[created]  # fmt: skip
    before = count(model)
    keyed = headers | {"Idempotency-Key": f"sync-{created}-1"}

    first = client.post(url, json=body, headers=keyed)
    replay = client.post(url, json=body, headers=keyed)
    refused = client.post(url, json=other, headers=keyed)

    assert first.status_code == 201, first.json
    assert (replay.status_code, replay.json, replay.headers["Location"]) == (201, first.json, first.headers["Location"])
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert refused.status_code == 422 and "Idempotency-Key" in refused.json["errors"]
    assert count(model) == before + 1
    assert stored(listing.id).stock_g == (15_000 if created == "lot" else 10_000)


def test_unchanged_listing_and_page_answer_304_to_their_etag(client: FlaskClient) -> None:
    farm, headers = farmer_with_farm()
    listing = ListingFactory(farm=farm)
    one = client.get(f"/api/v1/listings/{listing.id}")
    page = client.get("/api/v1/listings")
    assert one.headers["ETag"] and page.headers["ETag"]

    again = client.get(f"/api/v1/listings/{listing.id}", headers={"If-None-Match": one.headers["ETag"]})
    assert again.status_code == 304 and again.data == b""
    assert again.headers["ETag"] == one.headers["ETag"]
    page_again = client.get("/api/v1/listings", headers={"If-None-Match": page.headers["ETag"]})
    assert page_again.status_code == 304

    client.patch(f"/api/v1/listings/{listing.id}", json={"price_per_kg": 1100}, headers=headers)
    changed = client.get(f"/api/v1/listings/{listing.id}", headers={"If-None-Match": one.headers["ETag"]})
    assert changed.status_code == 200 and changed.json["price_per_kg"] == 1100
    assert client.get("/api/v1/listings", headers={"If-None-Match": page.headers["ETag"]}).status_code == 200


def test_updated_since_returns_only_what_changed(client: FlaskClient) -> None:
    farm, headers = farmer_with_farm()
    quiet = ListingFactory(farm=farm)
    busy = ListingFactory(farm=farm)
    since = stored(quiet.id).updated_at
    later = since.replace(microsecond=0).isoformat()
    db.session.execute(
        Listing.__table__.update().where(Listing.id == quiet.id).values(updated_at=since.replace(year=since.year - 1))
    )
    db.session.commit()
    client.patch(f"/api/v1/listings/{busy.id}", json={"stock_g": 1000}, headers=headers)
    changed = client.get("/api/v1/listings", query_string={"updated_since": later}).json["items"]
    assert [item["id"] for item in changed] == [busy.id]


def test_owner_sees_every_status_others_see_what_is_on_sale(client: FlaskClient) -> None:
    farm, owner = farmer_with_farm()
    by_status = {status: ListingFactory(farm=farm, status=status).id for status in ListingStatus}
    pending_farm = FarmFactory(status=FarmStatus.PENDING)
    ListingFactory(farm=pending_farm)
    _, buyer = user_with_token(Role.BUYER)
    _, operator = user_with_token(Role.OPERATOR)

    def ids(headers: dict[str, str] | None = None) -> set[int]:
        return {item["id"] for item in client.get("/api/v1/listings", headers=headers or {}).json["items"]}

    on_sale = {by_status[ListingStatus.ACTIVE], by_status[ListingStatus.SOLD_OUT]}
    assert ids() == on_sale
    assert ids(buyer) == on_sale
    assert ids(owner) == set(by_status.values())
    assert len(ids(operator)) == len(ListingStatus) + 1

    draft = by_status[ListingStatus.DRAFT]
    assert client.get(f"/api/v1/listings/{draft}", headers=buyer).status_code == 404
    assert client.get(f"/api/v1/listings/{draft}", headers=owner).status_code == 200
    for readable in (ListingStatus.PAUSED, ListingStatus.ARCHIVED):
        assert client.get(f"/api/v1/listings/{by_status[readable]}").status_code == 200


def test_a_suspended_farm_keeps_its_listings_readable_but_not_purchasable(client: FlaskClient) -> None:
    listing = ListingFactory()
    _, operator = user_with_token(Role.OPERATOR)
    client.post(f"/api/v1/farms/{listing.farm_id}/suspend", headers=operator)
    shown = client.get(f"/api/v1/listings/{listing.id}")
    assert shown.status_code == 200 and shown.json["purchasable"] is False
    assert client.get("/api/v1/listings").json["items"] == []


def browse(client: FlaskClient, **query: Any) -> list[str]:
    response = client.get("/api/v1/listings", query_string=query)
    assert response.status_code == 200, response.json
    return [item["sku"] for item in response.json["items"]]


def test_browse_filters(client: FlaskClient) -> None:
    citrus = CategoryFactory(code="citrus")
    nuts = CategoryFactory(code="nuts")
    gannan = BrandFactory(code="gannan-navel")
    xunwu = FarmFactory(county="寻乌县", province="江西省")
    qinglong = FarmFactory(county="青龙满族自治县", province="河北省", village="肖营子村")
    ListingFactory(
        farm=xunwu, sku="NAVEL", product_name="赣南脐橙", variety="Newhall", category=citrus, brand=gannan,
        price_per_kg=1200, harvest_date=date(2026, 11, 20),
    )  # fmt: skip
    ListingFactory(
        farm=xunwu, sku="NAVEL-B", product_name="脐橙 次果", variety="纽荷尔", category=citrus, price_per_kg=600,
        stock_g=0, status=ListingStatus.SOLD_OUT, harvest_date=date(2026, 11, 1),
    )  # fmt: skip
    ListingFactory(
        farm=qinglong, sku="CHESTNUT", product_name="板栗", variety="Yanshan 100%_Wild", category=nuts,
        price_per_kg=2600, harvest_date=date(2026, 9, 25),
    )  # fmt: skip

    assert browse(client, q="NEWHALL") == ["NAVEL"]
    assert browse(client, q="脐橙", sort="price") == ["NAVEL-B", "NAVEL"]
    assert browse(client, q="100%_") == ["CHESTNUT"]
    assert browse(client, q="1_0") == []  # "_" is a character, not a wildcard
    assert browse(client, category="nuts") == ["CHESTNUT"]
    assert browse(client, county="寻乌县", sort="price") == ["NAVEL-B", "NAVEL"]
    assert browse(client, province="河北省") == ["CHESTNUT"]
    assert browse(client, brand="gannan-navel") == ["NAVEL"]
    assert browse(client, farm_id=qinglong.id) == ["CHESTNUT"]
    assert browse(client, sku="NAVEL") == ["NAVEL"]  # exactly: not NAVEL-B, as q=NAVEL finds
    assert browse(client, sku="NAVEL-B", farm_id=xunwu.id) == ["NAVEL-B"]
    assert browse(client, sku="navel") == browse(client, sku="NAVEL", farm_id=qinglong.id) == []
    assert browse(client, price_min=700, price_max=2000) == ["NAVEL"]
    assert browse(client, in_stock="true", sort="price") == ["NAVEL", "CHESTNUT"]
    assert browse(client, harvested_after="2026-10-01", sort="price") == ["NAVEL-B", "NAVEL"]
    assert browse(client, category="unknown") == []


def test_browse_sorts_and_pages_with_a_stable_cursor(client: FlaskClient) -> None:
    farm = FarmFactory()
    prices = [1500, 900, 1500, 1200, 900, 2000, 1500]
    for n, price in enumerate(prices):
        harvested = date(2026, 11, n + 1) if n % 3 else None
        ListingFactory(farm=farm, sku=f"L{n}", price_per_kg=price, harvest_date=harvested)

    def all_pages(sort: str) -> list[str]:
        seen: list[str] = []
        cursor = None
        while True:
            query = {"limit": 2, "sort": sort} | ({"cursor": cursor} if cursor else {})
            page = client.get("/api/v1/listings", query_string=query).json
            seen += [item["sku"] for item in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                return seen

    assert all_pages("price") == ["L1", "L4", "L3", "L0", "L2", "L6", "L5"]
    assert all_pages("-price") == ["L5", "L6", "L2", "L0", "L3", "L4", "L1"]
    assert all_pages("newest") == [f"L{n}" for n in reversed(range(7))]
    assert all_pages("harvest_date") == ["L5", "L4", "L2", "L1", "L6", "L3", "L0"]
    bad = client.get("/api/v1/listings", query_string={"sort": "price", "cursor": "garbage"})
    assert bad.status_code == 422 and "cursor" in bad.json["errors"]


def test_harvested_after_leaves_out_listings_never_harvested(client: FlaskClient) -> None:
    farm = FarmFactory()
    ListingFactory(farm=farm, sku="HARVESTED", harvest_date=date(2026, 11, 20))
    ListingFactory(farm=farm, sku="NEVER", harvest_date=None)

    assert browse(client, harvested_after="2026-10-01") == ["HARVESTED"]
    assert browse(client, harvested_after="0001-01-01") == ["HARVESTED"]


def freshest_first_queries(client: FlaskClient) -> list[tuple[str, Any]]:
    """The listings query of "freshest harvest first", page 1 and page 2."""
    farm = FarmFactory()
    for n in range(3):
        ListingFactory(farm=farm, harvest_date=date(2026, 11, n + 1) if n else None)
    queries: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        if statement.lstrip().startswith("SELECT") and "FROM listings" in statement:
            queries.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        first = client.get("/api/v1/listings", query_string={"sort": "harvest_date", "limit": 1}).json
        cursor = first["next_cursor"]
        client.get("/api/v1/listings", query_string={"sort": "harvest_date", "limit": 1, "cursor": cursor})
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    assert len(queries) == 2
    return queries


def test_freshest_first_orders_by_the_indexed_expression_with_the_date_written_in(client: FlaskClient) -> None:
    # A bound date would not match ix_listings_harvest_sort_date_id in a
    # prepared statement's generic plan.
    for statement, _ in freshest_first_queries(client):
        order_by = statement.rsplit("ORDER BY", 1)[1]
        assert "coalesce(listings.harvest_date, '0001-01-01') DESC, listings.id DESC" in order_by, statement


def test_freshest_first_reads_its_index_in_order_on_postgresql(client: FlaskClient) -> None:
    needs("postgresql")
    for statement, parameters in freshest_first_queries(client):
        with db.engine.connect() as conn:
            # On a few rows a sequential scan and a sort are cheapest; without
            # them, only an index on the very ORDER BY expression is left.
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
            conn.exec_driver_sql("SET LOCAL enable_sort = off")
            plan = "\n".join(row[0] for row in conn.exec_driver_sql(f"EXPLAIN {statement}", parameters))
        assert "Index Scan using ix_listings_harvest_sort_date_id on listings" in plan, plan


def test_a_page_of_fifty_listings_takes_a_constant_number_of_queries(client: FlaskClient) -> None:
    brand = BrandFactory()
    for n in range(10):
        farm = FarmFactory(name=f"Farm {n}")
        for m in range(5):
            listing = ListingFactory(farm=farm, brand=brand, harvest_date=date(2026, 11, 1))
            db.session.add(
                Lot(
                    listing=listing,
                    farm_id=farm.id,
                    code=f"LOT-{n}-{m}",
                    harvest_date=date(2026, 11, m + 1),
                    grams=1000,
                )
            )
    db.session.commit()
    _, headers = user_with_token(Role.BUYER)
    client.get("/api/v1/me", headers=headers)  # records last_used_at, which writes once

    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        response = client.get("/api/v1/listings", query_string={"limit": 50}, headers=headers)
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    assert response.status_code == 200
    items = response.json["items"]
    assert len(items) == 50
    assert all(item["farm"]["name"].startswith("Farm ") and item["current_lot"] for item in items)
    # token lookup, its roles, the page (with farm, category and brand), the lots
    assert len(statements) <= 4, "\n".join(statements)
