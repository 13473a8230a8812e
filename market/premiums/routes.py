from typing import Any

from flask import Response

from market.api import MarketBlueprint, csv_response, json_or_csv
from market.auth import current_actor, optional_actor
from market.pagination import Page, PageArgsSchema, page_schema
from market.premiums import deposits, service
from market.premiums.models import PremiumProgramme, SponsorDeposit
from market.premiums.schemas import (
    ApplicablePremiumSchema,
    DepositCreateSchema,
    DepositSchema,
    ProgrammeCreateSchema,
    ProgrammeQuerySchema,
    ProgrammeSchema,
    ProgrammeStatementSchema,
    ProgrammeUpdateSchema,
    StatementQuerySchema,
)

blp = MarketBlueprint("premiums", __name__, url_prefix="/api/v1", description="Per-kg premium programmes")


@blp.route("/premium-programmes", methods=["POST"])
@blp.authenticated
@blp.arguments(ProgrammeCreateSchema)
@blp.response(201, ProgrammeSchema, location="/premium-programmes/{id}")
def create_premium_programme(body: dict[str, Any]) -> PremiumProgramme:
    """Start a premium programme (operators)"""
    return service.create_programme(current_actor(), **body)


@blp.route("/premium-programmes", methods=["GET"])
@blp.authenticated
@blp.arguments(ProgrammeQuerySchema, location="query")
@blp.response(200, page_schema(ProgrammeSchema))
def list_premium_programmes(args: dict[str, Any]) -> Page[PremiumProgramme]:
    """Premium programmes with their budgets, newest first (operators)"""
    return service.list_programmes(current_actor(), **args)


@blp.route("/premium-programmes/<int:programme_id>", methods=["GET"])
@blp.authenticated
@blp.response(200, ProgrammeSchema)
@blp.alt_response(404, description="No such programme")
def get_premium_programme(programme_id: int) -> PremiumProgramme:
    """One programme with its budget (operators)"""
    return service.get_programme(current_actor(), programme_id)


@blp.route("/premium-programmes/<int:programme_id>", methods=["PATCH"])
@blp.authenticated
@blp.arguments(ProgrammeUpdateSchema)
@blp.response(200, ProgrammeSchema)
@blp.alt_response(404, description="No such programme")
def update_premium_programme(body: dict[str, Any], programme_id: int) -> PremiumProgramme:
    """Set what livestream hosts earn of the programme's lines, from the next capture on (operators)"""
    return service.set_host_commission(current_actor(), programme_id, body["host_commission_bp"])


@blp.route("/premium-programmes/<int:programme_id>/end", methods=["POST"])
@blp.authenticated
@blp.response(200, ProgrammeSchema)
@blp.alt_response(404, description="No such programme")
def end_premium_programme(programme_id: int) -> PremiumProgramme:
    """End a programme now (one not started yet never runs); lines already placed keep their premiums (operators)"""
    return service.end_programme(current_actor(), programme_id)


@blp.route("/premium-programmes/<int:programme_id>/deposits", methods=["POST"])
@blp.authenticated
@blp.arguments(DepositCreateSchema)
@blp.response(201, DepositSchema, location="/premium-programmes/{programme_id}/deposits/{id}")
@blp.alt_response(404, description="No such programme")
@blp.alt_response(409, description="This bank reference is recorded on the programme already")
@blp.alt_response(422, description="Bad input, or a programme its buyers fund")
def record_sponsor_deposit(body: dict[str, Any], programme_id: int) -> SponsorDeposit:
    """Record money the sponsor paid towards a sponsor-funded programme, once per bank reference (operators)"""
    return deposits.record_deposit(current_actor(), programme_id, **body)


@blp.route("/premium-programmes/<int:programme_id>/deposits", methods=["GET"])
@blp.authenticated
@blp.arguments(PageArgsSchema, location="query")
@blp.response(200, page_schema(DepositSchema))
@blp.alt_response(404, description="No such programme")
def list_sponsor_deposits(args: dict[str, Any], programme_id: int) -> Page[SponsorDeposit]:
    """The sponsor's deposits to a programme, newest first (operators)"""
    return deposits.list_deposits(current_actor(), programme_id, **args)


@blp.route("/premium-programmes/<int:programme_id>/deposits/<int:deposit_id>", methods=["GET"])
@blp.authenticated
@blp.response(200, DepositSchema)
@blp.alt_response(404, description="No such programme or deposit")
def get_sponsor_deposit(programme_id: int, deposit_id: int) -> SponsorDeposit:
    """One deposit (operators)"""
    return deposits.get_deposit(current_actor(), programme_id, deposit_id)


@blp.route("/premium-programmes/<int:programme_id>/statement", methods=["GET"])
@blp.authenticated
@blp.arguments(StatementQuerySchema, location="query")
@blp.response(200, ProgrammeStatementSchema)
@blp.doc(**json_or_csv(ProgrammeStatementSchema, "The statement, as JSON or (format=csv) a CSV download"))
@blp.alt_response(404, description="No such programme")
@blp.alt_response(422, description="Bad period, or a programme its buyers fund (no sponsor account)")
def get_programme_statement(args: dict[str, Any], programme_id: int) -> dict[str, Any] | Response:
    """What the sponsor owes: premiums earned and reversed, deposits, balance (operators; sponsor-funded only)

    With format=csv, the same as a CSV download, money in yuan."""
    wanted = args.pop("format")
    report = deposits.statement(current_actor(), programme_id, **args)
    if wanted == "csv":
        period = f"{args['start'] or 'start'}-{args['end'] or 'now'}"
        name = f"programme-{programme_id}-statement-{period}.csv"
        return csv_response(deposits.statement_rows(report), deposits.STATEMENT_COLUMNS, name)
    return report


@blp.route("/listings/<int:listing_id>/premiums", methods=["GET"])
@blp.response(200, page_schema(ApplicablePremiumSchema))
@blp.alt_response(404, description="No such listing, or not one you may see")
def list_listing_premiums(listing_id: int) -> Page[PremiumProgramme]:
    """Premiums per kg that apply to a listing now, on one page: buyers see what they pay, the farmer all they earn"""
    return Page(items=service.applicable(optional_actor(), listing_id), next_cursor=None)
