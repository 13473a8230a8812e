"""A small marketplace to test orders and payments in: two farms (one in
another county than the station, so its parts go through the county
centre), three listings, a station and its county centre with staff,
buyers and an operator."""

from __future__ import annotations

from dataclasses import dataclass

from flask.testing import FlaskClient

from market.accounts.models import Role, User
from market.catalog.models import Farm, FulfilmentPoint, Listing
from market.extensions import db
from market.orders import service
from market.orders.models import StationStaff
from tests.factories import (
    FarmFactory,
    FulfilmentPointFactory,
    ListingFactory,
    bearer,
    token_for,
    user_with_token,
)


@dataclass
class Shop:
    """Two farms (the chestnuts' in another county: routed through the
    centre), three listings, a station and its centre with staff, a buyer
    and an operator."""

    orchard: Farm
    chestnuts: Farm
    oranges: Listing
    pomelos: Listing
    nuts: Listing
    station: FulfilmentPoint
    centre: FulfilmentPoint
    buyer: User
    buyer_h: dict[str, str]
    orchard_h: dict[str, str]
    chestnut_h: dict[str, str]
    staff_h: dict[str, str]
    centre_h: dict[str, str]
    operator_h: dict[str, str]
    other_buyer_h: dict[str, str]


def make_shop() -> Shop:
    orchard = FarmFactory()
    chestnuts = FarmFactory(county="青龙满族自治县", province="河北省", village="肖营子村")
    centre = FulfilmentPointFactory()
    station = FulfilmentPointFactory(kind="village_station", parent_id=centre.id, name="Xialiao station")
    buyer, buyer_h = user_with_token(Role.BUYER)
    staff, staff_h = user_with_token(Role.BUYER)
    centre_staff, centre_h = user_with_token(Role.BUYER)
    db.session.add(StationStaff(user_id=staff.id, fulfilment_point_id=station.id))
    db.session.add(StationStaff(user_id=centre_staff.id, fulfilment_point_id=centre.id))
    db.session.commit()
    _, operator_h = user_with_token(Role.OPERATOR)
    _, other_buyer_h = user_with_token(Role.BUYER)
    return Shop(
        orchard=orchard,
        chestnuts=chestnuts,
        oranges=ListingFactory(farm=orchard, price_per_kg=999),
        pomelos=ListingFactory(farm=orchard, product_name="Pomelo", price_per_kg=800),
        nuts=ListingFactory(farm=chestnuts, product_name="Chestnut", price_per_kg=2400, min_order_g=500, step_g=250),
        station=station,
        centre=centre,
        buyer=buyer,
        buyer_h=buyer_h,
        orchard_h=bearer(token_for(orchard.owner)),
        chestnut_h=bearer(token_for(chestnuts.owner)),
        staff_h=staff_h,
        centre_h=centre_h,
        operator_h=operator_h,
        other_buyer_h=other_buyer_h,
    )


def place(client: FlaskClient, shop: Shop, *lines: tuple[Listing, int], **extra: object) -> dict:  # type: ignore[type-arg]
    body = {"lines": [{"listing_id": listing.id, "grams": grams} for listing, grams in lines]}
    body |= extra or {"fulfilment_point_id": shop.station.id}
    response = client.post("/api/v1/orders", json=body, headers=shop.buyer_h)
    assert response.status_code == 201, response.json
    return response.json  # type: ignore[no-any-return]


def pay(order_id: int) -> None:
    assert service.mark_paid(order_id)
    db.session.commit()


def part_of(order: dict, farm: Farm) -> dict:  # type: ignore[type-arg]
    return next(p for p in order["parts"] if p["farm_id"] == farm.id)


def through_centre(client: FlaskClient, shop: Shop, *part_ids: int) -> None:
    """The county centre's staff scan shipped parts in and out, on to the station."""
    for scan in ("received-parts", "dispatched-parts"):
        url = f"/api/v1/fulfilment-points/{shop.centre.id}/{scan}"
        response = client.post(url, json={"part_ids": list(part_ids)}, headers=shop.centre_h)
        assert response.status_code == 200, response.json
