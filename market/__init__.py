"""Farm market: a marketplace backend where farmers sell produce to buyers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import flask_swagger_ui
from flask import Flask, Response, request, send_from_directory
from werkzeug.exceptions import UnsupportedMediaType
from werkzeug.middleware.proxy_fix import ProxyFix

import config
from market import auth, cli, console, errors, health, idempotency, outbox
from market.accounts.routes import blp as accounts_blp
from market.api import MarketJSONProvider, MarketRequest
from market.catalog.routes import blp as catalog_blp
from market.commissions.routes import blp as commissions_blp
from market.db import lock_sqlite_for_locked_reads
from market.extensions import api, celery_init_app, db, limiter, migrate, rate_limit_headers
from market.inventory.routes import blp as inventory_blp
from market.ledger.routes import blp as ledger_blp
from market.notifications import payloads
from market.notifications.routes import blp as notifications_blp
from market.orders.routes import blp as orders_blp
from market.payments import gateway as payment_gateway
from market.payments.routes import blp as payments_blp
from market.payouts.routes import blp as payouts_blp
from market.premiums.routes import blp as premiums_blp
from market.reconciliation.routes import blp as reconciliation_blp
from market.reports.routes import blp as reports_blp
from market.stations.routes import blp as stations_blp

API_PREFIX = "/api/v1"
DOCS_ASSETS = Path(flask_swagger_ui.__file__).parent / "dist"
# Request bodies that are not JSON are refused (415) except on these paths,
# which read their raw body themselves.
RAW_BODY_PATHS: frozenset[str] = frozenset()


def _openapi_settings() -> dict[str, Any]:
    return {
        "API_TITLE": "Farm market",
        "API_VERSION": "v1",
        "OPENAPI_VERSION": "3.0.3",
        "OPENAPI_URL_PREFIX": API_PREFIX,
        "OPENAPI_JSON_PATH": "openapi.json",
        "OPENAPI_SWAGGER_UI_PATH": "docs",
        "OPENAPI_SWAGGER_UI_URL": f"{API_PREFIX}/docs/assets/",
    }


def _require_json() -> None:
    if (
        request.method in ("POST", "PUT", "PATCH")
        and request.path.startswith(API_PREFIX)
        and request.path not in RAW_BODY_PATHS
        and (request.content_length or request.headers.get("Transfer-Encoding"))
    ):
        if not request.is_json:
            raise UnsupportedMediaType("Send the body as application/json.")
        # Parsed here, once (Flask keeps it for the view): a body that is not
        # JSON, or nests deeper than MAX_JSON_DEPTH, is a 400 on every path,
        # the webhook's too, before anything reads it.
        request.get_json()


def _docs_asset(filename: str) -> Response:
    return send_from_directory(DOCS_ASSETS, filename, max_age=86400)


def create_app(overrides: dict[str, Any] | None = None) -> Flask:
    """Build the app from the environment (`config.load()`), then `overrides`."""
    settings = {**config.load(), **(overrides or {})}
    config.check(settings)
    app = Flask(__name__, instance_path=settings["INSTANCE_PATH"], static_folder=None)
    app.config.update(_openapi_settings())
    app.config.update(settings)
    app.config["SECRET_KEY"] = app.config["SECRET_KEY"] or config.instance_secret(Path(app.instance_path))
    app.json = MarketJSONProvider(app)
    app.request_class = MarketRequest
    if app.config["TRUSTED_PROXY_COUNT"]:
        # Only the addresses our own proxies appended are believed: rate
        # limits count the client, not the proxy, and a client cannot pick
        # its address by sending X-Forwarded-For itself.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=app.config["TRUSTED_PROXY_COUNT"])  # type: ignore[method-assign]

    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite:///"):
        Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    db.init_app(app)
    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            lock_sqlite_for_locked_reads(db.engine)
    migrate.init_app(app, db, directory=str(config.ROOT / "migrations"), render_as_batch=True)
    limiter.init_app(app)
    app.after_request(rate_limit_headers)
    celery_init_app(app)
    payment_gateway.init_app(app)
    errors.register(app)
    outbox.install(app)
    idempotency.install()
    auth.install(app)

    api.init_app(
        app,
        spec_kwargs={
            "components": {
                "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "fm_..."}}
            }
        },
    )
    app.register_blueprint(health.blp)
    app.add_url_rule(f"{API_PREFIX}/docs/assets/<path:filename>", "docs_asset", _docs_asset)
    app.before_request(_require_json)
    for blueprint in (accounts_blp, catalog_blp, orders_blp, payments_blp, notifications_blp, inventory_blp):
        api.register_blueprint(blueprint)
    api.register_blueprint(payouts_blp)
    api.register_blueprint(ledger_blp)
    api.register_blueprint(premiums_blp)
    api.register_blueprint(reconciliation_blp)
    api.register_blueprint(reports_blp)
    api.register_blueprint(stations_blp)
    api.register_blueprint(commissions_blp)
    payloads.document(api.spec)
    console.init_app(app)

    cli.register(app)
    return app
