"""Placing orders: pricing, farm parts, stock, and every refusal."""

from __future__ import annotations

from datetime import timedelta

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from market.accounts.models import Role
from market.auth import Actor
from market.catalog.models import Listing, ListingStatus
from market.db import utcnow
from market.extensions import db
from market.orders import service
from market.orders.models import Order, OrderEvent, OrderLine, OrderPart
from market.orders.service import LineRequest
from market.payments import service as payments
from market.premiums.models import LinePremium
from tests.factories import ListingFactory
from tests.shop import Shop, place

PROBLEM = "application/problem+json"


def stock(listing: Listing) -> int:
    return db.session.scalar(select(Listing.stock_g).where(Listing.id == listing.id)) or 0


def orders() -> int:
    return db.session.scalar(select(func.count()).select_from(Order)) or 0


def test_multi_farm_order_is_priced_per_line_and_split_by_farm(client: FlaskClient, shop: Shop) -> None:
    order = place(client, shop, (shop.oranges, 1500), (shop.pomelos, 2000), (shop.nuts, 750))
    assert order["status"] == "pending_payment"
    assert order["currency"] == "CNY"
    amounts = {line["product_name"]: line["amount"] for part in order["parts"] for line in part["lines"]}
    assert amounts == {"Navel orange": 1499, "Pomelo": 1600, "Chestnut": 1800}  # 1498.5 rounds half-up
    subtotals = {part["farm_id"]: part["subtotal"] for part in order["parts"]}
    assert subtotals == {shop.orchard.id: 3099, shop.chestnuts.id: 1800}
    assert order["total"] == 4899
    # 10 % tolerance: the most each line can weigh is 1650 g, 2200 g, 825 g.
    assert order["max_total"] == 1648 + 1760 + 1980
    assert stock(shop.oranges) == 100_000 - 1500
    assert stock(shop.nuts) == 100_000 - 750


def test_line_records_price_lot_and_farm_as_they_were(client: FlaskClient, shop: Shop) -> None:
    lot = client.post(
        f"/api/v1/listings/{shop.oranges.id}/lots",
        json={"code": "XW-2026-11", "harvest_date": "2026-11-20", "grams": 5000},
        headers=shop.orchard_h,
    )
    assert lot.status_code == 201, lot.json
    order = place(client, shop, (shop.oranges, 1000))
    client.patch(f"/api/v1/listings/{shop.oranges.id}", json={"price_per_kg": 5000}, headers=shop.orchard_h)
    line = order["parts"][0]["lines"][0]
    assert line["lot"]["code"] == "XW-2026-11"
    again = client.get(f"/api/v1/orders/{order['id']}", headers=shop.buyer_h).json
    assert again["parts"][0]["lines"][0]["price_per_kg"] == 999


def test_placing_writes_a_timeline_event(client: FlaskClient, shop: Shop) -> None:
    order = place(client, shop, (shop.oranges, 1000))
    assert [e["type"] for e in order["events"]] == ["order.placed"]
    assert db.session.scalar(select(func.count()).select_from(OrderEvent)) == 1


def test_shortfall_is_409_listing_each_short_line_and_takes_nothing(client: FlaskClient, shop: Shop) -> None:
    shop.pomelos.stock_g = 1000
    shop.nuts.stock_g = 500
    db.session.commit()
    response = client.post(
        "/api/v1/orders",
        json={
            "lines": [
                {"listing_id": shop.oranges.id, "grams": 2000},
                {"listing_id": shop.pomelos.id, "grams": 1500},
                {"listing_id": shop.nuts.id, "grams": 750},
            ],
            "fulfilment_point_id": shop.station.id,
        },
        headers=shop.buyer_h,
    )
    assert response.status_code == 409
    assert response.content_type == PROBLEM
    assert response.json["short_lines"] == [
        {"listing_id": shop.pomelos.id, "requested_g": 1500, "available_g": 1000},
        {"listing_id": shop.nuts.id, "requested_g": 750, "available_g": 500},
    ]
    assert set(response.json["errors"]) == {"lines.1.grams", "lines.2.grams"}
    assert stock(shop.oranges) == 100_000
    assert orders() == 0


def test_selling_the_last_gram_marks_the_listing_sold_out(client: FlaskClient, shop: Shop) -> None:
    shop.oranges.stock_g = 1500
    db.session.commit()
    place(client, shop, (shop.oranges, 1500))
    db.session.refresh(shop.oranges)
    assert shop.oranges.stock_g == 0
    assert shop.oranges.status == ListingStatus.SOLD_OUT


def test_an_order_of_more_than_a_32_bit_integer_of_fen_is_placed_and_paid(
    app: Flask, client: FlaskClient, shop: Shop
) -> None:
    """A county-scale order: 1,000 t of chestnuts at 24.00 a kg is
    2,400,000,000 fen, past 21,474,836.47 yuan (2^31 - 1 fen); the order, its
    line, its payment and the ledger hold it (in a marketplace whose buyers
    may hold that much unpaid)."""
    app.config["BUYER_MAX_UNPAID_G"] = 1_000_000_000
    shop.nuts.stock_g = 1_000_000_000
    db.session.commit()
    order = place(client, shop, (shop.nuts, 1_000_000_000))
    (line,) = order["parts"][0]["lines"]
    assert (line["ordered_g"], line["amount"]) == (1_000_000_000, 2_400_000_000)
    assert (order["total"], order["max_total"]) == (2_400_000_000, 2_640_000_000)  # 10 % tolerance
    assert payments.open_payment(order["id"]).amount == 2_640_000_000
    paid = client.post(
        f"/api/v1/orders/{order['id']}/payment/offline-confirmation",
        json={"amount": 2_640_000_000, "reference": "bank transfer, Qinglong county"},
        headers=shop.operator_h,
    )
    assert paid.status_code == 200, paid.json
    assert paid.json["amount"] == 2_640_000_000
    assert client.get(f"/api/v1/orders/{order['id']}", headers=shop.buyer_h).json["status"] == "paid"


def bad(client: FlaskClient, shop: Shop, body: dict, status: int = 422) -> dict:  # type: ignore[type-arg]
    response = client.post("/api/v1/orders", json=body, headers=shop.buyer_h)
    assert response.status_code == status, response.json
    assert response.content_type == PROBLEM
    assert orders() == 0
    assert stock(shop.oranges) == 100_000
    return response.json  # type: ignore[no-any-return]


def test_refusals_name_the_field_and_write_nothing(client: FlaskClient, shop: Shop) -> None:
    point = {"fulfilment_point_id": shop.station.id}
    ok = {"listing_id": shop.oranges.id, "grams": 1000}
    cases = [
        ({"lines": [{"listing_id": 999_999, "grams": 1000}], **point}, "lines.0.listing_id"),
        ({"lines": [ok, {"listing_id": shop.nuts.id, "grams": 400}], **point}, "lines.1.grams"),  # under minimum
        ({"lines": [{"listing_id": shop.oranges.id, "grams": 1200}], **point}, "lines.0.grams"),  # off the step
        ({"lines": [ok, ok], **point}, "lines.1.listing_id"),
        ({"lines": [ok], "fulfilment_point_id": 999_999}, "fulfilment_point_id"),
        ({"lines": [ok]}, "fulfilment_point_id"),
        ({"lines": [ok], **point, "delivery_address": "Lane 3, Xunwu"}, "fulfilment_point_id"),
        ({"lines": [], **point}, "lines"),
        ({"lines": [{"listing_id": shop.oranges.id, "grams": 1000.5}], **point}, "lines"),
    ]
    for body, field in cases:
        problem = bad(client, shop, body)
        flat = set(problem["errors"])
        assert any(name.startswith(field) for name in flat), (body, problem)


def test_paused_listing_and_unverified_farm_cannot_be_bought(client: FlaskClient, shop: Shop) -> None:
    shop.pomelos.status = ListingStatus.PAUSED
    shop.chestnuts.status = "suspended"
    db.session.commit()
    for listing in (shop.pomelos, shop.nuts):
        problem = bad(
            client, shop, {"lines": [{"listing_id": listing.id, "grams": 1000}], "delivery_address": "Lane 3"}
        )
        assert "lines.0.listing_id" in problem["errors"]


def test_an_order_without_a_destination_says_to_give_one(client: FlaskClient, shop: Shop) -> None:
    problem = bad(client, shop, {"lines": [{"listing_id": shop.oranges.id, "grams": 1000}]})
    (message,) = problem["errors"]["fulfilment_point_id"]
    assert "give fulfilment_point_id" in message.lower() and "delivery_address" in message
    assert "not both" not in message
    both = {"fulfilment_point_id": shop.station.id, "delivery_address": "Lane 3, Xunwu"}
    problem = bad(client, shop, {"lines": [{"listing_id": shop.oranges.id, "grams": 1000}], **both})
    assert problem["errors"]["fulfilment_point_id"] == ["Give fulfilment_point_id or delivery_address, not both."]


def test_a_line_that_cannot_be_ordered_says_why(client: FlaskClient, shop: Shop) -> None:
    shop.pomelos.status = ListingStatus.PAUSED
    shop.chestnuts.status = "suspended"
    draft = ListingFactory(farm=shop.orchard, status=ListingStatus.DRAFT)
    archived = ListingFactory(farm=shop.orchard, status=ListingStatus.ARCHIVED)
    db.session.commit()
    lines = [{"listing_id": listing.id, "grams": 1000} for listing in (shop.pomelos, shop.nuts, draft, archived)] + [
        {"listing_id": shop.oranges.id, "grams": 1200}
    ]
    errors = bad(client, shop, {"lines": lines, "fulfilment_point_id": shop.station.id})["errors"]
    assert "paused" in errors["lines.0.listing_id"][0]
    assert "suspended" in errors["lines.1.listing_id"][0]
    assert errors["lines.2.listing_id"] == ["No such listing."]  # a draft is not shown to buyers
    assert "withdrawn" in errors["lines.3.listing_id"][0]
    assert errors["lines.4.grams"] == ["1200 g cannot be ordered: order at least 1000 g, in steps of 500 g."]


def test_only_buyers_place_orders(client: FlaskClient, shop: Shop) -> None:
    body = {"lines": [{"listing_id": shop.oranges.id, "grams": 1000}], "fulfilment_point_id": shop.station.id}
    assert client.post("/api/v1/orders", json=body, headers=shop.orchard_h).status_code == 403
    assert client.post("/api/v1/orders", json=body).status_code == 401
    assert orders() == 0


def test_idempotent_replay_returns_the_same_order_and_takes_stock_once(client: FlaskClient, shop: Shop) -> None:
    body = {"lines": [{"listing_id": shop.oranges.id, "grams": 2000}], "delivery_address": "Lane 3, Xunwu"}
    headers = {**shop.buyer_h, "Idempotency-Key": "order-1"}
    first = client.post("/api/v1/orders", json=body, headers=headers)
    second = client.post("/api/v1/orders", json=body, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json["id"] == second.json["id"]
    assert orders() == 1
    assert stock(shop.oranges) == 98_000
    other = client.post("/api/v1/orders", json={**body, "notes": "ring twice"}, headers=headers)
    assert other.status_code == 422


def test_a_placed_order_answers_as_it_was_stored(client: FlaskClient, shop: Shop) -> None:
    """The order, parts, lines, premiums and event are written by Core
    statements: the answer to placing is what a later read finds, premiums
    and all, every row tied to its own order, part and line."""
    programme = client.post(
        "/api/v1/premium-programmes",
        json={
            "name": "County bonus", "sponsor": "County co-op", "funded_by": "sponsor", "rate_per_kg": 100,
            "budget_cap": 100_000, "farm_cap": 250, "valid_from": (utcnow() - timedelta(days=1)).isoformat(),
        },
        headers=shop.operator_h,
    )  # fmt: skip
    assert programme.status_code == 201, programme.json
    placed = place(client, shop, (shop.oranges, 1500), (shop.nuts, 750), (shop.pomelos, 2000))
    assert placed == client.get(f"/api/v1/orders/{placed['id']}", headers=shop.buyer_h).json
    # The farm cap leaves the orchard's second line 100 of its 200.
    premiums = {
        line["product_name"]: [p["amount"] for p in line["premiums"]]
        for part in placed["parts"]
        for line in part["lines"]
    }
    assert premiums == {"Navel orange": [150], "Pomelo": [100], "Chestnut": [75]}
    rows = db.session.execute(
        select(OrderLine.id, OrderLine.order_id, OrderPart.order_id, OrderPart.farm_id, OrderLine.farm_id)
        .join(OrderPart, OrderLine.part_id == OrderPart.id)
        .where(OrderLine.order_id == placed["id"])
    ).all()
    assert len(rows) == 3
    assert all(
        order_id == part_order and part_farm == line_farm for _, order_id, part_order, part_farm, line_farm in rows
    )
    owners = db.session.scalars(select(LinePremium.order_line_id).order_by(LinePremium.order_line_id)).all()
    assert owners == sorted(row[0] for row in rows)


def test_an_order_just_placed_is_changed_like_any_loaded_one(app: Flask, shop: Shop) -> None:
    """Written without a flush, the new order is still the session's: a
    change in the same transaction is one versioned UPDATE, never a second
    INSERT."""
    with app.test_request_context():
        buyer = Actor(user_id=shop.buyer.id, roles=frozenset({Role.BUYER}))
        order = service.placed(
            buyer.user_id, buyer, lines=[LineRequest(shop.oranges.id, 1000)], fulfilment_point_id=shop.station.id
        )
        order.notes = "Leave it with the station."
        order.parts[0].lines[0].short_reason = "Checked"
        db.session.commit()
        order_id = order.id
    db.session.expire_all()
    stored = db.session.get(Order, order_id)
    assert stored is not None
    assert (stored.version, stored.notes, orders()) == (2, "Leave it with the station.", 1)
    assert [line.short_reason for line in stored.lines] == ["Checked"]
    assert [event.type for event in stored.events] == ["order.placed"]


def test_an_order_just_placed_leaves_nothing_for_the_unit_of_work(app: Flask, shop: Shop) -> None:
    """Written and added as if loaded, the new order, its parts, lines and
    event hold no change: the flush at commit writes the outbox rows alone
    and never walks the order's graph."""
    with app.test_request_context():
        buyer = Actor(user_id=shop.buyer.id, roles=frozenset({Role.BUYER}))
        order = service.placed(
            buyer.user_id,
            buyer,
            lines=[LineRequest(shop.oranges.id, 1000), LineRequest(shop.nuts.id, 500)],
            fulfilment_point_id=shop.station.id,
        )
        assert order in db.session
        assert list(db.session.dirty) == []
        assert {type(new).__name__ for new in db.session.new} == {"OutboxMessage"}
        db.session.rollback()
