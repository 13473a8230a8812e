from typing import Any

from market.api import MarketBlueprint
from market.auth import current_actor
from market.ledger import reading
from market.ledger.models import LedgerEntry
from market.ledger.schemas import BalanceSchema, EntryQuerySchema, EntrySchema
from market.pagination import Page, PageArgsSchema, page_schema

blp = MarketBlueprint("ledger", __name__, url_prefix="/api/v1", description="The double-entry ledger (operators)")


@blp.route("/ledger/balances", methods=["GET"])
@blp.authenticated
@blp.arguments(PageArgsSchema, location="query")
@blp.response(200, page_schema(BalanceSchema))
def list_ledger_balances(args: dict[str, Any]) -> Page[dict[str, Any]]:
    """Accounts' balances by account code, derived from their entries (operators)"""
    return reading.balances(current_actor(), **args)


@blp.route("/ledger/entries", methods=["GET"])
@blp.authenticated
@blp.arguments(EntryQuerySchema, location="query")
@blp.response(200, page_schema(EntrySchema))
def list_ledger_entries(args: dict[str, Any]) -> Page[LedgerEntry]:
    """Ledger entries, newest first, by account code and order (operators)"""
    return reading.entries(current_actor(), **args)
