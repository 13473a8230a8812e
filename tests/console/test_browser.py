"""The console in a real browser: Debian's headless Chromium, driven by
Selenium through chromium-driver, against the app served by a live server.
It signs in, walks every page on seeded data, checks the figures on the
pages against the API's, acts through the forms, and leaves a screenshot of
each page in tests/artefacts/console/.

Without Chromium the tests skip; under .ci/run (MARKET_REQUIRE_SERVICES=1),
which installs it, they fail instead."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait
from sqlalchemy import select, update
from werkzeug.serving import make_server

import config
from market.accounts.models import Role
from market.catalog.models import FarmStatus
from market.console.views import OPEN_STATES
from market.db import business_today
from market.extensions import db
from market.orders.models import OrderStatus
from market.payments import service as payments
from market.payouts.models import Payout, PayoutStatus
from tests.conftest import REQUIRE_SERVICES
from tests.console.test_pages import api_count, channel_in_error, failed_delivery, overdue_order
from tests.factories import PASSWORD, FarmFactory, UserFactory, user_with_token
from tests.payouts.conftest import operator, run, settled_order
from tests.ports import free_port
from tests.reports.test_impact import scenario
from tests.shop import Shop, place

ARTEFACTS = config.ROOT / "tests" / "artefacts" / "console"
WAIT_SECONDS = 10


def _browser_binaries() -> tuple[str, str] | None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (chromium, driver) if chromium and driver else None


@pytest.fixture(scope="session")
def browser() -> Iterator[WebDriver]:
    """One headless Chromium for every browser test of the process."""
    binaries = _browser_binaries()
    if binaries is None:
        message = "needs chromium and chromium-driver (apt-get install chromium chromium-driver)"
        if REQUIRE_SERVICES:
            pytest.fail(message)
        pytest.skip(message)
    options = webdriver.ChromeOptions()
    options.binary_location = binaries[0]
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000", "--lang=en"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=binaries[1]), options=options)
    driver.set_page_load_timeout(WAIT_SECONDS * 3)
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


@pytest.fixture
def app_overrides() -> dict[str, Any]:
    # Served over plain http on 127.0.0.1, as the one-command run serves it.
    return {"PAYOUT_HOLD_DAYS": 0, "CONSOLE_INSECURE_COOKIE": True}


@pytest.fixture
def live(app: Flask) -> Iterator[str]:
    """The test's app served on a free port, in a thread, for the browser."""
    server = make_server("127.0.0.1", free_port(), app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=5)


def _open(browser: WebDriver, url: str, heading: str) -> None:
    browser.get(url)
    WebDriverWait(browser, WAIT_SECONDS).until(expected_conditions.presence_of_element_located((By.TAG_NAME, "h1")))
    assert heading in browser.find_element(By.TAG_NAME, "h1").text, browser.page_source[:2000]


def _left(page: WebElement) -> Callable[[WebDriver], bool]:
    """The browser has left the document `page` belongs to. Asked about a
    node of a document it has just replaced, Chromium may answer "does not
    belong to the document" instead of "stale": the same news."""

    def left(_: WebDriver) -> bool:
        try:
            page.is_enabled()
        except StaleElementReferenceException:
            return True
        except WebDriverException as exc:
            if "does not belong to the document" in str(exc):
                return True
            raise
        return False

    return left


def _follow(browser: WebDriver, element: Any) -> None:
    """Click a link or a form's button and wait for the page it leads to."""
    page = browser.find_element(By.TAG_NAME, "html")
    element.click()
    WebDriverWait(browser, WAIT_SECONDS).until(_left(page))
    WebDriverWait(browser, WAIT_SECONDS).until(expected_conditions.presence_of_element_located((By.TAG_NAME, "h1")))


def _shot(browser: WebDriver, name: str) -> None:
    browser.save_screenshot(str(ARTEFACTS / f"{name}.png"))


def _value(browser: WebDriver, element_id: str) -> int:
    return int(browser.find_element(By.ID, element_id).get_attribute("data-value") or "")


def _sign_in(browser: WebDriver, live: str, email: str) -> None:
    browser.delete_all_cookies()
    _open(browser, f"{live}/console/sign-in", "Sign in")
    browser.find_element(By.ID, "email").send_keys(email)
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    _follow(browser, browser.find_element(By.ID, "sign-in"))


def _api(client: FlaskClient, shop: Shop, path: str) -> Any:
    """What the API answers now: the test's session forgets the rows it
    holds, which the live server's requests may have changed."""
    db.session.expire_all()
    response = client.get(path, headers=shop.operator_h)
    assert response.status_code == 200, response.json
    return response.json


def _no_console_errors(browser: WebDriver) -> None:
    """Nothing the page loads is refused by its Content-Security-Policy, and no script fails."""
    problems = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert problems == []


def _seed(client: FlaskClient, shop: Shop) -> tuple[dict[str, int], dict[str, Any], dict[str, Any], Any]:
    """Orders settled, paid out and refunded (the impact report's scenario),
    one order waiting for payment with its payment flagged, one paid, and a
    farm waiting for verification."""
    ids = scenario(client, shop)
    waiting = place(client, shop, (shop.pomelos, 1500))
    paid = place(client, shop, (shop.nuts, 1000))
    payment = payments.open_payment(paid["id"])
    payments.confirm_offline(operator(), paid["id"], amount=payment.amount, reference="cash")
    payments.open_payment(waiting["id"])
    payments.flag(waiting["id"], "The gateway did not answer after every retry.")
    return ids, waiting, paid, FarmFactory(status=FarmStatus.PENDING, name="Waiting Orchard")


def test_an_operator_walks_every_page_and_sees_the_apis_figures(
    browser: WebDriver, live: str, client: FlaskClient, shop: Shop
) -> None:
    ids, waiting, paid, pending = _seed(client, shop)
    ops = UserFactory(roles=[Role.OPERATOR], email="ops@example.test")

    _sign_in(browser, live, ops.email)
    WebDriverWait(browser, WAIT_SECONDS).until(expected_conditions.presence_of_element_located((By.ID, "sales")))
    _shot(browser, "today")
    _no_console_errors(browser)

    # Today: every figure is the API's.
    today = business_today().isoformat()
    for state in OPEN_STATES:
        assert _value(browser, f"state-{state.value}") == api_count(client, shop, "/api/v1/orders", status=state.value)
    totals = client.get(
        "/api/v1/reports/impact", query_string={"from": today, "to": today}, headers=shop.operator_h
    ).json["totals"]
    assert totals["sales"] > 0
    assert _value(browser, "sales-today") == totals["sales"]
    assert _value(browser, "grams-today") == totals["grams_sold"]
    assert _value(browser, "payments-attention") == api_count(client, shop, "/api/v1/payments/attention") == 1
    assert _value(browser, "farms-pending") == api_count(client, shop, "/api/v1/farms", status="pending") == 1
    programme = client.get(f"/api/v1/premium-programmes/{ids['sponsor']}", headers=shop.operator_h).json
    used = browser.find_element(By.CSS_SELECTOR, f"#programme-{ids['sponsor']} td[data-value]")
    assert int(used.get_attribute("data-value") or "") == programme["budget_used"]

    # Each number opens the list behind it.
    _follow(browser, browser.find_element(By.ID, "state-paid"))
    assert "Orders" in browser.find_element(By.TAG_NAME, "h1").text
    assert _value(browser, "order-count") == api_count(client, shop, "/api/v1/orders", status=OrderStatus.PAID.value)
    assert browser.find_elements(By.ID, f"order-{paid['id']}")
    _shot(browser, "orders")

    # Filtering by state swaps the list in place (htmx) and keeps the address.
    status = browser.find_element(By.ID, "filter-status")
    status.find_element(By.CSS_SELECTOR, "option[value='pending_payment']").click()
    WebDriverWait(browser, WAIT_SECONDS).until(lambda b: "status=pending_payment" in b.current_url)
    WebDriverWait(browser, WAIT_SECONDS).until(lambda b: b.find_elements(By.ID, f"order-{waiting['id']}"))
    assert _value(browser, "order-count") == api_count(client, shop, "/api/v1/orders", status="pending_payment")

    # An order's story, and cancelling it with a reason.
    _open(browser, f"{live}/console/orders/{waiting['id']}", f"Order #{waiting['id']}")
    assert _value(browser, "order-total") == waiting["total"]
    _shot(browser, "order")
    browser.find_element(By.ID, "cancel-reason").send_keys("The buyer asked by phone.")
    _follow(browser, browser.find_element(By.ID, "cancel"))
    assert browser.find_element(By.ID, "notice")
    assert _api(client, shop, f"/api/v1/orders/{waiting['id']}")["status"] == "cancelled"
    assert "order.cancelled" in browser.find_element(By.ID, "story").text

    _open(browser, f"{live}/console/attention/payments", "Payments a worker could not finish")
    _shot(browser, "payments-attention")

    _walk_impact_and_reconciliation(browser, live, client, shop, totals)
    _walk_people_and_places(browser, live, client, shop, pending.id)
    _walk_attention(browser, live, client, shop)
    _walk_refund_flag_and_points(browser, live, client, shop)
    _walk_sellers(browser, live, client, shop)

    # Sign out: the console is closed again.
    _follow(browser, browser.find_element(By.ID, "sign-out"))
    assert browser.find_element(By.ID, "notice")
    browser.get(f"{live}/console/")
    assert "/console/sign-in" in browser.current_url


def test_a_buyer_cannot_sign_in_to_the_console(browser: WebDriver, live: str, app: Flask) -> None:
    buyer = UserFactory(roles=[Role.BUYER])
    _sign_in(browser, live, buyer.email)
    WebDriverWait(browser, WAIT_SECONDS).until(expected_conditions.presence_of_element_located((By.ID, "error")))
    assert "operators only" in browser.find_element(By.ID, "error").text
    browser.get(f"{live}/console/")
    assert "/console/sign-in" in browser.current_url


def _walk_impact_and_reconciliation(
    browser: WebDriver, live: str, client: FlaskClient, shop: Shop, totals: dict[str, int]
) -> None:
    today = business_today().isoformat()
    _open(browser, f"{live}/console/impact?from={today}&to={today}", "Impact")
    total_cells = browser.find_elements(By.CSS_SELECTOR, "#impact-total td[data-value]")
    assert [int(c.get_attribute("data-value") or "") for c in total_cells[:2]] == [
        totals["grams_sold"],
        totals["sales"],
    ]
    # Chart.js drew both charts under the page's Content-Security-Policy.
    drawn = (By.CSS_SELECTOR, "body[data-charts-drawn]")
    WebDriverWait(browser, WAIT_SECONDS).until(expected_conditions.presence_of_element_located(drawn))
    for chart in ("impact-by-group", "impact-by-week"):
        assert browser.execute_script(f"return Chart.getChart('{chart}') !== undefined")
    _shot(browser, "impact")

    # Reconcile today: the run is queued for the worker and shown at once.
    _open(browser, f"{live}/console/reconciliations", "Reconciliation")
    _follow(browser, browser.find_element(By.ID, "start-reconciliation"))
    assert browser.find_element(By.ID, "notice")
    run_id = int(browser.current_url.split("/reconciliations/", 1)[1].split("?", 1)[0])
    assert _api(client, shop, f"/api/v1/reconciliations/{run_id}")["status"] == "pending"
    _shot(browser, "reconciliation")

    # The payout run the scenario made, with its payouts and the farms it skipped.
    _open(browser, f"{live}/console/payout-runs", "Payout runs")
    _follow(browser, browser.find_element(By.CSS_SELECTOR, "#payout-runs tbody a"))
    assert browser.find_element(By.ID, "bank-file")
    _shot(browser, "payout-run")


def _walk_people_and_places(browser: WebDriver, live: str, client: FlaskClient, shop: Shop, farm_id: int) -> None:
    # People: find a user, make them staff of a point, remove them again.
    _open(browser, f"{live}/console/people?q={shop.buyer.email}", "Find users")
    assert browser.find_elements(By.ID, f"user-{shop.buyer.id}")
    _shot(browser, "people")
    _open(browser, f"{live}/console/points", "Fulfilment points")
    row = browser.find_element(By.ID, f"point-{shop.station.id}")
    row.find_element(By.NAME, "user_id").send_keys(str(shop.buyer.id))
    _follow(browser, row.find_element(By.CSS_SELECTOR, "button.grant"))
    assert browser.find_elements(By.ID, f"staff-{shop.station.id}-{shop.buyer.id}")
    _shot(browser, "points")
    _follow(browser, browser.find_element(By.CSS_SELECTOR, f"#staff-{shop.station.id}-{shop.buyer.id} button.revoke"))
    assert not browser.find_elements(By.ID, f"staff-{shop.station.id}-{shop.buyer.id}")

    # Farms: verify the one waiting.
    _open(browser, f"{live}/console/farms?status=pending", "Farms")
    _shot(browser, "farms")
    _follow(browser, browser.find_element(By.CSS_SELECTOR, f"#farm-{farm_id} button.verify"))
    assert browser.find_element(By.ID, "notice")
    assert _api(client, shop, f"/api/v1/farms/{farm_id}")["status"] == "verified"
    _no_console_errors(browser)


def _walk_attention(browser: WebDriver, live: str, client: FlaskClient, shop: Shop) -> None:
    """Today's attention list: overdue pickups, failed webhook deliveries,
    sales channels in error, each number leading to its list."""
    overdue = overdue_order(client, shop)
    delivery = failed_delivery(shop)
    channel = channel_in_error(shop)
    _open(browser, f"{live}/console/", "Today")
    assert (
        _value(browser, "overdue-for-pickup")
        == api_count(client, shop, "/api/v1/orders", overdue_for_pickup="true")
        == 1
    )
    assert _value(browser, "failed-deliveries") == api_count(client, shop, "/api/v1/webhook-deliveries/failed") == 1
    assert _value(browser, "channels-in-error") == api_count(client, shop, "/api/v1/sales-channels", in_error="true")
    assert _value(browser, "holds-lapsing") == api_count(client, shop, "/api/v1/payments/holds-lapsing") == 0
    _shot(browser, "today-attention")

    _follow(browser, browser.find_element(By.ID, "overdue-for-pickup"))
    assert _value(browser, "order-count") == 1
    assert browser.find_elements(By.ID, f"order-{overdue['id']}")
    assert browser.find_element(By.ID, "filter-overdue").is_selected()

    _open(browser, f"{live}/console/", "Today")
    _follow(browser, browser.find_element(By.ID, "channels-in-error"))
    assert "HTTP 500" in browser.find_element(By.ID, f"channel-{channel.id}").text
    _shot(browser, "channels-in-error")

    _open(browser, f"{live}/console/", "Today")
    _follow(browser, browser.find_element(By.ID, "holds-lapsing"))
    assert "Card holds about to lapse" in browser.find_element(By.TAG_NAME, "h1").text

    _open(browser, f"{live}/console/", "Today")
    _follow(browser, browser.find_element(By.ID, "failed-deliveries"))
    _shot(browser, "webhook-deliveries")
    _follow(browser, browser.find_element(By.ID, f"redeliver-{delivery.id}"))
    assert browser.find_element(By.ID, "notice")
    assert not browser.find_elements(By.ID, f"delivery-{delivery.id}")
    assert api_count(client, shop, "/api/v1/webhook-deliveries/failed") == 0
    _no_console_errors(browser)


def _walk_refund_flag_and_points(browser: WebDriver, live: str, client: FlaskClient, shop: Shop) -> None:
    """Orders found by the buyer's name; a line refunded after a
    confirmation; a failed transfer flagged; a station made."""
    order = settled_order(client, shop, (shop.pomelos, 1000))
    _open(browser, f"{live}/console/orders", "Orders")
    browser.find_element(By.ID, "filter-buyer").send_keys(shop.buyer.name.upper())
    browser.find_element(By.ID, "filter").click()
    WebDriverWait(browser, WAIT_SECONDS).until(lambda b: "buyer=" in b.current_url)
    WebDriverWait(browser, WAIT_SECONDS).until(lambda b: b.find_elements(By.ID, f"order-{order['id']}"))
    assert _value(browser, "order-count") == api_count(client, shop, "/api/v1/orders", buyer=shop.buyer.name.upper())

    line_id = order["parts"][0]["lines"][0]["id"]
    _open(browser, f"{live}/console/orders/{order['id']}", f"Order #{order['id']}")
    browser.find_element(By.ID, f"refund-grams-{line_id}").send_keys("250")
    browser.find_element(By.ID, "refund-reason").send_keys("Two pomelos were split.")
    _follow(browser, browser.find_element(By.ID, "refund"))
    assert "0.250 kg" in browser.find_element(By.ID, "refund-asked").text
    assert _api(client, shop, f"/api/v1/orders/{order['id']}/refunds")["items"] == []  # not before it is confirmed
    _shot(browser, "refund-confirm")
    _follow(browser, browser.find_element(By.ID, "refund-confirm"))
    assert browser.find_element(By.ID, "notice")
    (refund,) = _api(client, shop, f"/api/v1/orders/{order['id']}/refunds")["items"]
    assert (
        int(
            browser.find_element(By.CSS_SELECTOR, f"#refund-{refund['id']} td[data-value]").get_attribute("data-value")
            or ""
        )
        == refund["amount"]
    )

    # A transfer the bank returned is flagged for follow-up with a note.
    payout = db.session.scalars(select(Payout).order_by(Payout.id)).first()
    assert payout is not None
    db.session.execute(update(Payout).where(Payout.id == payout.id).values(status=PayoutStatus.FAILED))
    db.session.commit()
    _open(browser, f"{live}/console/payout-runs/{payout.run_id}", "Payout run")
    browser.find_element(By.ID, f"flag-note-{payout.id}").send_keys("The account was closed; calling the farm.")
    _follow(browser, browser.find_element(By.ID, f"flag-button-{payout.id}"))
    assert "calling the farm" in browser.find_element(By.ID, f"flag-{payout.id}").text
    assert _api(client, shop, f"/api/v1/payouts/{payout.id}")["payout"]["flag_note"].startswith("The account")
    _shot(browser, "payout-flagged")

    # A station under the shop's county centre.
    _open(browser, f"{live}/console/points", "Fulfilment points")
    _follow(browser, browser.find_element(By.ID, "new-point"))
    for field, text in (
        ("name", "Zhoutian station"),
        ("province", "江西"),
        ("county", "会昌"),
        ("address", "2 Bridge Rd"),
    ):
        browser.find_element(By.ID, f"point-{field}").send_keys(text)
    browser.find_element(By.CSS_SELECTOR, "#point-kind option[value='village_station']").click()
    browser.find_element(By.ID, "point-parent").send_keys(str(shop.station.parent_id))
    _shot(browser, "point-form")
    _follow(browser, browser.find_element(By.ID, "point-save"))
    assert browser.find_element(By.ID, "notice")
    made = _api(client, shop, f"/api/v1/fulfilment-points?parent_id={shop.station.parent_id}&county=会昌")["items"]
    assert [point["name"] for point in made] == ["Zhoutian station"]
    _no_console_errors(browser)


def _walk_sellers(browser: WebDriver, live: str, client: FlaskClient, shop: Shop) -> None:
    """A host made through the form (found by email, with bank details),
    an order sold with its code, the payout run's seller payout seen from
    Today and confirmed with the bank's reference."""
    host, _ = user_with_token(Role.BUYER)
    _open(browser, f"{live}/console/", "Today")
    _follow(browser, browser.find_element(By.ID, "nav-sellers"))
    _follow(browser, browser.find_element(By.ID, "new-seller"))
    browser.find_element(By.CSS_SELECTOR, "#seller-kind option[value='host']").click()
    for field, text in (
        ("user", host.email or ""),
        ("code", "HONG-LIVE"),
        ("name", "Xiao Hong live"),
        ("rate", "2"),
        ("holder", "王小红"),
        ("bank", "中国农业银行 寻乌支行"),
        ("account", "6228 4800 9999 0000 123"),
    ):
        browser.find_element(By.ID, f"seller-{field}").send_keys(text)
    _shot(browser, "seller-form")
    _follow(browser, browser.find_element(By.ID, "seller-save"))
    assert browser.find_element(By.ID, "notice")
    (seller,) = _api(client, shop, "/api/v1/sellers?kind=host")["items"]
    assert (seller["user_id"], seller["code"], seller["rate_bp"]) == (host.id, "HONG-LIVE", 200)
    assert seller["bank_account_masked"].endswith("0123")
    assert browser.find_element(By.ID, "seller-code").text == "HONG-LIVE"

    settled_order(client, shop, (shop.oranges, 2000), attribution_code="hong-live")
    made = run(client, shop)
    assert made.status_code == 201, made.json
    (payout,) = _api(client, shop, f"/api/v1/payout-runs/{made.json['id']}/sellers")["payouts"]
    _open(browser, f"{live}/console/sellers/{seller['id']}", "Xiao Hong live")
    assert _value(browser, "seller-paid") == _api(client, shop, f"/api/v1/sellers/{seller['id']}")["paid"] == 40
    _shot(browser, "seller")

    _open(browser, f"{live}/console/", "Today")
    assert _value(browser, "seller-payouts-awaiting") == 1
    _follow(browser, browser.find_element(By.ID, "seller-payouts-awaiting"))
    row = browser.find_element(By.ID, f"seller-payout-{payout['id']}")
    assert "Xiao Hong live" in row.text
    assert int(row.find_element(By.CSS_SELECTOR, "td.num + td.num").get_attribute("data-value") or "") == 40
    assert browser.find_element(By.ID, "seller-bank-file")
    _shot(browser, "payout-run-sellers")
    browser.find_element(By.ID, f"seller-bank-reference-{payout['id']}").send_keys("ABC-0001")
    _follow(browser, browser.find_element(By.ID, f"seller-confirm-{payout['id']}"))
    assert browser.find_element(By.ID, "notice")
    assert "ABC-0001" in browser.find_element(By.ID, f"seller-payout-status-{payout['id']}").text
    paid = _api(client, shop, f"/api/v1/seller-payouts/{payout['id']}")["payout"]
    assert (paid["status"], paid["bank_reference"]) == ("paid", "ABC-0001")
    _no_console_errors(browser)
