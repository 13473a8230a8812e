"""Preferences, webhook endpoints and the delivery log through the API."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from market.accounts.models import Role
from market.extensions import db
from market.notifications.models import DeliveryStatus, WebhookDelivery
from tests.factories import CategoryFactory, FarmFactory, bearer, token_for, user_with_token
from tests.notifications.receivers import HttpReceiver

PREFS = "/api/v1/me/notification-preferences"
ENDPOINTS = "/api/v1/webhook-endpoints"


def _prefs(client: FlaskClient, headers: dict[str, str]) -> dict[str, dict]:  # type: ignore[type-arg]
    response = client.get(PREFS, headers=headers)
    assert response.status_code == 200
    return {item["event"]: item for item in response.json["items"]}


def test_farmers_hear_of_new_orders_by_sms_and_email_by_default(client: FlaskClient) -> None:
    _, farmer_h = user_with_token(Role.FARMER)
    prefs = _prefs(client, farmer_h)
    assert prefs["order.placed"] == {"event": "order.placed", "channels": ["email", "sms"], "default": True}
    assert {"payout.paid", "payout.failed", "listing.stock_low"} <= set(prefs)
    assert "order.ready_for_pickup" not in prefs


def test_buyers_get_the_pickup_code_by_email_and_sms_by_default(client: FlaskClient) -> None:
    _, buyer_h = user_with_token(Role.BUYER)
    prefs = _prefs(client, buyer_h)
    assert prefs["order.ready_for_pickup"]["channels"] == ["email", "sms"]
    assert prefs["order.shipped"]["channels"] == ["email"]
    assert "order.placed" not in prefs


def test_a_choice_replaces_the_default_for_that_event_only(client: FlaskClient) -> None:
    _, farmer_h = user_with_token(Role.FARMER)
    response = client.put(
        PREFS,
        json={"items": [{"event": "order.placed", "channels": ["sms"]}, {"event": "payout.paid", "channels": []}]},
        headers=farmer_h,
    )
    assert response.status_code == 200, response.json
    prefs = {item["event"]: item for item in response.json["items"]}
    assert prefs["order.placed"] == {"event": "order.placed", "channels": ["sms"], "default": False}
    assert prefs["payout.paid"]["channels"] == []
    assert prefs["payout.failed"]["default"] is True
    assert _prefs(client, farmer_h)["order.placed"]["channels"] == ["sms"]


def test_preferences_for_events_of_another_role_are_refused_by_field(client: FlaskClient) -> None:
    _, buyer_h = user_with_token(Role.BUYER)
    response = client.put(PREFS, json={"items": [{"event": "order.placed", "channels": ["email"]}]}, headers=buyer_h)
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    assert "items.0.event" in response.json["errors"]


def test_an_unknown_channel_is_refused(client: FlaskClient) -> None:
    _, buyer_h = user_with_token(Role.BUYER)
    response = client.put(PREFS, json={"items": [{"event": "order.paid", "channels": ["pigeon"]}]}, headers=buyer_h)
    assert response.status_code == 422
    assert "items.0.channels.0" in response.json["errors"]


def test_webhook_urls_inside_the_network_are_refused(client: FlaskClient) -> None:
    _, headers = user_with_token(Role.BUYER)
    for url in (
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
    ):
        response = client.post(ENDPOINTS, json={"url": url, "event_types": ["order.paid"]}, headers=headers)
        assert response.status_code == 422, url
        assert response.mimetype == "application/problem+json"
        assert "url" in response.json["errors"], url


def test_webhook_urls_that_are_not_http_are_refused(client: FlaskClient) -> None:
    _, headers = user_with_token(Role.BUYER)
    for url in ("ftp://example.org/hook", "file:///etc/passwd", "gopher://x", "not a url"):
        response = client.post(ENDPOINTS, json={"url": url, "event_types": ["order.paid"]}, headers=headers)
        assert response.status_code == 422, url
        assert "url" in response.json["errors"]


def test_unknown_event_types_are_refused(client: FlaskClient) -> None:
    _, headers = user_with_token(Role.BUYER)
    response = client.post(
        ENDPOINTS, json={"url": "http://93.184.215.14/hook", "event_types": ["order.teleported"]}, headers=headers
    )
    assert response.status_code == 422
    assert "event_types.0" in response.json["errors"]


def test_the_secret_is_shown_once_and_endpoints_are_private(app: Flask, client: FlaskClient) -> None:
    app.config["WEBHOOK_ALLOW_PRIVATE_NETWORKS"] = ["127.0.0.0/8"]
    _, headers = user_with_token(Role.BUYER)
    _, other_h = user_with_token(Role.BUYER)
    created = client.post(
        ENDPOINTS, json={"url": "http://127.0.0.1:9/hook", "event_types": ["order.paid"]}, headers=headers
    )
    assert created.status_code == 201, created.json
    assert created.json["secret"].startswith("whsec_")
    endpoint_id = created.json["id"]

    shown = client.get(f"{ENDPOINTS}/{endpoint_id}", headers=headers)
    assert shown.status_code == 200
    assert "secret" not in shown.json
    assert [e["id"] for e in client.get(ENDPOINTS, headers=headers).json["items"]] == [endpoint_id]
    assert client.get(ENDPOINTS, headers=other_h).json["items"] == []
    assert client.get(f"{ENDPOINTS}/{endpoint_id}", headers=other_h).status_code == 404
    assert client.get(f"{ENDPOINTS}/{endpoint_id}/deliveries", headers=other_h).status_code == 404


def test_an_endpoint_can_be_paused_and_moved_but_not_inward(app: Flask, client: FlaskClient) -> None:
    app.config["WEBHOOK_ALLOW_PRIVATE_NETWORKS"] = ["127.0.0.0/8"]
    _, headers = user_with_token(Role.BUYER)
    endpoint_id = client.post(
        ENDPOINTS, json={"url": "http://127.0.0.1:9/a", "event_types": ["order.paid"]}, headers=headers
    ).json["id"]
    moved = client.patch(f"{ENDPOINTS}/{endpoint_id}", json={"url": "http://10.0.0.1/b"}, headers=headers)
    assert moved.status_code == 422
    assert "url" in moved.json["errors"]
    paused = client.patch(f"{ENDPOINTS}/{endpoint_id}", json={"active": False}, headers=headers)
    assert paused.status_code == 200
    assert paused.json["active"] is False
    assert client.delete(f"{ENDPOINTS}/{endpoint_id}", headers=headers).status_code == 204
    assert client.get(f"{ENDPOINTS}/{endpoint_id}", headers=headers).status_code == 404


def test_redeliver_adds_a_new_log_entry_with_the_same_body(
    app: Flask, client: FlaskClient, receiver: HttpReceiver
) -> None:
    app.config["WEBHOOK_ALLOW_PRIVATE_NETWORKS"] = ["127.0.0.0/8"]
    _, headers = user_with_token(Role.BUYER)
    endpoint_id = client.post(
        ENDPOINTS, json={"url": receiver.url("/hook"), "event_types": ["order.paid"]}, headers=headers
    ).json["id"]
    failed = WebhookDelivery(
        occurrence="outbox-1",
        endpoint_id=endpoint_id,
        event="order.paid",
        payload='{"id":"outbox-1","type":"order.paid"}',
        status=DeliveryStatus.FAILED,
        attempts=8,
        response_status=500,
        last_error="HTTP 500",
    )
    db.session.add(failed)
    db.session.commit()

    response = client.post(f"{ENDPOINTS}/{endpoint_id}/deliveries/{failed.id}/redeliver", headers=headers)
    assert response.status_code == 202, response.json
    assert response.json["status"] == "pending"
    assert response.json["event_id"].startswith("outbox-1~")
    log = client.get(f"{ENDPOINTS}/{endpoint_id}/deliveries", headers=headers).json["items"]
    assert [(d["id"], d["status"], d["response_status"]) for d in log] == [
        (response.json["id"], "pending", None),
        (failed.id, "failed", 500),
    ]
    assert client.post(f"{ENDPOINTS}/{endpoint_id}/deliveries/999/redeliver", headers=headers).status_code == 404


def test_the_low_stock_threshold_is_set_on_create_and_update(client: FlaskClient) -> None:
    farm = FarmFactory()
    category = CategoryFactory()
    headers = bearer(token_for(farm.owner))
    body = {
        "farm_id": farm.id,
        "product_name": "Navel orange",
        "category": category.code,
        "price_per_kg": 1200,
        "stock_g": 20_000,
        "min_order_g": 1000,
        "step_g": 500,
        "low_stock_threshold_g": 5_000,
    }
    created = client.post("/api/v1/listings", json=body, headers=headers)
    assert created.status_code == 201, created.json
    assert created.json["low_stock_threshold_g"] == 5_000
    url = f"/api/v1/listings/{created.json['id']}"
    assert (
        client.patch(url, json={"low_stock_threshold_g": None}, headers=headers).json["low_stock_threshold_g"] is None
    )
    refused = client.patch(url, json={"low_stock_threshold_g": 0}, headers=headers)
    assert refused.status_code == 422
    assert "low_stock_threshold_g" in refused.json["errors"]
