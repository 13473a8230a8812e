"""Parts routed through county centres: the route fixed at shipping, scans
in and out by each point's staff (in bulk, all or nothing, repeats left as
they are), the centre's manifest, the route in the order, and the rules
that count from arrival at the station."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from market import demo
from market.accounts.models import Role
from market.auth import Actor
from market.catalog import service as catalog
from market.catalog.models import FulfilmentPointKind, Listing
from market.db import utcnow
from market.extensions import db
from market.orders import routing
from market.orders.models import Order, OrderEvent, OrderStatus, PartHop, StationStaff
from market.orders.service import expire_unpaid
from tests.factories import FarmFactory, FulfilmentPointFactory
from tests.orders import test_concurrency
from tests.orders.test_concurrency import race
from tests.shop import Shop, part_of, pay, place, through_centre
from tests.stations.test_villager_orders import confirm, place_for_villager

# A second app on the database, with a pool big enough for a race (PostgreSQL only).
pg_app = test_concurrency.pg_app


def post(client: FlaskClient, url: str, headers: dict[str, str], json: object = None, status: int = 200) -> Any:
    response = client.post(url, json=json, headers=headers)
    assert response.status_code == status, response.json
    return response.json


def scan(client: FlaskClient, shop: Shop, point: Any, what: str, *part_ids: int, status: int = 200) -> Any:
    headers = shop.centre_h if point is shop.centre else shop.staff_h
    return post(client, f"/api/v1/fulfilment-points/{point.id}/{what}", headers, {"part_ids": list(part_ids)}, status)


def shipped(client: FlaskClient, shop: Shop, *lines: tuple[Listing, int]) -> dict[str, Any]:
    """A paid pickup order at the station, every part packed as ordered and shipped."""
    order = place(client, shop, *lines)
    pay(order["id"])
    for part in order["parts"]:
        farmer = shop.orchard_h if part["farm_id"] == shop.orchard.id else shop.chestnut_h
        base = f"/api/v1/orders/{order['id']}/parts/{part['id']}"
        weights = {"weights": [{"line_id": line["id"], "weighed_g": line["ordered_g"]} for line in part["lines"]]}
        post(client, f"{base}/pack", farmer, weights)
        post(client, f"{base}/ship", farmer)
    return client.get(f"/api/v1/orders/{order['id']}", headers=shop.buyer_h).json  # type: ignore[no-any-return]


def hops_written() -> list[tuple[Any, ...]]:
    return list(db.session.execute(select(PartHop.id, PartHop.received_at, PartHop.dispatched_at)).all())


def events() -> int:
    return db.session.scalar(select(func.count(OrderEvent.id))) or 0


def test_a_part_from_another_county_goes_through_the_county_centre(client: FlaskClient, shop: Shop) -> None:
    order = shipped(client, shop, (shop.oranges, 1000), (shop.nuts, 500))
    direct, routed = part_of(order, shop.orchard), part_of(order, shop.chestnuts)
    assert [(hop["point"]["id"], hop["state"]) for hop in direct["route"]] == [(shop.station.id, "expected")]
    assert [(hop["point"]["id"], hop["point"]["kind"]) for hop in routed["route"]] == [
        (shop.centre.id, "county_centre"),
        (shop.station.id, "village_station"),
    ]
    shipped_events = [e["detail"] for e in order["events"] if e["type"] == "part.shipped"]
    assert f"{shop.centre.name} -> {shop.station.name}" in shipped_events


def test_centre_staff_scan_in_and_out_and_the_station_receives_it(client: FlaskClient, shop: Shop) -> None:
    order = shipped(client, shop, (shop.oranges, 1000), (shop.nuts, 500))
    direct, routed = part_of(order, shop.orchard)["id"], part_of(order, shop.chestnuts)["id"]
    scan(client, shop, shop.station, "received-parts", direct)

    received = scan(client, shop, shop.centre, "received-parts", routed)
    [row] = received["parts"]
    assert (row["part_id"], row["changed"], row["hop"]["state"]) == (routed, True, "received")
    assert row["next_point"]["id"] == shop.station.id
    assert client.get(f"/api/v1/orders/{order['id']}", headers=shop.buyer_h).json["status"] == "shipped"

    dispatched = scan(client, shop, shop.centre, "dispatched-parts", routed)
    assert dispatched["parts"][0]["hop"]["state"] == "dispatched"
    ready = scan(client, shop, shop.station, "received-parts", routed)
    assert ready["parts"][0]["part_status"] == "arrived" and ready["parts"][0]["next_point"] is None

    mine = client.get(f"/api/v1/orders/{order['id']}", headers=shop.buyer_h).json
    assert mine["status"] == "ready_for_pickup" and len(mine["pickup_code"]) == 6
    centre, station = part_of(mine, shop.chestnuts)["route"]
    assert centre["received_at"] <= centre["dispatched_at"] <= station["received_at"]
    assert station["dispatched_at"] is None and station["state"] == "received"
    kinds = [(e["type"], e["part_id"]) for e in mine["events"] if e["part_id"] == routed]
    assert kinds == [
        ("part.packed", routed),
        ("part.shipped", routed),
        ("part.received", routed),
        ("part.dispatched", routed),
        ("part.arrived", routed),
    ]
    operator = client.get(f"/api/v1/orders/{order['id']}", headers=shop.operator_h).json
    assert part_of(operator, shop.chestnuts)["route"] == part_of(mine, shop.chestnuts)["route"]


def test_scans_out_of_route_order_are_409_and_write_nothing(client: FlaskClient, shop: Shop) -> None:
    order = shipped(client, shop, (shop.nuts, 500))
    part = order["parts"][0]["id"]
    before = (hops_written(), events())

    at_station = scan(client, shop, shop.station, "received-parts", part, status=409)
    assert at_station["type"] == "/problems/scan-out-of-order"
    assert shop.centre.name in at_station["errors"]["part_ids.0"][0]
    one_by_one = client.post(f"/api/v1/orders/{order['id']}/parts/{part}/receive", headers=shop.staff_h)
    assert one_by_one.status_code == 409 and one_by_one.content_type == "application/problem+json"
    not_in_yet = scan(client, shop, shop.centre, "dispatched-parts", part, status=409)
    assert "scan it in" in not_in_yet["errors"]["part_ids.0"][0]
    assert (hops_written(), events()) == before

    through_centre(client, shop, part)
    scan(client, shop, shop.station, "received-parts", part)
    from_the_end = scan(client, shop, shop.station, "dispatched-parts", part, status=409)
    assert "pickup code" in from_the_end["errors"]["part_ids.0"][0]


def test_a_repeated_scan_changes_nothing(client: FlaskClient, shop: Shop) -> None:
    order = shipped(client, shop, (shop.nuts, 500))
    part = order["parts"][0]["id"]
    scan(client, shop, shop.centre, "received-parts", part)
    before = (hops_written(), events(), db.session.scalar(select(Order.version)))
    db.session.rollback()
    again = scan(client, shop, shop.centre, "received-parts", part, part)  # and twice in one go
    assert [(row["part_id"], row["changed"]) for row in again["parts"]] == [(part, False)]
    assert (hops_written(), events(), db.session.scalar(select(Order.version))) == before
    db.session.rollback()

    through_centre(client, shop, part)  # in again (left as it was), then out
    scan(client, shop, shop.station, "received-parts", part)
    again = scan(client, shop, shop.station, "received-parts", part)
    assert again["parts"][0]["changed"] is False
    assert client.get(f"/api/v1/orders/{order['id']}", headers=shop.buyer_h).json["status"] == "ready_for_pickup"


def test_a_part_not_routed_through_the_point_is_422_and_the_whole_scan_is_refused(
    client: FlaskClient, shop: Shop
) -> None:
    order = shipped(client, shop, (shop.oranges, 1000), (shop.nuts, 500))
    direct, routed = part_of(order, shop.orchard)["id"], part_of(order, shop.chestnuts)["id"]
    before = hops_written()
    refused = scan(client, shop, shop.centre, "received-parts", routed, direct, 10**9, status=422)
    assert set(refused["errors"]) == {"part_ids.1", "part_ids.2"}
    assert "not on its way through" in refused["errors"]["part_ids.1"][0]
    assert hops_written() == before  # the routed part was not scanned in either
    url = f"/api/v1/fulfilment-points/{shop.centre.id}/received-parts"
    none = client.post(url, json={"part_ids": []}, headers=shop.centre_h)
    assert none.status_code == 422 and "part_ids" in none.json["errors"]
    beyond = client.post(url, json={"part_ids": [routed, 2**70]}, headers=shop.centre_h)  # no database integer
    assert beyond.status_code == 422 and set(beyond.json["errors"]) == {"part_ids.1"}
    assert hops_written() == before


def test_only_the_points_staff_scan_there(client: FlaskClient, shop: Shop) -> None:
    order = shipped(client, shop, (shop.nuts, 500))
    part = order["parts"][0]["id"]
    url = f"/api/v1/fulfilment-points/{shop.centre.id}/received-parts"
    for headers in (shop.staff_h, shop.buyer_h, shop.chestnut_h):
        assert client.post(url, json={"part_ids": [part]}, headers=headers).status_code == 404
    assert post(client, url, shop.operator_h, {"part_ids": [part]})["parts"][0]["changed"] is True


def test_many_parts_of_many_orders_are_scanned_at_once(client: FlaskClient, shop: Shop) -> None:
    parts = [shipped(client, shop, (shop.nuts, 500))["parts"][0]["id"] for _ in range(3)]
    received = scan(client, shop, shop.centre, "received-parts", *parts)
    assert [row["part_id"] for row in received["parts"]] == parts
    dispatched = scan(client, shop, shop.centre, "dispatched-parts", *parts)
    assert {row["hop"]["state"] for row in dispatched["parts"]} == {"dispatched"}
    arrived = scan(client, shop, shop.station, "received-parts", *parts)
    assert {row["part_status"] for row in arrived["parts"]} == {"arrived"}
    statuses = db.session.scalars(select(Order.status)).all()
    assert statuses == [OrderStatus.READY_FOR_PICKUP] * 3


def test_a_part_not_shipped_yet_is_refused_at_its_station(client: FlaskClient, shop: Shop) -> None:
    order = place(client, shop, (shop.oranges, 1000))
    pay(order["id"])
    refused = scan(client, shop, shop.station, "received-parts", order["parts"][0]["id"], status=409)
    assert "not shipped" in refused["errors"]["part_ids.0"][0]
    assert order["parts"][0]["route"] == []


def test_the_centres_manifest_lists_what_comes_in_and_what_goes_out(client: FlaskClient, shop: Shop) -> None:
    coming = shipped(client, shop, (shop.nuts, 500))["parts"][0]["id"]
    going = shipped(client, shop, (shop.nuts, 750))["parts"][0]["id"]
    scan(client, shop, shop.centre, "received-parts", going)

    def sections(point: Any, headers: dict[str, str]) -> set[tuple[int, str, Any]]:
        rows = client.get(f"/api/v1/fulfilment-points/{point.id}/manifest", headers=headers).json["rows"]
        return {(row["part_id"], row["section"], row["dispatch_to_point_id"]) for row in rows}

    assert sections(shop.centre, shop.centre_h) == {(coming, "arriving", None), (going, "to_dispatch", shop.station.id)}
    assert sections(shop.station, shop.staff_h) == set()  # nothing on its way to the station yet
    scan(client, shop, shop.centre, "dispatched-parts", going)
    assert sections(shop.centre, shop.centre_h) == {(coming, "arriving", None), (going, "arriving", None)}
    assert sections(shop.station, shop.staff_h) == {(going, "arriving", None)}
    csv = client.get(
        f"/api/v1/fulfilment-points/{shop.centre.id}/manifest", query_string={"format": "csv"}, headers=shop.centre_h
    )
    header = csv.get_data(as_text=True).lstrip("\ufeff").splitlines()[0]
    assert header.endswith("dispatch_to_point_id,dispatch_to")


def test_an_order_cancelled_while_at_the_centre_goes_no_further(client: FlaskClient, shop: Shop) -> None:
    order = shipped(client, shop, (shop.nuts, 500))
    part = order["parts"][0]["id"]
    scan(client, shop, shop.centre, "received-parts", part)
    stock = db.session.scalar(select(Listing.stock_g).where(Listing.id == shop.nuts.id))
    db.session.rollback()
    post(client, f"/api/v1/orders/{order['id']}/cancel", shop.operator_h, {"reason": "buyer moved away"})
    refused = scan(client, shop, shop.centre, "dispatched-parts", part, status=409)
    assert "cancelled" in refused["errors"]["part_ids.0"][0]
    assert db.session.scalar(select(Listing.stock_g).where(Listing.id == shop.nuts.id)) == stock  # shipped: not back
    rows = client.get(f"/api/v1/fulfilment-points/{shop.centre.id}/manifest", headers=shop.centre_h).json["rows"]
    assert rows == []


def test_a_villagers_order_waits_its_days_from_arrival_at_the_station(
    app: Flask, client: FlaskClient, shop: Shop
) -> None:
    order = place_for_villager(client, shop, (shop.nuts, 500))
    confirm(client, shop, order["id"])  # paid in cash on collection
    part = order["parts"][0]
    base = f"/api/v1/orders/{order['id']}/parts/{part['id']}"
    post(client, f"{base}/pack", shop.chestnut_h, {"weights": [{"line_id": part["lines"][0]["id"], "weighed_g": 500}]})
    post(client, f"{base}/ship", shop.chestnut_h)
    through_centre(client, shop, part["id"])
    days_later = utcnow() + timedelta(days=app.config["STATION_COLLECT_DAYS"] + 1)
    assert expire_unpaid(days_later) == 0  # at the centre or on the road, it waits for nobody
    scan(client, shop, shop.station, "received-parts", part["id"])
    arrived = db.session.get(Order, order["id"])
    assert arrived is not None and arrived.status == OrderStatus.READY_FOR_PICKUP
    collect_days = timedelta(days=app.config["STATION_COLLECT_DAYS"])
    assert utcnow() + collect_days - timedelta(minutes=5) < arrived.expires_at <= utcnow() + collect_days
    db.session.rollback()
    assert expire_unpaid(days_later) == 1


def test_the_route_is_through_the_centre_of_the_stations_county(app: Flask) -> None:
    farm = FarmFactory(county="青龙满族自治县", province="河北省")
    neighbour = FarmFactory()
    station = FulfilmentPointFactory(kind=FulfilmentPointKind.VILLAGE_STATION, name="Station without a parent")
    assert catalog.route(farm, station) == [station]  # no centre in the county: straight
    centre = FulfilmentPointFactory()
    assert catalog.route(farm, station) == [centre, station]
    assert catalog.route(neighbour, station) == [station]  # the station's own county
    assert catalog.route(farm, centre) == [centre]  # picked up at the centre itself
    elsewhere = FulfilmentPointFactory(county="会昌县")
    station.parent_id = elsewhere.id
    db.session.commit()
    assert catalog.route(farm, station) == [elsewhere, station]  # its own centre first


def test_scans_of_the_same_parts_at_once_take_turns(app: Flask, pg_app: Flask, client: FlaskClient, shop: Shop) -> None:
    """Centre staff scanning the same load at once, in opposite orders:
    no deadlock, no scan refused, each part received once."""
    parts = [shipped(client, shop, (shop.nuts, 500))["parts"][0]["id"] for _ in range(3)]
    staff = db.session.scalars(select(StationStaff.user_id).where(StationStaff.fulfilment_point_id == shop.centre.id))
    centre = Actor(user_id=staff.one(), roles=frozenset({Role.BUYER}))
    loads = [parts if n % 2 else parts[::-1] for n in range(6)]
    outcomes = race(pg_app, [lambda load=load: routing.receive_parts(centre, shop.centre.id, load) for load in loads])
    assert outcomes == Counter({"ok": 6})
    db.session.expire_all()
    received = select(OrderEvent.part_id).where(OrderEvent.type == "part.received")
    assert sorted(db.session.scalars(received)) == sorted(parts)


def test_the_demo_has_a_part_waiting_at_the_county_centre(client: FlaskClient) -> None:
    tokens = demo.seed()
    demo.seed()
    [order_id] = db.session.scalars(select(Order.id).where(Order.notes == demo.ROUTED_ORDER_NOTE)).all()  # once
    buyer = {"Authorization": f"Bearer {tokens[demo.ACCOUNTS[1][0]]}"}
    order = client.get(f"/api/v1/orders/{order_id}", headers=buyer).json
    assert order["status"] == "shipped"
    [part] = order["parts"]
    assert [(hop["point"]["kind"], hop["state"]) for hop in part["route"]] == [
        ("county_centre", "received"),
        ("village_station", "expected"),
    ]
    centre = {"Authorization": f"Bearer {tokens[demo.CENTRE_STAFF_EMAIL]}"}
    url = f"/api/v1/fulfilment-points/{part['route'][0]['point']['id']}/manifest"
    rows = client.get(url, headers=centre).json["rows"]
    assert [(row["part_id"], row["section"]) for row in rows] == [(part["id"], "to_dispatch")]
