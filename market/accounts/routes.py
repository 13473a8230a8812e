from datetime import timedelta
from typing import Any

from flask import Response, current_app, request

from market.accounts import service
from market.accounts.models import ApiToken, User
from market.accounts.schemas import (
    ConfirmationSchema,
    IssuedTokenSchema,
    LoginSchema,
    ProfileUpdateSchema,
    RegisterSchema,
    RegistrationAcceptedSchema,
    TokenSchema,
    UserSchema,
)
from market.api import MarketBlueprint
from market.auth import current_actor
from market.extensions import limiter
from market.pagination import Page, PageArgsSchema, page_schema
from market.stations import claims

blp = MarketBlueprint("accounts", __name__, url_prefix="/api/v1", description="Accounts and API tokens")
NO_STORE = {"Cache-Control": {"description": "no-store: no cache keeps the answer", "schema": {"type": "string"}}}


@blp.after_request
def _tokens_are_not_stored(response: Response) -> Response:
    """A login's answer (a new token, or why not) must not be kept by any cache."""
    if request.endpoint == "accounts.log_in":
        response.headers["Cache-Control"] = "no-store"
        response.headers["Pragma"] = "no-cache"
    return response


@blp.route("/accounts", methods=["POST"])
@limiter.limit(lambda: current_app.config["RATELIMIT_REGISTER"])
@blp.arguments(RegisterSchema)
@blp.response(202, RegistrationAcceptedSchema)
@blp.alt_response(429, description="Too many registrations from this address")
def register_account(body: dict[str, Any]) -> dict[str, str]:
    """Register as a farmer and/or buyer; the same answer for every address, and the account logs in once
    the link emailed to the address confirms it"""
    return {"email": claims.register(**body), "detail": service.REGISTRATION_ACCEPTED}


@blp.route("/accounts/confirmation", methods=["POST"])
@limiter.limit(lambda: current_app.config["RATELIMIT_LOGIN"])
@blp.arguments(ConfirmationSchema)
@blp.response(200, UserSchema)
@blp.alt_response(422, description="The token is not valid, or has expired")
@blp.alt_response(429, description="Too many attempts from this address")
def confirm_account(body: dict[str, Any]) -> User:
    """Confirm an account with the token from the registration email"""
    return service.confirm(body["token"])


@blp.route("/auth/tokens", methods=["POST"])
@limiter.limit(lambda: current_app.config["RATELIMIT_LOGIN"])
@blp.arguments(LoginSchema)
@blp.response(201, IssuedTokenSchema, headers=NO_STORE, location="/auth/tokens/{id}")
@blp.alt_response(401, description="Wrong email or password, or the account is not confirmed yet")
@blp.alt_response(429, description="Too many attempts from this client address, or for this account")
def log_in(body: dict[str, Any]) -> dict[str, Any]:
    """Log in with email and password; returns a new bearer token, shown once"""
    ttl = timedelta(days=body.get("ttl_days") or current_app.config["TOKEN_TTL_DAYS"])
    issued = service.login(email=body["email"], password=body["password"], token_name=body["name"], ttl=ttl)
    return {name: getattr(issued.token, name) for name in TokenSchema().fields} | {"token": issued.secret}


@blp.route("/auth/tokens", methods=["GET"])
@blp.authenticated
@blp.arguments(PageArgsSchema, location="query")
@blp.response(200, page_schema(TokenSchema))
def list_tokens(args: dict[str, Any]) -> Page[ApiToken]:
    """List your tokens, newest first (never their secrets)"""
    return service.list_tokens(current_actor(), **args)


@blp.route("/auth/tokens/<int:token_id>", methods=["GET"])
@blp.authenticated
@blp.response(200, TokenSchema)
@blp.alt_response(404, description="No such token of yours")
def get_token(token_id: int) -> ApiToken:
    """One of your tokens (never its secret): its name, expiry, last use and whether it is revoked"""
    return service.get_token(current_actor(), token_id)


@blp.route("/auth/tokens/<int:token_id>", methods=["DELETE"])
@blp.authenticated
@blp.response(200, TokenSchema)
@blp.alt_response(404, description="No such token of yours")
def revoke_token(token_id: int) -> ApiToken:
    """Revoke one of your tokens"""
    return service.revoke_token(current_actor(), token_id)


@blp.route("/me", methods=["GET"])
@blp.authenticated
@blp.response(200, UserSchema)
def get_me() -> User:
    """The account behind the token"""
    return service.get_user(current_actor())


@blp.route("/me", methods=["PATCH"])
@blp.authenticated
@blp.arguments(ProfileUpdateSchema)
@blp.response(200, UserSchema)
def update_me(body: dict[str, Any]) -> User:
    """Change your name, phone number (for SMS) or language; fields left out stay"""
    return service.update_profile(current_actor(), **body)
