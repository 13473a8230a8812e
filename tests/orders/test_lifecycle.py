"""The life of an order: payment, catch-weight packing, shipping, station
pickup, delivery, completion, cancellation and expiry."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from market.catalog.models import Listing
from market.db import utcnow
from market.extensions import db
from market.money import MAX_BIGINT
from market.orders import service
from market.orders.models import Order, OrderStatus
from tests.conftest import needs
from tests.shop import Shop, part_of, pay, place, through_centre


def stock(listing: Listing) -> int:
    return db.session.scalar(select(Listing.stock_g).where(Listing.id == listing.id)) or 0


def post(client: FlaskClient, url: str, headers: dict[str, str], json: object = None) -> dict:  # type: ignore[type-arg]
    response = client.post(url, json=json, headers=headers)
    assert response.status_code == 200, response.json
    return response.json  # type: ignore[no-any-return]


def weights(part: dict, *grams: int) -> dict:  # type: ignore[type-arg]
    return {"weights": [{"line_id": line["id"], "weighed_g": g} for line, g in zip(part["lines"], grams, strict=True)]}


def test_pickup_order_from_payment_to_completion(client: FlaskClient, shop: Shop) -> None:
    order = place(client, shop, (shop.oranges, 2000), (shop.nuts, 1000))
    oid = order["id"]
    orchard, nuts = part_of(order, shop.orchard), part_of(order, shop.chestnuts)
    pay(oid)
    base = f"/api/v1/orders/{oid}/parts"

    packed = post(client, f"{base}/{orchard['id']}/pack", shop.orchard_h, weights(orchard, 2100))
    assert packed["status"] == "paid"  # the other farm has not packed yet
    line = packed["parts"][0]["lines"][0]
    assert (line["weighed_g"], line["amount"]) == (2100, 2098)  # 9.99 x 2.1 = 20.979
    packed = post(client, f"{base}/{nuts['id']}/pack", shop.chestnut_h, weights(nuts, 950))
    assert packed["status"] == "packed"

    buyer_view = client.get(f"/api/v1/orders/{oid}", headers=shop.buyer_h).json
    assert buyer_view["total"] == 2098 + 2280  # weighed, not ordered
    assert buyer_view["max_total"] == order["max_total"]  # what was authorised stays for the payment step

    post(client, f"{base}/{orchard['id']}/ship", shop.orchard_h)
    shipped = post(client, f"{base}/{nuts['id']}/ship", shop.chestnut_h)
    assert shipped["status"] == "shipped"

    post(client, f"{base}/{orchard['id']}/receive", shop.staff_h)
    through_centre(client, shop, nuts["id"])  # from another county: through the county centre
    ready = post(client, f"{base}/{nuts['id']}/receive", shop.staff_h)
    assert ready["status"] == "ready_for_pickup"
    assert ready["pickup_code"] is None  # staff never see the code
    code = client.get(f"/api/v1/orders/{oid}", headers=shop.buyer_h).json["pickup_code"]
    assert len(code) == 6

    collected = post(client, f"/api/v1/orders/{oid}/collect", shop.staff_h, {"code": code})
    assert collected["status"] == "collected"
    done = post(client, f"/api/v1/orders/{oid}/complete", shop.buyer_h)
    assert done["status"] == "completed"
    kinds = [e["type"] for e in done["events"]]
    assert kinds[0] == "order.placed"
    assert {"order.paid", "order.packed", "order.shipped", "order.ready_for_pickup", "order.collected"} <= set(kinds)
    assert kinds[-1] == "order.completed"


def test_delivery_order_is_delivered_by_the_farm(client: FlaskClient, shop: Shop) -> None:
    order = place(client, shop, (shop.oranges, 1000), delivery_address="No. 8 Changning Road, Xunwu")
    part = order["parts"][0]
    pay(order["id"])
    base = f"/api/v1/orders/{order['id']}/parts/{part['id']}"
    post(client, f"{base}/pack", shop.orchard_h, weights(part, 1000))
    post(client, f"{base}/ship", shop.orchard_h)
    assert client.post(f"{base}/receive", headers=shop.staff_h).status_code == 404  # not a station order
    delivered = post(client, f"{base}/deliver", shop.orchard_h)
    assert delivered["status"] == "delivered"


def test_weighing_outside_tolerance_is_422_and_changes_nothing(client: FlaskClient, shop: Shop) -> None:
    order = place(client, shop, (shop.oranges, 2000))
    part = order["parts"][0]
    pay(order["id"])
    url = f"/api/v1/orders/{order['id']}/parts/{part['id']}/pack"
    for grams in (1799, 2201):
        response = client.post(url, json=weights(part, grams), headers=shop.orchard_h)
        assert response.status_code == 422
        assert "between 1800 and 2200" in response.json["errors"]["weights.0.weighed_g"][0]
    fresh = client.get(f"/api/v1/orders/{order['id']}", headers=shop.buyer_h).json
    assert fresh["parts"][0]["status"] == "to_pack"
    assert fresh["parts"][0]["lines"][0]["weighed_g"] is None


def test_every_line_must_be_weighed(client: FlaskClient, shop: Shop) -> None:
    order = place(client, shop, (shop.oranges, 2000), (shop.pomelos, 1000))
    part = order["parts"][0]
    pay(order["id"])
    response = client.post(
        f"/api/v1/orders/{order['id']}/parts/{part['id']}/pack",
        json={"weights": [{"line_id": part["lines"][0]["id"], "weighed_g": 2000}]},
        headers=shop.orchard_h,
    )
    assert response.status_code == 422
    assert "weights" in response.json["errors"]


def test_a_short_line_weighs_zero_with_a_reason_and_gives_its_grams_back(client: FlaskClient, shop: Shop) -> None:
    order = place(client, shop, (shop.oranges, 2000), (shop.pomelos, 1000))
    part = order["parts"][0]
    pay(order["id"])
    body = {
        "weights": [
            {"line_id": part["lines"][0]["id"], "weighed_g": 1900},
            {"line_id": part["lines"][1]["id"], "weighed_g": 0, "short_reason": "frost damage"},
        ]
    }
    packed = post(client, f"/api/v1/orders/{order['id']}/parts/{part['id']}/pack", shop.orchard_h, body)
    assert packed["total"] is None  # the farmer sees their part, not the order total
    assert packed["parts"][0]["subtotal"] == 1898
    assert packed["parts"][0]["lines"][1]["short_reason"] == "frost damage"
    # Stock follows the goods: what was weighed under the order goes back.
    assert stock(shop.oranges) == 100_000 - 1900
    assert stock(shop.pomelos) == 100_000


def test_a_part_all_short_closes_itself_and_the_order_follows_its_other_parts(client: FlaskClient, shop: Shop) -> None:
    order = place(client, shop, (shop.oranges, 2000), (shop.pomelos, 1000), (shop.nuts, 1000))
    oid = order["id"]
    orchard, nuts = part_of(order, shop.orchard), part_of(order, shop.chestnuts)
    pay(oid)
    base = f"/api/v1/orders/{oid}/parts"
    short = {
        "weights": [
            {"line_id": orchard["lines"][0]["id"], "weighed_g": 0, "short_reason": "frost damage"},
            {"line_id": orchard["lines"][1]["id"], "weighed_g": 0, "short_reason": "hail"},
        ]
    }
    closed = post(client, f"{base}/{orchard['id']}/pack", shop.orchard_h, short)
    (part,) = closed["parts"]
    assert part["status"] == "cancelled"
    assert part["cancel_reason"] == "Every line was short at packing: frost damage; hail"
    assert closed["status"] == "paid"  # the other farm has not packed yet
    assert (stock(shop.oranges), stock(shop.pomelos)) == (100_000, 100_000)  # all of it back
    assert client.post(f"{base}/{orchard['id']}/ship", headers=shop.orchard_h).status_code == 409

    packed = post(client, f"{base}/{nuts['id']}/pack", shop.chestnut_h, weights(nuts, 1000))
    assert packed["status"] == "packed"
    buyer_view = client.get(f"/api/v1/orders/{oid}", headers=shop.buyer_h).json
    assert buyer_view["total"] == packed["parts"][0]["subtotal"]  # the nuts alone
    kinds = [(e["type"], e["part_id"]) for e in buyer_view["events"] if e["part_id"] == orchard["id"]]
    assert kinds == [("part.packed", orchard["id"]), ("part.cancelled", orchard["id"])]


def test_an_order_whose_every_part_is_all_short_is_cancelled_at_packing(client: FlaskClient, shop: Shop) -> None:
    order = place(client, shop, (shop.oranges, 2000))
    (part,) = order["parts"]
    pay(order["id"])
    short = {"weights": [{"line_id": part["lines"][0]["id"], "weighed_g": 0, "short_reason": "frost damage"}]}
    closed = post(client, f"/api/v1/orders/{order['id']}/parts/{part['id']}/pack", shop.orchard_h, short)
    assert closed["parts"][0]["status"] == "cancelled"
    buyer_view = client.get(f"/api/v1/orders/{order['id']}", headers=shop.buyer_h).json
    assert (buyer_view["status"], buyer_view["total"]) == ("cancelled", 0)
    assert stock(shop.oranges) == 100_000


def test_weighing_over_the_order_takes_the_extra_from_stock(client: FlaskClient, shop: Shop) -> None:
    order = place(client, shop, (shop.oranges, 2000))
    part = order["parts"][0]
    pay(order["id"])
    post(client, f"/api/v1/orders/{order['id']}/parts/{part['id']}/pack", shop.orchard_h, weights(part, 2150))
    assert stock(shop.oranges) == 100_000 - 2150
    post(client, f"/api/v1/orders/{order['id']}/cancel", shop.operator_h, {"reason": "buyer unreachable"})
    assert stock(shop.oranges) == 100_000  # the weighed produce goes back, no more and no less


def test_weighing_over_with_no_stock_left_is_refused_and_changes_nothing(client: FlaskClient, shop: Shop) -> None:
    order = place(client, shop, (shop.oranges, 2000))
    part = order["parts"][0]
    pay(order["id"])
    db.session.execute(update(Listing).where(Listing.id == shop.oranges.id).values(stock_g=100))
    db.session.commit()
    url = f"/api/v1/orders/{order['id']}/parts/{part['id']}/pack"
    refused = client.post(url, json=weights(part, 2150), headers=shop.orchard_h)
    assert refused.status_code == 409, refused.json
    assert refused.headers["Content-Type"] == "application/problem+json"
    assert "100 g left" in refused.json["detail"]
    assert stock(shop.oranges) == 100
    assert client.get(f"/api/v1/orders/{order['id']}", headers=shop.buyer_h).json["status"] == "paid"
    post(client, url, shop.orchard_h, weights(part, 2100))
    assert stock(shop.oranges) == 0


def test_packing_before_payment_is_refused_with_the_current_state(client: FlaskClient, shop: Shop) -> None:
    order = place(client, shop, (shop.oranges, 1000))
    part = order["parts"][0]
    response = client.post(
        f"/api/v1/orders/{order['id']}/parts/{part['id']}/pack", json=weights(part, 1000), headers=shop.orchard_h
    )
    assert response.status_code == 409
    assert response.json["current_status"] == "pending"


@pytest.mark.parametrize("action", ["ship", "receive", "deliver"])
def test_transitions_from_the_wrong_state_are_409(client: FlaskClient, shop: Shop, action: str) -> None:
    order = place(client, shop, (shop.oranges, 1000))
    pay(order["id"])
    part = order["parts"][0]
    headers = shop.staff_h if action == "receive" else shop.orchard_h
    response = client.post(f"/api/v1/orders/{order['id']}/parts/{part['id']}/{action}", headers=headers)
    assert response.status_code == 409
    assert response.content_type == "application/problem+json"


def test_complete_before_collection_is_409(client: FlaskClient, shop: Shop) -> None:
    order = place(client, shop, (shop.oranges, 1000))
    response = client.post(f"/api/v1/orders/{order['id']}/complete", headers=shop.buyer_h)
    assert response.status_code == 409
    assert response.json["current_status"] == "pending_payment"


def ready_order(client: FlaskClient, shop: Shop) -> dict:  # type: ignore[type-arg]
    order = place(client, shop, (shop.oranges, 1000))
    part = order["parts"][0]
    pay(order["id"])
    base = f"/api/v1/orders/{order['id']}/parts/{part['id']}"
    post(client, f"{base}/pack", shop.orchard_h, weights(part, 1000))
    post(client, f"{base}/ship", shop.orchard_h)
    post(client, f"{base}/receive", shop.staff_h)
    return client.get(f"/api/v1/orders/{order['id']}", headers=shop.buyer_h).json  # type: ignore[no-any-return]


def test_wrong_pickup_codes_are_counted_then_refused(app: Flask, client: FlaskClient, shop: Shop) -> None:
    order = ready_order(client, shop)
    url = f"/api/v1/orders/{order['id']}/collect"
    wrong = "000000" if order["pickup_code"] != "000000" else "111111"
    for _ in range(app.config["PICKUP_CODE_MAX_FAILURES"]):
        response = client.post(url, json={"code": wrong}, headers=shop.staff_h)
        assert response.status_code == 422
        assert "code" in response.json["errors"]
    locked = client.post(url, json={"code": order["pickup_code"]}, headers=shop.staff_h)
    assert locked.status_code == 429
    renewed = post(client, f"/api/v1/orders/{order['id']}/pickup-code", shop.buyer_h)
    assert renewed["pickup_code"] != order["pickup_code"] or renewed["pickup_code"]
    collected = post(client, url, shop.staff_h, {"code": renewed["pickup_code"]})
    assert collected["status"] == "collected"


def test_new_pickup_codes_are_rate_limited_per_account(app: Flask, client: FlaskClient, shop: Shop) -> None:
    """Each new code is texted and emailed to the buyer: asking for one
    again and again is refused past RATELIMIT_PICKUP_CODES, and the code
    the buyer holds stays."""
    app.config["RATELIMIT_PICKUP_CODES"] = "2 per hour"
    order = ready_order(client, shop)
    url = f"/api/v1/orders/{order['id']}/pickup-code"
    codes = [post(client, url, shop.buyer_h)["pickup_code"] for _ in range(2)]
    refused = client.post(url, headers=shop.buyer_h | {"X-Forwarded-For": "198.51.100.7"})
    assert refused.status_code == 429 and refused.content_type == "application/problem+json"
    assert int(refused.headers["Retry-After"]) > 0
    assert db.session.get(Order, order["id"], populate_existing=True).pickup_code == codes[-1]  # type: ignore[union-attr]


def test_only_staff_of_the_point_can_receive_and_hand_over(client: FlaskClient, shop: Shop) -> None:
    order = ready_order(client, shop)
    url = f"/api/v1/orders/{order['id']}/collect"
    for headers in (shop.other_buyer_h, shop.chestnut_h):
        assert client.post(url, json={"code": order["pickup_code"]}, headers=headers).status_code == 404


def test_buyer_cancels_before_packing_and_stock_comes_back_once(client: FlaskClient, shop: Shop) -> None:
    order = place(client, shop, (shop.oranges, 2000), (shop.nuts, 1000))
    pay(order["id"])
    url = f"/api/v1/orders/{order['id']}/cancel"
    cancelled = post(client, url, shop.buyer_h, {"reason": "changed my mind"})
    assert cancelled["status"] == "cancelled"
    assert stock(shop.oranges) == 100_000
    assert stock(shop.nuts) == 100_000
    again = client.post(url, json={"reason": "again"}, headers=shop.buyer_h)
    assert again.status_code == 409
    assert stock(shop.oranges) == 100_000


def test_buyer_cannot_cancel_once_packing_started_but_an_operator_can(client: FlaskClient, shop: Shop) -> None:
    order = place(client, shop, (shop.oranges, 2000), (shop.nuts, 1000))
    pay(order["id"])
    orchard = part_of(order, shop.orchard)
    post(client, f"/api/v1/orders/{order['id']}/parts/{orchard['id']}/pack", shop.orchard_h, weights(orchard, 1900))
    url = f"/api/v1/orders/{order['id']}/cancel"
    assert client.post(url, json={"reason": "late"}, headers=shop.buyer_h).status_code == 409
    post(client, url, shop.operator_h, {"reason": "buyer unreachable"})
    assert stock(shop.oranges) == 100_000  # the packed, weighed produce goes back: all that left stock
    assert stock(shop.nuts) == 100_000


def test_farmer_cancels_their_part_and_the_order_follows_the_rest(client: FlaskClient, shop: Shop) -> None:
    order = place(client, shop, (shop.oranges, 2000), (shop.nuts, 1000))
    pay(order["id"])
    orchard, nuts = part_of(order, shop.orchard), part_of(order, shop.chestnuts)
    base = f"/api/v1/orders/{order['id']}/parts"
    post(client, f"{base}/{nuts['id']}/pack", shop.chestnut_h, weights(nuts, 1000))
    no_reason = client.post(f"{base}/{orchard['id']}/cancel", json={}, headers=shop.orchard_h)
    assert no_reason.status_code == 422
    after = post(client, f"{base}/{orchard['id']}/cancel", shop.orchard_h, {"reason": "hail"})
    assert after["status"] == "packed"  # the remaining part is packed
    assert stock(shop.oranges) == 100_000
    full = client.get(f"/api/v1/orders/{order['id']}", headers=shop.buyer_h).json
    assert full["total"] == 2400
    # A farmer cannot cancel another farm's part.
    assert client.post(f"{base}/{nuts['id']}/cancel", json={"reason": "x"}, headers=shop.orchard_h).status_code == 404


def test_unpaid_orders_expire_once_and_give_stock_back(app: Flask, client: FlaskClient, shop: Shop) -> None:
    order = place(client, shop, (shop.oranges, 3000))
    later = utcnow() + timedelta(minutes=app.config["ORDER_PAYMENT_MINUTES"] + 1)
    assert service.expire_unpaid(utcnow()) == 0
    assert service.expire_unpaid(later) == 1
    assert service.expire_unpaid(later) == 0
    assert stock(shop.oranges) == 100_000
    assert db.session.get(Order, order["id"]).status == OrderStatus.EXPIRED  # type: ignore[union-attr]
    assert service.mark_paid(order["id"]) is False  # a late payment is refused; the payment is refunded


def test_only_an_unpaid_order_shows_when_it_expires(app: Flask, client: FlaskClient, shop: Shop) -> None:
    paid = place(client, shop, (shop.oranges, 2000))
    assert paid["expires_at"] is not None
    pay(paid["id"])
    shown = client.get(f"/api/v1/orders/{paid['id']}", headers=shop.buyer_h).json
    assert shown["status"] == "paid" and shown["expires_at"] is None

    cancelled = place(client, shop, (shop.oranges, 1000))
    post(client, f"/api/v1/orders/{cancelled['id']}/cancel", shop.buyer_h, {"reason": "changed my mind"})
    assert client.get(f"/api/v1/orders/{cancelled['id']}", headers=shop.buyer_h).json["expires_at"] is None

    expiring = place(client, shop, (shop.oranges, 1000))
    service.expire_unpaid(utcnow() + timedelta(minutes=app.config["ORDER_PAYMENT_MINUTES"] + 1))
    expired = client.get(f"/api/v1/orders/{expiring['id']}", headers=shop.buyer_h).json
    assert expired["status"] == "expired" and expired["expires_at"] is None


def test_an_order_expiring_after_a_part_was_cancelled_gives_that_part_back_once(
    app: Flask, client: FlaskClient, shop: Shop
) -> None:
    order = place(client, shop, (shop.oranges, 2000), (shop.nuts, 1000))
    orchard = part_of(order, shop.orchard)
    post(client, f"/api/v1/orders/{order['id']}/parts/{orchard['id']}/cancel", shop.orchard_h, {"reason": "hail"})
    assert stock(shop.oranges) == 100_000
    later = utcnow() + timedelta(minutes=app.config["ORDER_PAYMENT_MINUTES"] + 1)
    assert service.expire_unpaid(later) == 1
    assert (stock(shop.oranges), stock(shop.nuts)) == (100_000, 100_000)


def test_paying_leaves_a_part_cancelled_while_unpaid_cancelled(client: FlaskClient, shop: Shop) -> None:
    order = place(client, shop, (shop.oranges, 2000), (shop.nuts, 1000))
    orchard = part_of(order, shop.orchard)
    post(client, f"/api/v1/orders/{order['id']}/parts/{orchard['id']}/cancel", shop.orchard_h, {"reason": "hail"})
    pay(order["id"])
    parts = {
        p["id"]: p["status"] for p in client.get(f"/api/v1/orders/{order['id']}", headers=shop.buyer_h).json["parts"]
    }
    assert parts == {orchard["id"]: "cancelled", part_of(order, shop.chestnuts)["id"]: "to_pack"}
    assert stock(shop.oranges) == 100_000


def test_an_order_that_cannot_expire_does_not_hold_up_the_others(
    app: Flask, client: FlaskClient, shop: Shop, caplog: pytest.LogCaptureFixture
) -> None:
    """The pomelos' listing already holds a bigint's worth of grams (written
    behind the API's back), so giving the first order's grams back overflows
    on PostgreSQL: that order stays pending and is logged, and the orders
    after it expire and give their stock back."""
    needs("postgresql")
    stuck = place(client, shop, (shop.pomelos, 2000))
    oranges = place(client, shop, (shop.oranges, 3000))
    nuts = place(client, shop, (shop.nuts, 1000))
    shop.pomelos.stock_g = MAX_BIGINT
    db.session.commit()
    later = utcnow() + timedelta(minutes=app.config["ORDER_PAYMENT_MINUTES"] + 1)

    with caplog.at_level(logging.ERROR, logger="market.orders.service"):
        assert service.expire_unpaid(later) == 2

    statuses = [db.session.scalar(select(Order.status).where(Order.id == o["id"])) for o in (stuck, oranges, nuts)]
    assert statuses == [OrderStatus.PENDING_PAYMENT, OrderStatus.EXPIRED, OrderStatus.EXPIRED]
    assert (stock(shop.pomelos), stock(shop.oranges), stock(shop.nuts)) == (MAX_BIGINT, 100_000, 100_000)
    failure, summary = [r for r in caplog.records if r.name == "market.orders.service"]
    assert f"Order {stuck['id']} could not be expired" in failure.getMessage()
    assert failure.exc_info is not None
    assert "1 could not be expired" in summary.getMessage()


def test_manifest_lists_arrivals_and_waiting_orders_as_json_and_csv(client: FlaskClient, shop: Shop) -> None:
    waiting = ready_order(client, shop)
    arriving = place(client, shop, (shop.nuts, 500))
    pay(arriving["id"])
    part = arriving["parts"][0]
    base = f"/api/v1/orders/{arriving['id']}/parts/{part['id']}"
    post(client, f"{base}/pack", shop.chestnut_h, weights(part, 500))
    post(client, f"{base}/ship", shop.chestnut_h)
    through_centre(client, shop, part["id"])  # on its way to the station now

    url = f"/api/v1/fulfilment-points/{shop.station.id}/manifest"
    manifest = client.get(url, headers=shop.staff_h).json
    sections = {(row["order_id"], row["section"]) for row in manifest["rows"]}
    assert sections == {(waiting["id"], "waiting"), (arriving["id"], "arriving")}
    csv = client.get(url, query_string={"format": "csv"}, headers=shop.staff_h)
    assert csv.content_type.startswith("text/csv")
    text = csv.get_data(as_text=True).lstrip("\ufeff")
    assert text.splitlines()[0].startswith("section,order_id,part_id")
    assert len(text.splitlines()) == 3
    assert client.get(url, headers=shop.other_buyer_h).status_code == 404


def test_an_order_made_ready_by_the_last_farm_cancelling_gets_a_pickup_code(client: FlaskClient, shop: Shop) -> None:
    order = place(client, shop, (shop.oranges, 1000), (shop.nuts, 1000))
    oid = order["id"]
    orchard, nuts = part_of(order, shop.orchard), part_of(order, shop.chestnuts)
    pay(oid)
    base = f"/api/v1/orders/{oid}/parts"
    post(client, f"{base}/{orchard['id']}/pack", shop.orchard_h, weights(orchard, 1000))
    post(client, f"{base}/{orchard['id']}/ship", shop.orchard_h)
    post(client, f"{base}/{orchard['id']}/receive", shop.staff_h)

    post(client, f"{base}/{nuts['id']}/cancel", shop.chestnut_h, {"reason": "hail"})

    ready = client.get(f"/api/v1/orders/{oid}", headers=shop.buyer_h).json
    assert ready["status"] == "ready_for_pickup"
    assert ready["pickup_code"] is not None and len(ready["pickup_code"]) == 6
    collected = post(client, f"/api/v1/orders/{oid}/collect", shop.staff_h, {"code": ready["pickup_code"]})
    assert collected["status"] == "collected"
