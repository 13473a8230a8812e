from typing import Any

from flask import Response, current_app

from market.api import MarketBlueprint, csv_response, json_or_csv
from market.auth import account_or_address, current_actor
from market.db import business_today
from market.extensions import limiter
from market.idempotency import idempotent_in_one_transaction
from market.orders import routing, service
from market.orders.models import StationStaff
from market.orders.schemas import (
    CollectSchema,
    ManifestQuerySchema,
    ManifestSchema,
    OrderCreateSchema,
    OrderQuerySchema,
    OrderSchema,
    PackSchema,
    PartScanSchema,
    ReasonSchema,
    ScanResultSchema,
    StaffGrantSchema,
    StaffSchema,
)
from market.orders.service import LineRequest, OrderView, Weighing
from market.pagination import Page, page_schema

blp = MarketBlueprint("orders", __name__, url_prefix="/api/v1", description="Orders, packing and station pickup")
PART = "/orders/<int:order_id>/parts/<int:part_id>"


@blp.route("/orders", methods=["POST"])
@limiter.limit(lambda: current_app.config["RATELIMIT_ORDERS"], key_func=account_or_address)
@blp.authenticated
@idempotent_in_one_transaction
@blp.arguments(OrderCreateSchema)
@blp.response(201, OrderSchema, location="/orders/{id}")
@blp.alt_response(
    409,
    description="Not enough stock (each short line with what is left), or the buyer holds as many unpaid orders "
    "or grams as allowed",
)
@blp.alt_response(429, description="Too many orders placed by this account in a short time")
def place_order(body: dict[str, Any]) -> OrderView:
    """Place an order (buyers); accepts an Idempotency-Key"""
    actor = current_actor()
    lines = [LineRequest(**line) for line in body.pop("lines")]
    return service.place_order(actor, lines=lines, **body)


@blp.route("/orders", methods=["GET"])
@blp.authenticated
@blp.arguments(OrderQuerySchema, location="query")
@blp.response(200, page_schema(OrderSchema))
def list_orders(args: dict[str, Any]) -> Page[OrderView]:
    """Orders you may see, newest first; operators filter by state, farm, buyer, point and date"""
    return service.list_orders(current_actor(), **args)


@blp.route("/orders/<int:order_id>", methods=["GET"])
@blp.authenticated
@blp.response(200, OrderSchema)
@blp.alt_response(404, description="No such order, or not one you may see")
def get_order(order_id: int) -> OrderView:
    """One order, as far as you may see it"""
    return service.get_order(current_actor(), order_id)


@blp.route("/orders/<int:order_id>/cancel", methods=["POST"])
@blp.authenticated
@blp.arguments(ReasonSchema)
@blp.response(200, OrderSchema)
@blp.alt_response(404, description="No such order, or not one you may see")
@blp.alt_response(409, description="Not possible in the current state (the problem names it)")
def cancel_order(body: dict[str, Any], order_id: int) -> OrderView:
    """Cancel an order (the buyer before packing; operators until completion)"""
    return service.cancel_order(current_actor(), order_id, body["reason"])


@blp.route("/orders/<int:order_id>/complete", methods=["POST"])
@blp.authenticated
@blp.response(200, OrderSchema)
@blp.alt_response(404, description="No such order, or not one you may see")
@blp.alt_response(409, description="Not possible in the current state (the problem names it)")
def complete_order(order_id: int) -> OrderView:
    """Confirm a collected or delivered order is complete"""
    return service.complete_order(current_actor(), order_id)


@blp.route("/orders/<int:order_id>/pickup-code", methods=["POST"])
@limiter.limit(lambda: current_app.config["RATELIMIT_PICKUP_CODES"], key_func=account_or_address)
@blp.authenticated
@blp.response(200, OrderSchema)
@blp.alt_response(429, description="Too many new codes asked for (each is texted and emailed)")
@blp.alt_response(404, description="No such order, or not one you may see")
@blp.alt_response(409, description="Not possible in the current state (the problem names it)")
def renew_pickup_code(order_id: int) -> OrderView:
    """Get a new pickup code, sent to the buyer (the buyer; staff of the order's station; operators)"""
    return service.renew_pickup_code(current_actor(), order_id)


@blp.route("/orders/<int:order_id>/collect", methods=["POST"])
@limiter.limit(lambda: current_app.config["RATELIMIT_PICKUP"])
@blp.authenticated
@blp.arguments(CollectSchema)
@blp.response(200, OrderSchema)
@blp.alt_response(429, description="Too many wrong codes")
@blp.alt_response(404, description="No such order, or not one you may see")
@blp.alt_response(409, description="Not possible in the current state (the problem names it)")
def collect_order(body: dict[str, Any], order_id: int) -> OrderView:
    """Hand an order over at the station against the buyer's pickup code (station staff)"""
    return service.collect_order(current_actor(), order_id, body["code"])


@blp.route(f"{PART}/pack", methods=["POST"])
@blp.authenticated
@blp.arguments(PackSchema)
@blp.response(200, OrderSchema)
@blp.alt_response(404, description="No such order or part, or not one of yours")
@blp.alt_response(409, description="Not possible in the current state (the problem names it)")
def pack_part(body: dict[str, Any], order_id: int, part_id: int) -> OrderView:
    """Record the weighed grams of each line of your part and mark it packed (farmers)"""
    weighings = [Weighing(**w) for w in body["weights"]]
    return service.pack_part(current_actor(), order_id, part_id, weighings)


@blp.route(f"{PART}/ship", methods=["POST"])
@blp.authenticated
@blp.response(200, OrderSchema)
@blp.alt_response(404, description="No such order or part, or not one of yours")
@blp.alt_response(409, description="Not possible in the current state (the problem names it)")
def ship_part(order_id: int, part_id: int) -> OrderView:
    """Mark your packed part shipped (farmers)"""
    return service.ship_part(current_actor(), order_id, part_id)


@blp.route(f"{PART}/deliver", methods=["POST"])
@blp.authenticated
@blp.response(200, OrderSchema)
@blp.alt_response(404, description="No such order or part, or not one of yours")
@blp.alt_response(409, description="Not possible in the current state (the problem names it)")
def deliver_part(order_id: int, part_id: int) -> OrderView:
    """Mark your shipped part delivered to the buyer's address (farmers)"""
    return service.deliver_part(current_actor(), order_id, part_id)


@blp.route(f"{PART}/receive", methods=["POST"])
@blp.authenticated
@blp.response(200, OrderSchema)
@blp.alt_response(404, description="No such order or part, or not one of yours")
@blp.alt_response(409, description="Not possible in the current state (the problem names it)")
def receive_part(order_id: int, part_id: int) -> OrderView:
    """Take a shipped part in at the fulfilment point (station staff)"""
    return service.receive_part(current_actor(), order_id, part_id)


@blp.route(f"{PART}/cancel", methods=["POST"])
@blp.authenticated
@blp.arguments(ReasonSchema)
@blp.response(200, OrderSchema)
@blp.alt_response(404, description="No such order or part, or not one of yours")
@blp.alt_response(409, description="Not possible in the current state (the problem names it)")
def cancel_part(body: dict[str, Any], order_id: int, part_id: int) -> OrderView:
    """Cancel your part of an order before it ships, with a reason (farmers)"""
    return service.cancel_part(current_actor(), order_id, part_id, body["reason"])


@blp.route("/fulfilment-points/<int:point_id>/staff", methods=["POST"])
@blp.authenticated
@blp.arguments(StaffSchema)
@blp.response(201, StaffGrantSchema, location="/fulfilment-points/{point_id}/staff/{user_id}")
@blp.alt_response(404, description="No such fulfilment point")
def grant_point_staff(body: dict[str, Any], point_id: int) -> StationStaff:
    """Make a user staff of a fulfilment point (operators)"""
    return service.grant_station_staff(current_actor(), point_id, body["user_id"])


@blp.route("/fulfilment-points/<int:point_id>/staff/<int:user_id>", methods=["DELETE"])
@blp.authenticated
@blp.response(204)
@blp.alt_response(404, description="The user is not staff at this fulfilment point")
def revoke_point_staff(point_id: int, user_id: int) -> None:
    """Remove a user from a fulfilment point's staff (operators)"""
    service.revoke_station_staff(current_actor(), point_id, user_id)


@blp.route("/fulfilment-points/<int:point_id>/manifest", methods=["GET"])
@blp.authenticated
@blp.arguments(ManifestQuerySchema, location="query")
@blp.response(200, ManifestSchema)
@blp.doc(**json_or_csv(ManifestSchema, "The manifest, as JSON or (format=csv) a CSV download, one row per line"))
@blp.alt_response(404, description="No such fulfilment point of yours")
def get_manifest(args: dict[str, Any], point_id: int) -> dict[str, Any] | Response:
    """What arrives at a fulfilment point on a day, what is to dispatch from it (a county centre) and what waits
    for pickup (staff of the point)"""
    day = args["date"] or business_today()
    rows = service.manifest(current_actor(), point_id, day)
    if args["format"] == "csv":
        return csv_response(service.manifest_rows(rows), service.MANIFEST_COLUMNS, f"manifest-{point_id}-{day}.csv")
    return {"fulfilment_point_id": point_id, "date": day, "rows": rows}


@blp.route("/fulfilment-points/<int:point_id>/received-parts", methods=["POST"])
@blp.authenticated
@blp.arguments(PartScanSchema)
@blp.response(200, ScanResultSchema)
@blp.alt_response(404, description="No such fulfilment point of yours")
@blp.alt_response(409, description="A part is not yet dispatched from the point before, or cancelled; nothing scanned")
@blp.alt_response(422, description="A part is not on its way through this point; nothing scanned")
def receive_point_parts(body: dict[str, Any], point_id: int) -> dict[str, Any]:
    """Scan parts in at your fulfilment point, all or none: at the order's own point they have arrived; a part
    scanned in already is left as it is (staff of the point)"""
    parts = routing.receive_parts(current_actor(), point_id, body["part_ids"])
    return {"fulfilment_point_id": point_id, "parts": parts}


@blp.route("/fulfilment-points/<int:point_id>/dispatched-parts", methods=["POST"])
@blp.authenticated
@blp.arguments(PartScanSchema)
@blp.response(200, ScanResultSchema)
@blp.alt_response(404, description="No such fulfilment point of yours")
@blp.alt_response(409, description="A part is not received here yet, ends its route here, or is cancelled")
@blp.alt_response(422, description="A part is not on its way through this point; nothing scanned")
def dispatch_point_parts(body: dict[str, Any], point_id: int) -> dict[str, Any]:
    """Scan parts received at your county centre out, on to the next point of their route, all or none; a part
    dispatched already is left as it is (staff of the point)"""
    parts = routing.dispatch_parts(current_actor(), point_id, body["part_ids"])
    return {"fulfilment_point_id": point_id, "parts": parts}
