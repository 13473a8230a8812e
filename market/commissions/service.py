"""Sellers (stations and hosts), what they are owed, and how payout runs pay
them (docs/commissions.md).

Operators make and change sellers; a host reads their own seller, station
staff their station's. A payout run pays each seller the sum of its due
entries (those of orders the run finds settled or closed, and take-backs
of entries paid earlier) by bank transfer, in the run's seller bank file,
and an operator confirms each transfer as for farms.
"""

from __future__ import annotations

import secrets
from datetime import date
from typing import Any

from flask import current_app
from sqlalchemy import ColumnElement, CompoundSelect, Select, and_, distinct, func, or_, select, update
from sqlalchemy.orm import aliased

from market.accounts.models import Role, User
from market.auth import Actor
from market.catalog import service as catalog
from market.catalog.models import FulfilmentPointKind
from market.commissions.earning import check_within_platform_commission
from market.commissions.models import (
    CommissionEntry,
    CommissionKind,
    Seller,
    SellerKind,
    SellerPayout,
    SellerPayoutStatus,
    SellerSkip,
)
from market.csv_export import Text, yuan
from market.db import business_day_range, get_or_404, unit_of_work, utcnow
from market.errors import Conflict, Invalid, NotFound
from market.extensions import db
from market.ledger import service as ledger
from market.orders.models import StationStaff
from market.pagination import Page, SortKey, keyset_page
from market.payments.models import Provider
from market.payouts.accounts import mask_account_number
from market.payouts.models import BANK_COLUMNS, PayoutRun, SkipReason

# The ledger transaction of a seller payout the bank executed.
PAID_KIND = "seller_payout_paid"
SELLER_DETAILS = ("name", "rate_bp", "per_order", "active")
BANK_DETAILS = ("account_holder", "bank_name", "account_number")
# Codes are read out on livestreams and typed on phones: no 0/O or 1/I.
CODE_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
STATEMENT_COLUMNS = ("entry_id", "kind", "order_id", "order_line_id", "refund_id", "produce_yuan", "amount_yuan",
                     "created_at")  # fmt: skip
SALES_COLUMNS = ("seller_id", "kind", "name", "code", "fulfilment_point_id", "orders", "produce_yuan",
                 "commission_yuan")  # fmt: skip
BANK_FILE_COLUMNS = ("seller_payout_id", "reference", "seller", "account_holder", "bank_name", "account_number",
                     "amount_yuan", "currency")  # fmt: skip


class SellerNotFound(NotFound):
    pass


class SellerPayoutNotFound(NotFound):
    pass


# --- sellers ----------------------------------------------------------------


def _mine(actor: Actor) -> ColumnElement[bool]:
    """The sellers `actor` may read: every one for operators, else their
    own host seller and their stations'."""
    if actor.has(Role.OPERATOR):
        return Seller.id.isnot(None)
    stations = select(StationStaff.fulfilment_point_id).where(StationStaff.user_id == actor.user_id)
    return or_(Seller.user_id == actor.user_id, Seller.fulfilment_point_id.in_(stations))


def _seller(actor: Actor, seller_id: int, *, lock: bool = False) -> Seller:
    seller = get_or_404(Seller, seller_id, "Seller", lock=lock, missing=SellerNotFound)
    if not db.session.scalar(select(Seller.id).where(Seller.id == seller.id, _mine(actor))):
        raise SellerNotFound(f"Seller {seller_id} not found.")
    return seller


def _check_rate(kind: SellerKind, rate_bp: int | None, per_order: int | None) -> None:
    if rate_bp is not None and per_order is not None:
        raise Invalid("Give rate_bp or per_order, not both.", {"per_order": ["Give rate_bp or per_order, not both."]})
    if per_order is not None and kind == SellerKind.HOST:
        raise Invalid("A host earns basis points of produce.", {"per_order": ["Only stations earn per order."]})
    check_within_platform_commission("rate_bp", rate_bp)


def _set_bank_details(seller: Seller, details: dict[str, Any]) -> None:
    given = {name: details[name] for name in BANK_DETAILS if name in details}
    if not given:
        return
    if set(given) != set(BANK_DETAILS):
        missing = sorted(set(BANK_DETAILS) - set(given))
        raise Invalid(
            "Bank details come together.", {name: ["Required with the other bank details."] for name in missing}
        )
    number = given["account_number"].replace(" ", "")
    seller.bank_account_holder = given["account_holder"]
    seller.bank_name = given["bank_name"]
    seller.bank_account_number = number
    seller.bank_account_masked = mask_account_number(number)


def _new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(8))


def create_seller(actor: Actor, *, kind: SellerKind, name: str, **details: Any) -> dict[str, Any]:
    """A station (`fulfilment_point_id`, a village station) or a host
    (`user_id`, with an attribution `code` or one made up), earning
    `rate_bp` of produce or (stations) `per_order`; STATION_ or
    HOST_COMMISSION_BP when neither is given."""
    actor.require(Role.OPERATOR)
    rate_bp, per_order = details.get("rate_bp"), details.get("per_order")
    _check_rate(kind, rate_bp, per_order)
    if rate_bp is None and per_order is None:
        rate_bp = current_app.config["HOST_COMMISSION_BP" if kind == SellerKind.HOST else "STATION_COMMISSION_BP"]
    with unit_of_work():
        seller = Seller(kind=kind, name=name, rate_bp=rate_bp, per_order=per_order, active=True)
        if kind == SellerKind.STATION:
            point_id = details.get("fulfilment_point_id")
            if point_id is None:
                raise Invalid("A station seller is a village station.", {"fulfilment_point_id": ["Required."]})
            point = catalog.get_fulfilment_point(point_id)
            if point.kind != FulfilmentPointKind.VILLAGE_STATION:
                raise Invalid(
                    "Only village stations earn commissions.", {"fulfilment_point_id": ["Not a village station."]}
                )
            if db.session.scalar(select(Seller.id).where(Seller.fulfilment_point_id == point_id)):
                raise Conflict(f"Fulfilment point {point_id} is a seller already.")
            seller.fulfilment_point_id = point_id
        else:
            user_id = details.get("user_id")
            if user_id is None or db.session.get(User, user_id) is None:
                raise Invalid("A host is a user of the marketplace.", {"user_id": ["No such user."]})
            if db.session.scalar(select(Seller.id).where(Seller.user_id == user_id)):
                raise Conflict(f"User {user_id} is a host already.")
            code = (details.get("code") or _new_code()).upper()
            if db.session.scalar(select(Seller.id).where(Seller.code == code)):
                raise Conflict(f"The attribution code {code} is taken.")
            seller.user_id, seller.code = user_id, code
        _set_bank_details(seller, details)
        db.session.add(seller)
        db.session.flush()
    return get_seller(actor, seller.id)


def update_seller(actor: Actor, seller_id: int, changes: dict[str, Any]) -> dict[str, Any]:
    """Change a seller's name, rate (from the next capture on), whether it
    is active, or its bank details (operators)."""
    actor.require(Role.OPERATOR)
    with unit_of_work():
        seller = _seller(actor, seller_id, lock=True)
        if "rate_bp" in changes or "per_order" in changes:
            rate_bp, per_order = changes.get("rate_bp"), changes.get("per_order")
            _check_rate(seller.kind, rate_bp, per_order)
            if rate_bp is None and per_order is None:
                raise Invalid("A seller earns at some rate.", {"rate_bp": ["Give rate_bp or per_order."]})
            seller.rate_bp, seller.per_order = rate_bp, per_order
        for name in ("name", "active"):
            if name in changes:
                setattr(seller, name, changes[name])
        _set_bank_details(seller, changes)
    return get_seller(actor, seller_id)


def _balances(seller_ids: list[int]) -> dict[int, dict[str, int]]:
    """Per seller: earned, reversed (positive), paid, and payable (earned
    less reversed less paid: the sum of its entries)."""

    def total(kind: CommissionKind) -> Any:
        return func.coalesce(func.sum(CommissionEntry.amount).filter(CommissionEntry.kind == kind), 0)

    rows = db.session.execute(
        select(
            CommissionEntry.seller_id,
            total(CommissionKind.EARNED),
            total(CommissionKind.REVERSED),
            total(CommissionKind.PAYOUT),
        )
        .where(CommissionEntry.seller_id.in_(seller_ids))
        .group_by(CommissionEntry.seller_id)
    )
    found = {
        seller: {"earned": int(earned), "reversed": -int(back), "paid": -int(paid)}
        for seller, earned, back, paid in rows
    }
    balances = {}
    for seller in seller_ids:
        each = found.get(seller, {"earned": 0, "reversed": 0, "paid": 0})
        balances[seller] = each | {"payable": each["earned"] - each["reversed"] - each["paid"]}
    return balances


def _shown(sellers: list[Seller]) -> list[dict[str, Any]]:
    balances = _balances([seller.id for seller in sellers])
    shown = (
        "id", "kind", "name", "fulfilment_point_id", "user_id", "code", "rate_bp", "per_order", "active",
        "bank_account_holder", "bank_name", "bank_account_masked", "created_at",
    )  # fmt: skip
    return [{name: getattr(seller, name) for name in shown} | balances[seller.id] for seller in sellers]


def get_seller(actor: Actor, seller_id: int) -> dict[str, Any]:
    return _shown([_seller(actor, seller_id)])[0]


def list_sellers(
    actor: Actor, *, limit: int, cursor: str | None = None, kind: SellerKind | None = None, active: bool | None = None
) -> Page[dict[str, Any]]:
    """The sellers the caller may read, oldest first, by kind and whether active."""
    stmt = select(Seller).where(_mine(actor))
    if kind is not None:
        stmt = stmt.where(Seller.kind == kind)
    if active is not None:
        stmt = stmt.where(Seller.active.is_(active))
    page = keyset_page(stmt, [SortKey(Seller.id, "id")], limit=limit, cursor=cursor)
    return Page(items=_shown(page.items), next_cursor=page.next_cursor)


def _entries(seller_id: int, first: date | None, last: date | None) -> Select[tuple[CommissionEntry]]:
    stmt = select(CommissionEntry).where(CommissionEntry.seller_id == seller_id)
    if first is not None:
        stmt = stmt.where(CommissionEntry.created_at >= business_day_range(first)[0])
    if last is not None:
        stmt = stmt.where(CommissionEntry.created_at < business_day_range(last)[1])
    return stmt


def list_entries(
    actor: Actor, seller_id: int, *, limit: int, cursor: str | None = None, first: date | None = None,
    last: date | None = None,
) -> Page[CommissionEntry]:  # fmt: skip
    """A seller's entries, oldest first, of the business days `first` to `last`."""
    seller = _seller(actor, seller_id)
    return keyset_page(
        _entries(seller.id, first, last), [SortKey(CommissionEntry.id, "id")], limit=limit, cursor=cursor
    )


def _statement_rows(entries: list[CommissionEntry]) -> list[dict[str, Any]]:
    return [
        {
            "entry_id": e.id,
            "kind": e.kind.value,
            "order_id": e.order_id,
            "order_line_id": e.order_line_id,
            "refund_id": e.refund_id,
            "produce_yuan": yuan(e.produce),
            "amount_yuan": yuan(e.amount),
            "created_at": e.created_at.isoformat(),
        }
        for e in entries
    ]


def entry_rows(actor: Actor, seller_id: int, *, first: date | None = None, last: date | None = None
               ) -> list[dict[str, Any]]:  # fmt: skip
    """A seller's entries of the business days `first` to `last` as CSV rows, money in yuan."""
    seller = _seller(actor, seller_id)
    return _statement_rows(list(db.session.scalars(_entries(seller.id, first, last).order_by(CommissionEntry.id))))


# --- payout runs ------------------------------------------------------------


def pay_sellers(run: PayoutRun, due_orders: CompoundSelect[Any]) -> None:
    """Within a payout run's transaction (which holds the payout-run lock):
    pay each seller the sum of its due entries not yet paid: those of the
    orders `due_orders` selects (settled or closed before the run's cutoff),
    and take-backs of lines whose earned entry an earlier payout paid. A
    seller without bank details, or whose sum is not positive, is skipped
    with the reason; its entries stay due."""
    earned = aliased(CommissionEntry)
    paid_earlier = and_(
        CommissionEntry.kind == CommissionKind.REVERSED,
        select(earned.id)
        .where(
            earned.order_line_id == CommissionEntry.order_line_id,
            earned.seller_id == CommissionEntry.seller_id,
            earned.kind == CommissionKind.EARNED,
            earned.payout_id.isnot(None),
        )
        .exists(),
    )
    due = and_(
        CommissionEntry.payout_id.is_(None),
        CommissionEntry.kind.in_((CommissionKind.EARNED, CommissionKind.REVERSED)),
        or_(CommissionEntry.order_id.in_(due_orders), paid_earlier),
    )
    totals = db.session.execute(
        select(
            CommissionEntry.seller_id, func.sum(CommissionEntry.amount), func.count(distinct(CommissionEntry.order_id))
        )
        .where(due)
        .group_by(CommissionEntry.seller_id)
        .order_by(CommissionEntry.seller_id)
    ).all()
    for seller_id, amount, orders in totals:
        seller = db.session.get(Seller, seller_id)
        assert seller is not None
        reason = (
            SkipReason.NEGATIVE_NET if amount < 0
            else SkipReason.NOTHING_TO_PAY if amount == 0
            else SkipReason.BANK_DETAILS_MISSING if seller.bank_account_number is None
            else None
        )  # fmt: skip
        if reason is not None:
            db.session.add(SellerSkip(run_id=run.id, seller_id=seller_id, reason=reason.value, amount=int(amount)))
            continue
        payout = SellerPayout(run_id=run.id, seller_id=seller_id, amount=int(amount), currency=run.currency,
                              orders=orders, **{name: getattr(seller, name) for name in BANK_COLUMNS})  # fmt: skip
        db.session.add(payout)
        db.session.flush()
        db.session.execute(
            update(CommissionEntry)
            .where(due, CommissionEntry.seller_id == seller_id)
            .values(payout_id=payout.id)
            .execution_options(synchronize_session=False)
        )
        reference = f"seller_payout:{payout.id}"
        db.session.add(CommissionEntry(reference=reference, seller_id=seller_id, kind=CommissionKind.PAYOUT,
                                       amount=-payout.amount, payout_id=payout.id))  # fmt: skip
        ledger.post(
            "seller_payout",
            reference,
            {ledger.seller_payable(seller_id): payout.amount, ledger.PAYOUTS_IN_TRANSIT: -payout.amount},
            memo=f"payout run {run.id}",
        )


def _run(actor: Actor, run_id: int) -> PayoutRun:
    actor.require(Role.OPERATOR)
    return get_or_404(PayoutRun, run_id, "Payout run")


def run_sellers(actor: Actor, run_id: int) -> dict[str, Any]:
    """What a payout run paid sellers, and whom it skipped and why (operators)."""
    run = _run(actor, run_id)
    payouts = db.session.scalars(select(SellerPayout).where(SellerPayout.run_id == run.id).order_by(SellerPayout.id))
    skips = db.session.scalars(select(SellerSkip).where(SellerSkip.run_id == run.id).order_by(SellerSkip.seller_id))
    return {"run_id": run.id, "payouts": list(payouts), "skipped": list(skips)}


def _payout(actor: Actor, payout_id: int, *, lock: bool = False) -> SellerPayout:
    payout = get_or_404(SellerPayout, payout_id, "Seller payout", lock=lock, missing=SellerPayoutNotFound)
    _seller(actor, payout.seller_id)  # operators, or the seller's own people
    return payout


def get_seller_payout(actor: Actor, payout_id: int) -> dict[str, Any]:
    """A seller payout with the entries it paid: the seller's statement."""
    payout = _payout(actor, payout_id)
    entries = db.session.scalars(
        select(CommissionEntry)
        .where(CommissionEntry.payout_id == payout.id, CommissionEntry.kind != CommissionKind.PAYOUT)
        .order_by(CommissionEntry.id)
    ).all()
    return {"payout": payout, "entries": list(entries)}


def seller_payout_rows(actor: Actor, payout_id: int) -> list[dict[str, Any]]:
    """A seller payout's statement as CSV rows, money in yuan."""
    return _statement_rows(get_seller_payout(actor, payout_id)["entries"])


def confirm_seller_payout(actor: Actor, payout_id: int, *, bank_reference: str) -> SellerPayout:
    """An operator confirms the bank executed a seller payout: the money
    leaves payouts in transit for the offline cash it was paid from."""
    actor.require(Role.OPERATOR)
    with unit_of_work():
        payout = _payout(actor, payout_id, lock=True)
        payout.confirm(bank_reference, utcnow())
        ledger.post(
            PAID_KIND,
            f"seller_payout:{payout.id}:paid",
            {ledger.PAYOUTS_IN_TRANSIT: payout.amount, ledger.gateway_cash(Provider.OFFLINE): -payout.amount},
            memo=bank_reference[:500],
        )
    return payout


def bank_file(actor: Actor, run_id: int) -> list[dict[str, Any]]:
    """The run's seller payouts still to execute, one row each, with the
    full account number (this file is for the operators' bank only)."""
    run = _run(actor, run_id)
    rows = db.session.execute(
        select(SellerPayout, Seller)
        .join(Seller, Seller.id == SellerPayout.seller_id)
        .where(SellerPayout.run_id == run.id, SellerPayout.status == SellerPayoutStatus.AWAITING_CONFIRMATION)
        .order_by(SellerPayout.id)
    ).all()
    return [
        {
            "seller_payout_id": payout.id,
            "reference": f"seller-payout-{payout.id}",
            "seller": seller.name,
            "account_holder": payout.bank_account_holder,
            "bank_name": payout.bank_name,
            "account_number": Text(payout.bank_account_number or ""),
            "amount_yuan": yuan(payout.amount),
            "currency": payout.currency,
        }
        for payout, seller in rows
    ]


# --- reports ----------------------------------------------------------------


def sales_by_seller(actor: Actor, *, first: date, last: date) -> dict[str, Any]:
    """Per seller, over the business days `first` to `last`: the orders it
    earned on, the produce it sold less what was refunded, and its
    commission earned less reversed (operators)."""
    actor.require(Role.OPERATOR)
    start, end = business_day_range(first, last)
    earned = CommissionEntry.kind == CommissionKind.EARNED
    found = db.session.execute(
        select(
            Seller,
            func.count(distinct(CommissionEntry.order_id)).filter(earned),
            func.sum(CommissionEntry.produce),
            func.sum(CommissionEntry.amount),
        )
        .join(CommissionEntry, CommissionEntry.seller_id == Seller.id)
        .where(
            CommissionEntry.kind != CommissionKind.PAYOUT,
            CommissionEntry.created_at >= start,
            CommissionEntry.created_at < end,
        )
        .group_by(Seller.id)
        .order_by(Seller.kind, Seller.name, Seller.id)
    ).all()
    rows = [
        {
            "seller_id": seller.id,
            "kind": seller.kind,
            "name": seller.name,
            "code": seller.code,
            "fulfilment_point_id": seller.fulfilment_point_id,
            "orders": int(orders),
            "produce": int(produce),
            "commission": int(commission),
        }
        for seller, orders, produce, commission in found
    ]
    currency = current_app.config["MARKET_CURRENCY"]
    return {"period_from": first, "period_to": last, "currency": currency, "rows": rows}


def sales_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`sales_by_seller`'s rows as CSV rows, money in yuan."""
    return [
        {name: row[name] for name in ("seller_id", "name", "code", "fulfilment_point_id", "orders")}
        | {"kind": row["kind"].value, "produce_yuan": yuan(row["produce"]), "commission_yuan": yuan(row["commission"])}
        for row in rows
    ]
