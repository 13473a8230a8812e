"""Every event a webhook can subscribe to is delivered as data, not text:
each delivery, made through the real path (publish -> outbox ->
handle_event -> deliveries), validates against the schema the OpenAPI
document publishes for its type, and a farmer's holds only its own lines."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from openapi_schema_validator import OAS30Validator, OAS31Validator
from sqlalchemy import select

from market.accounts.models import Role, User
from market.auth import Actor
from market.catalog.models import Farm, FulfilmentPointKind, Listing
from market.db import business_today, utcnow
from market.events import NOTIFY, publish
from market.extensions import db
from market.inventory.models import SalesChannel
from market.notifications import service
from market.notifications.models import Channel, Notification, WebhookDelivery, WebhookEndpoint
from market.notifications.payloads import EVENT_TYPES, SCHEMA_VERSION, component_name
from market.notifications.templates import TEMPLATES
from market.orders import service as orders
from market.orders.service import LineRequest, Weighing
from market.outbox import OutboxMessage
from market.payments.models import Payment, PaymentStatus, Provider, Refund, RefundStatus
from market.stations.models import CashUp, CashUpStatus
from tests.factories import FarmFactory, FulfilmentPointFactory, ListingFactory, UserFactory, bearer, token_for
from tests.notifications.conftest import make_payout

WEBHOOK_EVENTS = sorted(event for event, template in TEMPLATES.items() if template.audiences)


@dataclass
class Market:
    buyer: User
    operator: User
    farmer: User
    other_farmer: User
    farm: Farm
    other_farm: Farm
    oranges: Listing
    chestnuts: Listing
    point_id: int

    @staticmethod
    def actor(user: User, role: Role) -> Actor:
        return Actor(user_id=user.id, roles=frozenset({role}))


@pytest.fixture
def market(channels: Flask) -> Market:
    farm = FarmFactory(owner=UserFactory(roles=[Role.FARMER], phone="+8613900000001"))
    other = FarmFactory(owner=UserFactory(roles=[Role.FARMER]))
    centre = FulfilmentPointFactory()
    station = FulfilmentPointFactory(kind=FulfilmentPointKind.VILLAGE_STATION, parent_id=centre.id)
    return Market(
        buyer=UserFactory(roles=[Role.BUYER], phone="+8613900000002"),
        operator=UserFactory(roles=[Role.OPERATOR]),
        farmer=farm.owner,
        other_farmer=other.owner,
        farm=farm,
        other_farm=other,
        oranges=ListingFactory(farm=farm, stock_g=100_000),
        chestnuts=ListingFactory(farm=other, stock_g=100_000),
        point_id=station.id,
    )


def _subscribe(client: FlaskClient, user: User, events: list[str]) -> None:
    response = client.post(
        "/api/v1/webhook-endpoints",
        json={"url": f"http://127.0.0.1:9/{user.id}", "event_types": events},
        headers=bearer(token_for(user)),
    )
    assert response.status_code == 201, response.json


def _place(m: Market, *listings: Listing) -> int:
    lines = [LineRequest(listing.id, 2000) for listing in listings]
    return orders.place_order(m.actor(m.buyer, Role.BUYER), lines=lines, fulfilment_point_id=m.point_id).id


def _handle_events() -> None:
    """What the worker does with each event the outbox carries."""
    db.session.commit()
    messages = db.session.scalars(select(OutboxMessage).where(OutboxMessage.task == NOTIFY).order_by(OutboxMessage.id))
    for message in list(messages):
        kwargs = dict(message.kwargs)
        service.handle_event(f"outbox-{message.id}", kwargs.pop("event"), **kwargs)


def _run_every_event(m: Market) -> int:
    """Two farms' order through to a renewed pickup code, one cancelled,
    one expired; what payments, payouts, the catalog and sales channels
    publish. Returns the order picked up."""
    operator = m.actor(m.operator, Role.OPERATOR)
    collected = _place(m, m.oranges, m.chestnuts)
    orders.mark_paid(collected)
    for part in orders.get_order(operator, collected).parts:
        owner = m.actor(part.farm.owner, Role.FARMER)
        orders.pack_part(owner, collected, part.id, [Weighing(line.id, 2050) for line in part.lines])
        orders.ship_part(owner, collected, part.id)
        orders.receive_part(operator, collected, part.id)
    orders.renew_pickup_code(m.actor(m.buyer, Role.BUYER), collected)

    orders.cancel_order(m.actor(m.buyer, Role.BUYER), _place(m, m.oranges, m.chestnuts), "changed my mind")
    _place(m, m.oranges)
    orders.expire_unpaid(now=utcnow() + timedelta(days=1))

    total = orders.get_order(operator, collected).total
    payment = Payment(
        order_id=collected,
        provider=Provider.OFFLINE,
        status=PaymentStatus.CAPTURED,
        currency="CNY",
        amount=total,
        amount_captured=total,
    )
    refund = Refund(
        payment=payment,
        order_id=collected,
        amount=300,
        reason="bruised",
        status=RefundStatus.FAILED,
        failure_reason="account closed",
    )
    db.session.add_all([payment, refund])
    db.session.flush()
    # As the stations domain publishes it when a villager confirms an order placed for them.
    for event in (
        "order.confirmed",
        "payment.failed",
        "payment.hold_expiring",
        "payment.hold_lapsed",
        "payment.renewed",
    ):
        publish(event, order_id=collected)
    publish("refund.failed", order_id=collected, refund_id=refund.id)
    publish("payout.paid", payout_id=make_payout(m.farm.id, 5000))
    publish("payout.failed", payout_id=make_payout(m.farm.id, 500, failed_because="account closed"))
    publish("listing.stock_low", listing_id=m.oranges.id)
    short = CashUp(
        fulfilment_point_id=m.point_id,
        business_day=business_today(),
        expected=total,
        counted=total - 150,
        status=CashUpStatus.SHORT,
        note="a note torn",
        submitted_by=m.buyer.id,
    )
    db.session.add(short)
    db.session.flush()
    publish("cash_up.flagged", cash_up_id=short.id)
    channel = SalesChannel(farm_id=m.farm.id, name="Village shop", secret="whsec_channel")
    db.session.add(channel)
    db.session.flush()
    publish("inventory.sale_refused", channel_id=channel.id, listing_id=m.oranges.id, grams=250_000, stock_g=20_000)
    _handle_events()
    return collected


def _validator(spec: dict[str, Any], event: str) -> OAS30Validator | OAS31Validator:
    schema = {"$ref": f"#/components/schemas/{component_name(event)}", "components": spec["components"]}
    return (OAS31Validator if spec["openapi"].startswith("3.1") else OAS30Validator)(schema)


def _deliveries(user: User) -> list[dict[str, Any]]:
    rows = db.session.scalars(
        select(WebhookDelivery.payload).join(WebhookDelivery.endpoint).where(WebhookEndpoint.user_id == user.id)
    )
    return [json.loads(payload) for payload in rows]


def test_every_event_type_has_a_published_schema(client: FlaskClient) -> None:
    spec = client.get("/api/v1/openapi.json").json
    webhooks = spec.get("webhooks") or spec["x-webhooks"]
    assert sorted(EVENT_TYPES) == WEBHOOK_EVENTS
    assert sorted(webhooks) == WEBHOOK_EVENTS
    for event in WEBHOOK_EVENTS:
        body = webhooks[event]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert body == {"$ref": f"#/components/schemas/{component_name(event)}"}
        assert component_name(event) in spec["components"]["schemas"]


def test_every_delivered_event_validates_against_its_schema(market: Market, client: FlaskClient) -> None:
    for user in (market.buyer, market.farmer, market.operator):
        _subscribe(client, user, WEBHOOK_EVENTS)
    _run_every_event(market)
    spec = client.get("/api/v1/openapi.json").json

    delivered = [json.loads(row.payload) for row in db.session.scalars(select(WebhookDelivery))]
    for body in delivered:
        _validator(spec, body["type"]).validate(body)
        assert body["version"] == SCHEMA_VERSION
    assert sorted({body["type"] for body in delivered}) == WEBHOOK_EVENTS

    # A payload that strays from its schema is refused: the check has teeth.
    (paid,) = [body for body in delivered if body["type"] == "order.paid" and body["data"]["audience"] == "buyer"]
    for broken in (
        paid | {"type": "order.cancelled"},
        paid | {"data": paid["data"] | {"total": "72.00"}},
        paid | {"data": paid["data"] | {"surprise": 1}},
    ):
        assert not _validator(spec, "order.paid").is_valid(broken)


def test_order_events_carry_ids_grams_and_fen(market: Market, client: FlaskClient) -> None:
    _subscribe(client, market.buyer, WEBHOOK_EVENTS)
    collected = _run_every_event(market)
    order = orders.get_order(market.actor(market.buyer, Role.BUYER), collected)

    (packed,) = [b for b in _deliveries(market.buyer) if b["type"] == "order.packed"]
    data = packed["data"]
    assert data["order_id"] == collected
    assert data["status"] == order.status  # as it stands when the event is handled
    assert data["total"] == order.total and isinstance(data["total"], int)
    assert sorted(p["farm_id"] for p in data["parts"]) == sorted([market.farm.id, market.other_farm.id])
    lines = [line for part in data["parts"] for line in part["lines"]]
    assert sorted(line["listing_id"] for line in lines) == sorted([market.oranges.id, market.chestnuts.id])
    assert {(line["ordered_g"], line["weighed_g"]) for line in lines} == {(2000, 2050)}
    assert all(isinstance(line["amount"], int) for line in lines)
    assert {line["id"] for line in lines} == {line.id for part in order.parts for line in part.lines}
    assert "lines" not in packed["display"] or isinstance(packed["display"]["lines"], str)

    (renewed,) = [b for b in _deliveries(market.buyer) if b["type"] == "order.pickup_code_renewed"]
    assert renewed["data"]["pickup_code"] == order.pickup_code


def test_farmers_hear_paid_cancelled_and_expired_about_their_own_lines(market: Market, client: FlaskClient) -> None:
    _subscribe(client, market.farmer, ["order.paid", "order.cancelled", "order.expired"])
    _run_every_event(market)

    heard = _deliveries(market.farmer)
    assert sorted(body["type"] for body in heard) == ["order.cancelled", "order.expired", "order.paid"]
    for body in heard:
        data = body["data"]
        assert data["audience"] == "farmer"
        assert [part["farm_id"] for part in data["parts"]] == [market.farm.id]
        assert {line["listing_id"] for part in data["parts"] for line in part["lines"]} == {market.oranges.id}
        assert data["total"] is None and data["pickup_code"] is None

    # Both farms are told by email (their default channel), in the farmer's words.
    for farmer in (market.farmer, market.other_farmer):
        subjects = db.session.scalars(
            select(Notification.subject).where(
                Notification.user_id == farmer.id,
                Notification.channel == Channel.EMAIL,
                Notification.event.in_(["order.paid", "order.cancelled", "order.expired"]),
            )
        ).all()
        assert any(s.endswith("is paid: pack it") for s in subjects)
        assert any(s.endswith("was cancelled: do not pack it") for s in subjects)
    expired_to_other = db.session.scalars(
        select(Notification).where(
            Notification.user_id == market.other_farmer.id, Notification.event == "order.expired"
        )
    ).all()
    assert expired_to_other == []  # the expired order had no line of theirs


def test_a_farmer_with_two_farms_in_one_order_hears_once_of_both(market: Market, client: FlaskClient) -> None:
    second = FarmFactory(owner=market.farmer)
    tea = ListingFactory(farm=second, stock_g=10_000)
    _subscribe(client, market.farmer, ["order.paid"])
    order_id = _place(market, market.oranges, tea)
    orders.mark_paid(order_id)
    _handle_events()

    (body,) = _deliveries(market.farmer)
    assert sorted(part["farm_id"] for part in body["data"]["parts"]) == sorted([market.farm.id, second.id])
    (email,) = db.session.scalars(
        select(Notification).where(Notification.user_id == market.farmer.id, Notification.event == "order.paid")
    ).all()
    assert market.oranges.product_name in email.body and tea.product_name in email.body


def test_a_renewed_pickup_code_is_sent_to_the_buyer_again(market: Market) -> None:
    collected = _run_every_event(market)
    code = orders.get_order(market.actor(market.buyer, Role.BUYER), collected).pickup_code
    assert code is not None
    sent = db.session.scalars(
        select(Notification).where(
            Notification.user_id == market.buyer.id, Notification.event == "order.pickup_code_renewed"
        )
    ).all()
    assert sorted(n.channel for n in sent) == [Channel.EMAIL, Channel.SMS]
    assert all(code in n.body for n in sent)
    assert {n.recipient for n in sent} == {market.buyer.email, "+8613900000002"}
