"""If-Match on listings, farms, lots and stock: a write made from a stale read is
refused (412) and changes nothing; the ETag a GET gives is the one a write
compares with, and changes exactly when what the GET shows changes."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text

from market.accounts.models import Role
from market.catalog import service
from market.catalog.models import Farm, Listing
from market.catalog.service import StockLine
from market.extensions import db
from tests.conftest import needs, wait_for_backends
from tests.factories import FarmFactory, ListingFactory, user_with_token

PROBLEM = "application/problem+json"


def farmer_with_listing(**listing: Any) -> tuple[Listing, dict[str, str]]:
    user, headers = user_with_token(Role.FARMER)
    return ListingFactory(farm=FarmFactory(owner=user), **listing), headers


def etag(client: FlaskClient, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200
    return response.headers["ETag"]


def stock_of(listing_id: int) -> int:
    db.session.expire_all()
    listing = db.session.get(Listing, listing_id)
    assert listing is not None
    return listing.stock_g


def test_a_patch_with_the_etag_read_goes_through_and_answers_the_new_one(client: FlaskClient) -> None:
    listing, headers = farmer_with_listing()
    url = f"/api/v1/listings/{listing.id}"
    read = etag(client, url)

    patched = client.patch(url, json={"price_per_kg": 1100}, headers=headers | {"If-Match": read})

    assert patched.status_code == 200, patched.json
    assert patched.headers["ETag"] != read
    assert patched.headers["ETag"] == etag(client, url)


def test_a_patch_with_a_stale_etag_is_412_and_changes_nothing(client: FlaskClient) -> None:
    listing, headers = farmer_with_listing(price_per_kg=1000)
    url = f"/api/v1/listings/{listing.id}"
    read = etag(client, url)
    assert client.patch(url, json={"price_per_kg": 1100}, headers=headers | {"If-Match": read}).status_code == 200

    stale = client.patch(url, json={"price_per_kg": 900, "stock_g": 1}, headers=headers | {"If-Match": read})

    assert stale.status_code == 412 and stale.content_type == PROBLEM
    assert stale.json["type"] == "/problems/precondition-failed"
    assert "read it again" in stale.json["detail"]
    assert stale.json["current_etag"] == etag(client, url)
    shown = client.get(url).json
    assert (shown["price_per_kg"], shown["stock_g"]) == (1100, listing.stock_g)


def test_without_if_match_or_with_a_star_the_write_goes_through(client: FlaskClient) -> None:
    listing, headers = farmer_with_listing()
    url = f"/api/v1/listings/{listing.id}"
    assert client.patch(url, json={"grade": "A"}, headers=headers).status_code == 200
    assert client.patch(url, json={"grade": "B"}, headers=headers | {"If-Match": "*"}).status_code == 200
    assert client.get(url).json["grade"] == "B"


@pytest.mark.parametrize("sent", ['"3ff47a8d2e8973cf', "", ",", " , "])
def test_an_if_match_holding_no_entity_tag_is_412_not_taken_as_absent(client: FlaskClient, sent: str) -> None:
    """A header that parses to no tag (an unterminated quote, an empty
    value, a client's empty variable) is a condition, not the lack of one."""
    listing, headers = farmer_with_listing(stock_g=10_000)
    url = f"/api/v1/listings/{listing.id}"

    patched = client.patch(url, json={"stock_g": 1}, headers=headers | {"If-Match": sent})
    lot = client.post(
        f"{url}/lots",
        json={"code": "L-1", "harvest_date": "2026-01-01", "grams": 500},
        headers=headers | {"If-Match": sent},
    )
    archived = client.post(f"{url}/archive", headers=headers | {"If-Match": sent})
    stock = client.post(
        "/api/v1/listings/stock",
        json={"items": [{"listing_id": listing.id, "stock_g": 1}]},
        headers=headers | {"If-Match": sent},
    )

    for refused in (patched, lot, archived, stock):
        assert refused.status_code == 412 and refused.content_type == PROBLEM, refused.json
    assert "no entity tag" in patched.json["detail"]
    assert patched.json["current_etag"] == etag(client, url)
    shown = client.get(url).json
    assert (shown["stock_g"], shown["status"]) == (10_000, listing.status.value)
    assert client.get(f"{url}/lots").json["items"] == []


def test_a_sale_changes_the_etag_so_an_edit_read_before_it_is_refused(client: FlaskClient) -> None:
    listing, headers = farmer_with_listing(stock_g=10_000)
    url = f"/api/v1/listings/{listing.id}"
    read = etag(client, url)
    assert etag(client, url) == read  # nothing changed: the same ETag

    service.take_stock([StockLine(listing.id, 1000)])
    db.session.commit()

    assert etag(client, url) != read
    stale = client.patch(url, json={"stock_g": 10_000}, headers=headers | {"If-Match": read})
    assert stale.status_code == 412
    assert stock_of(listing.id) == 9_000


def test_state_changes_honour_if_match_and_answer_the_new_etag(client: FlaskClient) -> None:
    listing, headers = farmer_with_listing()
    url = f"/api/v1/listings/{listing.id}"
    read = etag(client, url)
    paused = client.post(f"{url}/pause", headers=headers | {"If-Match": read})
    assert paused.status_code == 200 and paused.headers["ETag"] == etag(client, url)
    assert client.post(f"{url}/activate", headers=headers | {"If-Match": read}).status_code == 412
    assert client.get(url).json["status"] == "paused"


def test_setting_the_stock_a_listing_has_changes_nothing_not_even_its_etag(client: FlaskClient) -> None:
    listing, headers = farmer_with_listing(stock_g=5_000)
    url = f"/api/v1/listings/{listing.id}"
    read = etag(client, url)
    same = {"items": [{"listing_id": listing.id, "stock_g": 5_000}]}
    assert client.post("/api/v1/listings/stock", json=same, headers=headers).status_code == 200
    assert etag(client, url) == read
    other = {"items": [{"listing_id": listing.id, "stock_g": 4_000}]}
    assert client.post("/api/v1/listings/stock", json=other, headers=headers).status_code == 200
    assert etag(client, url) != read


def test_a_farm_edit_honours_if_match(client: FlaskClient) -> None:
    user, headers = user_with_token(Role.FARMER)
    farm = FarmFactory(owner=user)
    url = f"/api/v1/farms/{farm.id}"
    read = etag(client, url)
    renamed = client.patch(url, json={"name": "Liu family orchard"}, headers=headers | {"If-Match": read})
    assert renamed.status_code == 200 and renamed.headers["ETag"] == etag(client, url)

    stale = client.patch(url, json={"name": "Someone else's name"}, headers=headers | {"If-Match": read})
    assert stale.status_code == 412 and stale.content_type == PROBLEM
    db.session.expire_all()
    assert db.session.get(Farm, farm.id).name == "Liu family orchard"  # type: ignore[union-attr]


def test_bulk_stock_compares_each_items_expected_stock_all_or_nothing(client: FlaskClient) -> None:
    user, headers = user_with_token(Role.FARMER)
    farm = FarmFactory(owner=user)
    oranges = ListingFactory(farm=farm, stock_g=10_000)
    pomelos = ListingFactory(farm=farm, stock_g=8_000)
    service.take_stock([StockLine(pomelos.id, 500)])  # a sale after the co-op's client read 8000 g
    db.session.commit()
    body = {
        "items": [
            {"listing_id": oranges.id, "stock_g": 9_000, "expected_stock_g": 10_000},
            {"listing_id": pomelos.id, "stock_g": 7_000, "expected_stock_g": 8_000},
        ]
    }

    stale = client.post("/api/v1/listings/stock", json=body, headers=headers)

    assert stale.status_code == 412 and stale.content_type == PROBLEM
    assert stale.json["errors"] == {"items.1.expected_stock_g": ["The stock is now 7500 g."]}
    assert stale.json["current_stock_g"] == {str(pomelos.id): 7_500}
    assert (stock_of(oranges.id), stock_of(pomelos.id)) == (10_000, 7_500)

    body["items"][1] |= {"stock_g": 6_500, "expected_stock_g": 7_500}
    done = client.post("/api/v1/listings/stock", json=body, headers=headers)
    assert done.status_code == 200, done.json
    assert (stock_of(oranges.id), stock_of(pomelos.id)) == (9_000, 6_500)


def test_bulk_stock_refuses_if_match_rather_than_ignoring_it(client: FlaskClient) -> None:
    listing, headers = farmer_with_listing(stock_g=10_000)
    read = etag(client, f"/api/v1/listings/{listing.id}")
    body = {"items": [{"listing_id": listing.id, "stock_g": 1}]}
    refused = client.post("/api/v1/listings/stock", json=body, headers=headers | {"If-Match": read})
    assert refused.status_code == 412 and "no ETag" in refused.json["detail"]
    assert stock_of(listing.id) == 10_000


def test_a_lot_added_with_a_stale_listing_etag_is_412_and_adds_nothing(client: FlaskClient) -> None:
    listing, headers = farmer_with_listing(stock_g=10_000)
    url = f"/api/v1/listings/{listing.id}"
    read = etag(client, url)
    lot = {"code": "LOT-2026-11-A", "harvest_date": "2026-11-20", "grams": 5_000}
    assert client.patch(url, json={"stock_g": 9_000}, headers=headers).status_code == 200

    stale = client.post(f"{url}/lots", json=lot, headers=headers | {"If-Match": read})

    assert stale.status_code == 412 and stale.mimetype == PROBLEM
    assert stale.json["current_etag"] == etag(client, url)
    assert stock_of(listing.id) == 9_000
    assert client.get(f"{url}/lots").json["items"] == []
    added = client.post(f"{url}/lots", json=lot, headers=headers | {"If-Match": etag(client, url)})
    assert added.status_code == 201, added.json
    assert stock_of(listing.id) == 14_000


def test_the_document_shows_if_match_as_optional_with_its_412(client: FlaskClient) -> None:
    spec = client.get("/api/v1/openapi.json").json
    patch = spec["paths"]["/api/v1/listings/{listing_id}"]["patch"]
    (header,) = [p for p in patch["parameters"] if p.get("in") == "header"]
    assert (header["name"], header["required"]) == ("If-Match", False)
    assert "412" in patch["responses"] and "428" not in patch["responses"]
    assert "ETag" in patch["responses"]["200"]["headers"]
    assert "412" in spec["paths"]["/api/v1/farms/{farm_id}"]["patch"]["responses"]
    lots = spec["paths"]["/api/v1/listings/{listing_id}/lots"]["post"]
    assert sorted(p["name"] for p in lots["parameters"] if p.get("in") == "header") == ["Idempotency-Key", "If-Match"]
    assert "412" in lots["responses"]


def test_two_writers_with_the_same_etag_never_both_win(app: Flask, client: FlaskClient) -> None:
    """Both requests wait on the listing's row, held by another transaction;
    once it is released, the first to lock it writes and the second finds
    the row changed under it: a 412, never a silent overwrite."""
    needs("postgresql")
    listing, headers = farmer_with_listing(price_per_kg=1000)
    url = f"/api/v1/listings/{listing.id}"
    read = etag(client, url)
    statuses: list[int] = []

    def write(price: int) -> None:
        with app.test_client() as c:
            statuses.append(
                c.patch(url, json={"price_per_kg": price}, headers=headers | {"If-Match": read}).status_code
            )

    with db.engine.connect() as holder:
        holder.execute(text("SELECT id FROM listings WHERE id = :id FOR UPDATE"), {"id": listing.id})
        writers = [threading.Thread(target=write, args=(price,)) for price in (1100, 1200)]
        for writer in writers:
            writer.start()
        wait_for_backends("wait_event_type = 'Lock'", 2, "both writers waiting on the row")
        holder.rollback()
    for writer in writers:
        writer.join()

    assert sorted(statuses) == [200, 412]
    db.session.expire_all()  # this test's own session still holds the listing as it made it
    assert client.get(url).json["price_per_kg"] in (1100, 1200)
