from typing import Any

from market.api import MarketBlueprint
from market.auth import current_actor, optional_actor
from market.pagination import Page, page_schema
from market.premiums import service
from market.premiums.models import PremiumProgramme
from market.premiums.schemas import (
    ApplicablePremiumSchema,
    ProgrammeCreateSchema,
    ProgrammeQuerySchema,
    ProgrammeSchema,
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


@blp.route("/premium-programmes/<int:programme_id>/end", methods=["POST"])
@blp.authenticated
@blp.response(200, ProgrammeSchema)
@blp.alt_response(404, description="No such programme")
def end_premium_programme(programme_id: int) -> PremiumProgramme:
    """End a programme now; lines already placed keep their premiums (operators)"""
    return service.end_programme(current_actor(), programme_id)


@blp.route("/listings/<int:listing_id>/premiums", methods=["GET"])
@blp.response(200, page_schema(ApplicablePremiumSchema))
@blp.alt_response(404, description="No such listing, or not one you may see")
def list_listing_premiums(listing_id: int) -> Page[PremiumProgramme]:
    """Premiums per kg that apply to a listing now, on one page: buyers see what they pay, the farmer all they earn"""
    return Page(items=service.applicable(optional_actor(), listing_id), next_cursor=None)
