from __future__ import annotations

from typing import Any

from flask import current_app

from market.api import MarketBlueprint
from market.auth import current_actor
from market.extensions import limiter
from market.idempotency import idempotent_in_one_transaction
from market.orders.schemas import OrderSchema
from market.orders.service import LineRequest, OrderView
from market.stations import service
from market.stations.schemas import CashCollectionSchema, VillagerCodeSchema, VillagerOrderCreateSchema

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
