"""Every error under /api is a problem document; none is HTML or a trace."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from market.accounts.models import Role, User
from market.auth import current_actor
from market.extensions import db
from market.orders.models import Order
from tests.factories import user_with_token
from tests.shop import Shop, place

PROBLEM = "application/problem+json"
VALID = {"email": "a@example.test", "password": "a long secret", "name": "A", "roles": ["buyer"]}


def users() -> int:
    return db.session.scalar(select(func.count()).select_from(User)) or 0


def assert_problem(response, status: int) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.content_type == PROBLEM
    body = response.get_json(force=True)
    assert body["status"] == status
    assert body["title"]
    assert body["type"]
    assert "Traceback" not in response.get_data(as_text=True)
    return body


def test_unknown_route_is_404(client: FlaskClient) -> None:
    assert_problem(client.get("/api/v1/no-such-thing"), 404)


def test_wrong_method_is_405_with_allow(client: FlaskClient) -> None:
    response = client.put("/api/v1/me", json={})
    assert_problem(response, 405)
    assert "GET" in response.headers["Allow"]


def test_oversize_body_is_413(app: Flask, client: FlaskClient) -> None:
    app.config["MAX_CONTENT_LENGTH"] = 1000
    response = client.post("/api/v1/accounts", json={**VALID, "name": "x" * 2000})
    assert_problem(response, 413)
    assert users() == 0


def test_non_json_body_is_415(client: FlaskClient) -> None:
    response = client.post("/api/v1/accounts", data="email=a@example.test", content_type="text/plain")
    assert_problem(response, 415)
    assert users() == 0


def test_malformed_json_is_400(client: FlaskClient) -> None:
    response = client.post("/api/v1/accounts", data='{"email": ', content_type="application/json")
    assert_problem(response, 400)
    assert users() == 0


def test_unknown_field_is_named_in_422(client: FlaskClient) -> None:
    body = assert_problem(client.post("/api/v1/accounts", json={**VALID, "is_admin": True}), 422)
    assert body["errors"] == {"is_admin": ["Unknown field."]}
    assert users() == 0


def test_wrong_types_give_per_field_messages(client: FlaskClient) -> None:
    body = assert_problem(client.post("/api/v1/accounts", json={**VALID, "email": 7, "roles": "buyer"}), 422)
    assert set(body["errors"]) == {"email", "roles"}
    assert users() == 0


def test_nested_fields_are_named_by_their_dotted_path(client: FlaskClient, shop: Shop) -> None:
    body = {
        "lines": [{"listing_id": shop.oranges.id, "grams": 1.5}, {"listing_id": shop.oranges.id}, 7],
        "fulfilment_point_id": shop.station.id,
    }
    problem = assert_problem(client.post("/api/v1/orders", json=body, headers=shop.buyer_h), 422)
    assert problem["errors"] == {
        "lines.0.grams": ["Not a valid integer."],
        "lines.1.grams": ["Missing data for required field."],
        "lines.2": ["Invalid input type."],
    }
    assert db.session.scalar(select(func.count()).select_from(Order)) == 0


def test_a_rule_broken_in_a_nested_field_is_named_the_same_way(client: FlaskClient, shop: Shop) -> None:
    body = {"lines": [{"listing_id": shop.oranges.id, "grams": 1}], "fulfilment_point_id": shop.station.id}
    problem = assert_problem(client.post("/api/v1/orders", json=body, headers=shop.buyer_h), 422)
    assert list(problem["errors"]) == ["lines.0.grams"]


def test_missing_token_is_401_with_www_authenticate(client: FlaskClient) -> None:
    response = client.get("/api/v1/me")
    assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="market"'


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer ", "Bearer fm_not-a-real-token"])
def test_bad_authorization_headers_are_401(client: FlaskClient, header: str) -> None:
    assert_problem(client.get("/api/v1/me", headers={"Authorization": header}), 401)


def test_every_endpoint_needing_a_token_answers_401_before_reading_its_arguments(client: FlaskClient) -> None:
    """A request without a token learns nothing of what the endpoint takes:
    unknown or bad arguments, in the query or the body, are not looked at."""
    spec = client.get("/api/v1/openapi.json").json
    checked = 0
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if method == "parameters" or "bearerAuth" not in str(operation.get("security")):
                continue
            response = client.open(
                re.sub(r"\{[^}]+\}", "1", path),
                method=method.upper(),
                query_string={"unknown": "x", "limit": "-1"},
                json={"unknown": ["x"]} if method in ("post", "put", "patch") else None,
            )
            checked += 1
            assert response.status_code == 401, (method, path, response.status_code, response.json)
    assert checked > 80


def test_if_match_on_a_write_with_no_etag_is_412_before_anything_else(client: FlaskClient) -> None:
    """Every write the document gives no If-Match refuses one (other than
    `*`) rather than ignoring it: the condition cannot be checked. A token
    is read first (401), the body after."""
    _, operator = user_with_token(Role.OPERATOR)
    spec = client.get("/api/v1/openapi.json").json
    checked = 0
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if method not in ("post", "put", "patch", "delete"):
                continue
            if "If-Match" in [p["name"] for p in operation.get("parameters", []) if p.get("in") == "header"]:
                continue
            secured = "bearerAuth" in str(operation.get("security"))
            response = client.open(
                re.sub(r"\{[^}]+\}", "1", path),
                method=method.upper(),
                headers={"If-Match": '"x"'} | (operator if secured else {}),
                json={"unknown": ["x"]},
            )
            checked += 1
            body = assert_problem(response, 412)
            assert "no ETag" in body["detail"], (method, path, body)
    assert checked > 60


def test_if_match_star_on_a_write_with_no_etag_asks_for_nothing(client: FlaskClient, shop: Shop) -> None:
    order = place(client, shop, (shop.oranges, 1000))
    url = f"/api/v1/orders/{order['id']}/cancel"

    refused = client.post(url, json={"reason": "x"}, headers=shop.buyer_h | {"If-Match": '"bogus"'})
    assert refused.status_code == 412
    assert client.get(f"/api/v1/orders/{order['id']}", headers=shop.buyer_h).json["status"] == "pending_payment"
    cancelled = client.post(url, json={"reason": "x"}, headers=shop.buyer_h | {"If-Match": "*"})
    assert cancelled.status_code == 200 and cancelled.json["status"] == "cancelled"


def test_wrong_role_is_403(app: Flask, client: FlaskClient) -> None:
    @app.get("/api/v1/operators-only")
    def operators_only() -> dict[str, bool]:
        current_actor().require(Role.OPERATOR)
        return {"ok": True}

    _, buyer = user_with_token(Role.BUYER)
    body = assert_problem(client.get("/api/v1/operators-only", headers=buyer), 403)
    assert "operator" in body["detail"]
    _, operator = user_with_token(Role.OPERATOR)
    assert client.get("/api/v1/operators-only", headers=operator).status_code == 200


def test_conflict_is_409(client: FlaskClient) -> None:
    _, operator = user_with_token(Role.OPERATOR)
    category = {"code": "citrus", "name_zh": "柑橘", "name_en": "Citrus"}
    client.post("/api/v1/categories", json=category, headers=operator)
    assert_problem(client.post("/api/v1/categories", json=category, headers=operator), 409)


def test_unexpected_error_is_500_without_a_trace(app: Flask, client: FlaskClient) -> None:
    app.config["PROPAGATE_EXCEPTIONS"] = False

    @app.get("/api/v1/broken")
    def broken() -> None:
        raise RuntimeError("secret internals")

    response = client.get("/api/v1/broken")
    body = assert_problem(response, 500)
    assert "secret internals" not in response.get_data(as_text=True)
    assert body["detail"].startswith("The server could not complete")
