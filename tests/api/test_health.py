from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from market import create_app
from tests.conftest import settings_for


def test_healthz_says_the_process_is_up(client: FlaskClient) -> None:
    assert client.get("/healthz").json == {"status": "ok"}


def test_readyz_checks_database_and_broker(client: FlaskClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200, response.json
    assert response.json["checks"] == {"database": "ok", "broker": "ok"}


def test_readyz_names_the_broker_when_it_is_unreachable(app: Flask, client: FlaskClient) -> None:
    app.extensions["celery"].conf.broker_url = "redis://127.0.0.1:1/0"
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.content_type == "application/problem+json"
    assert response.json["checks"] == {"database": "ok", "broker": "failed"}
    assert response.json["detail"].startswith("broker:")


def test_readyz_names_the_database_when_it_is_unreachable(app: Flask) -> None:
    broken = create_app(settings_for("sqlite:////nonexistent-dir/market.sqlite3"))
    broken.extensions["celery"].conf.broker_url = app.extensions["celery"].conf.broker_url
    response = broken.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json["checks"]["database"] == "failed"
