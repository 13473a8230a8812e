"""Orders station staff place for villagers: the account by phone, the
texted code, packing unpaid, cash on collection against the weighed total,
and expiry when never collected."""

from __future__ import annotations

import re
import threading
from datetime import datetime, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from market.accounts.models import Role, User
from market.catalog.models import Listing
from market.db import utcnow
from market.extensions import db
from market.ledger import service as ledger
from market.notifications import service as notifications
from market.notifications.models import Channel, Notification
from market.orders import service as orders
from market.orders.models import Order
from market.payments.models import Payment, PaymentStatus
from market.settlement.checks import check_ledger
from market.settlement.models import EntryKind, FarmEntry
from market.stations.models import ConfirmationCode
from tests.conftest import needs
from tests.factories import UserFactory, emails_to
from tests.shop import Shop, part_of

PHONE = "+8613900000077"


def stock(listing: Listing) -> int:
    return db.session.scalar(select(Listing.stock_g).where(Listing.id == listing.id)) or 0


def post(client: FlaskClient, url: str, headers: dict[str, str], json: object = None, status: int = 200) -> dict:  # type: ignore[type-arg]
    response = client.post(url, json=json, headers=headers)
    assert response.status_code == status, response.json
    return response.json  # type: ignore[no-any-return]


def place_for_villager(client: FlaskClient, shop: Shop, *lines: tuple[Listing, int], phone: str = PHONE) -> dict:  # type: ignore[type-arg]
    body = {
        "phone": phone,
        "name": "Aunt Li",
        "lines": [{"listing_id": listing.id, "grams": grams} for listing, grams in lines],
    }
    response = client.post(
        f"/api/v1/fulfilment-points/{shop.station.id}/villager-orders", json=body, headers=shop.staff_h
    )
    assert response.status_code == 201, response.json
    assert response.headers["Location"].endswith(f"/orders/{response.json['id']}")
    return response.json  # type: ignore[no-any-return]


def texted_codes(phone: str = PHONE) -> list[str]:
    rows = db.session.scalars(
        select(Notification)
        .where(Notification.recipient == phone, Notification.event == "order.confirmation_code")
        .order_by(Notification.id)
    ).all()
    assert all(row.channel == Channel.SMS for row in rows)
    return [re.findall(r"\b\d{6}\b", row.body)[0] for row in rows]


def confirm(client: FlaskClient, shop: Shop, order_id: int) -> dict:  # type: ignore[type-arg]
    code = texted_codes()[-1]
    return post(client, f"/api/v1/orders/{order_id}/villager-confirmation", shop.staff_h, {"code": code})


def weigh_ship_receive(client: FlaskClient, shop: Shop, order: dict, grams: int) -> dict:  # type: ignore[type-arg]
    part = part_of(order, shop.orchard)
    base = f"/api/v1/orders/{order['id']}/parts/{part['id']}"
    weights = {"weights": [{"line_id": part["lines"][0]["id"], "weighed_g": grams}]}
    post(client, f"{base}/pack", shop.orchard_h, weights)
    post(client, f"{base}/ship", shop.orchard_h)
    return post(client, f"{base}/receive", shop.staff_h)


def test_staff_place_an_order_for_a_villager_who_has_no_account(client: FlaskClient, shop: Shop) -> None:
    before = stock(shop.oranges)
    order = place_for_villager(client, shop, (shop.oranges, 2000))
    villager = db.session.scalars(select(User).where(User.phone == PHONE)).one()
    assert (villager.email, villager.password_hash, villager.confirmed_at) == (None, None, None)
    assert villager.role_names == {Role.BUYER}
    assert (order["buyer_id"], order["placed_by_id"], order["status"]) == (
        villager.id,
        order["placed_by_id"],
        "pending_payment",
    )
    assert order["placed_by_id"] != villager.id
    assert order["total"] == 1998  # staff see what the villager pays; not the pickup code
    assert order["pickup_code"] is None
    assert stock(shop.oranges) == before - 2000  # reserved like any order
    payment = db.session.scalars(select(Payment).where(Payment.order_id == order["id"])).one()
    assert (payment.cash_point_id, payment.status) == (shop.station.id, PaymentStatus.REQUIRES_PAYMENT)
    [code] = texted_codes()
    stored = db.session.scalars(select(ConfirmationCode).where(ConfirmationCode.order_id == order["id"])).one()
    assert code not in stored.code_hash and len(stored.code_hash) == 64  # kept hashed only


def test_a_villager_opened_without_a_name_is_not_named_by_their_number(client: FlaskClient, shop: Shop) -> None:
    body = {"phone": PHONE, "lines": [{"listing_id": shop.oranges.id, "grams": 1000}]}
    response = client.post(
        f"/api/v1/fulfilment-points/{shop.station.id}/villager-orders", json=body, headers=shop.staff_h
    )
    assert response.status_code == 201, response.json
    order = response.json
    # The farm sees the buyer's name on its orders: never the villager's number.
    seen = client.get(f"/api/v1/orders/{order['id']}", headers=shop.orchard_h).json
    assert seen["buyer_name"] == "+86*******0077"
    found = client.get("/api/v1/orders", query_string={"buyer": "13900000077"}, headers=shop.orchard_h).json
    assert found["items"] == []
    assert order["buyer_name"] == "+86*******0077"  # staff tell villagers apart by the last digits


def test_a_known_phone_number_places_the_order_for_its_account(client: FlaskClient, shop: Shop) -> None:
    farmer = UserFactory(phone=PHONE, phone_verified_at=utcnow(), roles=[Role.FARMER])
    order = place_for_villager(client, shop, (shop.oranges, 1000))
    assert order["buyer_id"] == farmer.id
    db.session.expire_all()
    assert db.session.get(User, farmer.id).role_names == {Role.FARMER, Role.BUYER}  # type: ignore[union-attr]


def test_a_number_only_unproven_accounts_hold_opens_a_villager_account(client: FlaskClient, shop: Shop) -> None:
    typed_it = UserFactory(phone=PHONE, roles=[Role.FARMER])  # set the number in their profile: not proven
    order = place_for_villager(client, shop, (shop.oranges, 1000))
    assert order["buyer_id"] != typed_it.id
    villager = db.session.get(User, order["buyer_id"])
    assert villager is not None and (villager.phone, villager.email, villager.password_hash) == (PHONE, None, None)
    assert villager.phone_verified_at is not None  # staff typed the number the villager gave them
    db.session.expire_all()
    assert db.session.get(User, typed_it.id).role_names == {Role.FARMER}  # type: ignore[union-attr]
    # The next order for the number finds the villager's account.
    assert place_for_villager(client, shop, (shop.oranges, 1000))["buyer_id"] == villager.id


def test_only_the_stations_staff_place_orders_there(client: FlaskClient, shop: Shop) -> None:
    body = {"phone": PHONE, "lines": [{"listing_id": shop.oranges.id, "grams": 1000}]}
    response = client.post(
        f"/api/v1/fulfilment-points/{shop.station.id}/villager-orders", json=body, headers=shop.buyer_h
    )
    assert response.status_code == 404
    assert db.session.scalars(select(User).where(User.phone == PHONE)).first() is None  # nothing written


def test_bad_input_writes_nothing(client: FlaskClient, shop: Shop) -> None:
    url = f"/api/v1/fulfilment-points/{shop.station.id}/villager-orders"
    bad_phone = client.post(
        url, json={"phone": "12", "lines": [{"listing_id": shop.oranges.id, "grams": 1000}]}, headers=shop.staff_h
    )
    assert bad_phone.status_code == 422
    assert "phone" in bad_phone.json["errors"]
    shop.oranges.stock_g = 500
    db.session.commit()
    too_much = client.post(
        url, json={"phone": PHONE, "lines": [{"listing_id": shop.oranges.id, "grams": 1000}]}, headers=shop.staff_h
    )
    assert too_much.status_code == 409
    assert db.session.scalars(select(User).where(User.phone == PHONE)).first() is None
    assert db.session.scalar(select(Order.id)) is None


def test_the_code_confirms_the_order_and_its_farms_pack_it_unpaid(client: FlaskClient, shop: Shop) -> None:
    order = place_for_villager(client, shop, (shop.oranges, 2000))
    url = f"/api/v1/orders/{order['id']}/villager-confirmation"
    wrong = client.post(
        url, json={"code": "000000" if texted_codes()[-1] != "000000" else "111111"}, headers=shop.staff_h
    )
    assert wrong.status_code == 422
    confirmed = confirm(client, shop, order["id"])
    assert confirmed["status"] == "confirmed"
    assert part_of(confirmed, shop.orchard)["status"] == "to_pack"
    farmers_heard = [n.event for n in emails_to(shop.orchard.owner.email)]
    assert "order.confirmed" in farmers_heard
    again = client.post(url, json={"code": texted_codes()[-1]}, headers=shop.staff_h)
    assert again.status_code == 409


def test_wrong_codes_are_limited_and_a_new_code_replaces_the_old(client: FlaskClient, shop: Shop) -> None:
    order = place_for_villager(client, shop, (shop.oranges, 2000))
    url = f"/api/v1/orders/{order['id']}/villager-confirmation"
    first = texted_codes()[-1]
    wrong = "123456" if first != "123456" else "654321"
    for _ in range(5):
        assert client.post(url, json={"code": wrong}, headers=shop.staff_h).status_code == 422
    assert client.post(url, json={"code": first}, headers=shop.staff_h).status_code == 429
    post(client, f"/api/v1/orders/{order['id']}/villager-code", shop.staff_h)
    second = texted_codes()[-1]
    if second != first:
        assert client.post(url, json={"code": first}, headers=shop.staff_h).status_code == 422
    assert post(client, url, shop.staff_h, {"code": second})["status"] == "confirmed"


def test_an_expired_code_confirms_nothing(client: FlaskClient, shop: Shop) -> None:
    order = place_for_villager(client, shop, (shop.oranges, 2000))
    code = db.session.scalars(select(ConfirmationCode)).one()
    code.expires_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    response = client.post(
        f"/api/v1/orders/{order['id']}/villager-confirmation", json={"code": texted_codes()[-1]}, headers=shop.staff_h
    )
    assert response.status_code == 409
    assert db.session.get(Order, order["id"]).status == "pending_payment"  # type: ignore[union-attr]


def test_cash_on_collection_takes_the_weighed_total_and_completes_the_order(client: FlaskClient, shop: Shop) -> None:
    order = place_for_villager(client, shop, (shop.oranges, 2000))
    confirm(client, shop, order["id"])
    ready = weigh_ship_receive(client, shop, order, 1900)
    assert ready["status"] == "ready_for_pickup"
    assert ready["total"] == 1898  # 9.99 x 1.9, not the 2098 the order could have reached
    pickup_code = db.session.get(Order, order["id"]).pickup_code  # type: ignore[union-attr]
    texts = [n.body for n in emails_to(PHONE) if n.event == "order.ready_for_pickup"]
    assert texts and pickup_code in texts[0] and texts[0]  # texted to the villager's phone
    url = f"/api/v1/orders/{order['id']}/cash-collection"

    plain = client.post(f"/api/v1/orders/{order['id']}/collect", json={"code": pickup_code}, headers=shop.staff_h)
    assert plain.status_code == 409  # no hand-over without the cash
    the_most = client.post(url, json={"code": pickup_code, "amount": order["max_total"]}, headers=shop.staff_h)
    assert the_most.status_code == 422
    assert the_most.json["errors"]["amount"] == ["Must be exactly 1898 (minor units), the weighed total."]

    done = post(client, url, shop.staff_h, {"code": pickup_code, "amount": 1898})
    assert done["status"] == "completed"
    assert done["paid_at"] is not None
    payment = db.session.scalars(select(Payment).where(Payment.order_id == order["id"])).one()
    assert (payment.status, payment.amount_captured) == (PaymentStatus.CAPTURED, 1898)
    assert ledger.balance(ledger.station_cash(shop.station.id)) == 1898  # the station holds the cash
    assert ledger.balance(ledger.BUYER_DEPOSITS) == 0
    sale = db.session.scalars(select(FarmEntry).where(FarmEntry.kind == EntryKind.SALE)).one()
    assert (sale.farm_id, sale.produce) == (shop.orchard.id, 1898)
    assert check_ledger() == []
    assert client.post(url, json={"code": pickup_code, "amount": 1898}, headers=shop.staff_h).status_code == 409


def test_a_wrong_pickup_code_takes_no_cash(client: FlaskClient, shop: Shop) -> None:
    order = place_for_villager(client, shop, (shop.oranges, 2000))
    confirm(client, shop, order["id"])
    ready = weigh_ship_receive(client, shop, order, 2000)
    code = db.session.get(Order, order["id"]).pickup_code  # type: ignore[union-attr]
    wrong = "000000" if code != "000000" else "111111"
    response = client.post(
        f"/api/v1/orders/{order['id']}/cash-collection",
        json={"code": wrong, "amount": ready["total"]},
        headers=shop.staff_h,
    )
    assert response.status_code == 422
    db.session.expire_all()
    assert db.session.get(Order, order["id"]).pickup_failures == 1  # type: ignore[union-attr]
    assert ledger.balance(ledger.station_cash(shop.station.id)) == 0


def test_staff_ask_for_a_new_pickup_code_for_a_villager_and_never_see_it(client: FlaskClient, shop: Shop) -> None:
    """A villager who lost the texted code has no login to ask for another:
    staff of the station ask for them. The new code is texted to the
    villager, the old one stops working, and staff see neither."""
    order = place_for_villager(client, shop, (shop.oranges, 2000))
    confirm(client, shop, order["id"])
    weigh_ship_receive(client, shop, order, 2000)
    old = db.session.get(Order, order["id"]).pickup_code  # type: ignore[union-attr]
    url = f"/api/v1/orders/{order['id']}/pickup-code"
    for outsider in (shop.centre_h, shop.orchard_h, shop.other_buyer_h):
        assert client.post(url, headers=outsider).status_code == 404
    renewed = post(client, url, shop.staff_h)
    assert renewed["pickup_code"] is None
    new = db.session.get(Order, order["id"], populate_existing=True).pickup_code  # type: ignore[union-attr]
    assert new and new != old
    texts = [n.body for n in emails_to(PHONE) if n.event == "order.pickup_code_renewed"]
    assert len(texts) == 1 and new in texts[0]


def test_offline_confirmation_is_not_how_cash_on_collection_is_paid(client: FlaskClient, shop: Shop) -> None:
    order = place_for_villager(client, shop, (shop.oranges, 2000))
    response = client.post(
        f"/api/v1/orders/{order['id']}/payment/offline-confirmation",
        json={"amount": order["max_total"], "reference": "cash"},
        headers=shop.operator_h,
    )
    assert response.status_code == 409


def test_an_order_never_collected_expires_days_after_it_arrived(client: FlaskClient, shop: Shop) -> None:
    order = place_for_villager(client, shop, (shop.oranges, 2000))
    assert confirm(client, shop, order["id"])["expires_at"] is None  # packed and shipped unpaid, with no deadline
    before = stock(shop.oranges)
    weigh_ship_receive(client, shop, order, 2000)
    waiting = client.get(f"/api/v1/orders/{order['id']}", headers=shop.staff_h).json
    days = client.application.config["STATION_COLLECT_DAYS"]
    assert waiting["status"] == "ready_for_pickup"
    left = datetime.fromisoformat(waiting["expires_at"]) - utcnow()
    assert timedelta(days=days) - timedelta(minutes=5) < left <= timedelta(days=days)
    assert orders.expire_unpaid(now=utcnow() + timedelta(days=days) - timedelta(minutes=1)) == 0
    assert orders.expire_unpaid(now=utcnow() + timedelta(days=days, minutes=1)) == 1
    db.session.expire_all()
    expired = db.session.get(Order, order["id"])
    assert expired is not None and expired.status == "expired"
    # The goods left the farm: as for any order closed after shipping, stock stays.
    assert stock(shop.oranges) == before


def test_an_unconfirmed_order_expires_and_gives_its_stock_back(client: FlaskClient, shop: Shop) -> None:
    before = stock(shop.oranges)
    order = place_for_villager(client, shop, (shop.oranges, 2000))
    minutes = client.application.config["ORDER_PAYMENT_MINUTES"]
    assert orders.expire_unpaid(now=utcnow() + timedelta(minutes=minutes + 1)) == 1
    assert stock(shop.oranges) == before
    db.session.expire_all()
    assert db.session.get(Order, order["id"]).status == "expired"  # type: ignore[union-attr]


@pytest.mark.parametrize("stage", ["placed", "confirmed", "packed", "at the station", "collected"])
def test_an_order_counts_against_the_villagers_unpaid_allowance_until_its_cash_is_taken(
    client: FlaskClient, shop: Shop, stage: str
) -> None:
    """Confirmed, the order is packed, shipped and waits at the station, all
    unpaid, holding its produce for the villager: it counts as unpaid until
    the cash is taken at the counter."""
    client.application.config["BUYER_MAX_UNPAID_ORDERS"] = 1
    order = place_for_villager(client, shop, (shop.oranges, 1000))
    if stage != "placed":
        confirm(client, shop, order["id"])
    if stage == "packed":
        part = part_of(order, shop.orchard)
        weights = {"weights": [{"line_id": part["lines"][0]["id"], "weighed_g": 1000}]}
        post(client, f"/api/v1/orders/{order['id']}/parts/{part['id']}/pack", shop.orchard_h, weights)
    if stage in ("at the station", "collected"):
        assert weigh_ship_receive(client, shop, order, 1000)["status"] == "ready_for_pickup"
    if stage == "collected":
        pickup_code = db.session.get(Order, order["id"]).pickup_code  # type: ignore[union-attr]
        url = f"/api/v1/orders/{order['id']}/cash-collection"
        post(client, url, shop.staff_h, {"code": pickup_code, "amount": 999})
    body = {"phone": PHONE, "lines": [{"listing_id": shop.oranges.id, "grams": 1000}]}
    response = client.post(
        f"/api/v1/fulfilment-points/{shop.station.id}/villager-orders", json=body, headers=shop.staff_h
    )
    assert response.status_code == (201 if stage == "collected" else 409), response.json


def test_two_first_orders_for_a_new_number_at_once_open_one_account(app: Flask, shop: Shop) -> None:
    needs("postgresql")
    barrier = threading.Barrier(2)
    statuses: list[int] = []
    body = {"phone": "+8613900000999", "name": "Uncle Wu", "lines": [{"listing_id": shop.oranges.id, "grams": 1000}]}

    url = f"/api/v1/fulfilment-points/{shop.station.id}/villager-orders"

    def place() -> None:
        with app.test_client() as own:
            barrier.wait()
            statuses.append(own.post(url, json=body, headers=shop.staff_h).status_code)

    threads = [threading.Thread(target=place) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [201, 201]
    (villager,) = db.session.scalars(select(User).where(User.phone == "+8613900000999")).all()
    orders_of = db.session.scalars(select(Order.buyer_id).where(Order.placed_by_id.isnot(None))).all()
    assert orders_of == [villager.id, villager.id]


def test_an_order_never_collected_is_not_told_as_one_never_packed(client: FlaskClient, shop: Shop) -> None:
    order = place_for_villager(client, shop, (shop.oranges, 2000))
    confirm(client, shop, order["id"])
    weigh_ship_receive(client, shop, order, 2000)
    days = client.application.config["STATION_COLLECT_DAYS"]
    assert orders.expire_unpaid(now=utcnow() + timedelta(days=days, minutes=1)) == 1

    notifications.handle_event("outbox-expired", "order.expired", order_id=order["id"])

    farmer = db.session.scalars(
        select(Notification).where(Notification.event == "order.expired", Notification.user_id == shop.orchard.owner_id)
    ).all()
    assert farmer and all("not collected" in row.body and "do not pack" not in row.body for row in farmer)
    (villager,) = db.session.scalars(
        select(Notification).where(Notification.event == "order.expired", Notification.recipient == PHONE)
    )
    assert "未在时限内付款" not in villager.body and "未取货" in villager.body
