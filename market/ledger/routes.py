from typing import Any

from market.api import MarketBlueprint
from market.auth import current_actor
from market.ledger import reading
from market.ledger.models import LedgerEntry
from market.ledger.schemas import BalanceSchema, EntryQuerySchema, EntrySchema
from market.pagination import Page, page_schema

blp = MarketBlueprint("ledger", __name__, url_prefix="/api/v1", description="The double-entry ledger (operators)")


@blp.route("/ledger/balances", methods=["GET"])
@blp.authenticated
@blp.response(200, BalanceSchema(many=True))
def balances() -> list[dict[str, Any]]:
    """Every account's balance, derived from its entries (operators)"""
    return reading.balances(current_actor())


@blp.route("/ledger/entries", methods=["GET"])
@blp.authenticated
@blp.arguments(EntryQuerySchema, location="query")
@blp.response(200, page_schema(EntrySchema))
def entries(args: dict[str, Any]) -> Page[LedgerEntry]:
    """Ledger entries, newest first, by account code and order (operators)"""
    return reading.entries(current_actor(), **args)
