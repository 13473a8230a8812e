from __future__ import annotations

from typing import Any

from flask import Response, current_app

from market.accounts.models import User
from market.accounts.schemas import UserSchema
from market.api import MarketBlueprint, csv_response
from market.auth import current_actor
from market.extensions import limiter
from market.idempotency import idempotent, idempotent_in_one_transaction
from market.orders.schemas import OrderSchema
from market.orders.service import LineRequest, OrderView
from market.pagination import Page, page_schema
from market.stations import cashups, claims, service
from market.stations.schemas import (
    CashCollectionSchema,
    CashUpCreateSchema,
    CashUpCsvQuerySchema,
    CashUpPreviewQuerySchema,
    CashUpPreviewSchema,
    CashUpQuerySchema,
    CashUpSchema,
    ClaimAcceptedSchema,
    ClaimRequestSchema,
    ClaimSchema,
    DepositConfirmSchema,
    VillagerCodeSchema,
    VillagerOrderCreateSchema,
)

blp = MarketBlueprint(
    "stations", __name__, url_prefix="/api/v1", description="Orders placed for villagers at stations, paid in cash"
)


@blp.route("/fulfilment-points/<int:point_id>/villager-orders", methods=["POST"])
@blp.authenticated
@idempotent_in_one_transaction
@blp.arguments(VillagerOrderCreateSchema)
@blp.response(201, OrderSchema, location="/orders/{id}")
@blp.alt_response(404, description="No such fulfilment point of yours")
@blp.alt_response(409, description="Not enough stock, or the villager holds as many unpaid orders as allowed")
def place_villager_order(body: dict[str, Any], point_id: int) -> OrderView:
    """Place an order for a villager, identified by mobile number, to collect and pay in cash at your station
    (station staff); the villager confirms it with the code texted to them. Accepts an Idempotency-Key"""
    lines = [LineRequest(**line) for line in body.pop("lines")]
    return service.place_for_villager(current_actor(), point_id, lines=lines, **body)


@blp.route("/orders/<int:order_id>/villager-code", methods=["POST"])
@limiter.limit(lambda: current_app.config["RATELIMIT_PICKUP"])
@blp.authenticated
@blp.response(200, OrderSchema)
@blp.alt_response(404, description="No such order at a station of yours, or not placed for a villager")
@blp.alt_response(409, description="The order no longer waits for the villager's code")
@blp.alt_response(429, description="As many codes sent as allowed")
def renew_villager_code(order_id: int) -> OrderView:
    """Text the villager a new confirmation code; the last one stops working (station staff)"""
    return service.resend_code(current_actor(), order_id)


@blp.route("/orders/<int:order_id>/villager-confirmation", methods=["POST"])
@limiter.limit(lambda: current_app.config["RATELIMIT_PICKUP"])
@blp.authenticated
@blp.arguments(VillagerCodeSchema)
@blp.response(200, OrderSchema)
@blp.alt_response(404, description="No such order at a station of yours, or not placed for a villager")
@blp.alt_response(409, description="The order no longer waits for a code, or the code expired")
@blp.alt_response(429, description="Too many wrong codes: send a new one")
def confirm_villager_order(body: dict[str, Any], order_id: int) -> OrderView:
    """Confirm an order placed for a villager with the code texted to them: its farms pack it (station staff)"""
    return service.confirm_for_villager(current_actor(), order_id, body["code"])


@blp.route("/orders/<int:order_id>/cash-collection", methods=["POST"])
@limiter.limit(lambda: current_app.config["RATELIMIT_PICKUP"])
@blp.authenticated
@blp.arguments(CashCollectionSchema)
@blp.response(200, OrderSchema)
@blp.alt_response(404, description="No such order at a station of yours")
@blp.alt_response(409, description="Not an order paid on collection that is ready for pickup")
@blp.alt_response(429, description="Too many wrong pickup codes")
def collect_cash_order(body: dict[str, Any], order_id: int) -> OrderView:
    """Hand over an order paid on collection against the villager's pickup code and the cash of its weighed
    total: it is paid and completed at once (station staff)"""
    return service.collect_with_cash(current_actor(), order_id, code=body["code"], amount=body["amount"])


@blp.route("/fulfilment-points/<int:point_id>/cash-up-preview", methods=["GET"])
@blp.authenticated
@blp.arguments(CashUpPreviewQuerySchema, location="query")
@blp.response(200, CashUpPreviewSchema)
@blp.alt_response(404, description="No such fulfilment point of yours")
@blp.alt_response(422, description="A day after today")
def get_cash_up_preview(args: dict[str, Any], point_id: int) -> dict[str, Any]:
    """The cash orders a day's cash-up counts and what they add up to (station staff, operators)"""
    return cashups.preview(current_actor(), point_id, args["day"])


@blp.route("/fulfilment-points/<int:point_id>/cash-ups", methods=["POST"])
@blp.authenticated
@idempotent
@blp.arguments(CashUpCreateSchema)
@blp.response(201, CashUpSchema, location="/cash-ups/{id}")
@blp.alt_response(404, description="No such fulfilment point of yours")
@blp.alt_response(409, description="The day is cashed up already (or a later one), or cash was taken since the preview")
def record_cash_up(body: dict[str, Any], point_id: int) -> dict[str, Any]:
    """Submit a day's cash-up with the cash counted; a difference flags it to operators (station staff). Accepts
    an Idempotency-Key"""
    return cashups.view(cashups.record(current_actor(), point_id, **body))


@blp.route("/cash-ups", methods=["GET"])
@blp.authenticated
@blp.arguments(CashUpQuerySchema, location="query")
@blp.response(200, page_schema(CashUpSchema))
def list_cash_ups(args: dict[str, Any]) -> Page[dict[str, Any]]:
    """Cash-ups, newest first, by station, status, business days, flagged, deposited (operators; staff: their
    stations')"""
    return cashups.list_cash_ups(current_actor(), **args)


@blp.route("/cash-ups.csv", methods=["GET"])
@blp.authenticated
@blp.arguments(CashUpCsvQuerySchema, location="query")
@blp.response(200, content_type="text/csv", description="One row per cash-up, money in yuan")
def download_cash_ups(args: dict[str, Any]) -> Response:
    """Cash-ups as CSV, oldest day first, by the same filters (operators)"""
    return csv_response(cashups.cash_up_rows(current_actor(), **args), cashups.CSV_COLUMNS, "cash-ups.csv")


@blp.route("/cash-ups/<int:cash_up_id>", methods=["GET"])
@blp.authenticated
@blp.response(200, CashUpSchema)
@blp.alt_response(404, description="No such cash-up of yours")
def get_cash_up(cash_up_id: int) -> dict[str, Any]:
    """One cash-up with its cash orders (operators, staff of its station)"""
    return cashups.get_cash_up(current_actor(), cash_up_id)


@blp.route("/cash-ups/<int:cash_up_id>/deposit", methods=["POST"])
@blp.authenticated
@idempotent
@blp.arguments(DepositConfirmSchema)
@blp.response(200, CashUpSchema)
@blp.alt_response(404, description="No such cash-up")
@blp.alt_response(409, description="Deposited already, nothing counted, or the bank reference is another deposit's")
def confirm_cash_up_deposit(body: dict[str, Any], cash_up_id: int) -> dict[str, Any]:
    """Confirm the bank received a cash-up's cash under its reference: it moves into the marketplace's bank
    (operators). Accepts an Idempotency-Key"""
    return cashups.view(cashups.confirm_deposit(current_actor(), cash_up_id, **body))


@blp.route("/accounts/claims", methods=["POST"])
@limiter.limit(lambda: current_app.config["RATELIMIT_REGISTER"])
@blp.arguments(ClaimRequestSchema)
@blp.response(202, ClaimAcceptedSchema)
@blp.alt_response(429, description="Too many requests from this client address")
def request_account_claim(body: dict[str, Any]) -> dict[str, str]:
    """Text a code to claim the account a village station opened for this number; the same answer for every
    number"""
    claims.request_claim(body["phone"])
    return {"phone": body["phone"], "detail": claims.CLAIM_ACCEPTED}


@blp.route("/accounts/claims/confirmation", methods=["POST"])
@limiter.limit(lambda: current_app.config["RATELIMIT_LOGIN"])
@blp.arguments(ClaimSchema)
@blp.response(200, UserSchema)
@blp.alt_response(409, description="Another account has the email")
@blp.alt_response(422, description="The code is wrong or has expired, or no account waits for the number")
@blp.alt_response(429, description="Too many wrong codes for the number, or attempts from this client address")
def confirm_account_claim(body: dict[str, Any]) -> User:
    """Claim the account opened for your number with the code texted to it: it takes your email and password,
    and keeps its orders"""
    return claims.claim(**body)
