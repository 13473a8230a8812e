from typing import Any

from flask import Response

from market.api import MarketBlueprint, csv_response
from market.auth import current_actor
from market.idempotency import idempotent
from market.pagination import Page, page_schema
from market.payouts import service
from market.payouts.models import Payout, PayoutAccount, PayoutRun
from market.payouts.schemas import (
    ConfirmSchema,
    FlagSchema,
    PayoutAccountRequestSchema,
    PayoutAccountSchema,
    PayoutQuerySchema,
    PayoutRunRequestSchema,
    PayoutRunSchema,
    PayoutSchema,
    RunQuerySchema,
    StatementSchema,
)

blp = MarketBlueprint("payouts", __name__, url_prefix="/api/v1", description="Farmer payouts and statements")


@blp.route("/farms/<int:farm_id>/payout-account", methods=["POST"])
@blp.authenticated
@blp.arguments(PayoutAccountRequestSchema)
@blp.response(200, PayoutAccountSchema)
@blp.alt_response(404, description="No such farm of yours")
@blp.alt_response(409, description="Changed at the same time")
def connect_payout_account(body: dict[str, Any], farm_id: int) -> PayoutAccount:
    """Choose how the farm is paid: Stripe or bank details (the farm's owner)

    For Stripe, a worker makes the connected account and the onboarding
    link; this answers with the state so far, and the link once it is there."""
    return service.connect_payout_account(current_actor(), farm_id, **body)


@blp.route("/farms/<int:farm_id>/payout-account", methods=["GET"])
@blp.authenticated
@blp.response(200, PayoutAccountSchema)
@blp.alt_response(404, description="No such farm of yours, or no payout account yet")
def get_payout_account(farm_id: int) -> PayoutAccount:
    """The farm's payout account (the farm's owner; operators)"""
    return service.get_payout_account(current_actor(), farm_id)


@blp.route("/payout-runs", methods=["POST"])
@blp.authenticated
@idempotent
@blp.arguments(PayoutRunRequestSchema)
@blp.response(201, PayoutRunSchema, location="/payout-runs/{id}")
@blp.alt_response(409, description="Another run took the same lines at the same time")
def create_payout_run(body: dict[str, Any]) -> PayoutRun:
    """Pay every farm what settled orders owe it up to period_end (operators); accepts an Idempotency-Key"""
    return service.create_run(current_actor(), **body)


@blp.route("/payout-runs", methods=["GET"])
@blp.authenticated
@blp.arguments(RunQuerySchema, location="query")
@blp.response(200, page_schema(PayoutRunSchema))
def list_payout_runs(args: dict[str, Any]) -> Page[PayoutRun]:
    """Payout runs, newest first (operators)"""
    return service.list_runs(current_actor(), **args)


@blp.route("/payout-runs/<int:run_id>", methods=["GET"])
@blp.authenticated
@blp.response(200, PayoutRunSchema)
@blp.alt_response(404, description="No such run")
def get_payout_run(run_id: int) -> PayoutRun:
    """One payout run (operators)"""
    return service.get_run(current_actor(), run_id)


@blp.route("/payout-runs/<int:run_id>/bank-file.csv", methods=["GET"])
@blp.authenticated
@blp.response(200, content_type="text/csv", description="One row per bank transfer to execute")
@blp.alt_response(404, description="No such run")
def download_bank_file(run_id: int) -> Response:
    """The run's bank transfers to execute, with full account numbers (operators)"""
    rows = service.bank_file(current_actor(), run_id)
    return csv_response(rows, service.BANK_FILE_COLUMNS, f"payout-run-{run_id}-bank-file.csv")


@blp.route("/payouts", methods=["GET"])
@blp.authenticated
@blp.arguments(PayoutQuerySchema, location="query")
@blp.response(200, page_schema(PayoutSchema))
def list_payouts(args: dict[str, Any]) -> Page[Payout]:
    """Payouts, newest first: your farms' (farmers) or all, filtered by farm, run and status (operators)"""
    return service.list_payouts(current_actor(), **args)


@blp.route("/payouts/<int:payout_id>", methods=["GET"])
@blp.authenticated
@blp.response(200, StatementSchema)
@blp.alt_response(404, description="No such payout of yours")
def get_payout(payout_id: int) -> dict[str, Any]:
    """A payout with its statement (the farm's owner; operators)"""
    return service.statement(current_actor(), payout_id)


@blp.route("/payouts/<int:payout_id>/statement.csv", methods=["GET"])
@blp.authenticated
@blp.response(200, content_type="text/csv", description="The statement, one row per line, refund and premium")
@blp.alt_response(404, description="No such payout of yours")
def download_payout_statement(payout_id: int) -> Response:
    """A payout's statement as CSV (the farm's owner; operators)"""
    rows = service.statement_rows(service.statement(current_actor(), payout_id))
    return csv_response(rows, service.STATEMENT_COLUMNS, f"payout-{payout_id}-statement.csv")


@blp.route("/payouts/<int:payout_id>/confirm", methods=["POST"])
@blp.authenticated
@blp.arguments(ConfirmSchema)
@blp.response(200, PayoutSchema)
@blp.alt_response(404, description="No such payout")
@blp.alt_response(409, description="Not a bank transfer awaiting confirmation")
def confirm_payout(body: dict[str, Any], payout_id: int) -> Payout:
    """Confirm a bank-file payout was executed (operators)"""
    return service.confirm_bank_transfer(current_actor(), payout_id, **body)


@blp.route("/payouts/<int:payout_id>/flag", methods=["POST"])
@blp.authenticated
@blp.arguments(FlagSchema)
@blp.response(200, PayoutSchema)
@blp.alt_response(404, description="No such payout")
@blp.alt_response(409, description="The payout has not failed")
def flag_payout(body: dict[str, Any], payout_id: int) -> Payout:
    """Flag a failed transfer as needing investigation, with a note (operators); sending it again clears the flag"""
    return service.flag_for_follow_up(current_actor(), payout_id, **body)


@blp.route("/payouts/<int:payout_id>/retry", methods=["POST"])
@blp.authenticated
@blp.response(200, PayoutSchema)
@blp.alt_response(404, description="No such payout")
@blp.alt_response(409, description="The payout has not failed")
def retry_payout(payout_id: int) -> Payout:
    """Send a failed Stripe payout again (operators)"""
    return service.retry_payout(current_actor(), payout_id)
