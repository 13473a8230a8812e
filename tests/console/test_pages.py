"""The console's pages show the API's figures and act through the API's
services (Flask test client; the browser walk is in test_browser.py)."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select, update

from market import console as console_package
from market.accounts.models import Language, Role, User
from market.auth import Actor
from market.catalog.models import FarmStatus, FulfilmentPointKind, PayoutMethod
from market.commissions.models import CommissionKind, SellerKind, SellerPayoutStatus
from market.console.i18n import MESSAGES
from market.console.views import OPEN_STATES
from market.db import business_today, utcnow
from market.errors import NotAllowed
from market.extensions import db
from market.inventory.models import SalesChannel
from market.notifications.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from market.orders import service as orders
from market.orders.models import OrderEvent, OrderStatus
from market.payments import service as payments
from market.payments.models import Payment
from market.payouts import service as payouts
from market.payouts.models import Payout, PayoutStatus, SkipReason
from market.reconciliation import service as reconciliation
from market.reconciliation.models import RunStatus
from market.settlement.checks import check_ledger
from market.text import NO_CONTROL, ONE_LINE
from tests.commissions.test_commissions import BANK as COMMISSION_BANK
from tests.commissions.test_commissions import captured_at_station, make_host, make_station
from tests.conftest import needs
from tests.console.conftest import csrf_token
from tests.factories import FarmFactory, UserFactory
from tests.fakes.stripe_server import FakeStripe, FakeStripeServer
from tests.orders.test_lifecycle import ready_order
from tests.payments.conftest import stripe_settings
from tests.payments.test_stripe_payments import paid_order
from tests.payouts.conftest import bank_details, operator, run, settled_order
from tests.payouts.conftest import refund as payouts_refund
from tests.reports.test_impact import scenario
from tests.shop import Shop, place
from tests.stations.test_cash_ups import collect_cash_order
from tests.stations.test_cash_ups import preview as cash_up_preview
from tests.stations.test_cash_ups import submit as submit_cash_up

# What a payout run can skip a seller for (a farm's payout account does not apply).
SELLER_SKIP_REASONS = (SkipReason.BANK_DETAILS_MISSING, SkipReason.NEGATIVE_NET, SkipReason.NOTHING_TO_PAY)
# Text the API refuses in a one-line field three ways (a control character,
# a line separator, 418 characters), and in free text for its bell.
UNRULY_TEXT = "REF\x07with-bell\u2028" + "x" * 400
# The kinds of money movement a reconciliation names itself
# (market.reconciliation.service); any other is Stripe's and keeps its name.
RECONCILIATION_KINDS = (
    "charge",
    "refund",
    "transfer",
    "transfer_reversal",
    "fee",
    "offline_receipt",
    "bank_payout",
    "station_deposit",
)


def api_count(client: FlaskClient, shop: Shop, path: str, **query: Any) -> int:
    """How many items the API lists at `path`, over all its pages."""
    count, cursor = 0, None
    while True:
        response = client.get(
            path, query_string=query | {"limit": 100} | ({"cursor": cursor} if cursor else {}), headers=shop.operator_h
        )
        assert response.status_code == 200, response.json
        count += len(response.json["items"])
        cursor = response.json["next_cursor"]
        if cursor is None:
            return count


def data_value(page: str, element_id: str) -> int:
    marker = f'id="{element_id}" data-value="'
    start = page.index(marker) + len(marker)
    return int(page[start : page.index('"', start)])


def text_of(page: str, element_id: str) -> str:
    """The text an element of `page` starts with."""
    return page.split(f'id="{element_id}">', 1)[1].split("<", 1)[0].strip()


def reasons(page: str, field: str) -> str:
    """What a refused form's page says about `field`."""
    return page.split(f"<code>{field}</code>", 1)[1].split("</li>", 1)[0]


def test_today_counts_are_the_apis(console: FlaskClient, shop: Shop) -> None:
    first = place(console, shop, (shop.oranges, 2000))
    place(console, shop, (shop.pomelos, 1000))
    payment = payments.open_payment(first["id"])
    payments.confirm_offline(operator(), first["id"], amount=payment.amount, reference="cash")
    payments.flag(first["id"], "The bank did not answer.")
    FarmFactory(status=FarmStatus.PENDING)

    page = console.get("/console/").get_data(as_text=True)
    for state in OPEN_STATES:
        assert data_value(page, f"state-{state.value}") == api_count(
            console, shop, "/api/v1/orders", status=state.value
        )
    assert data_value(page, "state-pending_payment") == 1
    assert data_value(page, "state-paid") == 1
    assert data_value(page, "payments-attention") == api_count(console, shop, "/api/v1/payments/attention") == 1
    assert data_value(page, "farms-pending") == api_count(console, shop, "/api/v1/farms", status="pending") == 1
    today = business_today().isoformat()
    totals = console.get(
        "/api/v1/reports/impact", query_string={"from": today, "to": today}, headers=shop.operator_h
    ).json["totals"]
    assert data_value(page, "sales-today") == totals["sales"]
    assert data_value(page, "grams-today") == totals["grams_sold"]
    assert 'href="/console/orders?status=paid"' in page


def test_the_orders_page_filters_as_the_api_and_exports_the_same_list(console: FlaskClient, shop: Shop) -> None:
    first = place(console, shop, (shop.oranges, 2000))
    place(console, shop, (shop.nuts, 1000))
    query = {"farm_id": shop.orchard.id, "created_from": business_today().isoformat()}
    page = console.get("/console/orders", query_string=query).get_data(as_text=True)
    assert data_value(page, "order-count") == api_count(console, shop, "/api/v1/orders", **query) == 1
    assert f'id="order-{first["id"]}"' in page

    response = console.get("/console/orders.csv", query_string=query)
    assert response.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff"))))
    assert [row["order_id"] for row in rows] == [str(first["id"])]
    assert rows[0]["total_yuan"] == "19.98"  # 2 kg at 9.99, every fen
    assert rows[0]["status"] == "pending_payment"


def test_a_row_of_the_orders_list_shows_what_the_orders_full_view_does(console: FlaskClient, shop: Shop) -> None:
    place(console, shop, (shop.oranges, 2000), (shop.nuts, 1000))  # two farms
    place(console, shop, (shop.nuts, 1000), delivery_address="寻乌县 长宁镇 12号")  # no point
    place(console, shop, (shop.pomelos, 1000))
    actor = operator()
    for filters in ({}, {"farm_id": shop.chestnuts.id}, {"status": OrderStatus.PENDING_PAYMENT}):
        rows = orders.list_order_rows(actor, limit=2, **filters)
        views = orders.list_orders(actor, limit=2, **filters)
        assert rows.next_cursor == views.next_cursor
        assert [
            (row.id, row.status, row.created_at, row.buyer_email, row.fulfilment_point, row.farms, row.total)
            for row in rows.items
        ] == [
            (
                view.order.id,
                view.order.status,
                view.order.created_at,
                view.order.buyer.email,
                view.order.fulfilment_point.name if view.order.fulfilment_point else None,
                [part.farm.name for part in view.parts],
                view.total,
            )
            for view in views.items
        ]
    with pytest.raises(NotAllowed):
        orders.list_order_rows(Actor(user_id=shop.buyer.id, roles=frozenset({Role.BUYER})), limit=2)


def test_an_unknown_filter_value_is_left_out_not_an_error(console: FlaskClient, shop: Shop) -> None:
    place(console, shop, (shop.oranges, 2000))
    page = console.get("/console/orders?status=nonsense&farm_id=%D9%A1&created_from=tomorrow").get_data(as_text=True)
    assert data_value(page, "order-count") == 1


def test_an_order_is_cancelled_with_a_reason_through_the_api_rule(console: FlaskClient, shop: Shop) -> None:
    order = place(console, shop, (shop.oranges, 2000))
    path = f"/console/orders/{order['id']}"
    token = csrf_token(console, path)
    assert console.post(f"{path}/cancel", data={"csrf_token": token, "reason": " "}).status_code == 422
    response = console.post(f"{path}/cancel", data={"csrf_token": token, "reason": "Asked by phone"})
    assert response.status_code == 302
    api = console.get(f"/api/v1/orders/{order['id']}", headers=shop.operator_h).json
    assert api["status"] == "cancelled"
    page = console.get(response.headers["Location"]).get_data(as_text=True)
    assert "order.cancelled" in page
    # Cancelling again is refused by the order's own rule.
    assert console.post(f"{path}/cancel", data={"csrf_token": token, "reason": "again"}).status_code == 409


def test_people_are_found_by_email_or_phone(console: FlaskClient) -> None:
    user = UserFactory(email="li.ming@example.test", phone="+8613900000077")
    UserFactory(email="other@example.test", phone="+8613900000088")
    for text in ("LI.MING", "0000077"):
        page = console.get("/console/people", query_string={"q": text}).get_data(as_text=True)
        assert f'id="user-{user.id}"' in page
        assert "other@example.test" not in page
    # A wildcard is a character, not a pattern.
    page = console.get("/console/people?q=%25").get_data(as_text=True)
    assert f"user-{user.id}" not in page
    assert "Nothing found." in page


def test_station_staff_are_granted_and_revoked(console: FlaskClient, shop: Shop) -> None:
    token = csrf_token(console, "/console/points")
    grant = f"/console/points/{shop.station.id}/staff"
    assert console.post(grant, data={"csrf_token": token, "user_id": str(shop.buyer.id)}).status_code == 302
    page = console.get("/console/points").get_data(as_text=True)
    assert f'id="staff-{shop.station.id}-{shop.buyer.id}"' in page
    assert console.post(grant, data={"csrf_token": token, "user_id": "x"}).status_code == 422
    revoke = f"{grant}/{shop.buyer.id}/revoke"
    assert console.post(revoke, data={"csrf_token": token}).status_code == 302
    assert f'id="staff-{shop.station.id}-{shop.buyer.id}"' not in console.get("/console/points").get_data(as_text=True)
    assert console.post(revoke, data={"csrf_token": token}).status_code == 404


def test_farms_are_verified_and_suspended(console: FlaskClient) -> None:
    farm = FarmFactory(status=FarmStatus.PENDING)
    token = csrf_token(console, "/console/farms")
    assert data_value(console.get("/console/farms?status=pending").get_data(as_text=True), "farm-count") == 1
    assert console.post(f"/console/farms/{farm.id}/verify", data={"csrf_token": token}).status_code == 302
    assert data_value(console.get("/console/farms?status=pending").get_data(as_text=True), "farm-count") == 0
    assert console.post(f"/console/farms/{farm.id}/suspend", data={"csrf_token": token}).status_code == 302
    assert data_value(console.get("/console/farms?status=suspended").get_data(as_text=True), "farm-count") == 1


def test_pages_speak_the_operators_language(client: FlaskClient) -> None:
    from market.accounts.models import Language, Role  # noqa: PLC0415
    from tests.console.conftest import sign_in  # noqa: PLC0415

    sign_in(client, UserFactory(roles=[Role.OPERATOR], language=Language.ZH))
    page = client.get("/console/", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert "各状态订单" in page
    assert 'lang="zh-CN"' in page


def test_every_word_has_chinese_and_english_and_every_word_a_page_asks_for_exists() -> None:
    assert [key for key, (zh, en) in MESSAGES.items() if not (zh.strip() and en.strip())] == []
    templates = Path(console_package.__file__).parent / "templates" / "console"
    asked = {
        key
        for page in templates.glob("*.html")
        for key in re.findall(r"""\bt\(["']([a-z_.]+)["']\)""", page.read_text())
    }
    assert asked and sorted(asked - set(MESSAGES)) == []


def test_every_order_status_and_point_kind_has_its_words_in_both_languages() -> None:
    missing = [status for status in OrderStatus if f"status.{status.value}" not in MESSAGES]
    missing += [kind for kind in FulfilmentPointKind if f"kind.{kind.value}" not in MESSAGES]
    assert missing == []


def test_impact_shows_twelve_weeks_by_default_and_exports_the_apis_csv(console: FlaskClient, shop: Shop) -> None:
    scenario(console, shop)
    page = console.get("/console/impact").get_data(as_text=True)
    weeks = page.split('id="impact-weeks"', 1)[1].split("</table>", 1)[0]
    assert weeks.count("<tr><td>") == 12
    today = business_today()
    first = today - timedelta(days=today.weekday(), weeks=11)
    query = {"from": first.isoformat(), "to": today.isoformat(), "group_by": "county"}
    report = console.get("/api/v1/reports/impact", query_string=query, headers=shop.operator_h).json
    assert report["totals"]["sales"] > 0
    # Each week's row holds its kg and its sales; the weeks add up to the period.
    values = [int(cell.split('"', 1)[0]) for cell in weeks.split('data-value="')[1:]]
    assert sum(values[0::2]) == report["totals"]["grams_sold"]
    assert sum(values[1::2]) == report["totals"]["sales"]

    exported = console.get("/console/impact.csv", query_string=query)
    assert exported.mimetype == "text/csv"
    from_api = console.get("/api/v1/reports/impact", query_string=query | {"format": "csv"}, headers=shop.operator_h)
    assert exported.get_data(as_text=True) == from_api.get_data(as_text=True)


@pytest.mark.parametrize("app_overrides", [{"PAYOUT_HOLD_DAYS": 0}])
def test_reconciliation_is_started_read_and_resolved_as_the_api_does(console: FlaskClient, shop: Shop) -> None:
    bank_details(console, shop, shop.orchard.id)
    settled_order(console, shop, (shop.oranges, 2000))
    assert run(console, shop).status_code == 201
    payout = db.session.scalars(select(Payout)).one()
    # A record says paid, but no operator confirmed it: the ledger never saw it.
    db.session.execute(update(Payout).where(Payout.id == payout.id).values(status=PayoutStatus.PAID, paid_at=utcnow()))
    db.session.commit()

    today = business_today().isoformat()
    form = {"from": today, "to": today, "csrf_token": csrf_token(console, "/console/reconciliations")}
    started = console.post("/console/reconciliations", data=form)
    assert started.status_code == 302
    run_id = int(started.headers["Location"].split("/reconciliations/", 1)[1].split("?", 1)[0])
    reconciliation.perform(run_id)  # what the queued task does
    assert data_value(console.get("/console/").get_data(as_text=True), "mismatches") == 1

    page = console.get(f"/console/reconciliations/{run_id}").get_data(as_text=True)
    api = console.get(f"/api/v1/reconciliations/{run_id}", headers=shop.operator_h).json
    for outcome, count in api["counts"].items():
        assert data_value(page, f"count-{outcome}") == count
    assert api["counts"]["missing_in_ledger"] == 1
    items = f"/api/v1/reconciliations/{run_id}/items"
    only_missing = {"outcome": "missing_in_ledger"}
    missing = console.get(items, query_string=only_missing, headers=shop.operator_h).json["items"][0]
    # Side by side: ours (nothing in the ledger) and the record's amount, with its currency.
    row = page.split(f'id="item-{missing["id"]}"', 1)[1].split("</tr>", 1)[0]
    assert f'data-value="{missing["gateway_amount"]}"' in row
    assert "CNY" in row

    token = csrf_token(console, f"/console/reconciliations/{run_id}")
    resolve = f"/console/reconciliations/{run_id}/items/{missing['id']}/resolve"
    assert console.post(resolve, data={"csrf_token": token}).status_code == 422  # no note: nothing resolved
    refused = console.post(resolve, data={"note": UNRULY_TEXT, "csrf_token": token})
    assert refused.status_code == 422
    assert NO_CONTROL in reasons(refused.get_data(as_text=True), "note")
    unresolved = console.get(items, query_string=only_missing, headers=shop.operator_h).json["items"][0]
    assert unresolved["resolved_at"] is None
    note = "Paid by hand from the bank; booked next run."
    assert console.post(resolve, data={"note": note, "csrf_token": token}).status_code == 302
    item = console.get(items, query_string=only_missing, headers=shop.operator_h).json["items"][0]
    assert item["resolution_note"] == note
    assert data_value(console.get("/console/").get_data(as_text=True), "mismatches") == 0
    listed = console.get("/console/reconciliations").get_data(as_text=True)
    assert f'id="run-{run_id}"' in listed
    assert console.get(f"/console/reconciliations/{run_id}?notice=nonsense").status_code == 200


@pytest.mark.parametrize("app_overrides", [{"PAYOUT_HOLD_DAYS": 0}])
def test_a_payout_run_is_made_its_bank_file_read_and_its_transfer_confirmed(console: FlaskClient, shop: Shop) -> None:
    bank_details(console, shop, shop.orchard.id)
    settled_order(console, shop, (shop.oranges, 2000))
    settled_order(console, shop, (shop.nuts, 1000))  # the chestnut farm has no payout account: skipped

    form = {"period_end": business_today().isoformat(), "csrf_token": csrf_token(console, "/console/payout-runs")}
    made = console.post("/console/payout-runs", data=form)
    assert made.status_code == 302
    run_id = int(made.headers["Location"].split("/payout-runs/", 1)[1].split("?", 1)[0])
    api_run = console.get(f"/api/v1/payout-runs/{run_id}", headers=shop.operator_h).json
    page = console.get(f"/console/payout-runs/{run_id}").get_data(as_text=True)
    assert data_value(page, "run-total") == api_run["total"] > 0
    assert f'id="skipped-{shop.chestnuts.id}"' in page
    assert shop.orchard.name in page

    bank_file = console.get(f"/console/payout-runs/{run_id}/bank-file.csv")
    from_api = console.get(f"/api/v1/payout-runs/{run_id}/bank-file.csv", headers=shop.operator_h)
    assert bank_file.mimetype == "text/csv"
    assert bank_file.get_data(as_text=True) == from_api.get_data(as_text=True)
    (payout,) = console.get("/api/v1/payouts", query_string={"run_id": run_id}, headers=shop.operator_h).json["items"]
    statement = console.get(f"/console/payouts/{payout['id']}/statement.csv").get_data(as_text=True)
    assert statement == console.get(f"/api/v1/payouts/{payout['id']}/statement.csv", headers=shop.operator_h).get_data(
        as_text=True
    )

    token = csrf_token(console, f"/console/payout-runs/{run_id}")
    confirm = f"/console/payouts/{payout['id']}/confirm"
    assert console.post(confirm, data={"csrf_token": token}).status_code == 422  # no reference: nothing confirmed
    refused = console.post(confirm, data={"bank_reference": UNRULY_TEXT, "csrf_token": token})
    assert refused.status_code == 422
    said = reasons(refused.get_data(as_text=True), "bank_reference")
    assert ONE_LINE in said and "between 1 and 255" in said
    unconfirmed = console.get(f"/api/v1/payouts/{payout['id']}", headers=shop.operator_h).json["payout"]
    assert (unconfirmed["status"], unconfirmed["bank_reference"]) == ("awaiting_confirmation", None)
    assert console.post(confirm, data={"bank_reference": "ICBC-0042", "csrf_token": token}).status_code == 302
    confirmed = console.get(f"/api/v1/payouts/{payout['id']}", headers=shop.operator_h).json["payout"]
    assert (confirmed["status"], confirmed["bank_reference"]) == ("paid", "ICBC-0042")
    assert console.post(confirm, data={"bank_reference": "ICBC-0042", "csrf_token": token}).status_code == 409
    assert f'id="payout-run-{run_id}"' in console.get("/console/payout-runs").get_data(as_text=True)
    assert data_value(console.get("/console/").get_data(as_text=True), "payouts-attention") == 0
    payouts.flag(payout["id"], "The bank returned the transfer.")
    assert data_value(console.get("/console/").get_data(as_text=True), "payouts-attention") == 1


def test_a_payout_runs_title_is_plain_text_and_its_stations_and_hosts_are_shown_once(console: FlaskClient) -> None:
    form = {"period_end": business_today().isoformat(), "csrf_token": csrf_token(console, "/console/payout-runs")}
    made = console.post("/console/payout-runs", data=form)
    assert made.status_code == 302
    run_id = int(made.headers["Location"].split("/payout-runs/", 1)[1].split("?", 1)[0])
    page = console.get(made.headers["Location"]).get_data(as_text=True)
    title = page.split("<title>", 1)[1].split("</title>", 1)[0]
    assert title == f"Payout run #{run_id} · Operator console"
    assert page.count('id="sellers"') == page.count('id="seller-payouts"') == 1


def overdue_order(client: FlaskClient, shop: Shop) -> dict[str, Any]:
    """An order waiting at its station, its part arrived STATION_COLLECT_DAYS and an hour ago."""
    order = ready_order(client, shop)
    days = client.application.config["STATION_COLLECT_DAYS"]
    db.session.execute(
        update(OrderEvent)
        .where(OrderEvent.order_id == order["id"], OrderEvent.type == "part.arrived")
        .values(created_at=utcnow() - timedelta(days=days, hours=1))
    )
    db.session.commit()
    return order


def channel_in_error(shop: Shop) -> SalesChannel:
    """A channel of the orchard whose last push failed, beside one that is fine."""
    failing = SalesChannel(
        farm_id=shop.orchard.id, name="WeChat shop", push_url="https://shop.example.test/stock", secret="s"
    )
    failing.last_error, failing.last_error_at = "The shop answered HTTP 500.", utcnow()
    db.session.add_all([failing, SalesChannel(farm_id=shop.orchard.id, name="Fine shop", secret="s")])
    db.session.commit()
    return failing


def failed_delivery(shop: Shop) -> WebhookDelivery:
    """A delivery a worker gave up on, to an endpoint of the orchard's owner."""
    endpoint = WebhookEndpoint(
        user_id=shop.orchard.owner_id, url="https://hooks.example.test/market", event_types=["order.paid"], secret="s"
    )
    delivery = WebhookDelivery(
        occurrence="outbox-1",
        endpoint=endpoint,
        event="order.paid",
        payload='{"id": "outbox-1"}',
        status=DeliveryStatus.FAILED,
        attempts=8,
        response_status=503,
        last_error="The endpoint answered HTTP 503.",
    )
    db.session.add(delivery)
    db.session.commit()
    return delivery


def test_today_lists_overdue_pickups_failed_deliveries_and_channels_in_error_as_the_api(
    console: FlaskClient, shop: Shop
) -> None:
    waiting, overdue = ready_order(console, shop), overdue_order(console, shop)
    delivery = failed_delivery(shop)
    failing = channel_in_error(shop)

    page = console.get("/console/").get_data(as_text=True)
    overdue_count = api_count(console, shop, "/api/v1/orders", overdue_for_pickup="true")
    assert data_value(page, "overdue-for-pickup") == overdue_count == 1
    assert data_value(page, "state-ready_for_pickup") == 2  # overdue ones are still waiting
    failed = api_count(console, shop, "/api/v1/webhook-deliveries/failed")
    assert data_value(page, "failed-deliveries") == failed == 1
    in_error = api_count(console, shop, "/api/v1/sales-channels", in_error="true")
    assert data_value(page, "channels-in-error") == in_error == 1
    assert 'href="/console/orders?overdue_for_pickup=true"' in page

    listed = console.get("/console/orders?overdue_for_pickup=true").get_data(as_text=True)
    assert data_value(listed, "order-count") == 1
    assert f'id="order-{overdue["id"]}"' in listed
    assert f'id="order-{waiting["id"]}"' not in listed
    channels = console.get("/console/attention/sales-channels").get_data(as_text=True)
    assert f'id="channel-{failing.id}"' in channels
    assert "HTTP 500" in channels

    # The failed delivery is sent again through the API's rule: a new entry, and the failed one leaves the list.
    deliveries = console.get("/console/attention/webhook-deliveries").get_data(as_text=True)
    assert f'id="delivery-{delivery.id}"' in deliveries
    again = f"/console/webhook-endpoints/{delivery.endpoint_id}/deliveries/{delivery.id}/redeliver"
    token = csrf_token(console, "/console/attention/webhook-deliveries")
    assert console.post(again, data={"csrf_token": token}).status_code == 302
    assert db.session.scalars(select(func.count(WebhookDelivery.id))).one() == 2
    assert data_value(console.get("/console/").get_data(as_text=True), "failed-deliveries") == 0
    wrong_endpoint = f"/console/webhook-endpoints/{delivery.endpoint_id + 1}/deliveries/{delivery.id}/redeliver"
    assert console.post(wrong_endpoint, data={"csrf_token": token}).status_code == 404


class TestCardHolds:
    @pytest.fixture
    def app_overrides(self, stripe_server: FakeStripeServer) -> dict[str, Any]:
        return stripe_settings(stripe_server)

    def test_holds_about_to_lapse_are_counted_and_listed_as_the_api(
        self, console: FlaskClient, fake_stripe: FakeStripe, shop: Shop
    ) -> None:
        soon, later = paid_order(console, fake_stripe, shop)[0], paid_order(console, fake_stripe, shop)[0]
        hours = console.application.config["HOLD_WARNING_HOURS"]
        for order_id, until in ((soon["id"], hours - 1), (later["id"], hours + 1)):
            lapses = utcnow() + timedelta(hours=until)
            db.session.execute(update(Payment).where(Payment.order_id == order_id).values(authorised_until=lapses))
        db.session.commit()
        page = console.get("/console/").get_data(as_text=True)
        assert data_value(page, "holds-lapsing") == api_count(console, shop, "/api/v1/payments/holds-lapsing") == 1
        listed = console.get("/console/attention/holds").get_data(as_text=True)
        assert f'id="hold-{soon["id"]}"' in listed
        assert f'id="hold-{later["id"]}"' not in listed


@pytest.mark.parametrize("app_overrides", [{"PAYOUT_HOLD_DAYS": 0}])
def test_a_failed_transfer_is_flagged_for_follow_up_with_a_note_as_the_api_does(
    console: FlaskClient, shop: Shop
) -> None:
    bank_details(console, shop, shop.orchard.id)
    settled_order(console, shop, (shop.oranges, 2000))
    assert run(console, shop).status_code == 201
    payout = db.session.scalars(select(Payout)).one()
    api = f"/api/v1/payouts/{payout.id}"
    # Not failed: there is nothing to follow up, at the API as on the page.
    refused = console.post(f"{api}/flag", json={"note": "Why?"}, headers=shop.operator_h)
    assert refused.status_code == 409
    db.session.execute(
        update(Payout)
        .where(Payout.id == payout.id)
        .values(status=PayoutStatus.FAILED, failure_reason="The bank returned the transfer.")
    )
    db.session.commit()

    page = f"/console/payout-runs/{payout.run_id}"
    token = csrf_token(console, page)
    flag = f"/console/payouts/{payout.id}/flag"
    blank = console.post(flag, data={"csrf_token": token, "note": "  "})
    assert blank.status_code == 422
    assert "note" in blank.get_data(as_text=True)
    assert console.get(api, headers=shop.operator_h).json["payout"]["flag_note"] is None
    note = "The account number has a digit too many; asked the farm for it."
    assert console.post(flag, data={"csrf_token": token, "note": note}).status_code == 302
    flagged = console.get(api, headers=shop.operator_h).json["payout"]
    assert flagged["flag_note"] == note
    assert flagged["status"] == "failed"
    shown = console.get(page).get_data(as_text=True)
    assert f'id="flag-{payout.id}"' in shown
    assert note in shown
    # Still failed, so still on Today's attention list until it is sent again.
    assert data_value(console.get("/console/").get_data(as_text=True), "payouts-attention") == 1


def test_orders_are_found_by_the_buyers_name_email_or_phone_and_by_farm_name_as_the_api(
    console: FlaskClient, shop: Shop
) -> None:
    oranges = place(console, shop, (shop.oranges, 2000))
    nuts = place(console, shop, (shop.nuts, 1000))
    buyer = shop.buyer
    buyer.phone = "+8613912345678"
    db.session.commit()
    for text in (buyer.name.upper(), buyer.email.split("@")[0], "2345678"):
        page = console.get("/console/orders", query_string={"buyer": text}).get_data(as_text=True)
        assert data_value(page, "order-count") == api_count(console, shop, "/api/v1/orders", buyer=text) == 2
    assert data_value(console.get("/console/orders?buyer=%25").get_data(as_text=True), "order-count") == 0

    farm = shop.chestnuts.name[1:].lower()
    page = console.get("/console/orders", query_string={"farm": farm}).get_data(as_text=True)
    assert data_value(page, "order-count") == api_count(console, shop, "/api/v1/orders", farm=farm) == 1
    assert f'id="order-{nuts["id"]}"' in page
    assert f'id="order-{oranges["id"]}"' not in page


def test_a_paid_line_is_refunded_with_a_reason_after_a_confirmation_through_the_apis_rule(
    console: FlaskClient, shop: Shop
) -> None:
    order = settled_order(console, shop, (shop.oranges, 2000))
    line_id = order["parts"][0]["lines"][0]["id"]
    path = f"/console/orders/{order['id']}"
    page = console.get(path).get_data(as_text=True)
    left = page.split(f'id="refundable-{line_id}"', 1)[1]
    assert 'data-value="2000"' in left.split("</tr>", 1)[0]
    token = csrf_token(console, path)
    refunds = f"/api/v1/orders/{order['id']}/refunds"

    ask = {"csrf_token": token, f"grams-{line_id}": "500", "reason": "Bruised on the way"}
    for wrong in ({"reason": " "}, {f"grams-{line_id}": "half"}, {f"grams-{line_id}": ""}):
        assert console.post(f"{path}/refund", data=ask | wrong).status_code == 422
    shown = console.post(f"{path}/refund", data=ask)
    assert shown.status_code == 200  # what will be refunded, to confirm: nothing refunded yet
    assert 'id="refund-confirm"' in shown.get_data(as_text=True)
    assert console.get(refunds, headers=shop.operator_h).json["items"] == []

    too_much = ask | {"confirmed": "yes", f"grams-{line_id}": "2001"}
    refused = console.post(f"{path}/refund", data=too_much)
    assert refused.status_code == 422  # the service's rule: at most what is left
    assert "2000 g" in refused.get_data(as_text=True)
    assert console.post(f"{path}/refund", data=ask | {"confirmed": "yes"}).status_code == 302
    (refund,) = console.get(refunds, headers=shop.operator_h).json["items"]
    assert (refund["reason"], refund["lines"][0]["grams"]) == ("Bruised on the way", 500)
    page = console.get(path).get_data(as_text=True)
    assert f'id="refund-{refund["id"]}"' in page
    assert 'data-value="1500"' in page.split(f'id="refundable-{line_id}"', 1)[1].split("</tr>", 1)[0]

    everything = {"csrf_token": token, "everything": "yes", "reason": "Whole box spoiled", "confirmed": "yes"}
    assert console.post(f"{path}/refund", data=everything).status_code == 302
    assert len(console.get(refunds, headers=shop.operator_h).json["items"]) == 2
    assert f'id="refundable-{line_id}"' not in console.get(path).get_data(as_text=True)


def test_fulfilment_points_are_made_and_edited_through_the_apis_rules(console: FlaskClient, shop: Shop) -> None:
    token = csrf_token(console, "/console/points/new")
    count = api_count(console, shop, "/api/v1/fulfilment-points")
    centre = {"kind": "county_centre", "name": "Huichang centre", "province": "江西", "county": "会昌"}
    centre |= {"address": "1 Market St", "csrf_token": token}
    assert console.post("/console/points", data=centre).status_code == 302
    (made,) = console.get("/api/v1/fulfilment-points", query_string={"county": "会昌"}, headers=shop.operator_h).json[
        "items"
    ]
    assert (made["kind"], made["parent_id"], made["village"]) == ("county_centre", None, None)

    station = centre | {"kind": "village_station", "name": "Zhoutian station", "village": "周田"}
    refused = console.post("/console/points", data=station)  # a station needs its county centre
    assert refused.status_code == 422
    assert "parent_id" in refused.get_data(as_text=True)
    wrong_parent = console.post("/console/points", data=station | {"parent_id": str(shop.station.id)})
    assert wrong_parent.status_code == 422  # a station is not a centre
    assert console.post("/console/points", data=station | {"parent_id": "x"}).status_code == 422
    assert api_count(console, shop, "/api/v1/fulfilment-points") == count + 1
    assert console.post("/console/points", data=station | {"parent_id": str(made["id"])}).status_code == 302
    points = console.get("/api/v1/fulfilment-points", query_string={"parent_id": made["id"]}, headers=shop.operator_h)
    (new_station,) = points.json["items"]
    assert new_station["village"] == "周田"

    form = console.get(f"/console/points/{new_station['id']}/edit").get_data(as_text=True)
    assert 'value="Zhoutian station"' in form
    edit = {"name": "Zhoutian east station", "village": "", "parent_id": str(made["id"]), "csrf_token": token}
    assert console.post(f"/console/points/{new_station['id']}", data=edit).status_code == 302
    edited = console.get(f"/api/v1/fulfilment-points/{new_station['id']}", headers=shop.operator_h).json
    assert (edited["name"], edited["village"], edited["county"]) == ("Zhoutian east station", None, "会昌")
    cleared = edit | {"parent_id": ""}  # a station keeps its centre
    assert console.post(f"/console/points/{new_station['id']}", data=cleared).status_code == 422
    listed = console.get("/console/points").get_data(as_text=True)
    assert f'id="point-{new_station["id"]}"' in listed
    assert "Huichang centre" in listed.split(f'id="point-{new_station["id"]}"', 1)[1].split("</tr>", 1)[0]


def test_cash_ups_with_a_difference_or_waiting_are_counted_listed_and_deposited_in_yuan_as_the_api(
    console: FlaskClient, shop: Shop
) -> None:
    needs("postgresql")
    collect_cash_order(console, shop, 2000)
    expected = cash_up_preview(console, shop)["expected"]
    counted = expected - 50
    short = submit_cash_up(console, shop, {"expected": expected, "counted": counted, "note": "Coins missing"})
    today = console.get("/console/").get_data(as_text=True)
    assert data_value(today, "cash-ups-flagged") == api_count(console, shop, "/api/v1/cash-ups", flagged="true") == 1
    assert (
        data_value(today, "cash-ups-to-deposit") == api_count(console, shop, "/api/v1/cash-ups", deposited="false") == 1
    )
    listed = console.get("/console/cash-ups?show=flagged").get_data(as_text=True)
    assert f'id="cash-up-{short["id"]}"' in listed
    assert "Coins missing" in listed

    page = "/console/cash-ups?show=to_deposit"
    token = csrf_token(console, page)
    action = f"/console/cash-ups/{short['id']}/deposit"
    api = f"/api/v1/cash-ups/{short['id']}"
    for wrong in ("12.345", "twelve", "NaN", "1e30"):
        refused = console.post(action, data={"csrf_token": token, "bank_reference": "BOC-1", "amount": wrong})
        assert refused.status_code == 422, wrong
        assert console.get(api, headers=shop.operator_h).json["deposited"] is None
    in_yuan = f"{counted // 100}.{counted % 100:02d}"
    done = console.post(action, data={"csrf_token": token, "bank_reference": "BOC-1", "amount": in_yuan})
    assert done.status_code == 302
    deposited = console.get(api, headers=shop.operator_h).json
    assert (deposited["status"], deposited["deposited"], deposited["bank_reference"]) == ("deposited", counted, "BOC-1")
    assert data_value(console.get("/console/").get_data(as_text=True), "cash-ups-to-deposit") == 0
    assert check_ledger() == []


def sellers_of(client: FlaskClient, shop: Shop) -> list[dict[str, Any]]:
    return client.get("/api/v1/sellers", query_string={"limit": 100}, headers=shop.operator_h).json["items"]  # type: ignore[no-any-return]


def test_sellers_are_made_through_the_apis_rules_with_rates_typed_in_percent_or_yuan(
    console: FlaskClient, shop: Shop
) -> None:
    token = csrf_token(console, "/console/sellers/new")
    host_user = UserFactory(phone="+8613800138000")
    host = {"csrf_token": token, "kind": "host", "name": "Xiao Hong live", "user": host_user.email.upper()}
    # Above the platform's commission (COMMISSION_BP 500 = 5 %): the form again, with the rule's words.
    for rate, words in (("5.01", "Must be at most 500."), ("2.555", "Not a valid integer")):
        refused = console.post("/console/sellers", data=host | {"rate_unit": "percent", "rate": rate})
        assert refused.status_code == 422, rate
        page = refused.get_data(as_text=True)
        assert 'id="seller-form"' in page
        assert words in page.split('id="error-rate_bp"', 1)[1].split("</li>", 1)[0]
        assert 'value="Xiao Hong live"' in page  # what was typed is kept
    per_order = console.post("/console/sellers", data=host | {"rate_unit": "per_order", "rate": "0.5"})
    assert per_order.status_code == 422  # a host earns a share of produce only
    nobody = console.post("/console/sellers", data=host | {"user": "nobody@example.test", "rate": "2"})
    assert nobody.status_code == 422
    assert 'id="error-user"' in nobody.get_data(as_text=True)
    assert sellers_of(console, shop) == []  # nothing was written

    by_phone = {"user": host_user.phone, "rate_unit": "percent", "rate": "2.5"}
    made = console.post("/console/sellers", data=host | by_phone)
    assert made.status_code == 302
    (seller,) = sellers_of(console, shop)
    assert (seller["kind"], seller["user_id"], seller["rate_bp"]) == ("host", host_user.id, 250)
    assert len(seller["code"]) == 8  # made up when not given
    assert made.headers["Location"].startswith(f"/console/sellers/{seller['id']}")

    station = {"csrf_token": token, "kind": "station", "name": "Xialiao station", "rate_unit": "per_order"}
    centre = console.post("/console/sellers", data=station | {"fulfilment_point_id": str(shop.centre.id), "rate": "1"})
    assert centre.status_code == 422  # only village stations
    ok = console.post("/console/sellers", data=station | {"fulfilment_point_id": str(shop.station.id), "rate": "0.5"})
    assert ok.status_code == 302
    twice = console.post("/console/sellers", data=station | {"fulfilment_point_id": str(shop.station.id), "rate": "1"})
    assert twice.status_code == 409
    made_station = next(s for s in sellers_of(console, shop) if s["kind"] == "station")
    assert (made_station["fulfilment_point_id"], made_station["per_order"]) == (shop.station.id, 50)

    listed = console.get("/console/sellers?kind=host").get_data(as_text=True)
    row = listed.split(f'id="seller-{seller["id"]}"', 1)[1].split("</tr>", 1)[0]
    assert "2.50 %" in row and seller["code"] in row
    assert f'id="seller-{made_station["id"]}"' not in listed
    stations = console.get("/console/sellers?kind=station").get_data(as_text=True)
    assert "0.50 CNY" in stations.split(f'id="seller-{made_station["id"]}"', 1)[1].split("</tr>", 1)[0]
    assert shop.station.name in stations


def test_a_seller_is_edited_through_the_apis_rules_keeping_bank_details_left_blank(
    console: FlaskClient, shop: Shop
) -> None:
    seller = make_host(console, shop, rate_bp=250)
    token = csrf_token(console, "/console/sellers/new")
    edit_path = f"/console/sellers/{seller['id']}"
    form = console.get(f"{edit_path}/edit").get_data(as_text=True)
    assert 'value="2.50"' in form and 'id="seller-active" checked' in form
    too_much = {"csrf_token": token, "name": "Hong", "rate_unit": "percent", "rate": "6", "active": "yes"}
    refused = console.post(edit_path, data=too_much)
    assert refused.status_code == 422
    assert "Must be at most 500." in refused.get_data(as_text=True)
    assert console.get(f"/api/v1/sellers/{seller['id']}", headers=shop.operator_h).json["name"] == "Xiao Hong live"
    bank = {"account_holder": "王小红", "bank_name": "中国农业银行", "account_number": "6228 4800 9999 0000 123"}
    edit = {"csrf_token": token, "name": "Hong", "rate_unit": "percent", "rate": "3"} | bank  # active unticked
    assert console.post(edit_path, data=edit).status_code == 302
    edited = console.get(f"/api/v1/sellers/{seller['id']}", headers=shop.operator_h).json
    assert (edited["name"], edited["rate_bp"], edited["active"]) == ("Hong", 300, False)
    assert edited["bank_account_masked"].endswith("0123")
    keep = {"csrf_token": token, "name": "Hong", "rate_unit": "percent", "rate": "3", "active": "yes"}
    assert console.post(edit_path, data=keep).status_code == 302  # bank details left blank: kept
    kept = console.get(f"/api/v1/sellers/{seller['id']}", headers=shop.operator_h).json
    assert (kept["active"], kept["bank_account_masked"]) == (True, edited["bank_account_masked"])


def test_a_sellers_page_shows_its_figures_and_entries_as_the_api_and_exports_its_csv(
    console: FlaskClient, shop: Shop
) -> None:
    host = make_host(console, shop, rate_bp=200)
    order = captured_at_station(console, shop, 2000, attribution_code="hong-live")
    line_id = order["parts"][0]["lines"][0]["id"]
    payouts_refund(order["id"], line_id, 500)
    path = f"/console/sellers/{host['id']}"
    page = console.get(path).get_data(as_text=True)
    api = console.get(f"/api/v1/sellers/{host['id']}", headers=shop.operator_h).json
    for figure in ("earned", "reversed", "paid", "payable"):
        assert data_value(page, f"seller-{figure}") == api[figure]
    assert (api["earned"], api["reversed"]) == (40, 10)
    entries = console.get(f"/api/v1/sellers/{host['id']}/entries", headers=shop.operator_h).json["items"]
    assert [e["kind"] for e in entries] == ["earned", "reversed"]
    for entry in entries:
        row = page.split(f'id="entry-{entry["id"]}"', 1)[1].split("</tr>", 1)[0]
        assert f'data-value="{entry["amount"]}"' in row
    exported = console.get(f"{path}/entries.csv")
    assert exported.mimetype == "text/csv"
    from_api = console.get(f"/api/v1/sellers/{host['id']}/entries.csv", headers=shop.operator_h)
    assert exported.get_data(as_text=True) == from_api.get_data(as_text=True)
    assert console.get("/console/sellers/999999").status_code == 404


@pytest.mark.parametrize("app_overrides", [{"PAYOUT_HOLD_DAYS": 0}])
def test_a_payout_runs_seller_payouts_are_shown_skipped_in_words_and_confirmed_as_the_api(
    console: FlaskClient, shop: Shop
) -> None:
    bank_details(console, shop, shop.orchard.id)
    make_host(console, shop, rate_bp=200, **COMMISSION_BANK)
    no_bank = make_host(console, shop, rate_bp=100, code="NO-BANK")
    settled_order(console, shop, (shop.oranges, 2000), attribution_code="hong-live")
    settled_order(console, shop, (shop.oranges, 1000), attribution_code="no-bank")
    made = run(console, shop)
    assert made.status_code == 201, made.json
    run_id = made.json["id"]
    api = console.get(f"/api/v1/payout-runs/{run_id}/sellers", headers=shop.operator_h).json
    (payout,) = api["payouts"]

    page = console.get(f"/console/payout-runs/{run_id}").get_data(as_text=True)
    row = page.split(f'id="seller-payout-{payout["id"]}"', 1)[1].split("</tr>", 1)[0]
    assert "Xiao Hong live" in row
    assert f'data-value="{payout["amount"]}"' in row and "0.40 CNY" in row
    assert f'data-value="{payout["orders"]}"' in row
    skipped = page.split(f'id="skipped-seller-{no_bank["id"]}"', 1)[1].split("</tr>", 1)[0]
    assert "No bank details" in skipped and 'data-value="10"' in skipped

    today = console.get("/console/").get_data(as_text=True)
    assert data_value(today, "seller-payouts-awaiting") == 1
    assert f'href="/console/payout-runs/{run_id}#sellers"' in today

    bank_file = console.get(f"/console/payout-runs/{run_id}/seller-bank-file.csv")
    from_api = console.get(f"/api/v1/payout-runs/{run_id}/seller-bank-file.csv", headers=shop.operator_h)
    assert bank_file.mimetype == "text/csv"
    assert bank_file.get_data(as_text=True) == from_api.get_data(as_text=True)
    statement = console.get(f"/console/seller-payouts/{payout['id']}/statement.csv").get_data(as_text=True)
    api_statement = console.get(f"/api/v1/seller-payouts/{payout['id']}/statement.csv", headers=shop.operator_h)
    assert statement == api_statement.get_data(as_text=True)

    token = csrf_token(console, f"/console/payout-runs/{run_id}")
    confirm = f"/console/seller-payouts/{payout['id']}/confirm"
    assert console.post(confirm, data={"csrf_token": token}).status_code == 422  # no reference: nothing confirmed
    assert console.post(confirm, data={"bank_reference": "ABC-1", "csrf_token": token}).status_code == 302
    paid = console.get(f"/api/v1/seller-payouts/{payout['id']}", headers=shop.operator_h).json["payout"]
    assert (paid["status"], paid["bank_reference"]) == ("paid", "ABC-1")
    assert console.post(confirm, data={"bank_reference": "ABC-1", "csrf_token": token}).status_code == 409
    assert data_value(console.get("/console/").get_data(as_text=True), "seller-payouts-awaiting") == 0
    assert "ABC-1" in console.get(f"/console/payout-runs/{run_id}").get_data(as_text=True)
    assert check_ledger() == []


def test_impact_shows_sales_by_station_and_host_for_its_period_as_the_api(console: FlaskClient, shop: Shop) -> None:
    host = make_host(console, shop, rate_bp=200)
    station = make_station(console, shop, rate_bp=100)
    captured_at_station(console, shop, 2000, attribution_code="hong-live")
    today = business_today().isoformat()
    query = {"from": today, "to": today}
    report = console.get("/api/v1/reports/sellers", query_string=query, headers=shop.operator_h).json
    page = console.get("/console/impact", query_string=query).get_data(as_text=True)
    for row in report["rows"]:
        cells = page.split(f'id="sales-seller-{row["seller_id"]}"', 1)[1].split("</tr>", 1)[0]
        values = [int(cell.split('"', 1)[0]) for cell in cells.split('data-value="')[1:]]
        assert values == [row["orders"], row["produce"], row["commission"]]
    assert {row["seller_id"] for row in report["rows"]} == {host["id"], station["id"]}
    assert shop.station.name in page.split(f'id="sales-seller-{station["id"]}"', 1)[1].split("</tr>", 1)[0]
    exported = console.get("/console/impact/sellers.csv", query_string=query)
    assert exported.mimetype == "text/csv"
    from_api = console.get("/api/v1/reports/sellers", query_string=query | {"format": "csv"}, headers=shop.operator_h)
    assert exported.get_data(as_text=True) == from_api.get_data(as_text=True)
    yesterday = (business_today() - timedelta(days=1)).isoformat()
    earlier = console.get("/console/impact", query_string={"from": yesterday, "to": yesterday}).get_data(as_text=True)
    assert 'id="sales-seller-' not in earlier


def test_every_seller_kind_entry_kind_payout_state_and_skip_reason_has_its_words() -> None:
    keys = [f"seller_kind.{kind.value}" for kind in SellerKind]
    keys += [f"entry_kind.{kind.value}" for kind in CommissionKind]
    keys += [f"seller_payout_status.{status.value}" for status in SellerPayoutStatus]
    keys += [f"seller_skip.{reason.value}" for reason in SELLER_SKIP_REASONS]
    assert [key for key in keys if key not in MESSAGES] == []


def test_every_payout_state_method_and_skip_reason_and_reconciliation_state_and_kind_has_its_words() -> None:
    keys = [f"payout_status.{status.value}" for status in PayoutStatus]
    keys += [f"payout_method.{method.value}" for method in PayoutMethod]
    keys += [f"farm_skip.{reason.value}" for reason in SkipReason]
    keys += [f"reconciliation_status.{status.value}" for status in RunStatus]
    keys += [f"reconciliation_kind.{kind}" for kind in RECONCILIATION_KINDS]
    assert [key for key in keys if key not in MESSAGES] == []


@pytest.mark.parametrize("app_overrides", [{"PAYOUT_HOLD_DAYS": 0}])
def test_payouts_skipped_farms_and_reconciliations_are_told_in_the_operators_language(
    console: FlaskClient, shop: Shop, operator_user: User
) -> None:
    operator_user.language = Language.ZH
    db.session.commit()
    bank_details(console, shop, shop.orchard.id)
    settled_order(console, shop, (shop.oranges, 2000))
    settled_order(console, shop, (shop.nuts, 1000))  # the chestnut farm has no payout account: skipped
    assert run(console, shop).status_code == 201
    payout = db.session.scalars(select(Payout)).one()
    path = f"/console/payout-runs/{payout.run_id}"
    page = console.get(path).get_data(as_text=True)
    assert text_of(page, f"payout-method-{payout.id}") == "银行转账"
    assert text_of(page, f"payout-status-{payout.id}") == "待确认转账"
    skipped = page.split(f'id="skipped-{shop.chestnuts.id}"', 1)[1].split("</tr>", 1)[0]
    assert "农场尚未选择收款方式" in skipped
    token = csrf_token(console, path)
    confirmed = console.post(
        f"/console/payouts/{payout.id}/confirm", data={"bank_reference": "ICBC-7", "csrf_token": token}
    )
    assert confirmed.status_code == 302
    assert text_of(console.get(path).get_data(as_text=True), f"payout-status-{payout.id}") == "已转账"

    today = business_today().isoformat()
    started = console.post("/console/reconciliations", data={"from": today, "to": today, "csrf_token": token})
    run_id = int(started.headers["Location"].split("/reconciliations/", 1)[1].split("?", 1)[0])
    reconciliation.perform(run_id)  # what the queued task does
    assert text_of(console.get("/console/reconciliations").get_data(as_text=True), f"run-status-{run_id}") == "已完成"
    page = console.get(f"/console/reconciliations/{run_id}").get_data(as_text=True)
    assert text_of(page, "run-status") == "已完成"
    items = console.get(f"/api/v1/reconciliations/{run_id}/items", headers=shop.operator_h).json["items"]
    assert {"offline_receipt", "bank_payout"} <= {item["object_type"] for item in items}
    for item in items:
        named = page.split(f'id="item-{item["id"]}"', 1)[1].split("</td>", 1)[0]
        zh, _ = MESSAGES[f"reconciliation_kind.{item['object_type']}"]
        assert zh in named and item["object_type"] not in named
