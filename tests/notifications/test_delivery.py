"""End to end with a real Celery worker on Redis, a real SMTP server and
local HTTP receivers: events from the order flow, payments and payouts reach
every chosen channel exactly once, even when a receiver fails for a while."""

from __future__ import annotations

import inspect
import time
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from celery import Celery
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from market import outbox
from market.accounts.models import Role, User
from market.auth import Actor
from market.catalog.models import Farm, FulfilmentPointKind, Listing
from market.db import utcnow
from market.events import publish
from market.extensions import db
from market.notifications.models import DeliveryStatus, Notification, WebhookDelivery
from market.notifications.outbound import signature
from market.orders import service as orders
from market.orders.service import LineRequest, Weighing
from market.outbox import OutboxMessage
from tests.factories import FarmFactory, FulfilmentPointFactory, ListingFactory, UserFactory, bearer, token_for
from tests.notifications.conftest import SMS_PATH, make_payout
from tests.notifications.receivers import HttpReceiver, SmtpInbox
from tests.workers.conftest import wait_for

README = Path(__file__).resolve().parents[2] / "README.md"
BUYER_EVENTS = [
    "order.paid",
    "order.packed",
    "order.shipped",
    "order.ready_for_pickup",
    "order.cancelled",
    "order.expired",
    "payment.failed",
]


# Copied verbatim from README.md ("Notifications and webhooks").
import hashlib  # noqa: E402
import hmac  # noqa: E402


def verify_market_signature(secret: str, body: bytes, header: str, tolerance: int = 300) -> bool:
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    timestamp, received = fields.get("t", ""), fields.get("v1", "")
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > tolerance:
        return False
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, received)


@dataclass
class Market:
    farmer: User
    farm: Farm
    listing: Listing
    buyer: User
    operator: User
    point_id: int

    def actor(self, user: User, *roles: Role) -> Actor:
        return Actor(user_id=user.id, roles=frozenset(roles))


@pytest.fixture
def market(channels: Flask) -> Market:
    farm = FarmFactory(owner=UserFactory(roles=[Role.FARMER], phone="+8613900000001"))
    centre = FulfilmentPointFactory()
    station = FulfilmentPointFactory(kind=FulfilmentPointKind.VILLAGE_STATION, parent_id=centre.id)
    return Market(
        farmer=farm.owner,
        farm=farm,
        listing=ListingFactory(farm=farm, stock_g=100_000),
        buyer=UserFactory(roles=[Role.BUYER], phone="+8613900000002"),
        operator=UserFactory(roles=[Role.OPERATOR]),
        point_id=station.id,
    )


def _endpoint(client: FlaskClient, user: User, url: str, events: list[str]) -> tuple[int, str]:
    response = client.post(
        "/api/v1/webhook-endpoints", json={"url": url, "event_types": events}, headers=bearer(token_for(user))
    )
    assert response.status_code == 201, response.json
    return response.json["id"], response.json["secret"]


def _place(m: Market) -> int:
    buyer = m.actor(m.buyer, Role.BUYER)
    return orders.place_order(buyer, lines=[LineRequest(m.listing.id, 2000)], fulfilment_point_id=m.point_id).id


def _run_every_event(m: Market) -> tuple[int, int, int, int]:
    """One order through to pickup, one cancelled, one expired; a failed
    payment and a paid payout published as their domains will."""
    farmer, operator = m.actor(m.farmer, Role.FARMER), m.actor(m.operator, Role.OPERATOR)
    collected = _place(m)
    orders.mark_paid(collected)
    order = orders.get_order(operator, collected)
    part, line = order.parts[0], order.parts[0].lines[0]
    orders.pack_part(farmer, collected, part.id, [Weighing(line.id, 2000)])
    orders.ship_part(farmer, collected, part.id)
    orders.receive_part(operator, collected, part.id)

    cancelled = _place(m)
    orders.cancel_order(m.actor(m.buyer, Role.BUYER), cancelled, "changed my mind")
    expired = _place(m)
    orders.expire_unpaid(now=utcnow() + timedelta(days=1))

    publish("payment.failed", order_id=collected)
    payout_id = make_payout(m.farm.id, 5000)
    publish("payout.paid", payout_id=payout_id)
    db.session.commit()
    return collected, cancelled, expired, payout_id


def _all_sent() -> bool:
    db.session.rollback()
    rows = db.session.scalars(select(Notification.status)).all()
    deliveries = db.session.scalars(select(WebhookDelivery.status)).all()
    return bool(rows) and all(s == DeliveryStatus.SENT for s in [*rows, *deliveries])


@pytest.mark.usefixtures("worker")
def test_every_event_reaches_every_chosen_channel_once(
    channels: Flask,
    client: FlaskClient,
    market: Market,
    smtp: SmtpInbox,
    receiver: HttpReceiver,
) -> None:
    receiver.route(SMS_PATH, script=[503])  # the gateway hiccups once
    _, farmer_secret = _endpoint(client, market.farmer, receiver.url("/farmer"), ["order.placed", "payout.paid"])
    _, buyer_secret = _endpoint(client, market.buyer, receiver.url("/buyer"), BUYER_EVENTS)

    collected, _, _, payout_id = _run_every_event(market)

    def arrived() -> bool:
        return (
            len(smtp.to(market.farmer.email)) == 7
            and len(smtp.to(market.buyer.email)) == 7
            and receiver.count(SMS_PATH) == 6  # 5 texts, one of them twice (the 503)
            and receiver.count("/farmer") == 4
            and receiver.count("/buyer") == 7
        )

    assert wait_for(arrived, timeout=60)
    assert wait_for(_all_sent, timeout=30)

    # A redelivered event task and a second relay send nothing new.
    celery: Celery = channels.extensions["celery"]
    handled = db.session.scalars(select(OutboxMessage).where(OutboxMessage.task == "notifications.handle_event"))
    for message in handled:
        celery.send_task(message.task, kwargs=message.kwargs, task_id=f"outbox-{message.id}")
    outbox.relay(older_than=timedelta(0))
    time.sleep(1.5)

    assert Counter(str(m["Subject"]) for m in smtp.to(market.farmer.email)) == Counter(
        [
            f"New order #{collected}",
            f"New order #{collected + 1}",
            f"New order #{collected + 2}",
            f"Order #{collected} is paid: pack it",
            f"Order #{collected + 1} was cancelled: do not pack it",
            f"Order #{collected + 2} expired: do not pack it",
            f"Payout #{payout_id} is paid",
        ]
    )
    buyer_subjects = Counter(str(m["Subject"]) for m in smtp.to(market.buyer.email))
    assert sorted(buyer_subjects.values()) == [1] * 7
    assert f"Order #{collected} is ready for pickup" in buyer_subjects
    texts = [r.json() for r in receiver.at(SMS_PATH)]
    assert len(texts) == 6
    assert len({t["reference"] for t in texts}) == 5
    assert sorted(Counter(t["to"] for t in {t["reference"]: t for t in texts}.values()).items()) == [
        ("+8613900000001", 3),  # three new orders
        ("+8613900000002", 2),  # the pickup code and the failed payment
    ]
    code = db.session.scalar(select(Notification.body).where(Notification.event == "order.ready_for_pickup"))
    assert code is not None
    pickup_code = orders.get_order(market.actor(market.buyer, Role.BUYER), collected).pickup_code
    assert pickup_code and pickup_code in code

    buyer_events = [r.json()["type"] for r in receiver.at("/buyer")]
    assert sorted(buyer_events) == sorted(BUYER_EVENTS)
    farmer_events = [r.json()["type"] for r in receiver.at("/farmer")]
    assert sorted(farmer_events) == ["order.placed"] * 3 + ["payout.paid"]
    for request, secret in [
        *((r, buyer_secret) for r in receiver.at("/buyer")),
        *((r, farmer_secret) for r in receiver.at("/farmer")),
    ]:
        assert verify_market_signature(secret, request.body, request.headers["Market-Signature"])


def test_a_receiver_that_fails_then_recovers_gets_the_delivery_later(
    channels: Flask, worker: object, client: FlaskClient, market: Market, receiver: HttpReceiver
) -> None:
    receiver.route("/flaky", script=[500, 503, 502])
    endpoint_id, secret = _endpoint(client, market.buyer, receiver.url("/flaky"), ["payment.failed"])
    order_id = _place(market)
    publish("payment.failed", order_id=order_id)
    db.session.commit()

    assert wait_for(lambda: receiver.count("/flaky") == 4, timeout=30)
    assert wait_for(_all_sent, timeout=10)
    bodies = {r.body for r in receiver.at("/flaky")}
    assert len(bodies) == 1  # every try sends the same event
    for request in receiver.at("/flaky"):
        assert verify_market_signature(secret, request.body, request.headers["Market-Signature"])

    log = client.get(
        f"/api/v1/webhook-endpoints/{endpoint_id}/deliveries", headers=bearer(token_for(market.buyer))
    ).json["items"]
    assert [(d["status"], d["attempts"], d["response_status"], d["last_error"]) for d in log] == [
        ("sent", 4, 200, None)
    ]


def test_a_delivery_is_failed_after_the_limit_and_can_be_sent_again(
    channels: Flask, worker: object, client: FlaskClient, market: Market, receiver: HttpReceiver
) -> None:
    channels.config["WEBHOOK_MAX_ATTEMPTS"] = 2
    receiver.route("/down", status=500)
    endpoint_id, _ = _endpoint(client, market.buyer, receiver.url("/down"), ["payment.failed"])
    publish("payment.failed", order_id=_place(market))
    db.session.commit()
    headers = bearer(token_for(market.buyer))
    deliveries = f"/api/v1/webhook-endpoints/{endpoint_id}/deliveries"

    def failed() -> bool:
        items = client.get(deliveries, headers=headers).json["items"]
        return [(d["status"], d["attempts"], d["response_status"]) for d in items] == [("failed", 2, 500)]

    assert wait_for(failed, timeout=30)
    receiver.route("/down", status=204)
    (first,) = client.get(deliveries, headers=headers).json["items"]
    again = client.post(f"{deliveries}/{first['id']}/redeliver", headers=headers)
    assert again.status_code == 202

    def resent() -> bool:
        items = client.get(deliveries, headers=headers).json["items"]
        return [(d["status"], d["response_status"]) for d in items] == [("sent", 204), ("failed", 500)]

    assert wait_for(resent, timeout=30)
    posts = receiver.at("/down")
    assert len(posts) == 3
    assert posts[-1].body == posts[0].body


def test_the_readme_snippet_is_the_one_tested_here() -> None:
    assert inspect.getsource(verify_market_signature) in README.read_text(encoding="utf-8")


def test_the_snippet_refuses_a_changed_body_a_wrong_secret_and_an_old_timestamp(channels: Flask) -> None:
    body = b'{"id":"outbox-1","type":"order.paid"}'
    now = int(time.time())
    header = signature("whsec_right", body, now)
    assert verify_market_signature("whsec_right", body, header)
    assert not verify_market_signature("whsec_right", body + b" ", header)
    assert not verify_market_signature("whsec_wrong", body, header)
    assert not verify_market_signature("whsec_right", body, signature("whsec_right", body, now - 3600))
    assert not verify_market_signature("whsec_right", body, "garbage")
