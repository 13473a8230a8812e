"""Input the database cannot take is refused by name before any query runs:
ids beyond PostgreSQL's integer, text with NUL or unpaired surrogates,
amounts and grams whose arithmetic would leave a 64-bit integer, stock
beyond what a listing may hold. Each of these was a 500 on PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from market.accounts.models import Role
from market.api import MAX_ID
from market.catalog.models import Listing, Lot
from market.extensions import db
from market.inventory.models import InboundEvent, SalesChannel
from market.money import (
    MAX_BIGINT,
    MAX_BUDGET,
    MAX_LINE_G,
    MAX_PRICE_PER_KG,
    MAX_RATE_PER_KG,
    MAX_STOCK_G,
    MAX_WEIGHED_G,
)
from market.orders.models import Order
from market.premiums.models import PremiumProgramme
from tests.api.test_errors import assert_problem
from tests.factories import FulfilmentPointFactory, user_with_token
from tests.shop import Shop, pay, place


@pytest.mark.parametrize(
    "path",
    [
        f"/api/v1/orders/{MAX_ID + 1}",
        f"/api/v1/listings/{MAX_ID + 1}",
        "/api/v1/orders/185659799165902144929792",
        f"/api/v1/fulfilment-points/{2**64}/manifest",
    ],
)
def test_an_id_beyond_the_database_integer_in_a_path_is_404(app: Flask, client: FlaskClient, path: str) -> None:
    _, operator_h = user_with_token(Role.OPERATOR)
    assert_problem(client.get(path, headers=operator_h), 404)


def test_the_largest_id_is_still_an_id(app: Flask, client: FlaskClient) -> None:
    _, operator_h = user_with_token(Role.OPERATOR)
    body = assert_problem(client.get(f"/api/v1/orders/{MAX_ID}", headers=operator_h), 404)
    assert body["type"] == "/problems/not-found"


def test_an_id_beyond_the_database_integer_in_a_body_is_422(app: Flask, client: FlaskClient) -> None:
    _, buyer_h = user_with_token(Role.BUYER)
    point = FulfilmentPointFactory()
    body = {"lines": [{"listing_id": 2**70, "grams": 1000}], "fulfilment_point_id": point.id}
    problem = assert_problem(client.post("/api/v1/orders", json=body, headers=buyer_h), 422)
    assert set(problem["errors"]) == {"lines.0.listing_id"}


def test_an_id_beyond_the_database_integer_in_a_query_is_422(app: Flask, client: FlaskClient) -> None:
    problem = assert_problem(client.get("/api/v1/listings", query_string={"farm_id": str(2**63)}), 422)
    assert "farm_id" in problem["errors"]


@pytest.mark.parametrize("text", ["Gan\u0000nan", "Gan\ud803nan"])
def test_text_the_database_cannot_store_is_422_by_field(app: Flask, client: FlaskClient, text: str) -> None:
    _, operator_h = user_with_token(Role.OPERATOR)
    body = {"code": "gannan", "name_zh": text, "name_en": "Gannan", "counties": ["寻乌县", text]}
    problem = assert_problem(client.post("/api/v1/brands", json=body, headers=operator_h), 422)
    assert set(problem["errors"]) == {"name_zh", "counties"}


def test_nul_in_a_search_is_422(app: Flask, client: FlaskClient) -> None:
    problem = assert_problem(client.get("/api/v1/listings", query_string={"q": "navel\u0000"}), 422)
    assert "q" in problem["errors"]


def test_an_integer_beyond_the_database_integer_in_a_query_is_422(app: Flask, client: FlaskClient) -> None:
    problem = assert_problem(client.get("/api/v1/listings", query_string={"price_min": str(2**70)}), 422)
    assert "price_min" in problem["errors"]


def test_every_operation_with_an_id_in_its_path_documents_404(client: FlaskClient) -> None:
    paths = client.get("/api/v1/openapi.json").json["paths"]
    undocumented = [
        f"{method.upper()} {path}"
        for path, operations in paths.items()
        if "{" in path
        for method, operation in operations.items()
        if method in ("get", "post", "put", "patch", "delete") and "404" not in operation["responses"]
    ]
    assert undocumented == []


def stock(listing: Listing) -> int:
    db.session.rollback()
    return db.session.scalar(select(Listing.stock_g).where(Listing.id == listing.id)) or 0


def count(model: type[Any]) -> int:
    return db.session.scalar(select(func.count()).select_from(model)) or 0


def listing_body(shop: Shop, **fields: object) -> dict[str, object]:
    body = {"farm_id": shop.orchard.id, "product_name": "Navel orange", "category": shop.oranges.category.code}
    return body | {"price_per_kg": 999, "min_order_g": 1000, "step_g": 500} | fields


def programme_body(**fields: object) -> dict[str, object]:
    body = {"name": "County bonus", "sponsor": "Fresh Mart", "rate_per_kg": 100, "funded_by": "sponsor"}
    return body | {"valid_from": "2026-11-01T00:00:00+08:00", "budget_cap": 1_000_000} | fields


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"price_per_kg": MAX_PRICE_PER_KG + 1}, "price_per_kg"),
        ({"stock_g": MAX_STOCK_G + 1}, "stock_g"),
        ({"low_stock_threshold_g": MAX_STOCK_G + 1}, "low_stock_threshold_g"),
        ({"min_order_g": MAX_LINE_G + 1, "step_g": 1}, "min_order_g"),
        ({"step_g": MAX_LINE_G + 1}, "step_g"),
    ],
)
def test_a_listing_past_the_bounds_is_422_by_field(
    client: FlaskClient, shop: Shop, fields: dict[str, object], field: str
) -> None:
    before = count(Listing)
    response = client.post("/api/v1/listings", json=listing_body(shop, **fields), headers=shop.orchard_h)
    assert set(assert_problem(response, 422)["errors"]) == {field}
    assert count(Listing) == before


def test_stock_up_to_the_bound_is_set_and_past_it_is_422(client: FlaskClient, shop: Shop) -> None:
    url = f"/api/v1/listings/{shop.oranges.id}"
    assert client.patch(url, json={"stock_g": MAX_STOCK_G}, headers=shop.orchard_h).json["stock_g"] == MAX_STOCK_G
    problem = assert_problem(client.patch(url, json={"stock_g": MAX_STOCK_G + 1}, headers=shop.orchard_h), 422)
    assert set(problem["errors"]) == {"stock_g"}
    items = [{"listing_id": shop.pomelos.id, "stock_g": 5000}, {"listing_id": shop.oranges.id, "stock_g": 2**63}]
    problem = assert_problem(client.post("/api/v1/listings/stock", json={"items": items}, headers=shop.orchard_h), 422)
    assert set(problem["errors"]) == {"items.1.stock_g"}
    assert (stock(shop.oranges), stock(shop.pomelos)) == (MAX_STOCK_G, 100_000)


def test_a_lot_past_the_bounds_or_that_would_lift_the_stock_past_its_bound_is_422(
    client: FlaskClient, shop: Shop
) -> None:
    url = f"/api/v1/listings/{shop.oranges.id}/lots"
    lot = {"code": "XW-2026-11", "harvest_date": "2026-11-20", "grams": MAX_LINE_G + 1}
    assert set(assert_problem(client.post(url, json=lot, headers=shop.orchard_h), 422)["errors"]) == {"grams"}

    shop.oranges.stock_g = MAX_STOCK_G - 1000
    db.session.commit()
    problem = assert_problem(client.post(url, json=lot | {"grams": 1001}, headers=shop.orchard_h), 422)
    assert problem["errors"] == {"grams": ["At most 1000 g more fit on this listing."]}
    assert (stock(shop.oranges), count(Lot)) == (MAX_STOCK_G - 1000, 0)

    assert client.post(url, json=lot | {"grams": 1000}, headers=shop.orchard_h).status_code == 201
    assert (stock(shop.oranges), count(Lot)) == (MAX_STOCK_G, 1)


def test_a_return_that_would_lift_the_stock_past_its_bound_is_422_and_recorded_nowhere(
    client: FlaskClient, shop: Shop
) -> None:
    channel = SalesChannel(farm_id=shop.orchard.id, name="Village shop", secret="s")
    db.session.add(channel)
    shop.oranges.stock_g = MAX_STOCK_G - 1000
    db.session.commit()
    event = {"channel_id": channel.id, "event_id": "r-1", "type": "return", "sku": shop.oranges.sku, "grams": 1001}
    problem = assert_problem(client.post("/api/v1/inventory/events", json=event, headers=shop.orchard_h), 422)
    assert set(problem["errors"]) == {"grams"}
    assert (stock(shop.oranges), count(InboundEvent)) == (MAX_STOCK_G - 1000, 0)
    past = event | {"grams": MAX_LINE_G + 1}
    assert set(
        assert_problem(client.post("/api/v1/inventory/events", json=past, headers=shop.orchard_h), 422)["errors"]
    ) == {"grams"}


def test_order_weighing_and_refund_grams_past_the_bounds_are_422(client: FlaskClient, shop: Shop) -> None:
    body = {"lines": [{"listing_id": shop.oranges.id, "grams": MAX_LINE_G + 1}], "fulfilment_point_id": shop.station.id}
    assert (
        "lines.0.grams" in assert_problem(client.post("/api/v1/orders", json=body, headers=shop.buyer_h), 422)["errors"]
    )
    assert stock(shop.oranges) == 100_000

    order = place(client, shop, (shop.oranges, 2000))
    pay(order["id"])
    part = order["parts"][0]
    weights = {"weights": [{"line_id": part["lines"][0]["id"], "weighed_g": MAX_WEIGHED_G + 1}]}
    url = f"/api/v1/orders/{order['id']}/parts/{part['id']}/pack"
    assert (
        "weights.0.weighed_g" in assert_problem(client.post(url, json=weights, headers=shop.orchard_h), 422)["errors"]
    )
    refund = {"lines": [{"line_id": part["lines"][0]["id"], "grams": MAX_WEIGHED_G + 1}], "reason": "bruised"}
    url = f"/api/v1/orders/{order['id']}/refunds"
    assert "lines.0.grams" in assert_problem(client.post(url, json=refund, headers=shop.operator_h), 422)["errors"]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"rate_per_kg": MAX_RATE_PER_KG + 1}, "rate_per_kg"),
        ({"budget_cap": MAX_BUDGET + 1}, "budget_cap"),
        ({"farm_cap": MAX_BUDGET + 1}, "farm_cap"),
    ],
)
def test_a_premium_programme_past_the_bounds_is_422_by_field(
    client: FlaskClient, shop: Shop, fields: dict[str, object], field: str
) -> None:
    response = client.post("/api/v1/premium-programmes", json=programme_body(**fields), headers=shop.operator_h)
    assert set(assert_problem(response, 422)["errors"]) == {field}
    assert count(PremiumProgramme) == 0


def test_an_offline_amount_beyond_a_bigint_is_422(client: FlaskClient, shop: Shop) -> None:
    order = place(client, shop, (shop.oranges, 2000))
    url = f"/api/v1/orders/{order['id']}/payment/offline-confirmation"
    body = {"amount": MAX_BIGINT + 1, "reference": "cash"}
    assert set(assert_problem(client.post(url, json=body, headers=shop.operator_h), 422)["errors"]) == {"amount"}


@pytest.mark.parametrize("text", ["   ", "\u3000\t\n"])
def test_text_that_must_say_something_is_422_when_blank(client: FlaskClient, shop: Shop, text: str) -> None:
    order = place(client, shop, (shop.oranges, 2000))
    url = f"/api/v1/orders/{order['id']}/payment/offline-confirmation"
    body = {"amount": order["max_total"], "reference": text.replace("\n", "")}
    assert set(assert_problem(client.post(url, json=body, headers=shop.operator_h), 422)["errors"]) == {"reference"}
    cancel = client.post(f"/api/v1/orders/{order['id']}/cancel", json={"reason": text}, headers=shop.buyer_h)
    assert set(assert_problem(cancel, 422)["errors"]) == {"reason"}
    lines = [{"listing_id": shop.oranges.id, "grams": 1000}]
    delivered = client.post("/api/v1/orders", json={"lines": lines, "delivery_address": text * 3}, headers=shop.buyer_h)
    assert set(assert_problem(delivered, 422)["errors"]) == {"delivery_address"}
    assert count(Order) == 1


@pytest.mark.parametrize("control", ["\u202e", "\u2066"])
def test_a_bidirectional_control_in_text_is_422(client: FlaskClient, shop: Shop, control: str) -> None:
    """It would make an address or a name read in another order than it was written."""
    lines = [{"listing_id": shop.oranges.id, "grams": 1000}]
    body = {"lines": lines, "delivery_address": f"12 Orchard Road{control}ABC"}
    response = client.post("/api/v1/orders", json=body, headers=shop.buyer_h)
    assert set(assert_problem(response, 422)["errors"]) == {"delivery_address"}
    assert count(Order) == 0


def test_the_document_shows_money_and_grams_as_bounded_int64(client: FlaskClient) -> None:
    schemas = client.get("/api/v1/openapi.json").json["components"]["schemas"]
    bounded = {
        ("LineRequest", "grams"): (1, MAX_LINE_G),
        ("Weighing", "weighed_g"): (0, MAX_WEIGHED_G),
        ("ListingCreate", "price_per_kg"): (1, MAX_PRICE_PER_KG),
        ("ListingCreate", "stock_g"): (0, MAX_STOCK_G),
        ("LotCreate", "grams"): (1, MAX_LINE_G),
        ("StockItem", "stock_g"): (0, MAX_STOCK_G),
        ("ProgrammeCreate", "rate_per_kg"): (1, MAX_RATE_PER_KG),
        ("ProgrammeCreate", "budget_cap"): (1, MAX_BUDGET),
        ("RefundLineRequest", "grams"): (1, MAX_WEIGHED_G),
        ("InboundEvent", "grams"): (1, MAX_LINE_G),
        ("OfflineConfirmation", "amount"): (0, MAX_BIGINT),
    }
    for (schema, name), (low, high) in bounded.items():
        field = schemas[schema]["properties"][name]
        assert (field["type"], field["format"], field["minimum"], field["maximum"]) == ("integer", "int64", low, high)
