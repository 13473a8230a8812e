"""The operator console: server-rendered pages under /console/ on the same
services as the API (no rule of its own), for operators only.

Every response carries a strict Content-Security-Policy (scripts, styles,
images and requests from this origin only, nothing inline), every form a
CSRF token (Flask-WTF) checked on every request that is not a read, and the
session cookie is HttpOnly, SameSite=Lax and Secure unless
CONSOLE_INSECURE_COOKIE says the console is served over plain http (the
one-command run on this machine). What exists: docs/console.md.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, NotFound

from market.console import i18n
from market.csv_export import kg
from market.db import local_time
from market.errors import DomainError, RateLimited
from market.extensions import csrf
from market.money import Money, format_minor

PREFIX = "/console"
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "font-src 'self'",
        "form-action 'self'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    )
)
BASIS_POINTS_EXPONENT = 2  # a hundredth of a percent
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

blp = Blueprint(
    "console",
    __name__,
    url_prefix=PREFIX,
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)


def money(amount: int | None, currency: str | None = None) -> str:
    """Minor units in major ones with every minor unit, and the currency
    (the marketplace's unless given): 123456 -> "1234.56 CNY"."""
    if amount is None:
        return "-"
    return str(Money(amount, currency or current_app.config["MARKET_CURRENCY"]))


def kilograms(grams: int | None) -> str:
    """Grams as kilograms, exactly: 1500 -> "1.500 kg"."""
    return "-" if grams is None else f"{kg(grams)} kg"


def percent(basis_points: int | None) -> str:
    """Basis points as a percentage, exactly: 250 -> "2.50 %"."""
    return "-" if basis_points is None else f"{format_minor(basis_points, BASIS_POINTS_EXPONENT)} %"


def when(moment: datetime | None) -> str:
    """A moment in the marketplace's time zone, to the minute."""
    return "-" if moment is None else local_time(moment)


# What a request keeps in `g` about the signed-in operator and the form token.
REQUEST_STATE = ("console_user", "console_actor", "console_language", "csrf_token")


@blp.before_request
def _protect_forms() -> None:
    # `g` lives as long as the app context, which can hold several requests
    # (a test's, a script's): each request reads the session afresh.
    for name in REQUEST_STATE:
        g.pop(name, None)
    if request.method not in SAFE_METHODS:
        csrf.protect()


@blp.after_request
def _headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    if request.endpoint != "console.static":
        # Pages show money and people: no cache keeps them after sign-out.
        response.headers["Cache-Control"] = "no-store"
    return response


def _page(message: str, status: int, headers: dict[str, str] | None = None) -> tuple[str, int, dict[str, str]]:
    return render_template("console/message.html", message=message), status, headers or {}


@blp.errorhandler(CSRFError)
def _csrf_refused(error: CSRFError) -> Any:
    return _page("csrf_refused", 400)


@blp.errorhandler(RateLimited)
def _throttled(error: RateLimited) -> Any:
    return _page("too_many", 429, {"Retry-After": str(error.retry_after)})


@blp.errorhandler(HTTPException)
def _http_error(error: HTTPException) -> Any:
    status = error.code or 500
    if status == 429:
        headers = {k: v for k, v in error.get_headers() if k.lower() == "retry-after"}
        return _page("too_many", 429, headers)
    return _page("not_found" if status == 404 else "error", status)


@blp.errorhandler(DomainError)
def _refused(error: DomainError) -> Any:
    page = render_template("console/message.html", message="error", detail=error.detail, errors=error.errors)
    return page, error.status


@blp.route("/<path:anything>")
def _unknown(anything: str) -> Any:
    """A console address that names no page: the console's own 404, with its headers."""
    raise NotFound()


def init_app(app: Flask) -> None:
    """Serve the console from `app`: its blueprint, CSRF and the session cookie."""
    app.config.setdefault("WTF_CSRF_CHECK_DEFAULT", False)  # the API takes bearer tokens, not cookies
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", None)  # valid as long as the session
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    app.config["SESSION_COOKIE_SECURE"] = not app.config["CONSOLE_INSECURE_COOKIE"]
    app.config["PERMANENT_SESSION_LIFETIME"] = timedelta(hours=app.config["CONSOLE_SESSION_HOURS"])
    csrf.init_app(app)
    app.jinja_env.globals["t"] = i18n.translate
    app.jinja_env.globals["t_known"] = i18n.translate_known
    app.jinja_env.globals["lang"] = lambda: i18n.language().value
    app.jinja_env.filters["money"] = money
    app.jinja_env.filters["kg"] = kilograms
    app.jinja_env.filters["when"] = when
    app.jinja_env.filters["percent"] = percent

    from market.console import views  # noqa: F401, PLC0415 (the views register themselves on blp)

    app.register_blueprint(blp)
