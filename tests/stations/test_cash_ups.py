"""A station's daily cash-up and the deposit of its cash: the preview, the
count with its differences, the operator's deposit by bank reference, the
ledger, `ledger-check` and reconciliation."""

from __future__ import annotations

import csv
import io
import threading
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from market.accounts.models import Role, User, UserRole
from market.db import business_today, utcnow
from market.extensions import db
from market.ledger import service as ledger
from market.notifications.models import Notification
from market.orders.models import Order
from market.payments.models import Payment
from market.settlement.checks import check_ledger
from market.stations import cashups
from market.stations.models import CashUp
from tests.conftest import needs
from tests.factories import emails_to
from tests.payouts.conftest import operator
from tests.reconciliation.conftest import items, reconcile
from tests.shop import Shop
from tests.stations.test_villager_orders import PHONE, confirm, place_for_villager, post, weigh_ship_receive

OFFLINE_CASH = "gateway_cash:offline"


@pytest.fixture(autouse=True)
def _postgresql() -> None:
    needs("postgresql")


def collect_cash_order(client: FlaskClient, shop: Shop, grams: int, phone: str = PHONE) -> dict:  # type: ignore[type-arg]
    """An order placed for a villager, weighed at `grams` and collected in cash."""
    order = place_for_villager(client, shop, (shop.oranges, grams), phone=phone)
    confirm(client, shop, order["id"])
    ready = weigh_ship_receive(client, shop, order, grams)
    code = db.session.scalar(select(Order.pickup_code).where(Order.id == order["id"]))
    return post(
        client,
        f"/api/v1/orders/{order['id']}/cash-collection",
        shop.staff_h,
        {"code": code, "amount": ready["total"]},
    )


def preview(client: FlaskClient, shop: Shop, **query: str) -> dict:  # type: ignore[type-arg]
    response = client.get(
        f"/api/v1/fulfilment-points/{shop.station.id}/cash-up-preview", query_string=query, headers=shop.staff_h
    )
    assert response.status_code == 200, response.json
    return response.json  # type: ignore[no-any-return]


def submit(client: FlaskClient, shop: Shop, body: dict, status: int = 201, key: str | None = None) -> dict:  # type: ignore[type-arg]
    headers = shop.staff_h | ({"Idempotency-Key": key} if key else {})
    response = client.post(f"/api/v1/fulfilment-points/{shop.station.id}/cash-ups", json=body, headers=headers)
    assert response.status_code == status, response.json
    if status == 201:
        assert response.headers["Location"].endswith(f"/api/v1/cash-ups/{response.json['id']}")
    return response.json  # type: ignore[no-any-return]


def deposit(client: FlaskClient, shop: Shop, cash_up_id: int, body: dict, status: int = 200) -> dict:  # type: ignore[type-arg]
    response = client.post(f"/api/v1/cash-ups/{cash_up_id}/deposit", json=body, headers=shop.operator_h)
    assert response.status_code == status, response.json
    return response.json  # type: ignore[no-any-return]


def test_the_preview_lists_the_days_cash_orders_and_the_count_matching_it_is_submitted(
    client: FlaskClient, shop: Shop
) -> None:
    first = collect_cash_order(client, shop, 2000)
    second = collect_cash_order(client, shop, 1000)
    shown = preview(client, shop)
    assert shown["business_day"] == business_today().isoformat()
    assert [o["order_id"] for o in shown["orders"]] == [first["id"], second["id"]]
    assert shown["expected"] == first["total"] + second["total"] == 1998 + 999
    assert shown["cash_up_id"] is None

    cash_up = submit(client, shop, {"expected": 2997, "counted": 2997, "note": "all there"}, key="day-1")
    assert (cash_up["status"], cash_up["difference"], cash_up["flagged"]) == ("submitted", 0, False)
    assert [o["amount"] for o in cash_up["orders"]] == [1998, 999]
    closed = preview(client, shop)
    assert closed["cash_up_id"] == cash_up["id"]
    assert ([o["order_id"] for o in closed["orders"]], closed["expected"]) == ([first["id"], second["id"]], 2997)
    # The same key replays; the day again is a 409 naming the cash-up.
    assert submit(client, shop, {"expected": 2997, "counted": 2997, "note": "all there"}, key="day-1") == cash_up
    again = submit(client, shop, {"expected": 0, "counted": 0}, status=409)
    assert again["cash_up_id"] == cash_up["id"]
    assert ledger.balance(ledger.station_cash(shop.station.id)) == 2997
    assert check_ledger() == []
    assert flag_emails() == []  # counted right: nothing to look at


def test_cash_taken_after_the_days_cash_up_is_not_shown_under_it(client: FlaskClient, shop: Shop) -> None:
    first = collect_cash_order(client, shop, 2000)
    cash_up = submit(client, shop, {"expected": 1998, "counted": 1998})
    collect_cash_order(client, shop, 1000)  # the same evening: the next cash-up's
    closed = preview(client, shop)
    assert closed["cash_up_id"] == cash_up["id"]
    assert [o["order_id"] for o in closed["orders"]] == [first["id"]]
    assert closed["expected"] == 1998
    submit(client, shop, {"expected": 999, "counted": 999}, status=409)  # the day is cashed up


def flag_emails() -> list[Notification]:
    """The emails operators were sent of cash-ups with a difference."""
    operators = db.session.scalars(select(User.email).where(User.roles.any(UserRole.role == Role.OPERATOR))).all()
    return [mail for address in operators if address for mail in emails_to(address) if mail.event == "cash_up.flagged"]


def test_cash_taken_since_the_preview_is_a_409_and_nothing_is_written(client: FlaskClient, shop: Shop) -> None:
    collect_cash_order(client, shop, 2000)
    seen = preview(client, shop)["expected"]
    collect_cash_order(client, shop, 1000)
    refused = submit(client, shop, {"expected": seen, "counted": seen}, status=409)
    assert refused["expected"] == seen + 999
    assert db.session.scalars(select(CashUp)).all() == []
    assert db.session.scalars(select(Payment.cash_up_id).where(Payment.cash_up_id.isnot(None))).all() == []


@pytest.mark.parametrize(("counted", "status", "difference"), [(1900, "short", -98), (2100, "over", 102)])
def test_a_counted_difference_flags_the_cash_up_and_is_booked(
    client: FlaskClient, shop: Shop, counted: int, status: str, difference: int
) -> None:
    collect_cash_order(client, shop, 2000)  # 1998
    cash_up = submit(client, shop, {"expected": 1998, "counted": counted, "note": "counted twice"})
    assert (cash_up["status"], cash_up["difference"], cash_up["flagged"]) == (status, difference, True)
    assert ledger.balance(ledger.station_cash(shop.station.id)) == counted
    assert ledger.balance(ledger.STATION_CASH_DIFFERENCE) == -difference  # a shortfall is a loss, debit-positive
    assert check_ledger() == []
    (mail,) = flag_emails()  # every operator hears of it, by email
    assert f"#{cash_up['id']}" in mail.subject
    assert all(figure in mail.body for figure in ("19.98", f"{counted / 100:.2f}", f"{abs(difference) / 100:.2f}"))
    assert "counted twice" in mail.body

    flagged = client.get("/api/v1/cash-ups", query_string={"flagged": "true"}, headers=shop.operator_h).json
    assert [c["id"] for c in flagged["items"]] == [cash_up["id"]]
    others = client.get("/api/v1/cash-ups", query_string={"flagged": "false"}, headers=shop.operator_h).json
    assert others["items"] == []

    done = deposit(client, shop, cash_up["id"], {"bank_reference": "BOC-0001", "amount": counted})
    assert (done["status"], done["deposited"], done["deposit_difference"], done["flagged"]) == (
        "deposited",
        counted,
        0,
        True,
    )
    assert ledger.balance(ledger.station_cash(shop.station.id)) == 0
    assert ledger.balance(OFFLINE_CASH) == counted
    assert check_ledger() == []


def test_the_deposit_moves_the_count_into_the_bank_and_a_bank_difference_is_booked(
    client: FlaskClient, shop: Shop
) -> None:
    collect_cash_order(client, shop, 2000)
    cash_up = submit(client, shop, {"expected": 1998, "counted": 1998})
    done = deposit(client, shop, cash_up["id"], {"bank_reference": " BOC-7 ", "amount": 1990, "note": "bank fee"})
    assert (done["bank_reference"], done["deposit_difference"], done["flagged"]) == ("BOC-7", -8, True)
    assert ledger.balance(ledger.station_cash(shop.station.id)) == 0
    assert ledger.balance(OFFLINE_CASH) == 1990
    assert ledger.balance(ledger.STATION_CASH_DIFFERENCE) == 8
    assert check_ledger() == []
    assert deposit(client, shop, cash_up["id"], {"bank_reference": "BOC-8", "amount": 1998}, status=409)


def test_one_bank_reference_is_one_deposit(client: FlaskClient, shop: Shop) -> None:
    collect_cash_order(client, shop, 2000)
    yesterday = (business_today() - timedelta(days=1)).isoformat()
    first = submit(client, shop, {"business_day": yesterday, "expected": 0, "counted": 0})
    assert first["business_day"] == yesterday and first["orders"] == []  # the cash was taken today
    today = submit(client, shop, {"expected": 1998, "counted": 1998})
    assert deposit(client, shop, first["id"], {"bank_reference": "X", "amount": 1}, status=409)  # nothing counted
    deposit(client, shop, today["id"], {"bank_reference": "BOC-1", "amount": 1998})
    collect_cash_order(client, shop, 1000)
    # Once a day is cashed up, no earlier one is.
    assert submit(client, shop, {"business_day": yesterday, "expected": 0, "counted": 0}, status=409)
    assert check_ledger() == []


def test_the_same_bank_reference_confirmed_at_once_is_one_deposit(app: Flask, client: FlaskClient, shop: Shop) -> None:
    collect_cash_order(client, shop, 2000)
    yesterday = (business_today() - timedelta(days=1)).isoformat()
    # Two cash-ups with cash: yesterday's is over by what it found in the drawer.
    over = submit(client, shop, {"business_day": yesterday, "expected": 0, "counted": 500})
    today = submit(client, shop, {"expected": 1998, "counted": 1998})
    barrier = threading.Barrier(2)
    statuses: list[int] = []

    def confirm_one(cash_up_id: int, amount: int) -> None:
        with app.test_client() as own:
            barrier.wait()
            response = own.post(
                f"/api/v1/cash-ups/{cash_up_id}/deposit",
                json={"bank_reference": "SAME", "amount": amount},
                headers=shop.operator_h,
            )
            statuses.append(response.status_code)

    threads = [threading.Thread(target=confirm_one, args=args) for args in ((over["id"], 500), (today["id"], 1998))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200, 409]
    assert len(db.session.scalars(select(CashUp).where(CashUp.bank_reference == "SAME")).all()) == 1
    assert check_ledger() == []


def test_staff_of_other_stations_and_buyers_see_no_cash_up(client: FlaskClient, shop: Shop) -> None:
    collect_cash_order(client, shop, 2000)
    cash_up = submit(client, shop, {"expected": 1998, "counted": 1998})
    assert client.get(f"/api/v1/cash-ups/{cash_up['id']}", headers=shop.staff_h).status_code == 200
    assert client.get(f"/api/v1/cash-ups/{cash_up['id']}", headers=shop.buyer_h).status_code == 404
    assert client.get("/api/v1/cash-ups", headers=shop.buyer_h).json["items"] == []
    url = f"/api/v1/fulfilment-points/{shop.station.id}"
    assert client.get(f"{url}/cash-up-preview", headers=shop.buyer_h).status_code == 404
    assert client.post(f"{url}/cash-ups", json={"expected": 0, "counted": 0}, headers=shop.buyer_h).status_code == 404
    refused = client.post(
        f"/api/v1/cash-ups/{cash_up['id']}/deposit", json={"bank_reference": "B", "amount": 1998}, headers=shop.staff_h
    )
    assert refused.status_code == 403


def test_bad_input_is_refused_with_dotted_keys_and_writes_nothing(client: FlaskClient, shop: Shop) -> None:
    tomorrow = (business_today() + timedelta(days=1)).isoformat()
    future = submit(client, shop, {"business_day": tomorrow, "expected": 0, "counted": 0}, status=422)
    assert "business_day" in future["errors"]
    url = f"/api/v1/fulfilment-points/{shop.station.id}/cash-up-preview"
    ahead = client.get(url, query_string={"day": tomorrow}, headers=shop.staff_h)
    assert ahead.status_code == 422 and list(ahead.json["errors"]) == ["day"]
    negative = submit(client, shop, {"expected": 0, "counted": -1}, status=422)
    assert "counted" in negative["errors"]
    cash_up = submit(client, shop, {"expected": 0, "counted": 0})
    blank = deposit(client, shop, cash_up["id"], {"bank_reference": "  ", "amount": 5}, status=422)
    assert "bank_reference" in blank["errors"]
    unknown = client.get("/api/v1/cash-ups", query_string={"stationn": 1}, headers=shop.operator_h)
    assert unknown.status_code == 422
    assert client.get("/api/v1/cash-ups/999999", headers=shop.operator_h).status_code == 404


def test_operators_filter_cash_ups_and_download_them_in_yuan(client: FlaskClient, shop: Shop) -> None:
    collect_cash_order(client, shop, 2000)
    cash_up = submit(client, shop, {"expected": 1998, "counted": 1900, "note": "=SUM(A1)"})
    deposit(client, shop, cash_up["id"], {"bank_reference": "0012345", "amount": 1900})
    today = business_today().isoformat()
    query = {"fulfilment_point_id": shop.station.id, "status": "deposited", "from": today, "to": today}
    listed = client.get("/api/v1/cash-ups", query_string=query, headers=shop.operator_h).json
    assert [c["id"] for c in listed["items"]] == [cash_up["id"]]
    assert client.get("/api/v1/cash-ups", query_string={"status": "short"}, headers=shop.operator_h).json["items"] == []
    response = client.get("/api/v1/cash-ups.csv", query_string=query, headers=shop.operator_h)
    assert response.status_code == 200 and response.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff"))))
    assert len(rows) == 1
    row = rows[0]
    assert (row["expected_yuan"], row["counted_yuan"], row["difference_yuan"], row["deposited_yuan"]) == (
        "19.98",
        "19.00",
        "-0.98",
        "19.00",
    )
    assert (row["status"], row["flagged"], row["bank_reference"], row["note"]) == (
        "deposited",
        "yes",
        "0012345",
        "'=SUM(A1)",
    )
    assert client.get("/api/v1/cash-ups.csv", headers=shop.staff_h).status_code == 403


def test_reconciliation_matches_station_deposits_and_not_cash_at_the_counter(client: FlaskClient, shop: Shop) -> None:
    start = utcnow()
    yesterday = (business_today() - timedelta(days=1)).isoformat()
    found = submit(client, shop, {"business_day": yesterday, "expected": 0, "counted": 500})
    deposit(client, shop, found["id"], {"bank_reference": "BOC-42", "amount": 500})
    collect_cash_order(client, shop, 2000)  # cash at the counter is the station's, not the bank's
    # A deposit recorded without its ledger transaction is missing in the ledger.
    today = submit(client, shop, {"expected": 1998, "counted": 1998})
    db.session.execute(
        update(CashUp)
        .where(CashUp.id == today["id"])
        .values(status="deposited", bank_reference="BOC-43", deposited=1998, confirmed_at=utcnow())
    )
    db.session.commit()

    result = reconcile(client, shop, {"period_start": start.isoformat(), "period_end": utcnow().isoformat()})

    offline = [i for i in items(client, shop, result["id"]) if i["provider"] == "offline"]
    assert sorted(
        (i["object_type"], i["object_id"], i["gateway_amount"], i["ledger_amount"], i["outcome"]) for i in offline
    ) == [
        ("station_deposit", "BOC-42", 500, 500, "matched"),
        ("station_deposit", "BOC-43", 1998, None, "missing_in_ledger"),
    ]


def test_a_cash_up_that_counted_no_cash_waits_for_no_deposit(client: FlaskClient, shop: Shop) -> None:
    yesterday = (business_today() - timedelta(days=1)).isoformat()
    quiet = submit(client, shop, {"business_day": yesterday, "expected": 0, "counted": 0})  # no sales that day
    collect_cash_order(client, shop, 2000)
    today = submit(client, shop, {"expected": 1998, "counted": 1998})
    assert deposit(client, shop, quiet["id"], {"bank_reference": "X", "amount": 1}, status=409)  # nothing to deposit

    def waiting() -> list[int]:
        listed = client.get("/api/v1/cash-ups", query_string={"deposited": "false"}, headers=shop.operator_h)
        return [c["id"] for c in listed.json["items"]]

    assert waiting() == [today["id"]]
    assert cashups.count_cash_ups(operator(), deposited=False) == 1  # the console's "waiting for their deposit"
    deposit(client, shop, today["id"], {"bank_reference": "BOC-9", "amount": 1998})
    assert waiting() == []
    assert cashups.count_cash_ups(operator(), deposited=False) == 0
