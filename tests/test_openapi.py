from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate

from market.api import MarketBlueprint


def test_openapi_document_is_valid(client: FlaskClient) -> None:
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    spec = response.json
    validate(spec)
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert "/api/v1/accounts" in spec["paths"]


def test_errors_are_documented_as_problem_json(client: FlaskClient) -> None:
    spec = client.get("/api/v1/openapi.json").json
    unprocessable = spec["components"]["responses"]["UNPROCESSABLE_ENTITY"]
    assert "application/problem+json" in unprocessable["content"]


def test_docs_page_works_offline(client: FlaskClient) -> None:
    page = client.get("/api/v1/docs")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "https://" not in html  # no CDN: every asset is ours
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "swagger-ui-standalone-preset.js"):
        assert f"/api/v1/docs/assets/{asset}" in html
        served = client.get(f"/api/v1/docs/assets/{asset}")
        assert served.status_code == 200
        assert len(served.data) > 1000


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in {"get", "post", "put", "patch", "delete"}:
                yield path, method, operation


def _json_bodies(spec: dict[str, Any], operation: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for status, response in operation["responses"].items():
        if "$ref" in response:
            continue  # the shared error responses: problem documents
        json_body = response.get("content", {}).get("application/json")
        if json_body is not None:
            yield status, _resolve(spec, json_body["schema"])


def test_no_operation_answers_a_bare_array(client: FlaskClient) -> None:
    spec = client.get("/api/v1/openapi.json").json
    bare = [
        f"{method.upper()} {path} {status}"
        for path, method, operation in _operations(spec)
        for status, schema in _json_bodies(spec, operation)
        if schema.get("type") == "array"
    ]
    assert bare == []


def test_every_list_answers_items_and_next_cursor(client: FlaskClient) -> None:
    spec = client.get("/api/v1/openapi.json").json
    lists: set[str] = set()
    for path, method, operation in _operations(spec):
        if method != "get":
            continue
        paged = any(parameter.get("name") == "cursor" for parameter in operation.get("parameters", []))
        for status, schema in _json_bodies(spec, operation):
            items = _resolve(spec, schema.get("properties", {}).get("items", {}))
            if items.get("type") != "array" and not paged:
                continue
            name = f"GET {path} {status}"
            lists.add(f"GET {path}")
            assert items.get("type") == "array", name
            assert schema["properties"]["next_cursor"] == {
                "type": "string",
                "nullable": True,
                "description": "Pass as cursor for the next page.",
            }, name
            assert {"items", "next_cursor"} <= set(schema["required"]), name
    # The lists that answered bare arrays before are among them.
    assert {
        "GET /api/v1/categories",
        "GET /api/v1/brands",
        "GET /api/v1/listings/{listing_id}/lots",
        "GET /api/v1/orders/{order_id}/refunds",
        "GET /api/v1/ledger/balances",
        "GET /api/v1/payments/attention",
        "GET /api/v1/listings/{listing_id}/premiums",
        "GET /api/v1/listings",
        "GET /api/v1/me/notification-preferences",
    } <= lists


def test_every_201_documents_its_location(client: FlaskClient) -> None:
    spec = client.get("/api/v1/openapi.json").json
    created = [
        (path, method, op["responses"]["201"]) for path, method, op in _operations(spec) if "201" in op["responses"]
    ]
    assert len(created) >= 15
    for path, method, response in created:
        assert response["headers"]["Location"]["schema"] == {"type": "string", "format": "uri-reference"}, (
            f"{method.upper()} {path}"
        )


# The first words an operationId may start with: what the operation does.
# Reading verbs are for GETs only, and GETs use only them.
READING_VERBS = {"list", "get", "download"}
WRITING_VERBS = {
    "activate", "add", "archive", "cancel", "collect", "complete", "confirm", "connect", "create",
    "delete", "deliver", "dispatch", "end", "flag", "grant", "log_in", "pack", "pause", "place", "receive", "record",
    "redeliver", "register", "renew", "request", "resolve", "retry", "revoke", "set", "ship",
    "start", "suspend", "update", "verify",
}  # fmt: skip
# Names generated clients call; renaming one breaks them, so it is done here too, on purpose.
WELL_KNOWN_OPERATIONS = {
    "register_account", "log_in", "get_me",
    "create_farm", "create_listing", "list_listings", "get_listing", "set_stock",
    "place_order", "list_orders", "get_order", "pack_part", "ship_part", "cancel_order",
    "get_payment", "confirm_offline_payment", "request_refund", "receive_stripe_webhook",
    "create_payout_run", "list_payout_runs", "get_payout_run", "confirm_payout", "list_payouts",
    "start_reconciliation", "list_reconciliations", "list_ledger_balances",
}  # fmt: skip
SNAKE_CASE = re.compile(r"[a-z]+(_[a-z]+)*")


def _verb(operation_id: str) -> str | None:
    return next(
        (verb for verb in READING_VERBS | WRITING_VERBS if operation_id == verb or operation_id.startswith(f"{verb}_")),
        None,
    )


def test_every_operation_has_a_unique_snake_case_operation_id_saying_what_it_does(client: FlaskClient) -> None:
    spec = client.get("/api/v1/openapi.json").json
    ids: dict[str, str] = {}
    for path, method, operation in _operations(spec):
        name = f"{method.upper()} {path}"
        operation_id = operation.get("operationId")
        assert operation_id, f"{name} has no operationId"
        assert operation_id not in ids, f"{name} and {ids[operation_id]} are both {operation_id}"
        ids[operation_id] = name
        assert SNAKE_CASE.fullmatch(operation_id), f"{name}: {operation_id} is not snake_case"
        verb = _verb(operation_id)
        assert verb is not None, f"{name}: {operation_id} does not start with a known verb"
        assert (verb in READING_VERBS) == (method == "get"), f"{name}: {operation_id} reads or writes, unlike {method}"
    assert len(ids) >= 90
    assert WELL_KNOWN_OPERATIONS - set(ids) == set()


def test_a_view_serving_two_methods_is_refused_as_it_would_be_two_operations_of_one_id() -> None:
    blp = MarketBlueprint("twice", __name__)
    with pytest.raises(TypeError, match="one view per method"):
        blp.route("/things", methods=["GET", "POST"])


def _response(spec: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in response:
        return spec["components"]["responses"][response["$ref"].rsplit("/", 1)[-1]]  # type: ignore[no-any-return]
    return response


def test_every_answer_with_a_body_documents_it(client: FlaskClient) -> None:
    """What a generated client reads: an error's problem document whatever
    its status, and a CSV download as text."""
    spec = client.get("/api/v1/openapi.json").json
    csv = 0
    for path, method, operation in _operations(spec):
        for status, response in operation["responses"].items():
            name = f"{method.upper()} {path} {status}"
            content = _response(spec, response).get("content", {})
            if status == "default" or int(status) >= 400:
                assert content == {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}, (
                    name
                )
            elif status in ("204", "304"):
                assert content == {}, name
            else:
                assert content, name
                if "text/csv" in content:
                    csv += 1
                    assert content["text/csv"]["schema"]["type"] == "string", name
    assert csv >= 5  # three downloads; the manifest and the impact report, with format=csv


def _subschemas(node: Any) -> Iterator[Any]:
    yield node
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
    for child in children:
        yield from _subschemas(child)


def test_a_nested_schema_that_may_be_null_is_that_schema_or_null(client: FlaskClient) -> None:
    """Not "any object, or that schema", which a generated client reads as an untyped object."""
    spec = client.get("/api/v1/openapi.json").json
    null = {"type": "object", "nullable": True, "enum": [None]}
    assert spec["components"]["schemas"]["Order"]["properties"]["fulfilment_point"] == {
        "anyOf": [null, {"$ref": "#/components/schemas/PointRef"}]
    }
    assert [node for node in _subschemas(spec) if node == {"type": "object", "nullable": True}] == []
    validator = OAS30Validator({"$ref": "#/components/schemas/Order/properties/fulfilment_point", **spec})
    assert validator.is_valid(None)
    assert validator.is_valid({"id": 1, "name": "Xialiao station", "county": "寻乌县"})
    assert not validator.is_valid({"anything": "else"})


def test_the_operations_taking_an_idempotency_key_document_it(client: FlaskClient) -> None:
    spec = client.get("/api/v1/openapi.json").json
    keyed = {
        operation["operationId"]
        for _, _, operation in _operations(spec)
        if any(p.get("in") == "header" and p["name"] == "Idempotency-Key" for p in operation.get("parameters", []))
    }
    assert keyed == {
        "place_order", "place_villager_order", "set_stock", "request_refund", "create_payout_run",
        "start_reconciliation", "record_cash_up", "confirm_cash_up_deposit",
        "create_farm", "create_listing", "add_lot", "create_sales_channel",
    }  # fmt: skip
    # A repeat while the first request runs is a 409, each of them says.
    for _, _, operation in _operations(spec):
        if operation["operationId"] in keyed:
            conflict = operation["responses"]["409"]
            assert "Idempotency-Key is still being processed" in conflict["description"], operation["operationId"]
            assert list(conflict["content"]) == ["application/problem+json"]
