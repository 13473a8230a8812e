from __future__ import annotations

from typing import Any

from flask import Response

from market.api import MarketBlueprint, csv_response, json_or_csv
from market.auth import current_actor
from market.commissions import service
from market.commissions.models import CommissionEntry, SellerPayout
from market.commissions.schemas import (
    CommissionEntrySchema,
    EntryCsvQuerySchema,
    EntryQuerySchema,
    RunSellersSchema,
    SalesQuerySchema,
    SalesReportSchema,
    SellerCreateSchema,
    SellerPayoutSchema,
    SellerQuerySchema,
    SellerSchema,
    SellerStatementSchema,
    SellerUpdateSchema,
)
from market.pagination import Page, page_schema
from market.payouts.schemas import ConfirmSchema

blp = MarketBlueprint(
    "commissions", __name__, url_prefix="/api/v1", description="Stations and hosts who sell for farmers, and their pay"
)


@blp.route("/sellers", methods=["POST"])
@blp.authenticated
@blp.arguments(SellerCreateSchema)
@blp.response(201, SellerSchema, location="/sellers/{id}")
@blp.alt_response(404, description="No such fulfilment point")
@blp.alt_response(409, description="The station, the user or the code is a seller already")
def create_seller(body: dict[str, Any]) -> dict[str, Any]:
    """Make a station or a host a seller earning a commission (operators)"""
    return service.create_seller(current_actor(), **body)


@blp.route("/sellers", methods=["GET"])
@blp.authenticated
@blp.arguments(SellerQuerySchema, location="query")
@blp.response(200, page_schema(SellerSchema))
def list_sellers(args: dict[str, Any]) -> Page[dict[str, Any]]:
    """Sellers with what they earned, gave back, were paid and are owed: all (operators), or your own"""
    return service.list_sellers(current_actor(), **args)


@blp.route("/sellers/<int:seller_id>", methods=["GET"])
@blp.authenticated
@blp.response(200, SellerSchema)
@blp.alt_response(404, description="No such seller of yours")
def get_seller(seller_id: int) -> dict[str, Any]:
    """One seller (operators; the host; the station's staff)"""
    return service.get_seller(current_actor(), seller_id)


@blp.route("/sellers/<int:seller_id>", methods=["PATCH"])
@blp.authenticated
@blp.arguments(SellerUpdateSchema)
@blp.response(200, SellerSchema)
@blp.alt_response(404, description="No such seller")
@blp.alt_response(409, description="Changed at the same time")
def update_seller(body: dict[str, Any], seller_id: int) -> dict[str, Any]:
    """Change a seller's name, rate, bank details, or stop it earning (operators)"""
    return service.update_seller(current_actor(), seller_id, body)


@blp.route("/sellers/<int:seller_id>/entries", methods=["GET"])
@blp.authenticated
@blp.arguments(EntryQuerySchema, location="query")
@blp.response(200, page_schema(CommissionEntrySchema))
@blp.alt_response(404, description="No such seller of yours")
def list_entries(args: dict[str, Any], seller_id: int) -> Page[CommissionEntry]:
    """A seller's commission entries, oldest first (operators; the host; the station's staff)"""
    return service.list_entries(current_actor(), seller_id, **args)


@blp.route("/sellers/<int:seller_id>/entries.csv", methods=["GET"])
@blp.authenticated
@blp.arguments(EntryCsvQuerySchema, location="query")
@blp.response(200, content_type="text/csv", description="One row per entry, money in yuan")
@blp.alt_response(404, description="No such seller of yours")
def download_entries(args: dict[str, Any], seller_id: int) -> Response:
    """A seller's commission entries as CSV (operators; the host; the station's staff)"""
    rows = service.entry_rows(current_actor(), seller_id, **args)
    return csv_response(rows, service.STATEMENT_COLUMNS, f"seller-{seller_id}-entries.csv")


@blp.route("/payout-runs/<int:run_id>/sellers", methods=["GET"])
@blp.authenticated
@blp.response(200, RunSellersSchema)
@blp.alt_response(404, description="No such run")
def get_payout_run_sellers(run_id: int) -> dict[str, Any]:
    """What a payout run paid stations and hosts, and whom it skipped and why (operators)"""
    return service.run_sellers(current_actor(), run_id)


@blp.route("/payout-runs/<int:run_id>/seller-bank-file.csv", methods=["GET"])
@blp.authenticated
@blp.response(200, content_type="text/csv", description="One row per bank transfer to a seller to execute")
@blp.alt_response(404, description="No such run")
def download_seller_bank_file(run_id: int) -> Response:
    """The run's bank transfers to stations and hosts, with full account numbers (operators)"""
    rows = service.bank_file(current_actor(), run_id)
    return csv_response(rows, service.BANK_FILE_COLUMNS, f"payout-run-{run_id}-seller-bank-file.csv")


@blp.route("/seller-payouts/<int:payout_id>", methods=["GET"])
@blp.authenticated
@blp.response(200, SellerStatementSchema)
@blp.alt_response(404, description="No such seller payout of yours")
def get_seller_payout(payout_id: int) -> dict[str, Any]:
    """A seller payout with the entries it paid (operators; the host; the station's staff)"""
    return service.get_seller_payout(current_actor(), payout_id)


@blp.route("/seller-payouts/<int:payout_id>/statement.csv", methods=["GET"])
@blp.authenticated
@blp.response(200, content_type="text/csv", description="One row per entry the payout paid, money in yuan")
@blp.alt_response(404, description="No such seller payout of yours")
def download_seller_statement(payout_id: int) -> Response:
    """A seller payout's statement as CSV (operators; the host; the station's staff)"""
    rows = service.seller_payout_rows(current_actor(), payout_id)
    return csv_response(rows, service.STATEMENT_COLUMNS, f"seller-payout-{payout_id}-statement.csv")


@blp.route("/seller-payouts/<int:payout_id>/confirm", methods=["POST"])
@blp.authenticated
@blp.arguments(ConfirmSchema)
@blp.response(200, SellerPayoutSchema)
@blp.alt_response(404, description="No such seller payout")
@blp.alt_response(409, description="Confirmed already")
def confirm_seller_payout(body: dict[str, Any], payout_id: int) -> SellerPayout:
    """Confirm a seller payout's bank transfer was executed (operators)"""
    return service.confirm_seller_payout(current_actor(), payout_id, **body)


@blp.route("/reports/sellers", methods=["GET"])
@blp.authenticated
@blp.arguments(SalesQuerySchema, location="query")
@blp.response(200, SalesReportSchema)
@blp.doc(**json_or_csv(SalesReportSchema, "The report, as JSON or (format=csv) a CSV download"))
def get_sales_by_seller_report(args: dict[str, Any]) -> dict[str, Any] | Response:
    """Sales and commissions by station and host over business days (operators)

    With format=csv, the same as a CSV download, amounts in currency units."""
    wanted = args.pop("format")
    report = service.sales_by_seller(current_actor(), **args)
    if wanted == "csv":
        name = f"sales-by-seller-{args['first']}-{args['last']}.csv"
        return csv_response(service.sales_rows(report["rows"]), service.SALES_COLUMNS, name)
    return report
