"""Posting balanced transactions and reading balances.

Account codes name what they hold: `gateway_cash:<provider>` (money at the
payment provider or in the operators' hands), `buyer_deposits` (offline
payments received before the weighed amount is known), `farm_payable:<id>`
(what the platform owes a farm), `platform_commission` (what the
platform keeps of its commission), `seller_payable:<id>` (what it owes a
station or host of that commission),
`sponsor_liability:<programme>` (the sponsor's account: debited by the
premiums the farms earn from its programme, credited by reversals and by
its deposits; the balance is what the sponsor owes), `station_cash:<point>`
(cash a station took from villagers on collection and has not yet paid
into the marketplace's bank), `station_cash_difference` (cash counted at
stations' cash-ups and by the bank beyond what was taken, debit-positive:
a shortfall debits it, cash over credits it). Signs: debits are
positive, credits negative; every transaction sums to zero.

Accounts are in the marketplace currency (MARKET_CURRENCY), except money
the provider only ever held in another one, such as Stripe's fees in its
settlement currency: those accounts' codes end in the currency
(`gateway_fees:USD`, `gateway_cash:stripe:USD`; see `in_currency`), each
account records its currency, and a transaction never mixes two.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from flask import current_app
from sqlalchemy import ColumnElement, Select, String, cast, func, literal, select

from market.db import insert_if_absent, upsert
from market.extensions import db
from market.ledger.models import AccountKind, LedgerAccount, LedgerEntry, LedgerTransaction
from market.money import CurrencyMismatch

BUYER_DEPOSITS = "buyer_deposits"
PLATFORM_COMMISSION = "platform_commission"
# Paid to farms by a payout, not yet confirmed as left our cash.
PAYOUTS_IN_TRANSIT = "payouts_in_transit"


class Unbalanced(ValueError):
    """Debits and credits of a transaction differ: a bug, never user input."""


def gateway_cash(provider: str) -> str:
    return f"gateway_cash:{provider}"


FARM_PAYABLE_PREFIX = "farm_payable:"


def farm_payable(farm_id: int) -> str:
    return f"{FARM_PAYABLE_PREFIX}{farm_id}"


def farm_payable_of(farm_id: Any) -> ColumnElement[str]:
    """`farm_payable` in SQL, of a farm id column."""
    return literal(FARM_PAYABLE_PREFIX) + cast(farm_id, String)


SELLER_PAYABLE_PREFIX = "seller_payable:"


def seller_payable(seller_id: int) -> str:
    return f"{SELLER_PAYABLE_PREFIX}{seller_id}"


STATION_CASH_PREFIX = "station_cash:"
STATION_CASH_DIFFERENCE = "station_cash_difference"


def station_cash(point_id: int) -> str:
    return f"{STATION_CASH_PREFIX}{point_id}"


def market_currency() -> str:
    currency: str = current_app.config["MARKET_CURRENCY"]
    return currency


def in_currency(code: str, currency: str) -> str:
    """The account `code` for money in `currency`: itself in the marketplace
    currency, else its sibling named after the currency (`gateway_fees:USD`)."""
    return code if currency == market_currency() else f"{code}:{currency}"


def _kind(code: str) -> AccountKind:
    prefix = code.split(":", 1)[0]
    return {
        "gateway_cash": AccountKind.ASSET,
        "station_cash": AccountKind.ASSET,
        "station_cash_difference": AccountKind.EXPENSE,
        "payouts_in_transit": AccountKind.LIABILITY,
        "buyer_deposits": AccountKind.LIABILITY,
        "farm_payable": AccountKind.LIABILITY,
        "seller_payable": AccountKind.LIABILITY,
        "platform_commission": AccountKind.REVENUE,
        "sponsor_liability": AccountKind.LIABILITY,
        "gateway_fees": AccountKind.EXPENSE,
    }[prefix]


def _ids_of(codes: list[str]) -> Select[tuple[str, int, str]]:
    return select(LedgerAccount.code, LedgerAccount.id, LedgerAccount.currency).where(LedgerAccount.code.in_(codes))


def _account_ids(codes: Iterable[str], currency: str) -> dict[str, int]:
    """Ids of the accounts `codes`, all in `currency`, creating missing ones race-free."""
    wanted = sorted(set(codes))
    rows = list(db.session.execute(_ids_of(wanted)))
    missing = sorted(set(wanted) - {row.code for row in rows})
    if missing:
        new = [
            {
                "code": code,
                "kind": _kind(code),
                "currency": currency,
                "farm_id": int(code.split(":")[1]) if code.startswith(FARM_PAYABLE_PREFIX) else None,
            }
            for code in missing
        ]
        insert_if_absent(LedgerAccount, ["code"], *new)
        rows.extend(db.session.execute(_ids_of(missing)))
    _refuse_other_currencies(rows, currency)
    return {row.code: row.id for row in rows}


def _refuse_other_currencies(accounts: Iterable[Any], currency: str) -> None:
    """Raise unless every one of `accounts` (rows with code and currency)
    holds `currency`: a bug, never user input, since amounts in two
    currencies do not add up."""
    other = sorted(f"{row.code} holds {row.currency}" for row in accounts if row.currency != currency)
    if other:
        raise CurrencyMismatch(f"posting {currency}, but {', '.join(other)}")


def open_farm_accounts(farm_ids: Select[Any]) -> None:
    """The payable account of each farm `farm_ids` selects, in the
    marketplace currency, created set-wise where missing."""
    currency = market_currency()
    farms = farm_ids.subquery()
    farm_id = farms.c[0]
    code = farm_payable_of(farm_id)
    kind = literal(_kind(FARM_PAYABLE_PREFIX).value)
    new = select(code, kind, literal(currency), farm_id).where(farm_id.isnot(None))
    db.session.execute(
        upsert(LedgerAccount)
        .from_select(["code", "kind", "currency", "farm_id"], new)
        .on_conflict_do_nothing(index_elements=["code"])
    )
    other = select(LedgerAccount.code, LedgerAccount.currency).join(farms, LedgerAccount.code == code)
    _refuse_other_currencies(db.session.execute(other.where(LedgerAccount.currency != currency)), currency)


def account_ids(codes: Iterable[str]) -> dict[str, int]:
    """Ids of the accounts `codes` in the marketplace currency (created if
    missing), for set-based posting."""
    return _account_ids(codes, market_currency())


def post(
    kind: str,
    reference: str,
    amounts: dict[str, int],
    *,
    order_id: int | None = None,
    memo: str = "",
    currency: str | None = None,
) -> LedgerTransaction:
    """Add one balanced transaction (account code -> signed amount) in
    `currency` (the marketplace's unless given), which every account it
    touches must hold. Flushes only; the caller's commit makes it and the
    state it records one fact."""
    lines = {code: amount for code, amount in amounts.items() if amount != 0}
    if sum(lines.values()) != 0:
        raise Unbalanced(f"{reference}: debits and credits differ by {sum(lines.values())}")
    ids = _account_ids(lines, currency or market_currency())
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
