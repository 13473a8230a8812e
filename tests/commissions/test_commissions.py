"""Commissions of stations and hosts (docs/commissions.md): earned from
the platform's commission when a capture is recorded, given back with
refunds, paid in payout runs by bank file, reported, and refused input."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from market.accounts.models import Role
from market.commissions.models import CommissionEntry, Seller
from market.db import business_today, utcnow
from market.extensions import db
from market.ledger import service as ledger
from market.orders.models import Order
from market.payments import service as payments
from market.premiums.models import PremiumProgramme
from market.settlement import checks
from tests.factories import ListingFactory, user_with_token
from tests.payouts.conftest import bank_details, operator, refund, run, settled_order
from tests.shop import Shop, place

BANK = {"account_holder": "王小红", "bank_name": "中国农业银行 寻乌支行", "account_number": "6228 4800 9999 0000 123"}


@pytest.fixture
def app_overrides() -> dict[str, Any]:
    return {"PAYOUT_HOLD_DAYS": 0, "COMMISSION_BP": 500, "HOST_COMMISSION_BP": 200, "STATION_COMMISSION_BP": 100}


def make_host(client: FlaskClient, shop: Shop, **extra: Any) -> dict[str, Any]:
    host, _ = user_with_token(Role.BUYER)
    body = {"kind": "host", "name": "Xiao Hong live", "user_id": host.id, "code": "hong-live", **extra}
    response = client.post("/api/v1/sellers", json=body, headers=shop.operator_h)
    assert response.status_code == 201, response.json
    return response.json  # type: ignore[no-any-return]


def make_station(client: FlaskClient, shop: Shop, **rate: Any) -> dict[str, Any]:
    body = {"kind": "station", "name": "Xialiao station", "fulfilment_point_id": shop.station.id, **rate}
    response = client.post("/api/v1/sellers", json=body, headers=shop.operator_h)
    assert response.status_code == 201, response.json
    return response.json  # type: ignore[no-any-return]


def captured_at_station(client: FlaskClient, shop: Shop, grams: int, **extra: Any) -> dict[str, Any]:
    """Oranges picked up at the station: placed, paid, packed as ordered, captured."""
    order = place(client, shop, (shop.oranges, grams), fulfilment_point_id=shop.station.id, **extra)
    payment = payments.open_payment(order["id"])
    payments.confirm_offline(operator(), order["id"], amount=payment.amount, reference="paid at the counter")
    (part,) = order["parts"]
    body = {"weights": [{"line_id": part["lines"][0]["id"], "weighed_g": grams}]}
    url = f"/api/v1/orders/{order['id']}/parts/{part['id']}/pack"
    assert client.post(url, json=body, headers=shop.orchard_h).status_code == 200
    payments.capture(order["id"])
    return order


def kept(seller_id: int) -> int:
    total = select(func.coalesce(func.sum(CommissionEntry.amount), 0)).where(CommissionEntry.seller_id == seller_id)
    return int(db.session.scalar(total) or 0)


def test_host_and_station_share_the_platforms_commission_and_give_it_back_with_refunds(
    client: FlaskClient, shop: Shop
) -> None:
    host = make_host(client, shop, rate_bp=200)
    station = make_station(client, shop, per_order=50)
    order = captured_at_station(client, shop, 2000, attribution_code="HONG-LIVE")
    assert order["attribution_code"] == "HONG-LIVE"
    # Oranges 2000 g at 9.99 = 19.98; the platform's 5% = 1.00; the host
    # 2% = 0.40; the station its 0.50 per order; the platform keeps 0.10.
    assert (kept(host["id"]), kept(station["id"])) == (40, 50)
    assert ledger.balance(ledger.seller_payable(host["id"])) == -40
    assert ledger.balance(ledger.PLATFORM_COMMISSION) == -10
    assert ledger.balance(ledger.farm_payable(shop.orchard.id)) == -(1998 - 100)  # the farm's share is untouched
    assert checks.check_ledger() == []

    line_id = order["parts"][0]["lines"][0]["id"]
    refund(order["id"], line_id, 500)
    # 500 g is 5.00 of 19.98: the platform gives back 0.25 of its commission,
    # the host 0.10 and the station 0.13 of theirs, in proportion.
    assert (kept(host["id"]), kept(station["id"])) == (30, 37)
    assert ledger.balance(ledger.PLATFORM_COMMISSION) == -(75 - 67)
    assert checks.check_ledger() == []

    refund(order["id"], line_id, 1500)  # the last grams take the rest
    assert (kept(host["id"]), kept(station["id"])) == (0, 0)
    assert ledger.balance(ledger.PLATFORM_COMMISSION) == 0
    assert checks.check_ledger() == []
    seller = client.get(f"/api/v1/sellers/{host['id']}", headers=shop.operator_h).json
    assert {k: seller[k] for k in ("earned", "reversed", "paid", "payable")} == {
        "earned": 40,
        "reversed": 40,
        "paid": 0,
        "payable": 0,
    }


def test_sellers_never_take_more_than_the_platforms_commission(client: FlaskClient, shop: Shop) -> None:
    host = make_host(client, shop, rate_bp=500)  # all of it
    station = make_station(client, shop, rate_bp=300)
    captured_at_station(client, shop, 2000, attribution_code="hong-live")
    assert (kept(host["id"]), kept(station["id"])) == (100, 0)
    assert ledger.balance(ledger.PLATFORM_COMMISSION) == 0
    assert checks.check_ledger() == []


def test_a_programme_sets_what_hosts_earn_of_its_lines(client: FlaskClient, shop: Shop) -> None:
    host = make_host(client, shop, rate_bp=200)
    station = make_station(client, shop, per_order=50)
    body = {
        "name": "Xunwu navel livestream",
        "sponsor": "Fresh Mart",
        "funded_by": "sponsor",
        "rate_per_kg": 100,
        "budget_cap": 100_000,
        "product_name": shop.oranges.product_name,
        "valid_from": (utcnow() - timedelta(days=1)).isoformat(),
    }
    too_much = client.post(
        "/api/v1/premium-programmes", json=body | {"host_commission_bp": 501}, headers=shop.operator_h
    )
    assert too_much.status_code == 422
    assert too_much.mimetype == "application/problem+json"
    assert too_much.json["errors"] == {"host_commission_bp": ["Must be at most 500."]}
    assert db.session.scalar(select(func.count(PremiumProgramme.id))) == 0
    created = client.post(
        "/api/v1/premium-programmes", json=body | {"host_commission_bp": 400}, headers=shop.operator_h
    )
    assert created.status_code == 201, created.json
    programme = created.json
    assert programme["host_commission_bp"] == 400

    # 2000 g at 9.99 = 19.98 of produce; the platform's 5% = 1.00. The host
    # earns the programme's 4% (0.80), not its own 2%; the station's 0.50
    # a order is cut to what is left (0.20). The farm's share is untouched.
    captured_at_station(client, shop, 2000, attribution_code="HONG-LIVE")
    assert (kept(host["id"]), kept(station["id"])) == (80, 20)
    assert ledger.balance(ledger.PLATFORM_COMMISSION) == 0
    assert ledger.balance(ledger.farm_payable(shop.orchard.id)) == -(1998 - 100 + 200)  # with the 2 kg premium
    assert checks.check_ledger() == []

    url = f"/api/v1/premium-programmes/{programme['id']}"
    for bad, problem in (
        (600, "Must be at most 500."),
        (-1, "Must be greater than or equal to 0 and less than or equal to 10000."),
    ):
        refused = client.patch(url, json={"host_commission_bp": bad}, headers=shop.operator_h)
        assert refused.status_code == 422
        assert refused.json["errors"] == {"host_commission_bp": [problem]}
    assert client.patch(url, json={"host_commission_bp": None}, headers=shop.buyer_h).status_code == 403
    cleared = client.patch(url, json={"host_commission_bp": None}, headers=shop.operator_h)
    assert cleared.status_code == 200, cleared.json
    assert cleared.json["host_commission_bp"] is None
    captured_at_station(client, shop, 2000, attribution_code="HONG-LIVE")  # the host's own 2% from now on
    assert (kept(host["id"]), kept(station["id"])) == (80 + 40, 20 + 50)
    assert checks.check_ledger() == []


def test_a_seller_payout_goes_to_the_bank_details_its_run_took(client: FlaskClient, shop: Shop) -> None:
    host = make_host(client, shop, rate_bp=200, **BANK)
    settled_order(client, shop, (shop.oranges, 2000), attribution_code="hong-live")
    made = run(client, shop).json["id"]
    moved = {"account_holder": "王小红", "bank_name": "赣州银行", "account_number": "6210 0000 0000 7777"}
    assert client.patch(f"/api/v1/sellers/{host['id']}", json=moved, headers=shop.operator_h).status_code == 200

    bank_file = client.get(f"/api/v1/payout-runs/{made}/seller-bank-file.csv", headers=shop.operator_h)
    (row,) = list(csv.DictReader(io.StringIO(bank_file.get_data(as_text=True))))
    assert (row["bank_name"], row["account_number"]) == ("中国农业银行 寻乌支行", "6228480099990000123")
    (paid,) = client.get(f"/api/v1/payout-runs/{made}/sellers", headers=shop.operator_h).json["payouts"]
    assert (paid["bank_name"], paid["bank_account_masked"]) == ("中国农业银行 寻乌支行", "***************0123")
    assert "6228480099990000123" not in str(paid)


def test_an_inactive_seller_earns_nothing_and_its_code_is_refused(client: FlaskClient, shop: Shop) -> None:
    host = make_host(client, shop)
    station = make_station(client, shop)
    off = {"active": False}
    for seller in (host, station):
        response = client.patch(f"/api/v1/sellers/{seller['id']}", json=off, headers=shop.operator_h)
        assert response.status_code == 200, response.json
    body = {"lines": [{"listing_id": shop.oranges.id, "grams": 1000}], "fulfilment_point_id": shop.station.id}
    refused = client.post("/api/v1/orders", json=body | {"attribution_code": "HONG-LIVE"}, headers=shop.buyer_h)
    assert refused.status_code == 422
    assert refused.json["errors"] == {"attribution_code": ["No active host has this code."]}
    captured_at_station(client, shop, 1000)
    assert db.session.scalar(select(func.count(CommissionEntry.id))) == 0
    assert ledger.balance(ledger.PLATFORM_COMMISSION) == -50


def test_an_unknown_code_places_nothing(client: FlaskClient, shop: Shop) -> None:
    stock = shop.oranges.stock_g
    body = {"lines": [{"listing_id": shop.oranges.id, "grams": 1000}], "delivery_address": "寻乌县 长宁镇 12号"}
    for code, problem in (("NOBODY1", "No active host has this code."), ("a", "4 to 32 letters, digits or hyphens.")):
        response = client.post("/api/v1/orders", json=body | {"attribution_code": code}, headers=shop.buyer_h)
        assert response.status_code == 422
        assert response.mimetype == "application/problem+json"
        assert response.json["errors"] == {"attribution_code": [problem]}
    db.session.expire_all()
    assert db.session.scalar(select(func.count(Order.id))) == 0
    assert shop.oranges.stock_g == stock


def test_a_payout_run_pays_sellers_by_bank_file_and_nets_later_refunds(client: FlaskClient, shop: Shop) -> None:
    bank_details(client, shop, shop.orchard.id)
    host = make_host(client, shop, rate_bp=200, **BANK)
    no_bank = make_host(client, shop, rate_bp=100, code="NO-BANK")
    first = settled_order(client, shop, (shop.oranges, 2000), attribution_code="hong-live")
    settled_order(client, shop, (shop.oranges, 1000), attribution_code="no-bank")

    made = run(client, shop)
    assert made.status_code == 201, made.json
    sellers = client.get(f"/api/v1/payout-runs/{made.json['id']}/sellers", headers=shop.operator_h).json
    (paid,) = sellers["payouts"]
    assert (paid["seller_id"], paid["amount"], paid["orders"], paid["status"]) == (
        host["id"],
        40,
        1,
        "awaiting_confirmation",
    )
    assert sellers["skipped"] == [{"seller_id": no_bank["id"], "reason": "bank_details_missing", "amount": 10}]
    assert ledger.balance(ledger.seller_payable(host["id"])) == 0
    assert checks.check_ledger() == []

    bank_file = client.get(f"/api/v1/payout-runs/{made.json['id']}/seller-bank-file.csv", headers=shop.operator_h)
    (row,) = list(csv.DictReader(io.StringIO(bank_file.get_data(as_text=True))))
    assert (row["reference"], row["seller"], row["account_number"], row["amount_yuan"]) == (
        f"seller-payout-{paid['id']}",
        "Xiao Hong live",
        "6228480099990000123",
        "0.40",
    )
    statement = client.get(f"/api/v1/seller-payouts/{paid['id']}", headers=shop.operator_h).json
    assert [(e["kind"], e["order_id"], e["amount"]) for e in statement["entries"]] == [("earned", first["id"], 40)]

    again = run(client, shop)  # nothing is paid twice
    assert client.get(f"/api/v1/payout-runs/{again.json['id']}/sellers", headers=shop.operator_h).json["payouts"] == []

    confirm = f"/api/v1/seller-payouts/{paid['id']}/confirm"
    assert client.post(confirm, json={"bank_reference": "ABC-1"}, headers=shop.operator_h).status_code == 200
    assert client.post(confirm, json={"bank_reference": "ABC-1"}, headers=shop.operator_h).status_code == 409
    assert checks.check_ledger() == []

    # A refund after the host was paid is taken from what it earns next.
    refund(first["id"], first["parts"][0]["lines"][0]["id"], 1000)
    later = run(client, shop)
    sellers = client.get(f"/api/v1/payout-runs/{later.json['id']}/sellers", headers=shop.operator_h).json
    assert {"seller_id": host["id"], "reason": "negative_net", "amount": -20} in sellers["skipped"]
    assert checks.check_ledger() == []


def test_sales_by_seller_report(client: FlaskClient, shop: Shop) -> None:
    host = make_host(client, shop, rate_bp=200)
    station = make_station(client, shop, rate_bp=100)
    order = captured_at_station(client, shop, 2000, attribution_code="hong-live")
    refund(order["id"], order["parts"][0]["lines"][0]["id"], 1000)
    today = business_today().isoformat()
    response = client.get("/api/v1/reports/sellers", query_string={"from": today, "to": today}, headers=shop.operator_h)
    assert response.status_code == 200, response.json
    rows = {row["seller_id"]: row for row in response.json["rows"]}
    # 1000 g of 2000 refunded: 9.99 of 19.98 kept.
    assert (rows[host["id"]]["orders"], rows[host["id"]]["produce"], rows[host["id"]]["commission"]) == (1, 999, 20)
    assert (rows[station["id"]]["produce"], rows[station["id"]]["commission"]) == (999, 10)
    as_csv = client.get(
        "/api/v1/reports/sellers", query_string={"from": today, "to": today, "format": "csv"}, headers=shop.operator_h
    )
    assert as_csv.mimetype == "text/csv"
    assert "Xiao Hong live" in as_csv.get_data(as_text=True)
    assert client.get("/api/v1/reports/sellers", query_string={"from": today, "to": today}, headers=shop.buyer_h
                      ).status_code == 403  # fmt: skip


def test_who_may_make_and_read_sellers(client: FlaskClient, shop: Shop) -> None:
    host_user, host_h = user_with_token(Role.BUYER)
    body = {"kind": "host", "name": "Live", "user_id": host_user.id}
    assert client.post("/api/v1/sellers", json=body, headers=host_h).status_code == 403
    made = client.post("/api/v1/sellers", json=body, headers=shop.operator_h).json
    assert len(made["code"]) == 8 and made["rate_bp"] == 200  # a code made up, HOST_COMMISSION_BP
    station = make_station(client, shop)
    assert client.get(f"/api/v1/sellers/{made['id']}", headers=host_h).status_code == 200
    assert client.get(f"/api/v1/sellers/{station['id']}", headers=host_h).status_code == 404
    assert client.get(f"/api/v1/sellers/{station['id']}", headers=shop.staff_h).status_code == 200
    assert [s["id"] for s in client.get("/api/v1/sellers", headers=shop.staff_h).json["items"]] == [station["id"]]
    assert client.get(f"/api/v1/sellers/{made['id']}", headers=shop.buyer_h).status_code == 404
    patch = client.patch(f"/api/v1/sellers/{made['id']}", json={"rate_bp": 100}, headers=host_h)
    assert patch.status_code == 403


def test_bad_sellers_are_refused_and_nothing_is_written(client: FlaskClient, shop: Shop) -> None:
    host_user, _ = user_with_token(Role.BUYER)
    refused = [
        ({"kind": "host", "name": "x", "user_id": host_user.id, "rate_bp": 501}, 422, "rate_bp"),
        ({"kind": "host", "name": "x", "user_id": host_user.id, "per_order": 10}, 422, "per_order"),
        ({"kind": "host", "name": "x"}, 422, "user_id"),
        ({"kind": "host", "name": "x", "user_id": host_user.id, "code": "no spaces"}, 422, "code"),
        ({"kind": "station", "name": "x"}, 422, "fulfilment_point_id"),
        ({"kind": "station", "name": "x", "fulfilment_point_id": shop.centre.id}, 422, "fulfilment_point_id"),
        ({"kind": "station", "name": "x", "fulfilment_point_id": shop.station.id, "rate_bp": 1, "per_order": 1},
         422, "per_order"),
        ({"kind": "host", "name": "x", "user_id": host_user.id, "account_number": "6228 4800 1234"}, 422,
         "account_holder"),
    ]  # fmt: skip
    for body, status, field in refused:
        response = client.post("/api/v1/sellers", json=body, headers=shop.operator_h)
        assert response.status_code == status, (body, response.json)
        assert response.mimetype == "application/problem+json"
        assert field in response.json["errors"], (body, response.json)
    assert db.session.scalar(select(func.count(Seller.id))) == 0
    make_host(client, shop)
    other, _ = user_with_token(Role.BUYER)
    taken = {"kind": "host", "name": "y", "user_id": other.id, "code": "HONG-LIVE"}
    assert client.post("/api/v1/sellers", json=taken, headers=shop.operator_h).status_code == 409
    make_station(client, shop)
    twice = {"kind": "station", "name": "again", "fulfilment_point_id": shop.station.id}
    assert client.post("/api/v1/sellers", json=twice, headers=shop.operator_h).status_code == 409
    assert db.session.scalar(select(func.count(Seller.id))) == 2


def test_a_sellers_entries_by_business_day_and_as_csv(client: FlaskClient, shop: Shop) -> None:
    host = make_host(client, shop, rate_bp=200)
    order = captured_at_station(client, shop, 2000, attribution_code="hong-live")
    today = business_today()
    url = f"/api/v1/sellers/{host['id']}/entries"
    for query, count in (
        ({}, 1),
        ({"to": today.isoformat()}, 1),
        ({"from": (today + timedelta(days=1)).isoformat()}, 0),
        ({"to": "1970-01-01"}, 0),
    ):
        listed = client.get(url, query_string=query, headers=shop.operator_h)
        assert listed.status_code == 200, listed.json
        assert len(listed.json["items"]) == count, query
    backwards = {"from": today.isoformat(), "to": (today - timedelta(days=1)).isoformat()}
    assert client.get(url, query_string=backwards, headers=shop.operator_h).status_code == 422
    rows = list(csv.DictReader(io.StringIO(client.get(f"{url}.csv", headers=shop.operator_h).get_data(as_text=True))))
    assert [(r["kind"], r["order_id"], r["produce_yuan"], r["amount_yuan"]) for r in rows] == [
        ("earned", str(order["id"]), "19.98", "0.40")
    ]


def test_a_stations_amount_per_order_is_spread_over_many_lines_to_the_fen(client: FlaskClient, shop: Shop) -> None:
    station = make_station(client, shop, per_order=50)
    # Three lines of 10.00 and one of 0.10: 0.50 spread by produce is
    # 16.61 fen on each of the first three, 0.17 on the last.
    listings = [ListingFactory(farm=shop.orchard, price_per_kg=1000) for _ in range(3)]
    listings.append(ListingFactory(farm=shop.orchard, price_per_kg=10))
    order = place(client, shop, *((listing, 1000) for listing in listings), fulfilment_point_id=shop.station.id)
    payment = payments.open_payment(order["id"])
    payments.confirm_offline(operator(), order["id"], amount=payment.amount, reference="paid at the counter")
    (part,) = order["parts"]
    body = {"weights": [{"line_id": line["id"], "weighed_g": 1000} for line in part["lines"]]}
    url = f"/api/v1/orders/{order['id']}/parts/{part['id']}/pack"
    assert client.post(url, json=body, headers=shop.orchard_h).status_code == 200
    payments.capture(order["id"])
    earned = db.session.scalars(
        select(CommissionEntry.amount).where(CommissionEntry.seller_id == station["id"]).order_by(CommissionEntry.id)
    ).all()
    assert sum(earned) == kept(station["id"]) == 50  # the amount per order, not a fen more
    assert earned == [17, 16, 17]  # the fourth line's share rounds to nothing
    assert checks.check_ledger() == []


def test_a_seller_payout_takes_a_bank_reference_as_long_as_a_farms(client: FlaskClient, shop: Shop) -> None:
    make_host(client, shop, rate_bp=200, **BANK)
    settled_order(client, shop, (shop.oranges, 2000), attribution_code="hong-live")
    made = run(client, shop).json["id"]
    (paid,) = client.get(f"/api/v1/payout-runs/{made}/sellers", headers=shop.operator_h).json["payouts"]
    confirm = f"/api/v1/seller-payouts/{paid['id']}/confirm"
    reference = "NONREF " + "9" * 248  # 255 characters, as a farm's payout takes
    response = client.post(confirm, json={"bank_reference": reference}, headers=shop.operator_h)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.json["bank_reference"] == reference
    too_long = client.post(confirm, json={"bank_reference": reference + "9"}, headers=shop.operator_h)
    assert too_long.status_code == 422 and "bank_reference" in too_long.json["errors"]
    assert checks.check_ledger() == []
