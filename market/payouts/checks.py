"""The ledger checked against itself and against the records it summarises.

Every transaction must sum to zero; each farm's payable must equal what its
captured lines, premiums, refunds, payouts and transfer reversals say; the
money in transit must equal the payouts not yet paid. Every figure is one
aggregate query, so the check runs over the whole ledger at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, select

from market.extensions import db
from market.ledger import service as ledger
from market.ledger.models import LedgerAccount, LedgerEntry, LedgerTransaction
from market.payments.models import CapturedLine, Refund, RefundLine, RefundStatus
from market.payouts.models import Payout, PayoutStatus, ReversalStatus, TransferReversal
from market.payouts.service import PREMIUM_KINDS


def _by_farm(rows: Iterable[Any]) -> dict[int, int]:
    return {farm_id: int(amount) for farm_id, amount in rows}


def unbalanced_transactions() -> list[str]:
    rows = db.session.execute(
        select(LedgerTransaction.reference, func.coalesce(func.sum(LedgerEntry.amount), 0))
        .outerjoin(LedgerEntry, LedgerEntry.transaction_id == LedgerTransaction.id)
        .group_by(LedgerTransaction.id, LedgerTransaction.reference)
        .having(func.coalesce(func.sum(LedgerEntry.amount), 0) != 0)
        .order_by(LedgerTransaction.id)
    ).all()
    return [f"transaction {reference} does not balance: debits exceed credits by {off}" for reference, off in rows]


def farm_mismatches() -> list[str]:
    """A farm's payable (a credit, so negative when owed) must be
    -(captured less commission, with buyer premiums) + (refunded likewise) - sponsor premiums
    + payouts - reversals."""
    booked = _by_farm(
        db.session.execute(
            select(LedgerAccount.farm_id, func.sum(LedgerEntry.amount))
            .join(LedgerEntry, LedgerEntry.account_id == LedgerAccount.id)
            .where(LedgerAccount.farm_id.isnot(None))
            .group_by(LedgerAccount.farm_id)
        )
    )
    captured = _by_farm(
        db.session.execute(
            select(
                CapturedLine.farm_id, func.sum(CapturedLine.amount - CapturedLine.commission + CapturedLine.premium)
            ).group_by(CapturedLine.farm_id)
        )
    )
    refunded = _by_farm(
        db.session.execute(
            select(RefundLine.farm_id, func.sum(RefundLine.amount - RefundLine.commission + RefundLine.premium))
            .join(Refund, Refund.id == RefundLine.refund_id)
            .where(Refund.status == RefundStatus.SUCCEEDED)
            .group_by(RefundLine.farm_id)
        )
    )
    premiums = _by_farm(
        db.session.execute(
            select(LedgerAccount.farm_id, -func.sum(LedgerEntry.amount))
            .join(LedgerEntry, LedgerEntry.account_id == LedgerAccount.id)
            .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
            .where(LedgerAccount.farm_id.isnot(None), LedgerTransaction.kind.in_(PREMIUM_KINDS))
            .group_by(LedgerAccount.farm_id)
        )
    )
    paid_out = _by_farm(db.session.execute(select(Payout.farm_id, func.sum(Payout.amount)).group_by(Payout.farm_id)))
    reversed_ = _by_farm(
        db.session.execute(
            select(TransferReversal.farm_id, func.sum(TransferReversal.amount))
            .where(TransferReversal.status == ReversalStatus.SUCCEEDED)
            .group_by(TransferReversal.farm_id)
        )
    )
    problems = []
    farms = set(booked) | set(captured) | set(refunded) | set(premiums) | set(paid_out) | set(reversed_)
    for farm_id in sorted(farms):
        expected = (
            -captured.get(farm_id, 0)
            + refunded.get(farm_id, 0)
            - premiums.get(farm_id, 0)
            + paid_out.get(farm_id, 0)
            - reversed_.get(farm_id, 0)
        )
        actual = booked.get(farm_id, 0)
        if actual != expected:
            problems.append(
                f"{ledger.farm_payable(farm_id)} is {actual} but its records say {expected} "
                f"(captured {captured.get(farm_id, 0)}, refunded {refunded.get(farm_id, 0)}, "
                f"premiums {premiums.get(farm_id, 0)}, paid out {paid_out.get(farm_id, 0)}, "
                f"reversed {reversed_.get(farm_id, 0)})"
            )
    return problems


def in_transit_mismatch() -> list[str]:
    unpaid = (
        db.session.scalar(select(func.coalesce(func.sum(Payout.amount), 0)).where(Payout.status != PayoutStatus.PAID))
        or 0
    )
    actual = ledger.balance(ledger.PAYOUTS_IN_TRANSIT)
    if actual != -unpaid:
        return [f"{ledger.PAYOUTS_IN_TRANSIT} is {actual} but payouts not yet paid total {unpaid}"]
    return []


def check_ledger() -> list[str]:
    """Every mismatch found, as sentences; empty when the ledger is right."""
    return unbalanced_transactions() + farm_mismatches() + in_transit_mismatch()
