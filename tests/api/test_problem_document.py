"""Problem documents may carry extension members (RFC 9457), and the
OpenAPI document says so: a client validating against it accepts them."""

from __future__ import annotations

import jsonschema
from flask.testing import FlaskClient

from tests.shop import Shop


def test_an_out_of_stock_problem_matches_the_documented_problem_schema(client: FlaskClient, shop: Shop) -> None:
    body = {
        "lines": [{"listing_id": shop.oranges.id, "grams": shop.oranges.stock_g + 1000}],
        "fulfilment_point_id": shop.station.id,
    }
    response = client.post("/api/v1/orders", json=body, headers=shop.buyer_h)
    assert response.status_code == 409
    problem = response.get_json(force=True)
    assert problem["short_lines"]  # an extension member
    schema = client.get("/api/v1/openapi.json").json["components"]["schemas"]["Problem"]
    jsonschema.validate(problem, schema)
