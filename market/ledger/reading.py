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


def balances(actor: Actor) -> list[dict[str, Any]]:
    actor.require(Role.OPERATOR)
    rows = db.session.execute(
        select(
            LedgerAccount.code,
            LedgerAccount.kind,
            LedgerAccount.currency,
            func.coalesce(func.sum(LedgerEntry.amount), 0),
        )
        .outerjoin(LedgerEntry, LedgerEntry.account_id == LedgerAccount.id)
        .group_by(LedgerAccount.id, LedgerAccount.code, LedgerAccount.kind, LedgerAccount.currency)
        .order_by(LedgerAccount.code)
    ).all()
    return [
        {"account": code, "kind": kind, "currency": currency, "balance": balance}
        for code, kind, currency, balance in rows
    ]


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
