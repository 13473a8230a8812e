"""Posting balanced transactions and reading balances.

Account codes name what they hold: `gateway_cash:<provider>` (money at the
payment provider or in the operators' hands), `buyer_deposits` (offline
payments received before the weighed amount is known), `farm_payable:<id>`
(what the platform owes a farm), `platform_commission`. Signs: debits are
positive, credits negative; every transaction sums to zero.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from sqlalchemy import Select, func, select

from market.db import insert_if_absent
from market.extensions import db
from market.ledger.models import AccountKind, LedgerAccount, LedgerEntry, LedgerTransaction

BUYER_DEPOSITS = "buyer_deposits"
PLATFORM_COMMISSION = "platform_commission"
# Paid to farms by a payout, not yet confirmed as left our cash.
PAYOUTS_IN_TRANSIT = "payouts_in_transit"


class Unbalanced(ValueError):
    """Debits and credits of a transaction differ: a bug, never user input."""


def gateway_cash(provider: str) -> str:
    return f"gateway_cash:{provider}"


def farm_payable(farm_id: int) -> str:
    return f"farm_payable:{farm_id}"


def _kind(code: str) -> AccountKind:
    prefix = code.split(":", 1)[0]
    return {
        "gateway_cash": AccountKind.ASSET,
        "payouts_in_transit": AccountKind.LIABILITY,
        "buyer_deposits": AccountKind.LIABILITY,
        "farm_payable": AccountKind.LIABILITY,
        "platform_commission": AccountKind.REVENUE,
        "sponsor_liability": AccountKind.LIABILITY,
        "gateway_fees": AccountKind.EXPENSE,
    }[prefix]


def _ids_of(codes: list[str]) -> Select[tuple[str, int]]:
    return select(LedgerAccount.code, LedgerAccount.id).where(LedgerAccount.code.in_(codes))


def _account_ids(codes: Iterable[str]) -> dict[str, int]:
    """Ids of the accounts `codes`, creating missing ones race-free."""
    wanted = sorted(set(codes))
    found = {row.code: row.id for row in db.session.execute(_ids_of(wanted))}
    missing = [code for code in wanted if code not in found]
    if missing:
        rows = [
            {
                "code": code,
                "kind": _kind(code),
                "farm_id": int(code.split(":")[1]) if code.startswith("farm_payable:") else None,
            }
            for code in missing
        ]
        insert_if_absent(LedgerAccount, ["code"], *rows)
        found.update({row.code: row.id for row in db.session.execute(_ids_of(missing))})
    return found


def account_ids(codes: Iterable[str]) -> dict[str, int]:
    """Ids of the accounts `codes` (created if missing), for set-based posting."""
    return _account_ids(codes)


def post(
    kind: str, reference: str, amounts: dict[str, int], *, order_id: int | None = None, memo: str = ""
) -> LedgerTransaction:
    """Add one balanced transaction (account code -> signed amount). Flushes
    only; the caller's commit makes it and the state it records one fact."""
    lines = {code: amount for code, amount in amounts.items() if amount != 0}
    if sum(lines.values()) != 0:
        raise Unbalanced(f"{reference}: debits and credits differ by {sum(lines.values())}")
    ids = _account_ids(lines)
    transaction = LedgerTransaction(kind=kind, reference=reference, order_id=order_id, memo=memo)
    transaction.entries = [LedgerEntry(account_id=ids[code], amount=amount) for code, amount in sorted(lines.items())]
    db.session.add(transaction)
    db.session.flush()
    return transaction


def already_posted(reference: str) -> bool:
    return db.session.scalar(select(LedgerTransaction.id).where(LedgerTransaction.reference == reference)) is not None


def balance(code: str) -> int:
    """The account's balance, debit-positive, derived from its entries."""
    return (
        db.session.scalar(
            select(func.coalesce(func.sum(LedgerEntry.amount), 0))
            .join(LedgerAccount, LedgerAccount.id == LedgerEntry.account_id)
            .where(LedgerAccount.code == code)
        )
        or 0
    )


def split(amounts: Iterable[tuple[str, int]]) -> dict[str, int]:
    """Sum (account code, amount) pairs into one amount per account."""
    totals: dict[str, int] = defaultdict(int)
    for code, amount in amounts:
        totals[code] += amount
    return dict(totals)
