"""Input the database cannot take is refused by name before any query runs:
ids beyond PostgreSQL's integer, text with NUL or unpaired surrogates.
Each of these was a 500 on PostgreSQL."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from market.accounts.models import Role
from market.api import MAX_ID
from tests.api.test_errors import assert_problem
from tests.factories import FulfilmentPointFactory, user_with_token


@pytest.mark.parametrize(
    "path",
    [
        f"/api/v1/orders/{MAX_ID + 1}",
        f"/api/v1/listings/{MAX_ID + 1}",
        "/api/v1/orders/185659799165902144929792",
        f"/api/v1/fulfilment-points/{2**64}/manifest",
    ],
)
def test_an_id_beyond_the_database_integer_in_a_path_is_404(app: Flask, client: FlaskClient, path: str) -> None:
    _, operator_h = user_with_token(Role.OPERATOR)
    assert_problem(client.get(path, headers=operator_h), 404)


def test_the_largest_id_is_still_an_id(app: Flask, client: FlaskClient) -> None:
    _, operator_h = user_with_token(Role.OPERATOR)
    body = assert_problem(client.get(f"/api/v1/orders/{MAX_ID}", headers=operator_h), 404)
    assert body["type"] == "/problems/not-found"


def test_an_id_beyond_the_database_integer_in_a_body_is_422(app: Flask, client: FlaskClient) -> None:
    _, buyer_h = user_with_token(Role.BUYER)
    point = FulfilmentPointFactory()
    body = {"lines": [{"listing_id": 2**70, "grams": 1000}], "fulfilment_point_id": point.id}
    problem = assert_problem(client.post("/api/v1/orders", json=body, headers=buyer_h), 422)
    assert "lines" in problem["errors"]


def test_an_id_beyond_the_database_integer_in_a_query_is_422(app: Flask, client: FlaskClient) -> None:
    problem = assert_problem(client.get("/api/v1/listings", query_string={"farm_id": str(2**63)}), 422)
    assert "farm_id" in problem["errors"]


@pytest.mark.parametrize("text", ["Gan\u0000nan", "Gan\ud803nan"])
def test_text_the_database_cannot_store_is_422_by_field(app: Flask, client: FlaskClient, text: str) -> None:
    _, operator_h = user_with_token(Role.OPERATOR)
    body = {"code": "gannan", "name_zh": text, "name_en": "Gannan", "counties": ["寻乌县", text]}
    problem = assert_problem(client.post("/api/v1/brands", json=body, headers=operator_h), 422)
    assert set(problem["errors"]) == {"name_zh", "counties"}


def test_nul_in_a_search_is_422(app: Flask, client: FlaskClient) -> None:
    problem = assert_problem(client.get("/api/v1/listings", query_string={"q": "navel\u0000"}), 422)
    assert "q" in problem["errors"]


def test_an_integer_beyond_the_database_integer_in_a_query_is_422(app: Flask, client: FlaskClient) -> None:
    problem = assert_problem(client.get("/api/v1/listings", query_string={"price_min": str(2**70)}), 422)
    assert "price_min" in problem["errors"]


def test_every_operation_with_an_id_in_its_path_documents_404(client: FlaskClient) -> None:
    paths = client.get("/api/v1/openapi.json").json["paths"]
    undocumented = [
        f"{method.upper()} {path}"
        for path, operations in paths.items()
        if "{" in path
        for method, operation in operations.items()
        if method in ("get", "post", "put", "patch", "delete") and "404" not in operation["responses"]
    ]
    assert undocumented == []
