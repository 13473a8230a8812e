"""Registering sales channels and seeing their sync state."""

from __future__ import annotations

from flask.testing import FlaskClient

from market.accounts.models import Role
from tests.factories import user_with_token
from tests.inventory.conftest import CHANNELS, Stall, create_channel, other_farmer


def test_a_channel_shows_its_secret_once_and_its_sync_state_always(client: FlaskClient, stall: Stall) -> None:
    created = create_channel(client, stall, feed_url="http://127.0.0.1:9/feed.json", pull_interval_seconds=600)
    assert created["secret"].startswith("whsec_")
    assert created["next_run_at"] is not None
    shown = client.get(f"{CHANNELS}/{created['id']}", headers=stall.farmer_h).json
    assert "secret" not in shown
    assert {k: shown[k] for k in ("last_success_at", "last_error", "feed_format", "pull_interval_seconds")} == {
        "last_success_at": None,
        "last_error": None,
        "feed_format": "json",
        "pull_interval_seconds": 600,
    }


def test_farmers_see_their_channels_and_operators_see_all(client: FlaskClient, stall: Stall) -> None:
    created = create_channel(client, stall)
    _, operator_h = user_with_token(Role.OPERATOR)
    stranger_h = other_farmer()
    assert [c["id"] for c in client.get(CHANNELS, headers=stall.farmer_h).json["items"]] == [created["id"]]
    assert [c["id"] for c in client.get(CHANNELS, headers=operator_h).json["items"]] == [created["id"]]
    assert client.get(CHANNELS, headers=stranger_h).json["items"] == []
    assert client.get(f"{CHANNELS}/{created['id']}", headers=stranger_h).status_code == 404
    assert client.get(f"{CHANNELS}/{created['id']}", headers=operator_h).status_code == 200
    assert client.delete(f"{CHANNELS}/{created['id']}", headers=stranger_h).status_code == 404


def test_channel_urls_inside_the_network_or_not_http_are_refused(
    app: object, client: FlaskClient, stall: Stall
) -> None:
    client.application.config["WEBHOOK_ALLOW_PRIVATE_NETWORKS"] = []
    body = {"farm_id": stall.farm.id, "name": "Shop"}
    for field, url in [
        ("push_url", "http://127.0.0.1/stock"),
        ("push_url", "http://10.0.0.8/stock"),
        ("feed_url", "http://[fe80::1]/feed"),
        ("feed_url", "ftp://example.org/feed.csv"),
    ]:
        response = client.post(CHANNELS, json=body | {field: url}, headers=stall.farmer_h)
        assert response.status_code == 422, url
        assert response.mimetype == "application/problem+json"
        assert field in response.json["errors"], url


def test_a_channel_belongs_to_one_of_the_farmers_farms(client: FlaskClient, stall: Stall) -> None:
    response = client.post(CHANNELS, json={"farm_id": stall.farm.id, "name": "Shop"}, headers=other_farmer())
    assert response.status_code == 422
    assert "farm_id" in response.json["errors"]
    _, buyer_h = user_with_token(Role.BUYER)
    assert client.post(CHANNELS, json={"farm_id": stall.farm.id, "name": "Shop"}, headers=buyer_h).status_code == 403


def test_a_channel_can_be_paused_and_its_schedule_changed(client: FlaskClient, stall: Stall) -> None:
    created = create_channel(client, stall)
    url = f"{CHANNELS}/{created['id']}"
    changed = client.patch(url, json={"active": False, "pull_interval_seconds": 3600}, headers=stall.farmer_h)
    assert changed.status_code == 200
    assert (changed.json["active"], changed.json["pull_interval_seconds"]) == (False, 3600)
    too_often = client.patch(url, json={"pull_interval_seconds": 5}, headers=stall.farmer_h)
    assert too_often.status_code == 422
    assert "pull_interval_seconds" in too_often.json["errors"]
    assert client.delete(url, headers=stall.farmer_h).status_code == 204
    assert client.get(url, headers=stall.farmer_h).status_code == 404


def test_a_channel_created_again_with_its_idempotency_key_is_the_same_one(client: FlaskClient, stall: Stall) -> None:
    """A sync script whose POST timed out retries it with the same key: one
    channel, whose secret the retry answers again rather than a second
    channel with a secret the script never saw working."""
    keyed = stall.farmer_h | {"Idempotency-Key": "co-op-channel"}
    body = {"farm_id": stall.farm.id, "name": "Co-op"}
    first = client.post(CHANNELS, json=body, headers=keyed)
    replay = client.post(CHANNELS, json=body, headers=keyed)
    assert first.status_code == replay.status_code == 201
    assert replay.json == first.json and replay.headers["Idempotent-Replayed"] == "true"
    assert client.post(CHANNELS, json=body | {"name": "Other"}, headers=keyed).status_code == 422
    assert [c["id"] for c in client.get(CHANNELS, headers=stall.farmer_h).json["items"]] == [first.json["id"]]
