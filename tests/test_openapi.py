from __future__ import annotations

from flask.testing import FlaskClient
from openapi_spec_validator import validate


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
