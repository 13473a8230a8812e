"""Any request gets a 4xx problem document, never a 5xx, and a refused
request writes nothing.

One test per class of hostile input that was once a 500 (JSON nested
thousands deep, cursors out of range or nested, dates at the edges of the
calendar, products of amounts and grams, signed but malformed Stripe
events, line breaks in names that end up in email subjects, other scripts'
digits in ids and numbers, parameters an operation does not take), then a
property test that sends every operation of the OpenAPI document requests
aimed at the edges and counts how they were answered.
"""

from __future__ import annotations

import email
import email.policy
import itertools
import json
import mailbox
import os
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from market.accounts.models import User
from market.api import MAX_ID, MAX_JSON_DEPTH
from market.catalog.models import Farm, Listing, Lot
from market.extensions import db
from market.money import MAX_LINE_G, MAX_PRICE_PER_KG, MAX_RATE_PER_KG, MAX_STOCK_G, line_amount
from market.notifications import service as notifications
from market.notifications.models import Channel, DeliveryStatus, Notification
from market.notifications.notifiers import MailboxNotifier, Message
from market.orders.models import Order
from market.payments.models import StripeEvent
from market.payouts.models import PayoutRun
from market.premiums.models import PremiumProgramme
from market.reconciliation.models import ReconciliationRun
from tests.adversarial import strategies
from tests.api.test_errors import PROBLEM, assert_problem
from tests.api.test_input_bounds import count, listing_body, programme_body
from tests.factories import FarmFactory, ListingFactory
from tests.fakes.stripe_server import sign
from tests.fuzz.test_schemathesis import FUZZ_SETTINGS, ROLES, seeded  # noqa: F401 (seeded: the demo data, a fixture)
from tests.shop import Shop, place

WEBHOOK_SECRET = "whsec_adversarial"
T = TypeVar("T")


@pytest.fixture
def app_overrides() -> dict[str, Any]:
    return {"STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET}


def each(cases: Iterable[T], check: Callable[[T], object]) -> None:
    """`check` every case, and report every case that fails, not only the
    first (the cases share one app and its data, which a test takes long
    to set up)."""
    failed = []
    for case in cases:
        try:
            check(case)
        except AssertionError as exc:
            failed.append(f"{case!r:.200}: {str(exc)[:500]}")
    assert not failed, f"{len(failed)} case(s) failed:\n" + "\n".join(failed)


def refused(response: Any, status: int, fields: set[str] | None = None) -> dict[str, Any]:
    """The problem document of `response`, a `status`, naming `fields`."""
    problem = assert_problem(response, status)
    if fields is not None:
        assert set(problem.get("errors") or {}) == fields, problem
    return problem


# JSON nested thousands deep


def test_json_nested_too_deep_is_400_wherever_it_is_sent(client: FlaskClient, shop: Shop) -> None:
    bodies = [
        strategies.nested_json(5_000),
        strategies.nested_json(100_000, kind="object"),
        '{"lines": ' + strategies.nested_json(3_000) + ', "fulfilment_point_id": 1}',
        strategies.nested_json(MAX_JSON_DEPTH + 1),
    ]
    paths = ["/api/v1/orders", "/api/v1/accounts", "/api/v1/listings/stock", "/api/v1/webhooks/stripe"]

    def check(case: tuple[str, str]) -> None:
        path, body = case
        response = client.post(path, data=body, content_type="application/json", headers=shop.buyer_h)
        assert f"deeper than {MAX_JSON_DEPTH}" in refused(response, 400)["detail"]

    each(itertools.product(paths, bodies), check)
    assert (count(Order), count(User), count(StripeEvent)) == (0, 7, 0)  # the shop's seven accounts
    # As deep as the limit, it is read, and its schema refuses it by field.
    body = '{"lines": ' + strategies.nested_json(MAX_JSON_DEPTH - 1) + ', "fulfilment_point_id": 1}'
    refused(client.post("/api/v1/orders", data=body, content_type="application/json", headers=shop.buyer_h), 422)


# Cursors


def test_a_cursor_out_of_range_nested_or_of_another_shape_is_422(client: FlaskClient, shop: Shop) -> None:
    orders = [
        [2**31],
        [-(2**31) - 1],
        [2**64],
        [True],
        [1.5],
        ["1"],
        [None],
        [[1]],
        {"id": 1},
        [1, 2],
        strategies.nested_json(50),
        strategies.nested_json(2_000),
        "[1",
    ]
    listings = [
        ("price", [2**63, 1]),
        ("price", [1000, 2**31]),
        ("harvest_date", ["0001-01-01T00:00:00+01:00", 1]),
        ("harvest_date", ["9999-99-99", 1]),
        ("harvest_date", ["\u0662\u0660\u0662\u0666-\u0660\u0661-\u0660\u0661", 1]),
        ("harvest_date", [20260101, 1]),
    ]
    cases = [("/api/v1/orders", {"cursor": strategies.cursor_of(plain)}) for plain in orders]
    cases += [
        ("/api/v1/orders", {"cursor": cursor}) for cursor in ("not base64!", strategies.cursor_of([1]) + "A" * 300)
    ]
    cases += [("/api/v1/listings", {"sort": sort, "cursor": strategies.cursor_of(plain)}) for sort, plain in listings]
    each(cases, lambda case: refused(client.get(case[0], query_string=case[1], headers=shop.buyer_h), 422, {"cursor"}))


def test_cursors_within_their_columns_still_page(client: FlaskClient, shop: Shop) -> None:
    """A price up to a bigint, and the date a listing never harvested sorts
    at (0001-01-01), are what the lists put in their cursors."""
    ListingFactory(farm=shop.orchard, harvest_date=None, product_name="Never harvested")
    for sort, cursor in (("price", [2**62, 1]), ("harvest_date", ["0001-01-01", MAX_ID])):
        query = {"sort": sort, "cursor": strategies.cursor_of(cursor)}
        assert client.get("/api/v1/listings", query_string=query).status_code == 200
    seen, cursor = [], None
    while True:
        query = {"sort": "harvest_date", "limit": 1} | ({"cursor": cursor} if cursor else {})
        page = client.get("/api/v1/listings", query_string=query).json
        seen += [item["id"] for item in page["items"]]
        if not (cursor := page["next_cursor"]):
            break
    assert len(seen) == len(set(seen)) == count(Listing)


# Dates at the edges of the calendar


def test_a_date_past_the_calendar_is_422_and_writes_nothing(client: FlaskClient, shop: Shop) -> None:
    manifest = f"/api/v1/fulfilment-points/{shop.station.id}/manifest"
    queries = [
        ("/api/v1/listings", {"updated_since": "0001-01-01T00:00:00+01:00"}),
        ("/api/v1/listings", {"updated_since": "9999-12-31T23:59:59-01:00"}),
        ("/api/v1/listings", {"harvested_after": "9999-12-31"}),
        ("/api/v1/orders", {"created_to": "9999-12-31"}),
        ("/api/v1/orders", {"created_from": "9999-12-31"}),
        ("/api/v1/reports/impact", {"from": "2026-01-01", "to": "9999-12-31"}),
        (manifest, {"date": "9999-12-31"}),
    ]
    each(
        queries,
        lambda case: refused(
            client.get(case[0], query_string=case[1], headers=shop.operator_h), 422, set(case[1]) - {"from"}
        ),
    )
    lots = f"/api/v1/listings/{shop.oranges.id}/lots"
    bodies = [
        ("/api/v1/payout-runs", {"period_end": "9999-12-31"}, shop.operator_h),
        (
            "/api/v1/reconciliations",
            {"period_start": "2026-01-01T00:00:00Z", "period_end": "9999-12-31T23:59:59-14:00"},
            shop.operator_h,
        ),
        ("/api/v1/premium-programmes", programme_body(valid_from="0001-01-01T00:00:00+01:00"), shop.operator_h),
        (lots, {"code": "XW-9999", "harvest_date": "9999-12-31", "grams": 1000}, shop.orchard_h),
    ]
    far = {"period_end", "valid_from", "harvest_date"}
    each(bodies, lambda case: refused(client.post(case[0], json=case[1], headers=case[2]), 422, set(case[1]) & far))
    assert [count(model) for model in (PayoutRun, ReconciliationRun, PremiumProgramme, Lot)] == [0, 0, 0, 0]


def test_dates_just_inside_the_calendar_are_taken(client: FlaskClient, shop: Shop) -> None:
    manifest = f"/api/v1/fulfilment-points/{shop.station.id}/manifest"
    for path, query in [
        ("/api/v1/orders", {"created_to": "9998-12-31"}),
        ("/api/v1/orders", {"created_from": "0001-01-01"}),
        ("/api/v1/listings", {"updated_since": "0001-01-01T00:00:00-01:00"}),
        ("/api/v1/listings", {"harvested_after": "0001-01-01"}),
        (manifest, {"date": "9998-12-31"}),
    ]:
        response = client.get(path, query_string=query, headers=shop.operator_h)
        assert response.status_code == 200, (path, query, response.json)


# Amounts and grams whose products would overflow


def test_the_largest_price_rate_and_grams_are_charged_exactly(app: Flask, client: FlaskClient, shop: Shop) -> None:
    """price x grams and rate x grams at their bounds stay inside a bigint,
    through the order's total and the premium's reservation (in a
    marketplace whose buyers may hold that much unpaid)."""
    app.config["BUYER_MAX_UNPAID_G"] = MAX_LINE_G
    big = ListingFactory(farm=shop.orchard, price_per_kg=MAX_PRICE_PER_KG, stock_g=MAX_STOCK_G, step_g=1)
    programme = programme_body(rate_per_kg=MAX_RATE_PER_KG, funded_by="buyer", valid_from="2020-01-01T00:00:00Z")
    del programme["budget_cap"]  # buyers pay a buyer-funded premium: no budget
    response = client.post("/api/v1/premium-programmes", json=programme, headers=shop.operator_h)
    assert response.status_code == 201, response.json
    order = place(client, shop, (big, MAX_LINE_G))
    assert order["total"] == line_amount(MAX_PRICE_PER_KG, MAX_LINE_G) + line_amount(MAX_RATE_PER_KG, MAX_LINE_G)
    queries = [
        {"price_min": str(2**63)},
        {"price_max": f"-{2**63 + 1}"},
        {"limit": str(10**30)},
        {"farm_id": "1" * 5000},
    ]
    each(queries, lambda query: refused(client.get("/api/v1/listings", query_string=query), 422, set(query)))


# Stripe events validly signed but malformed


def deliver(client: FlaskClient, payload: bytes, *, at: int | None = None) -> Any:
    return client.post(
        "/api/v1/webhooks/stripe",
        data=payload,
        headers={"Stripe-Signature": sign(payload, WEBHOOK_SECRET, at), "Content-Type": "application/json"},
    )


def event(kind: str = "payment_intent.succeeded", obj: Any = None, **fields: Any) -> dict[str, Any]:
    body = {"id": "evt_1", "object": "event", "type": kind, "created": int(time.time()) - 60}
    return body | {"data": {"object": {"id": "pi_1", "amount_received": 1} if obj is None else obj}} | fields


def without(name: str) -> dict[str, Any]:
    return {key: value for key, value in event().items() if key != name}


def test_a_signed_but_malformed_stripe_event_is_400_and_stored_nowhere(client: FlaskClient) -> None:
    malformed: dict[str, Any] = {
        "a list": [],
        "an empty object": {},
        "null": None,
        "a string": "evt_1",
        "no id": without("id"),
        "a numeric id": event(id=5),
        "an empty id": event(id=""),
        "an id too long": event(id="evt_" + "x" * 300),
        "no type": without("type"),
        "no data": without("data"),
        "no data.object": event(data={}),
        "data.object a list": event(obj=[]),
        "no created": without("created"),
        "created as text": event(created="yesterday"),
        "created after it was signed": event(created=int(time.time()) + 86_400),
        "an intent without an id": event(obj={"amount_received": 1}),
        "an amount as text": event(obj={"id": "pi_1", "amount_received": "100"}),
        "an amount past a bigint": event(obj={"id": "pi_1", "amount_received": 2**63}),
        "a negative amount": event(obj={"id": "pi_1", "amount_received": -1}),
        "no amount on a capture": event(obj={"id": "pi_1"}),
        "a charge that is a number": event(obj={"id": "pi_1", "amount_received": 1, "latest_charge": 7}),
        "an error that is text": event("payment_intent.payment_failed", {"id": "pi_1", "last_payment_error": "no"}),
        "refund metadata not text": event("refund.updated", {"id": "re_1", "metadata": {"key": 5}}),
        "account capabilities a list": event("account.updated", {"id": "acct_1", "capabilities": ["transfers"]}),
        "an unpaired surrogate": event("customer.created", {"id": "cus_\ud800"}),
        "nested past the limit": event("customer.created", json.loads(strategies.nested_json(MAX_JSON_DEPTH))),
    }
    payloads = [json.dumps(body).encode() for body in malformed.values()] + [b'{"id": "evt_\xff"}']
    each(payloads, lambda payload: refused(deliver(client, payload), 400))
    assert count(StripeEvent) == 0


def test_an_event_signed_far_in_the_future_is_refused_like_a_stale_one(client: FlaskClient) -> None:
    payload = json.dumps(event("customer.created", {"id": "cus_1", "anything": {"at": ["all"]}})).encode()
    stale = refused(deliver(client, payload, at=int(time.time()) - 3_600), 400)
    future = refused(deliver(client, payload, at=int(time.time()) + 3_600), 400)
    assert stale["type"] == future["type"] == "/problems/bad-signature"
    assert count(StripeEvent) == 0
    # Within the tolerance either way, as clocks differ; a type we do not use is kept and ignored.
    assert deliver(client, payload, at=int(time.time()) + 60).json == {"result": "ignored"}
    assert count(StripeEvent) == 1


# Line breaks and control characters in text that ends up in a header


def test_control_characters_in_one_line_text_are_422(client: FlaskClient, shop: Shop) -> None:
    """Each case: where, what is sent, who sends it, and the field refused."""
    names = ["Navel\r\nBcc: evil@example.test", "Navel\n", "Nav\tel", "Navel\x1b[0m", "Navel\x85", "A\u2028B"]
    listing = f"/api/v1/listings/{shop.oranges.id}"
    cases: list[tuple[str, str, dict[str, Any], dict[str, str], str]] = []
    for name in names:
        cases += [
            ("POST", "/api/v1/listings", listing_body(shop, product_name=name), shop.orchard_h, "product_name"),
            ("PATCH", listing, {"product_name": name}, shop.orchard_h, "product_name"),
        ]
    farm = {"name": "Liu\r\norchard", "village": "Xialiao", "county": "Xunwu", "province": "Jiangxi"}
    brand = {"code": "gannan", "name_zh": "\u8d63\u5357", "name_en": "Gannan", "counties": ["\u5bfb\u4e4c\u53bf\n"]}
    category = {"code": "citrus", "name_zh": "\u67d1\u6a58\x07", "name_en": "Citrus"}
    cases += [
        ("POST", "/api/v1/farms", farm, shop.orchard_h, "name"),
        ("POST", "/api/v1/brands", brand, shop.operator_h, "counties.0"),
        ("POST", "/api/v1/categories", category, shop.operator_h, "name_zh"),
        ("POST", "/api/v1/listings", listing_body(shop, description="Sweet.\x1b[2J"), shop.orchard_h, "description"),
    ]

    def check(case: tuple[str, str, dict[str, Any], dict[str, str], str]) -> None:
        method, path, body, headers, field = case
        refused(client.open(path, method=method, json=body, headers=headers), 422, {field})

    each(cases, check)
    refused(client.get("/api/v1/listings", query_string={"q": "navel\r\n"}), 422, {"q"})
    assert (count(Listing), count(Farm)) == (3, 2)
    # Free text (a description, a reason, an address) keeps its lines and tabs.
    body = listing_body(shop, description="Sweet.\r\nPicked\tto order.")
    assert client.post("/api/v1/listings", json=body, headers=shop.orchard_h).status_code == 201


def read(path: Path) -> mailbox.mbox:
    """The mailbox, its headers decoded."""
    return mailbox.mbox(path, factory=lambda file: email.message_from_binary_file(file, policy=email.policy.default))


@pytest.fixture
def mbox(app: Flask, tmp_path: Path) -> Path:
    path = tmp_path / "outbox.mbox"
    app.config.update(SMTP_HOST="", SMS_GATEWAY_URL="", NOTIFICATION_MAILBOX=str(path))
    return path


def test_a_name_with_a_line_break_still_goes_out_on_one_subject_line(mbox: Path) -> None:
    """A product named before names were checked: its stock.low email goes
    out, subject on one line, rather than staying pending for ever."""
    subject = "Navel\r\nBcc: evil@example.test\x07 \u5e93\u5b58\u4e0d\u8db3"
    message = Message(recipient="farmer@example.test", subject=subject, body="Low.", idempotency_key="n-1")
    MailboxNotifier(mbox, Channel.EMAIL, "market@example.test").send(message)
    (sent,) = list(read(mbox))
    assert sent["Subject"] == "Navel Bcc: evil@example.test \u5e93\u5b58\u4e0d\u8db3"
    assert sent["Bcc"] is None

    farm = FarmFactory(name="Liu\r\norchard")
    listing = ListingFactory(farm=farm, product_name="Navel\r\nBcc: evil@example.test", low_stock_threshold_g=10**6)
    assert notifications.handle_event("outbox-1", "listing.stock_low", listing_id=listing.id) >= 1
    for notification_id in db.session.scalars(select(Notification.id)).all():
        notifications.send_notification(notification_id)
    db.session.expire_all()
    assert set(db.session.scalars(select(Notification.status))) == {DeliveryStatus.SENT}
    subjects = [message["Subject"] for message in read(mbox) if message["X-Market-Channel"] == "email"]
    assert len(subjects) >= 2
    assert all("\n" not in subject and "\r" not in subject for subject in subjects)


# Ids and numbers in other scripts' digits

# Arabic-Indic, fullwidth, Devanagari and double-struck 1; ASCII and Arabic-Indic 11.
OTHER_ONES = ["\u0661", "\uff11", "\u0967", "\U0001d7d9", "1\u0661"]


def test_a_path_id_is_ascii_digits_within_the_column_or_404(client: FlaskClient, shop: Shop) -> None:
    segments = [*OTHER_ONES, "+1", "-1", " 1", "1" * 5_000, str(MAX_ID + 1)]
    each(segments, lambda segment: refused(client.get(f"/api/v1/farms/{quote(segment)}"), 404))
    assert client.get(f"/api/v1/farms/{shop.orchard.id}").status_code == 200


def test_a_number_or_date_in_a_query_in_other_digits_is_422(client: FlaskClient) -> None:
    queries = [
        {"limit": "\u0661\u0660"},
        {"limit": "\uff11\uff10"},
        {"limit": "1_0"},
        {"limit": " 10"},
        {"price_min": "\u0967\u0966\u0966"},
        {"farm_id": "\U0001d7d9"},
        {"harvested_after": "\u0662\u0660\u0662\u0666-\u0660\u0661-\u0660\u0661"},
        {"updated_since": "\uff12\uff10\uff12\uff16-\uff10\uff11-\uff10\uff11T00:00:00Z"},
    ]
    each(queries, lambda query: refused(client.get("/api/v1/listings", query_string=query), 422, set(query)))


# Parameters an operation does not take


def test_an_unknown_query_parameter_is_422_by_name_and_writes_nothing(client: FlaskClient, shop: Shop) -> None:
    cases = [
        ("/api/v1/listings", {"colour": "orange", "limit": "10"}),
        ("/api/v1/listings", {"Limit": "10"}),
        ("/api/v1/me", {"expand": "farms"}),
        ("/api/v1/orders", {"dry_run": "1"}),
        (f"/api/v1/fulfilment-points/{shop.station.id}/manifest", {"day": "2026-11-01"}),
    ]
    each(
        cases,
        lambda case: refused(
            client.get(case[0], query_string=case[1], headers=shop.operator_h), 422, set(case[1]) - {"limit"}
        ),
    )
    body = {"lines": [{"listing_id": shop.oranges.id, "grams": 2000}], "fulfilment_point_id": shop.station.id}
    refused(client.post("/api/v1/orders?dry_run=1", json=body, headers=shop.buyer_h), 422, {"dry_run"})
    refused(client.post("/api/v1/webhooks/stripe?test=1", json={}), 422, {"test"})
    assert count(Order) == 0
    db.session.expire_all()
    assert db.session.get(Listing, shop.oranges.id).stock_g == 100_000  # type: ignore[union-attr]


def test_every_operation_documents_the_422_of_an_unknown_query_parameter(client: FlaskClient) -> None:
    paths = client.get("/api/v1/openapi.json").json["paths"]
    undocumented = [
        f"{method.upper()} {path}"
        for path, operations in paths.items()
        for method, operation in operations.items()
        if method in ("get", "post", "put", "patch", "delete") and "422" not in operation["responses"]
    ]
    assert undocumented == []


# Every operation, hostile requests aimed at the edges

EXAMPLES = int(os.environ.get("HOSTILE_EXAMPLES", "4"))
# The fuzz test's settings (derandomised, no deadline, no example database), fewer examples.
HOSTILE_SETTINGS = settings(FUZZ_SETTINGS, max_examples=EXAMPLES)


def send(client: FlaskClient, request: strategies.HostileRequest, headers: dict[str, str]) -> Any:
    query = urlencode(request.query, encoding="utf-8", errors="surrogatepass")
    return client.open(
        request.url + (f"?{query}" if query else ""),
        method=request.method.upper(),
        data=request.body,
        headers=headers | ({"Content-Type": "application/json"} if request.body is not None else {}),
    )


def test_no_hostile_request_to_any_operation_is_answered_with_a_5xx(
    seeded: tuple[Flask, dict[str, str]],  # noqa: F811 (the fixture imported above)
    record_property: Callable[[str, object], None],
) -> None:
    """Every operation of the OpenAPI document, as each role, with
    parameters and bodies aimed at the edges: the answer is never a 5xx,
    and every error is a problem document. The counts are recorded (and
    shown in the run's summary)."""
    app, tokens = seeded
    client = app.test_client()
    operations = strategies.operations(client.get("/api/v1/openapi.json").json)
    assert len(operations) > 40
    role_headers = {
        role: {} if email is None else {"Authorization": f"Bearer {tokens[email]}"} for role, email in ROLES.items()
    }
    counts: Counter[str] = Counter()
    failures: list[str] = []
    for operation in operations:

        @HOSTILE_SETTINGS
        @given(request=strategies.request_for(operation), role=st.sampled_from(sorted(ROLES)))
        def answer_is_a_4xx_problem_or_success(request: strategies.HostileRequest, role: str) -> None:
            response = send(client, request, role_headers[role])
            status = response.status_code
            counts["tried"] += 1
            counts["5xx" if status >= 500 else "4xx" if status >= 400 else "2xx/3xx"] += 1
            assert status < 500, f"{status} {response.get_data(as_text=True)[:300]}"
            if status >= 400:
                assert response.content_type == PROBLEM, response.content_type

        try:
            answer_is_a_4xx_problem_or_success()
        except Exception as exc:  # hypothesis notes the smallest failing request on it
            failures.append(f"{operation.label}: {''.join(traceback.format_exception_only(exc))}")
    summary = {"operations": len(operations)} | {key: counts[key] for key in ("tried", "2xx/3xx", "4xx", "5xx")}
    record_property("counts", summary)
    print(f"hostile requests: {summary}")
    assert not failures, f"{len(failures)} operation(s) answered a 5xx:\n\n" + "\n\n".join(failures)
