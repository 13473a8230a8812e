"""Per-kg premiums: buyer-funded ones in the buyer's total, sponsor-funded
ones reserved against a budget that never overshoots, recomputed on the
weighed grams, released on cancellation, paid and reversed in the ledger."""

from __future__ import annotations

import functools
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from market.accounts.models import Role
from market.auth import Actor
from market.db import utcnow
from market.extensions import db
from market.ledger import service as ledger
from market.orders import service as orders
from market.orders.service import LineRequest
from market.payments import service as payments
from market.premiums import service as premiums
from market.premiums.models import FundedBy, LinePremium, PremiumProgramme
from tests.factories import FarmFactory, ListingFactory, UserFactory
from tests.orders.test_concurrency import buyers, race
from tests.shop import Shop, pay, place

START = (utcnow() - timedelta(days=1)).isoformat()


def programme(client: FlaskClient, shop: Shop, **fields: Any) -> dict[str, Any]:
    body = {"name": "Xunwu navel bonus", "sponsor": "Fresh Mart", "rate_per_kg": 100, "valid_from": START} | fields
    response = client.post("/api/v1/premium-programmes", json=body, headers=shop.operator_h)
    assert response.status_code == 201, response.json
    return response.json  # type: ignore[no-any-return]


def used(programme_id: int) -> int:
    db.session.expire_all()
    found = db.session.get(PremiumProgramme, programme_id)
    assert found is not None
    return found.budget_used


def line_of(order: dict[str, Any]) -> dict[str, Any]:
    return order["parts"][0]["lines"][0]  # type: ignore[no-any-return]


def test_buyer_funded_premium_is_added_to_the_total_and_shown_on_the_line(client: FlaskClient, shop: Shop) -> None:
    programme(client, shop, funded_by="buyer", product_name="Navel orange", origin_county="寻乌县")
    order = place(client, shop, (shop.oranges, 2000), (shop.nuts, 1000))
    line = next(ln for p in order["parts"] for ln in p["lines"] if ln["listing_id"] == shop.oranges.id)
    assert line["amount"] == 1998
    assert line["premium_amount"] == 200
    assert [p["amount"] for p in line["premiums"]] == [200]
    assert order["total"] == 1998 + 200 + 2400
    assert order["max_total"] == 2198 + 220 + 2640  # premiums at the top of the tolerance too


def test_sponsor_budget_is_reserved_and_never_overshoots(client: FlaskClient, shop: Shop) -> None:
    sponsored = programme(client, shop, funded_by="sponsor", budget_cap=500)
    first = place(client, shop, (shop.oranges, 2000))
    assert line_of(first)["premiums"][0]["amount"] == 200
    assert first["total"] == 1998  # never charged to the buyer
    place(client, shop, (shop.oranges, 2000))
    short = place(client, shop, (shop.oranges, 2000))
    assert line_of(short)["premiums"][0]["amount"] == 100
    assert "Budget short" in line_of(short)["premiums"][0]["note"]
    assert used(sponsored["id"]) == 500
    after = place(client, shop, (shop.oranges, 2000))
    assert line_of(after)["premiums"] == []  # a spent programme stops applying
    shown = client.get(f"/api/v1/premium-programmes/{sponsored['id']}", headers=shop.operator_h).json
    assert shown["exhausted"] is True
    assert shown["budget_left"] == 0
    owner_view = client.get(f"/api/v1/listings/{shop.oranges.id}/premiums", headers=shop.orchard_h).json
    assert owner_view == {"items": [], "next_cursor": None}


def test_farm_cap_limits_one_farm(client: FlaskClient, shop: Shop) -> None:
    sponsored = programme(client, shop, funded_by="sponsor", budget_cap=10_000, farm_cap=300)
    place(client, shop, (shop.oranges, 2000))
    second = place(client, shop, (shop.oranges, 2000))
    assert line_of(second)["premiums"][0]["amount"] == 100
    nuts = place(client, shop, (shop.nuts, 1000))  # another farm has its own cap
    assert line_of(nuts)["premiums"][0]["amount"] == 100
    assert used(sponsored["id"]) == 400


def test_weighing_recomputes_premiums_and_releases_the_excess(client: FlaskClient, shop: Shop) -> None:
    sponsored = programme(client, shop, funded_by="sponsor", budget_cap=5000)
    programme(client, shop, funded_by="buyer", sponsor="Co-op", rate_per_kg=50)
    order = place(client, shop, (shop.oranges, 2000))
    pay(order["id"])
    part = order["parts"][0]
    packed = client.post(
        f"/api/v1/orders/{order['id']}/parts/{part['id']}/pack",
        json={"weights": [{"line_id": line_of(order)["id"], "weighed_g": 1900}]},
        headers=shop.orchard_h,
    ).json
    amounts = {p["funded_by"]: p["amount"] for p in line_of(packed)["premiums"]}
    assert amounts == {"sponsor": 190, "buyer": 95}
    assert used(sponsored["id"]) == 190
    assert packed["parts"][0]["subtotal"] == 1898 + 95


def test_cancelling_before_capture_releases_the_reservation(client: FlaskClient, shop: Shop) -> None:
    sponsored = programme(client, shop, funded_by="sponsor", budget_cap=5000)
    order = place(client, shop, (shop.oranges, 2000))
    assert used(sponsored["id"]) == 200
    client.post(f"/api/v1/orders/{order['id']}/cancel", json={"reason": "wrong address"}, headers=shop.buyer_h)
    assert used(sponsored["id"]) == 0
    expiring = place(client, shop, (shop.oranges, 2000))
    orders.expire_unpaid(utcnow() + timedelta(hours=1))
    assert used(sponsored["id"]) == 0
    assert expiring["id"]


def test_capture_pays_premiums_to_the_farm_and_a_refund_takes_them_back(client: FlaskClient, shop: Shop) -> None:
    sponsored = programme(client, shop, funded_by="sponsor", budget_cap=5000)
    programme(client, shop, funded_by="buyer", sponsor="Co-op", rate_per_kg=50)
    order = place(client, shop, (shop.oranges, 2000))
    payments.open_payment(order["id"])
    confirmed = client.post(
        f"/api/v1/orders/{order['id']}/payment/offline-confirmation",
        json={"amount": order["max_total"], "reference": "cash"},
        headers=shop.operator_h,
    )
    assert confirmed.status_code == 200, confirmed.json
    part = order["parts"][0]
    client.post(
        f"/api/v1/orders/{order['id']}/parts/{part['id']}/pack",
        json={"weights": [{"line_id": line_of(order)["id"], "weighed_g": 2000}]},
        headers=shop.orchard_h,
    )
    payments.capture(order["id"])
    farm = f"farm_payable:{shop.orchard.id}"
    # Produce less 5 % commission, plus the buyer premium, plus the sponsor premium.
    assert ledger.balance(farm) == -(1998 - 100 + 100 + 200)
    assert ledger.balance(f"sponsor_liability:{sponsored['id']}") == 200
    refund = client.post(f"/api/v1/orders/{order['id']}/refunds", json={"reason": "mouldy"}, headers=shop.operator_h)
    assert refund.json["amount"] == 1998 + 100
    payments.process_refund(refund.json["id"])
    assert ledger.balance(farm) == 0
    assert ledger.balance(f"sponsor_liability:{sponsored['id']}") == 0
    assert used(sponsored["id"]) == 0


def test_listing_shows_buyers_what_they_pay_and_farmers_all_they_earn(client: FlaskClient, shop: Shop) -> None:
    programme(client, shop, funded_by="sponsor", budget_cap=5000)
    programme(client, shop, funded_by="buyer", sponsor="Co-op", rate_per_kg=50)
    url = f"/api/v1/listings/{shop.oranges.id}/premiums"
    assert [p["funded_by"] for p in client.get(url, headers=shop.buyer_h).json["items"]] == ["buyer"]
    assert [p["funded_by"] for p in client.get(url).json["items"]] == ["buyer"]
    assert sorted(p["funded_by"] for p in client.get(url, headers=shop.orchard_h).json["items"]) == ["buyer", "sponsor"]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"funded_by": "buyer", "rate_per_kg": -100}, "rate_per_kg"),
        ({"funded_by": "buyer", "rate_per_kg": 0}, "rate_per_kg"),
        ({"funded_by": "sponsor"}, "budget_cap"),
        ({"funded_by": "sponsor", "budget_cap": 2**63}, "budget_cap"),  # beyond a bigint
        ({"funded_by": "buyer", "valid_until": (utcnow() - timedelta(days=2)).isoformat()}, "valid_until"),
        ({"funded_by": "buyer", "category_id": 999_999}, "category_id"),
        ({"funded_by": "buyer", "valid_from": "2026-11-01T00:00:00"}, "valid_from"),  # no time zone
    ],
)
def test_bad_programmes_are_422(client: FlaskClient, shop: Shop, fields: dict[str, Any], field: str) -> None:
    body = {"name": "x", "sponsor": "s", "rate_per_kg": 100, "valid_from": START} | fields
    response = client.post("/api/v1/premium-programmes", json=body, headers=shop.operator_h)
    assert response.status_code == 422, response.json
    assert field in response.json["errors"]
    assert client.get("/api/v1/premium-programmes", headers=shop.operator_h).json["items"] == []


def test_a_county_budget_beyond_a_32_bit_integer_of_fen(client: FlaskClient, shop: Shop) -> None:
    # One yuan a kg on 30,000 t of navel oranges: 3,000,000,000 fen.
    made = programme(client, shop, funded_by="sponsor", budget_cap=3_000_000_000, farm_cap=2_500_000_000)
    assert (made["budget_cap"], made["farm_cap"]) == (3_000_000_000, 2_500_000_000)
    found = client.get("/api/v1/premium-programmes", headers=shop.operator_h).json["items"]
    assert [p["budget_cap"] for p in found] == [3_000_000_000]


def test_overlapping_windows_of_one_sponsor_are_refused(client: FlaskClient, shop: Shop) -> None:
    programme(client, shop, funded_by="sponsor", budget_cap=1000, product_name="Navel orange")
    body = {"name": "again", "sponsor": "Fresh Mart", "rate_per_kg": 80, "valid_from": START, "funded_by": "sponsor"}
    overlapping = client.post("/api/v1/premium-programmes", json=body | {"budget_cap": 500}, headers=shop.operator_h)
    assert overlapping.status_code == 422
    disjoint = body | {"budget_cap": 500, "product_name": "Chestnut"}
    assert client.post("/api/v1/premium-programmes", json=disjoint, headers=shop.operator_h).status_code == 201


def test_only_operators_run_programmes(client: FlaskClient, shop: Shop) -> None:
    body = {"name": "x", "sponsor": "s", "rate_per_kg": 100, "valid_from": START, "funded_by": "buyer"}
    assert client.post("/api/v1/premium-programmes", json=body, headers=shop.orchard_h).status_code == 403
    assert client.get("/api/v1/premium-programmes", headers=shop.buyer_h).status_code == 403


def test_concurrent_orders_never_reserve_past_the_budget(app: Flask, pg_app: Flask, shop: Shop) -> None:
    client = app.test_client()
    sponsored = programme(client, shop, funded_by="sponsor", budget_cap=1050)  # ten orders and a half
    listing_id = ListingFactory(stock_g=1_000_000, min_order_g=1000, step_g=1000).id
    calls = [
        functools.partial(
            orders.place_order, actor, lines=[LineRequest(listing_id, 1000)], delivery_address="Lane 1, Xunwu"
        )
        for actor in buyers(30)
    ]
    outcomes = race(pg_app, calls)
    assert outcomes == Counter({"ok": 30})
    assert used(sponsored["id"]) == 1050
    granted = sorted(p.amount for p in db.session.query(LinePremium).all() if p.amount)
    assert sum(granted) == 1050
    assert granted.count(100) == 10
    assert granted.count(50) == 1


def test_a_programme_ended_before_it_started_never_runs_and_makes_way_for_another(
    client: FlaskClient, shop: Shop
) -> None:
    later = (utcnow() + timedelta(days=30)).isoformat()
    scheduled = programme(client, shop, funded_by="sponsor", budget_cap=1000, valid_from=later)
    ended = client.post(f"/api/v1/premium-programmes/{scheduled['id']}/end", headers=shop.operator_h)
    assert ended.status_code == 200
    assert ended.json["valid_until"] == ended.json["valid_from"] == scheduled["valid_from"]  # an empty window
    again = client.post(f"/api/v1/premium-programmes/{scheduled['id']}/end", headers=shop.operator_h)
    assert again.json["valid_until"] == scheduled["valid_from"]
    # The sponsor runs another programme over the same lines, from now on.
    replacement = programme(client, shop, funded_by="sponsor", budget_cap=1000)
    order = place(client, shop, (shop.oranges, 1000))
    assert [p["programme_id"] for p in line_of(order)["premiums"]] == [replacement["id"]]
    ended_ones = client.get("/api/v1/premium-programmes?active=false", headers=shop.operator_h).json["items"]
    assert [p["id"] for p in ended_ones] == [scheduled["id"]]


@pytest.mark.parametrize("sponsor", ["Fresh Mart ", " fresh  mart", "FRESH MART"])
def test_one_sponsor_however_spelt_cannot_pay_a_line_twice(client: FlaskClient, shop: Shop, sponsor: str) -> None:
    first = programme(client, shop, funded_by="sponsor", budget_cap=1000)
    body = {"name": "again", "sponsor": sponsor, "rate_per_kg": 80, "valid_from": START, "funded_by": "sponsor"}
    refused = client.post("/api/v1/premium-programmes", json=body | {"budget_cap": 500}, headers=shop.operator_h)
    assert refused.status_code == 422, refused.json
    assert f"programme {first['id']}" in refused.json["errors"]["valid_from"][0]
    elsewhere = body | {"budget_cap": 500, "valid_from": (utcnow() + timedelta(days=30)).isoformat()}
    client.post(f"/api/v1/premium-programmes/{first['id']}/end", headers=shop.operator_h)
    made = client.post("/api/v1/premium-programmes", json=elsewhere, headers=shop.operator_h)
    assert made.status_code == 201, made.json
    assert made.json["sponsor"] == " ".join(sponsor.split())  # kept as typed, without stray spaces


def test_two_operators_starting_overlapping_programmes_at_once_start_one(app: Flask, pg_app: Flask, shop: Shop) -> None:
    operators = [Actor(UserFactory(roles=[Role.OPERATOR]).id, frozenset({Role.OPERATOR})) for _ in range(6)]
    start = functools.partial(
        premiums.create_programme, name="Navel bonus", sponsor="Fresh Mart", funded_by=FundedBy.SPONSOR,
        rate_per_kg=100, valid_from=utcnow() - timedelta(days=1), budget_cap=1000,
    )  # fmt: skip
    outcomes = race(pg_app, [functools.partial(start, actor) for actor in operators])
    assert outcomes == Counter({"ok": 1, "Invalid": 5})
    assert db.session.query(PremiumProgramme).count() == 1


def test_orders_naming_two_programmes_lines_in_either_order_never_deadlock(
    app: Flask, pg_app: Flask, shop: Shop
) -> None:
    """Two sponsors' programmes, each on one product, capped per farm; two
    farms sell both products. Half the buyers order the first farm's two
    products, naming the navel first; half the second farm's, naming the
    pomelo first. Their stock locks differ, their budgets are the same: the
    budgets (and farm caps) are taken in one order whatever the order of
    the lines, so no two orders wait on each other. Every order is placed,
    and each budget holds what its lines were granted."""
    client = app.test_client()
    products = ("Navel orange", "Pomelo")
    made = [
        programme(
            client, shop, sponsor=f"{name} Mart", product_name=name, funded_by="sponsor",
            budget_cap=1_000_000, farm_cap=1_000_000,
        )
        for name in products
    ]  # fmt: skip
    baskets = []
    for farm_number in range(2):
        farm = FarmFactory()
        listings = [
            ListingFactory(farm=farm, product_name=name, stock_g=1_000_000, min_order_g=1000, step_g=1000).id
            for name in products
        ]
        baskets.append(listings if farm_number == 0 else listings[::-1])

    def buy(actor: Actor, basket: list[int]) -> None:
        for _ in range(3):
            lines = [LineRequest(listing_id, 1000) for listing_id in basket]
            orders.place_order(actor, lines=lines, delivery_address="Lane 1, Xunwu")

    outcomes = race(pg_app, [functools.partial(buy, actor, baskets[n % 2]) for n, actor in enumerate(buyers(16))])
    # An order ended by a deadlock raises no DomainError: its thread would count nothing.
    assert outcomes == Counter({"ok": 16})
    for made_programme in made:
        granted = sum(p.amount for p in db.session.query(LinePremium).filter_by(programme_id=made_programme["id"]))
        assert used(made_programme["id"]) == granted == 48 * 100
