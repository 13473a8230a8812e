from typing import Any

from flask import Response

from market.api import MarketBlueprint, csv_response
from market.auth import current_actor
from market.idempotency import idempotent
from market.pagination import Page, page_schema
from market.reconciliation import service
from market.reconciliation.models import ReconciliationItem
from market.reconciliation.schemas import (
    ItemCsvQuerySchema,
    ItemQuerySchema,
    ItemSchema,
    ResolveSchema,
    RunQuerySchema,
    RunRequestSchema,
    RunSchema,
)

blp = MarketBlueprint(
    "reconciliation", __name__, url_prefix="/api/v1", description="Ledger against gateway reconciliation (operators)"
)


@blp.route("/reconciliations", methods=["POST"])
@blp.authenticated
@idempotent
@blp.arguments(RunRequestSchema)
@blp.response(201, RunSchema, location="/reconciliations/{id}")
def start_reconciliation(body: dict[str, Any]) -> dict[str, Any]:
    """Reconcile a period that has ended; a worker does the matching (operators); accepts an Idempotency-Key"""
    return service.start_run(current_actor(), **body)


@blp.route("/reconciliations", methods=["GET"])
@blp.authenticated
@blp.arguments(RunQuerySchema, location="query")
@blp.response(200, page_schema(RunSchema))
def list_reconciliations(args: dict[str, Any]) -> Page[dict[str, Any]]:
    """Reconciliations, newest first (operators)"""
    return service.list_runs(current_actor(), **args)


@blp.route("/reconciliations/<int:run_id>", methods=["GET"])
@blp.authenticated
@blp.response(200, RunSchema)
@blp.alt_response(404, description="No such reconciliation")
def get_reconciliation(run_id: int) -> dict[str, Any]:
    """A reconciliation's status and its items counted by outcome (operators)"""
    return service.get_run(current_actor(), run_id)


@blp.route("/reconciliations/<int:run_id>/items", methods=["GET"])
@blp.authenticated
@blp.arguments(ItemQuerySchema, location="query")
@blp.response(200, page_schema(ItemSchema))
@blp.alt_response(404, description="No such reconciliation")
def list_reconciliation_items(args: dict[str, Any], run_id: int) -> Page[ReconciliationItem]:
    """A reconciliation's items, by outcome (operators)"""
    return service.list_items(current_actor(), run_id, **args)


@blp.route("/reconciliations/<int:run_id>/items.csv", methods=["GET"])
@blp.authenticated
@blp.arguments(ItemCsvQuerySchema, location="query")
@blp.response(200, content_type="text/csv", description="One row per item")
@blp.alt_response(404, description="No such reconciliation")
def download_reconciliation_items(args: dict[str, Any], run_id: int) -> Response:
    """A reconciliation's items as CSV (operators)"""
    rows = service.item_rows(current_actor(), run_id, **args)
    return csv_response(rows, service.ITEM_COLUMNS, f"reconciliation-{run_id}.csv")


@blp.route("/reconciliations/<int:run_id>/items/<int:item_id>/resolve", methods=["POST"])
@blp.authenticated
@blp.arguments(ResolveSchema)
@blp.response(200, ItemSchema)
@blp.alt_response(404, description="No such reconciliation or item")
@blp.alt_response(409, description="Resolved already, or the fee is booked already")
@blp.alt_response(422, description="A matched item has nothing to resolve; only fees can be booked")
def resolve_reconciliation_item(body: dict[str, Any], run_id: int, item_id: int) -> ReconciliationItem:
    """Close an item with a note, booking a fee as an expense if asked (operators)"""
    return service.resolve_item(current_actor(), run_id, item_id, **body)
