"""Reading payouts and runs: lists, statements (JSON and spreadsheet rows)
read from the farm entries each payout settled, and the run's bank file."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, func, or_, select, true
from sqlalchemy.orm import aliased

from market.accounts.models import Role
from market.auth import Actor
from market.catalog.models import Farm, PayoutMethod
from market.csv_export import Text, kg, yuan
from market.errors import NotFound
from market.extensions import db
from market.orders.models import OrderLine
from market.pagination import Page, SortKey, count_rows, keyset_page
from market.payouts.models import (
    Payout,
    PayoutNotFound,
    PayoutRun,
    PayoutStatus,
    TransferReversal,
)
from market.premiums.models import PremiumProgramme
from market.settlement.models import PREMIUM_KINDS, EntryKind, FarmEntry, entries_paid_by, paid_by

# --- reading ----------------------------------------------------------------


def _visible_payouts(actor: Actor) -> Any:
    if actor.has(Role.OPERATOR):
        return true()
    actor.require(Role.FARMER)
    return Payout.farm_id.in_(select(Farm.id).where(Farm.owner_id == actor.user_id))


def list_payouts(
    actor: Actor,
    *,
    farm_id: int | None = None,
    run_id: int | None = None,
    status: PayoutStatus | None = None,
    limit: int,
    cursor: str | None = None,
) -> Page[Payout]:
    """Payouts, newest first: a farmer's own farms', or all for operators."""
    stmt = select(Payout).where(_visible_payouts(actor))
    if farm_id is not None:
        stmt = stmt.where(Payout.farm_id == farm_id)
    if run_id is not None:
        stmt = stmt.where(Payout.run_id == run_id)
    if status is not None:
        stmt = stmt.where(Payout.status == status)
    return keyset_page(stmt, [SortKey(Payout.id, "id", descending=True)], limit=limit, cursor=cursor)


def count_needing_attention(actor: Actor) -> int:
    """How many payouts failed or were given up on by a worker (operators)."""
    actor.require(Role.OPERATOR)
    return count_rows(select(Payout).where(or_(Payout.status == PayoutStatus.FAILED, Payout.attention.isnot(None))))


def get_payout(actor: Actor, payout_id: int) -> Payout:
    payout = db.session.scalars(select(Payout).where(Payout.id == payout_id, _visible_payouts(actor))).one_or_none()
    if payout is None:
        raise PayoutNotFound(f"Payout {payout_id} not found.")
    return payout


def statement(actor: Actor, payout_id: int) -> dict[str, Any]:
    """The payout with its detail, all read from the farm entries it paid:
    orders and lines, refunds (of this payout's lines, and of earlier
    payouts' lines netted here as adjustments), premiums by programme, and
    reversals taken back from this payout's transfer."""
    payout = get_payout(actor, payout_id)
    paid = FarmEntry.id.in_(select(entries_paid_by([payout.id]).subquery().c.entry_id))
    lines = db.session.execute(
        select(
            FarmEntry.order_id,
            FarmEntry.order_line_id,
            OrderLine.product_name,
            FarmEntry.grams,
            OrderLine.price_per_kg,
            FarmEntry.produce,
            FarmEntry.premium,
            FarmEntry.commission,
            FarmEntry.net,
        )
        .join(OrderLine, OrderLine.id == FarmEntry.order_line_id)
        .where(paid, FarmEntry.kind == EntryKind.SALE)
        .order_by(FarmEntry.order_id, FarmEntry.order_line_id)
    ).all()
    orders: dict[int, list[dict[str, Any]]] = {}
    for row in lines:
        orders.setdefault(row.order_id, []).append(
            {
                "order_line_id": row.order_line_id,
                "product_name": row.product_name,
                "grams": row.grams,
                "price_per_kg": row.price_per_kg,
                "amount": row.produce,
                "buyer_premium": row.premium,
                "commission": row.commission,
                "net": row.net,
            }
        )
    refund_rows = db.session.execute(_refund_detail(payout.id).where(paid)).all()
    premiums = db.session.execute(
        select(PremiumProgramme.name, func.sum(FarmEntry.net).label("amount"))
        .join(PremiumProgramme, PremiumProgramme.id == FarmEntry.programme_id)
        .where(paid, FarmEntry.kind.in_(PREMIUM_KINDS))
        .group_by(PremiumProgramme.id, PremiumProgramme.name)
        .order_by(PremiumProgramme.id)
    ).all()
    reversals = db.session.scalars(
        select(TransferReversal).where(TransferReversal.payout_id == payout.id).order_by(TransferReversal.id)
    ).all()
    reversal_lines = db.session.execute(
        _refund_detail(payout.id).where(FarmEntry.reversal_id.in_([r.id for r in reversals]))
    ).all()
    return {
        "payout": payout,
        "orders": [{"order_id": order_id, "lines": order_lines} for order_id, order_lines in orders.items()],
        "refunds": [row._asdict() for row in refund_rows if not row.adjustment],
        "adjustments": [row._asdict() for row in refund_rows if row.adjustment],
        "premiums": [{"programme": row.name, "amount": int(row.amount)} for row in premiums],
        "reversals": [
            {
                "id": reversal.id,
                "run_id": reversal.run_id,
                "amount": reversal.amount,
                "status": reversal.status,
                "failure_reason": reversal.failure_reason,
                "created_at": reversal.created_at,
                "refunds": [row._asdict() for row in reversal_lines if row.reversal_id == reversal.id],
            }
            for reversal in reversals
        ],
    }


def _refund_detail(payout_id: int) -> Select[Any]:
    """Refunded parts of lines, as the farm sees them; an adjustment is one
    whose line another payout paid."""
    sale = aliased(FarmEntry)
    line_paid_by = (
        select(paid_by(sale))
        .where(sale.order_line_id == FarmEntry.order_line_id, sale.kind == EntryKind.SALE)
        .scalar_subquery()
    )
    return (
        select(
            FarmEntry.refund_id,
            FarmEntry.order_id,
            FarmEntry.order_line_id,
            (-FarmEntry.grams).label("grams"),
            (-FarmEntry.produce).label("amount"),
            (-FarmEntry.commission).label("commission"),
            (-FarmEntry.net).label("net"),
            (func.coalesce(line_paid_by, 0) != payout_id).label("adjustment"),
            FarmEntry.reversal_id,
        )
        .where(FarmEntry.kind == EntryKind.REFUND)
        .order_by(FarmEntry.id)
    )


def list_runs(actor: Actor, *, limit: int, cursor: str | None = None) -> Page[PayoutRun]:
    actor.require(Role.OPERATOR)
    return keyset_page(select(PayoutRun), [SortKey(PayoutRun.id, "id", descending=True)], limit=limit, cursor=cursor)


def get_run(actor: Actor, run_id: int) -> PayoutRun:
    actor.require(Role.OPERATOR)
    run = db.session.get(PayoutRun, run_id)
    if run is None:
        raise NotFound(f"Payout run {run_id} not found.")
    return run


def bank_file(actor: Actor, run_id: int) -> list[dict[str, Any]]:
    """The run's bank-transfer payouts still to execute, one row each, to
    the bank details the run paid them to, with the full account number
    (this file is for the operators' bank only)."""
    run = get_run(actor, run_id)
    rows = db.session.execute(
        select(
            Payout.id,
            Payout.amount,
            Payout.currency,
            Farm.name,
            Payout.bank_account_holder,
            Payout.bank_name,
            Payout.bank_account_number,
        )
        .join(Farm, Farm.id == Payout.farm_id)
        .where(
            Payout.run_id == run.id,
            Payout.method == PayoutMethod.BANK_TRANSFER,
            Payout.status == PayoutStatus.AWAITING_CONFIRMATION,
        )
        .order_by(Payout.id)
    ).all()
    return [
        {
            "payout_id": row.id,
            "reference": f"payout-{row.id}",
            "farm": row.name,
            "account_holder": row.bank_account_holder,
            "bank_name": row.bank_name,
            "account_number": Text(row.bank_account_number),
            "amount_yuan": yuan(row.amount),
            "currency": row.currency,
        }
        for row in rows
    ]


BANK_FILE_COLUMNS = (
    "payout_id", "reference", "farm", "account_holder", "bank_name", "account_number", "amount_yuan", "currency",
)  # fmt: skip
STATEMENT_COLUMNS = (
    "section", "order_id", "order_line_id", "item", "weight_kg", "price_per_kg_yuan",
    "amount_yuan", "buyer_premium_yuan", "commission_yuan", "net_yuan",
)  # fmt: skip


def statement_rows(detail: dict[str, Any]) -> list[dict[str, Any]]:
    """A statement as spreadsheet rows: sales, refunds, adjustments,
    premiums, reversals, then the totals; money in yuan, weight in kg."""
    payout: Payout = detail["payout"]
    rows: list[dict[str, Any]] = []
    for order in detail["orders"]:
        for line in order["lines"]:
            rows.append(
                {
                    "section": "sale",
                    "order_id": order["order_id"],
                    "order_line_id": line["order_line_id"],
                    "item": line["product_name"],
                    "weight_kg": kg(line["grams"]),
                    "price_per_kg_yuan": yuan(line["price_per_kg"]),
                    "amount_yuan": yuan(line["amount"]),
                    "buyer_premium_yuan": yuan(line["buyer_premium"]),
                    "commission_yuan": yuan(line["commission"]),
                    "net_yuan": yuan(line["net"]),
                }
            )
    for section in ("refunds", "adjustments"):
        for refund in detail[section]:
            rows.append(
                {
                    "section": "refund" if section == "refunds" else "adjustment",
                    "order_id": refund["order_id"],
                    "order_line_id": refund["order_line_id"],
                    "item": f"refund {refund['refund_id']}",
                    "weight_kg": kg(refund["grams"]),
                    "amount_yuan": yuan(-refund["amount"]),
                    "commission_yuan": yuan(-refund["commission"]),
                    "net_yuan": yuan(-refund["net"]),
                }
            )
    for premium in detail["premiums"]:
        rows.append({"section": "premium", "item": premium["programme"], "net_yuan": yuan(premium["amount"])})
    for reversal in detail["reversals"]:
        rows.append(
            {
                "section": "reversal",
                "item": f"reversal {reversal['id']} ({reversal['status']})",
                "net_yuan": yuan(-reversal["amount"]),
            }
        )
    rows.append(
        {
            "section": "total",
            "item": f"payout {payout.id} ({payout.status})",
            "weight_kg": kg(payout.grams),
            "amount_yuan": yuan(payout.sales),
            "commission_yuan": yuan(payout.commission),
            "net_yuan": yuan(payout.amount),
        }
    )
    return rows
