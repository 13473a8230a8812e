from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from market.accounts.models import Role
from market.catalog.models import Farm, FarmStatus, FulfilmentPointKind
from market.extensions import db
from tests.factories import FarmFactory, FulfilmentPointFactory, user_with_token

FARM = {
    "name": "Liu family navel orange orchard",
    "village": "下廖村",
    "county": "寻乌县",
    "province": "江西省",
    "contact_name": "Liu Jianguo",
    "contact_phone": "+86 137 0000 0000",
}
CENTRE = {
    "kind": "county_centre",
    "name": "寻乌县农村电商服务中心",
    "county": "寻乌县",
    "province": "江西省",
    "address": "长宁镇解放路 1 号",
    "opening_hours": "Mon-Sat 08:00-18:00",
}


def test_farmer_creates_a_pending_farm_and_edits_it(client: FlaskClient) -> None:
    farmer, headers = user_with_token(Role.FARMER)
    created = client.post("/api/v1/farms", json=FARM, headers=headers)
    assert created.status_code == 201, created.json
    assert created.json["status"] == "pending"
    assert created.json["owner_id"] == farmer.id
    assert created.json["payout_method"] is None

    farm_id = created.json["id"]
    edited = client.patch(
        f"/api/v1/farms/{farm_id}", json={"payout_method": "bank_transfer", "description": "Hillside"}, headers=headers
    )
    assert edited.status_code == 200, edited.json
    assert edited.json["payout_method"] == "bank_transfer"
    assert edited.json["name"] == FARM["name"]


def test_unknown_payout_method_is_refused(client: FlaskClient) -> None:
    _, headers = user_with_token(Role.FARMER)
    response = client.post("/api/v1/farms", json={**FARM, "payout_method": "paypal"}, headers=headers)
    assert response.status_code == 422
    assert "payout_method" in response.json["errors"]


def test_a_pending_farm_is_hidden_until_an_operator_verifies_it(client: FlaskClient) -> None:
    _, farmer = user_with_token(Role.FARMER)
    _, operator = user_with_token(Role.OPERATOR)
    farm_id = client.post("/api/v1/farms", json=FARM, headers=farmer).json["id"]

    assert client.get(f"/api/v1/farms/{farm_id}").status_code == 404
    assert client.get(f"/api/v1/farms/{farm_id}", headers=farmer).status_code == 200
    assert client.get("/api/v1/farms").json["items"] == []

    verified = client.post(f"/api/v1/farms/{farm_id}/verify", headers=operator)
    assert verified.status_code == 200 and verified.json["status"] == "verified"
    assert client.get(f"/api/v1/farms/{farm_id}").json["name"] == FARM["name"]
    assert client.post(f"/api/v1/farms/{farm_id}/verify", headers=operator).status_code == 409

    suspended = client.post(f"/api/v1/farms/{farm_id}/suspend", headers=operator)
    assert suspended.json["status"] == "suspended"
    assert client.get(f"/api/v1/farms/{farm_id}").status_code == 404


def test_another_farmers_farm_is_not_found_and_unchanged(client: FlaskClient) -> None:
    farm = FarmFactory(status=FarmStatus.PENDING)
    _, other = user_with_token(Role.FARMER)
    response = client.patch(f"/api/v1/farms/{farm.id}", json={"name": "Mine now"}, headers=other)
    assert response.status_code == 404
    assert response.content_type == "application/problem+json"
    db.session.expire_all()
    assert db.session.get(Farm, farm.id).name != "Mine now"  # type: ignore[union-attr]


def test_farm_list_filters_by_place_and_operators_by_status(client: FlaskClient) -> None:
    FarmFactory(county="寻乌县", province="江西省")
    FarmFactory(county="青龙满族自治县", province="河北省")
    FarmFactory(county="永顺县", province="湖南省", status=FarmStatus.PENDING)
    _, operator = user_with_token(Role.OPERATOR)

    hebei = client.get("/api/v1/farms", query_string={"province": "河北省"}).json["items"]
    assert [f["county"] for f in hebei] == ["青龙满族自治县"]
    assert len(client.get("/api/v1/farms").json["items"]) == 2
    pending = client.get("/api/v1/farms", query_string={"status": "pending"}, headers=operator).json["items"]
    assert [f["county"] for f in pending] == ["永顺县"]


def test_a_farmer_lists_its_own_farms_pending_ones_too(client: FlaskClient) -> None:
    farmer, headers = user_with_token(Role.FARMER)
    mine = [FarmFactory(owner=farmer).id, FarmFactory(owner=farmer, status=FarmStatus.PENDING).id]
    FarmFactory()

    own = client.get("/api/v1/farms", query_string={"owner_id": farmer.id}, headers=headers).json["items"]
    assert [farm["id"] for farm in own] == mine
    # Anyone else sees the verified one only.
    public = client.get("/api/v1/farms", query_string={"owner_id": farmer.id}).json["items"]
    assert [farm["id"] for farm in public] == mine[:1]
    assert client.get("/api/v1/farms", query_string={"owner_id": 0}).status_code == 422


def test_fulfilment_points_form_a_centre_and_its_stations(client: FlaskClient) -> None:
    _, operator = user_with_token(Role.OPERATOR)
    centre = client.post("/api/v1/fulfilment-points", json=CENTRE, headers=operator)
    assert centre.status_code == 201, centre.json
    station = client.post(
        "/api/v1/fulfilment-points",
        json={
            **CENTRE,
            "kind": "village_station",
            "name": "下廖村服务站",
            "village": "下廖村",
            "address": "下廖村委会旁",
            "parent_id": centre.json["id"],
        },
        headers=operator,
    )
    assert station.status_code == 201, station.json
    FulfilmentPointFactory(county="永顺县", province="湖南省")

    stations = client.get("/api/v1/fulfilment-points", query_string={"kind": "village_station"}).json["items"]
    assert [s["name"] for s in stations] == ["下廖村服务站"]
    in_xunwu = client.get("/api/v1/fulfilment-points", query_string={"county": "寻乌县"}).json["items"]
    assert len(in_xunwu) == 2
    hunan = client.get("/api/v1/fulfilment-points", query_string={"province": "湖南省"}).json["items"]
    assert len(hunan) == 1

    renamed = client.patch(
        f"/api/v1/fulfilment-points/{station.json['id']}", json={"opening_hours": "daily 07:00-20:00"}, headers=operator
    )
    assert renamed.json["opening_hours"] == "daily 07:00-20:00"


def test_a_station_must_belong_to_a_county_centre(client: FlaskClient) -> None:
    _, operator = user_with_token(Role.OPERATOR)
    centre = FulfilmentPointFactory()
    station = FulfilmentPointFactory(kind=FulfilmentPointKind.VILLAGE_STATION, parent=centre)
    body = {**CENTRE, "kind": "village_station"}

    orphan = client.post("/api/v1/fulfilment-points", json=body, headers=operator)
    assert orphan.status_code == 422 and "parent_id" in orphan.json["errors"]
    under_station = client.post("/api/v1/fulfilment-points", json={**body, "parent_id": station.id}, headers=operator)
    assert under_station.status_code == 422 and "parent_id" in under_station.json["errors"]
    nested = client.post("/api/v1/fulfilment-points", json={**CENTRE, "parent_id": centre.id}, headers=operator)
    assert nested.status_code == 422 and "parent_id" in nested.json["errors"]


def test_categories_and_brands_are_an_operator_vocabulary(client: FlaskClient) -> None:
    _, operator = user_with_token(Role.OPERATOR)
    created = client.post(
        "/api/v1/categories", json={"code": "citrus", "name_zh": "柑橘", "name_en": "Citrus"}, headers=operator
    )
    assert created.status_code == 201
    again = client.post(
        "/api/v1/categories", json={"code": "citrus", "name_zh": "柑橘", "name_en": "Citrus"}, headers=operator
    )
    assert again.status_code == 409 and "code" in again.json["errors"]
    assert [c["code"] for c in client.get("/api/v1/categories").json["items"]] == ["citrus"]

    brand = client.post(
        "/api/v1/brands",
        json={"code": "gannan-navel", "name_zh": "赣南脐橙", "name_en": "Gannan Navel Orange", "counties": ["寻乌县"]},
        headers=operator,
    )
    assert brand.status_code == 201, brand.json
    widened = client.patch(
        f"/api/v1/brands/{brand.json['id']}", json={"counties": ["寻乌县", "安远县", "信丰县"]}, headers=operator
    )
    assert widened.json["counties"] == ["信丰县", "安远县", "寻乌县"]
    assert client.get("/api/v1/brands").json["items"][0]["counties"] == widened.json["counties"]


def test_a_farm_is_in_mainland_china_unless_it_says_otherwise_and_stripe_cannot_pay_it_there(
    client: FlaskClient,
) -> None:
    _, headers = user_with_token(Role.FARMER)
    created = client.post("/api/v1/farms", json=FARM, headers=headers)
    assert created.json["country"] == "CN"
    refused = client.post("/api/v1/farms", json={**FARM, "payout_method": "stripe"}, headers=headers)
    assert refused.status_code == 422
    assert refused.mimetype == "application/problem+json"
    assert "payout_method" in refused.json["errors"]
    # Outside mainland China, Stripe still needs to be set up on the
    # marketplace (STRIPE_SECRET_KEY); it is not here.
    abroad = client.post("/api/v1/farms", json={**FARM, "country": "SG", "payout_method": "stripe"}, headers=headers)
    assert abroad.status_code == 422
    assert abroad.json["type"] == "/problems/stripe-cannot-pay-farm"
    assert "STRIPE_SECRET_KEY" in abroad.json["detail"]
    assert abroad.json["payout_method"] == "bank_transfer"


def test_stripe_refused_for_a_farm_being_registered_names_it_by_its_name(app: Flask, client: FlaskClient) -> None:
    _, headers = user_with_token(Role.FARMER)
    body = {**FARM, "payout_method": "stripe"}
    unconfigured = client.post("/api/v1/farms", json=body, headers=headers)
    assert unconfigured.status_code == 422
    assert "so it cannot pay the new farm 'Liu family navel orange orchard': " in unconfigured.json["detail"]
    app.config["STRIPE_SECRET_KEY"] = "sk_test_fake"  # Stripe here, but it pays no farm in mainland China
    in_china = client.post("/api/v1/farms", json=body, headers=headers)
    assert in_china.status_code == 422
    assert in_china.json["detail"].startswith("Stripe cannot pay the new farm 'Liu family navel orange orchard': ")
    assert db.session.scalar(select(func.count(Farm.id))) == 0
