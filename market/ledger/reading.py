"""Reading the ledger for operators: balances and entries."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import joinedload

from market.accounts.models import Role
from market.auth import Actor
from market.extensions import db
from market.ledger.models import LedgerAccount, LedgerEntry, LedgerTransaction
from market.pagination import Page, SortKey, keyset_page


def balances(actor: Actor, *, limit: int, cursor: str | None = None) -> Page[dict[str, Any]]:
    """Accounts by code, each with the sum of its entries."""
    actor.require(Role.OPERATOR)
    keys = [SortKey(LedgerAccount.code, "code"), SortKey(LedgerAccount.id, "id")]
    accounts = keyset_page(select(LedgerAccount), keys, limit=limit, cursor=cursor)
    rows = db.session.execute(
        select(LedgerEntry.account_id, func.sum(LedgerEntry.amount))
        .where(LedgerEntry.account_id.in_([a.id for a in accounts.items]))
        .group_by(LedgerEntry.account_id)
    ).tuples()
    sums = {account_id: total for account_id, total in rows}
    items = [
        {"account": a.code, "kind": a.kind, "currency": a.currency, "balance": sums.get(a.id, 0)}
        for a in accounts.items
    ]
    return Page(items=items, next_cursor=accounts.next_cursor)


def entries(
    actor: Actor, *, account: str | None = None, order_id: int | None = None, limit: int, cursor: str | None = None
) -> Page[LedgerEntry]:
    actor.require(Role.OPERATOR)
    stmt = (
        select(LedgerEntry)
        .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
        .options(joinedload(LedgerEntry.transaction), joinedload(LedgerEntry.account))
    )
    if account is not None:
        stmt = stmt.where(LedgerEntry.account_id.in_(select(LedgerAccount.id).where(LedgerAccount.code == account)))
    if order_id is not None:
        stmt = stmt.where(LedgerTransaction.order_id == order_id)
    return keyset_page(stmt, [SortKey(LedgerEntry.id, "id", descending=True)], limit=limit, cursor=cursor)
