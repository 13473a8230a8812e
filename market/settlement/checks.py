"""`ledger-check`: every settlement invariant (docs/settlement.md) checked
over the whole database at once, each figure one aggregate query. Each
problem is a sentence naming the order, farm, payout or programme at fault.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, or_, select

from market.catalog.models import PayoutMethod
from market.commissions.models import CommissionEntry, CommissionKind, SellerPayout, SellerPayoutStatus
from market.extensions import db
from market.ledger import service as ledger
from market.ledger.models import LedgerAccount, LedgerEntry, LedgerTransaction
from market.ledger.service import SELLER_PAYABLE_PREFIX
from market.orders.models import Order, OrderLine, OrderPart, OrderStatus, PartStatus
from market.payments.models import CapturedLine, Payment, PaymentStatus, Provider, Refund, RefundLine, RefundStatus
from market.payouts.models import Payout, PayoutStatus, PayoutTransfer, ReversalStatus, TransferReversal
from market.premiums.models import FundedBy, LinePremium, PremiumProgramme, SponsorDeposit
from market.premiums.service import SPONSOR_ACCOUNT_PREFIX
from market.settlement.models import (
    EARNED,
    PREMIUM_KINDS,
    TOTALS,
    EntryKind,
    FarmEntry,
    PartTotal,
    PayoutCoverage,
    coverage_of,
    entries_paid_by,
    entry_totals,
    part_of,
)
from market.stations.models import CashUp


def _by_key(rows: Iterable[Any]) -> dict[int, int]:
    return {key: int(amount or 0) for key, amount in rows}


def _entries_by(key: Any, *conditions: Any, sign: int = 1) -> dict[int, int]:
    """The farm entries' net summed by `key` (a farm, payout or programme)."""
    return _by_key(db.session.execute(select(key, sign * func.sum(FarmEntry.net)).where(*conditions).group_by(key)))


def unbalanced_transactions() -> list[str]:
    """Transactions whose entries do not sum to zero in each currency they touch."""
    rows = db.session.execute(
        select(LedgerTransaction.reference, LedgerAccount.currency, func.sum(LedgerEntry.amount))
        .join(LedgerEntry, LedgerEntry.transaction_id == LedgerTransaction.id)
        .join(LedgerAccount, LedgerAccount.id == LedgerEntry.account_id)
        .group_by(LedgerTransaction.id, LedgerTransaction.reference, LedgerAccount.currency)
        .having(func.sum(LedgerEntry.amount) != 0)
        .order_by(LedgerTransaction.id, LedgerAccount.currency)
    ).all()
    return [
        f"transaction {reference} does not balance: debits exceed credits by {off} {currency}"
        for reference, currency, off in rows
    ]


def farm_mismatches() -> list[str]:
    """Per farm: the ledger's payable is what its entries add up to, its
    sales are its captured lines and its refunds its returned ones."""
    booked = _by_key(
        db.session.execute(
            select(LedgerAccount.farm_id, func.sum(LedgerEntry.amount))
            .join(LedgerEntry, LedgerEntry.account_id == LedgerAccount.id)
            .where(LedgerAccount.farm_id.isnot(None))
            .group_by(LedgerAccount.farm_id)
        )
    )
    entries = _entries_by(FarmEntry.farm_id)
    sold = _entries_by(FarmEntry.farm_id, FarmEntry.kind == EntryKind.SALE)
    captured = _by_key(
        db.session.execute(
            select(CapturedLine.farm_id, func.sum(CapturedLine.amount - CapturedLine.commission + CapturedLine.premium))
            .join(Payment, Payment.id == CapturedLine.payment_id)
            .where(Payment.status == PaymentStatus.CAPTURED)
            .group_by(CapturedLine.farm_id)
        )
    )
    taken_back = _entries_by(FarmEntry.farm_id, FarmEntry.kind == EntryKind.REFUND, sign=-1)
    returned = _by_key(
        db.session.execute(
            select(RefundLine.farm_id, func.sum(RefundLine.amount - RefundLine.commission + RefundLine.premium))
            .join(Refund, Refund.id == RefundLine.refund_id)
            .where(Refund.status == RefundStatus.SUCCEEDED)
            .group_by(RefundLine.farm_id)
        )
    )
    problems = []
    for farm_id in sorted(set(booked) | set(entries) | set(captured) | set(returned)):
        payable = -booked.get(farm_id, 0)
        if payable != entries.get(farm_id, 0):
            problems.append(
                f"farm {farm_id}: {ledger.farm_payable(farm_id)} owes {payable} "
                f"but the farm's entries add up to {entries.get(farm_id, 0)}"
            )
        if sold.get(farm_id, 0) != captured.get(farm_id, 0):
            problems.append(
                f"farm {farm_id}: sales entries are worth {sold.get(farm_id, 0)} "
                f"but its captured lines {captured.get(farm_id, 0)}"
            )
        if taken_back.get(farm_id, 0) != returned.get(farm_id, 0):
            problems.append(
                f"farm {farm_id}: refund entries take back {taken_back.get(farm_id, 0)} "
                f"but its refunded lines {returned.get(farm_id, 0)}"
            )
    return problems


def payout_mismatches() -> list[str]:
    """Per payout: what it paid is what the entries it settled add up to
    (those its coverage covers and those naming it)."""
    paid_entries = entries_paid_by(select(Payout.id)).subquery()
    settled = _by_key(
        db.session.execute(
            select(paid_entries.c.payout_id, func.sum(FarmEntry.net))
            .join(FarmEntry, FarmEntry.id == paid_entries.c.entry_id)
            .group_by(paid_entries.c.payout_id)
        )
    )
    paid = _entries_by(FarmEntry.payout_id, FarmEntry.kind == EntryKind.PAYOUT, sign=-1)
    problems = []
    for payout_id, amount in db.session.execute(select(Payout.id, Payout.amount).order_by(Payout.id)):
        if not amount == paid.get(payout_id) == settled.get(payout_id):
            problems.append(
                f"payout {payout_id} of {amount}: its entry says {paid.get(payout_id)}, "
                f"the entries it settled add up to {settled.get(payout_id)}"
            )
    return problems


def coverage_mismatches() -> list[str]:
    """Each entry is paid at most once: no entry a payout's coverage of its
    order part covers names a payout or a reversal of its own, and each
    coverage names a payout of the part's farm. (A part is covered at most
    once: the coverage's primary key.)"""
    problems = [
        f"order {order_id}, farm {farm_id}: covered by payout {payout_id}, "
        + ("which does not exist" if paid_farm is None else f"which paid farm {paid_farm}")
        for order_id, farm_id, payout_id, paid_farm in db.session.execute(
            select(PayoutCoverage.order_id, PayoutCoverage.farm_id, PayoutCoverage.payout_id, Payout.farm_id)
            .outerjoin(Payout, Payout.id == PayoutCoverage.payout_id)
            .where(Payout.farm_id.is_distinct_from(PayoutCoverage.farm_id))
            .order_by(PayoutCoverage.order_id, PayoutCoverage.farm_id)
        )
    ]
    for entry_id, kind, covering, payout_id, reversal_id in db.session.execute(
        select(FarmEntry.id, FarmEntry.kind, PayoutCoverage.payout_id, FarmEntry.payout_id, FarmEntry.reversal_id)
        .join(PayoutCoverage, coverage_of(FarmEntry))
        .where(FarmEntry.payout_id.isnot(None) | FarmEntry.reversal_id.isnot(None) | FarmEntry.kind.not_in(EARNED))
        .order_by(FarmEntry.id)
    ):
        problems.append(
            f"{kind} entry {entry_id} is covered by payout {covering} but names payout {payout_id}, "
            f"reversal {reversal_id}"
        )
    return problems


def part_total_mismatches() -> list[str]:
    """Each order part's totals (`PartTotal`, which a payout run pays an
    uncovered part from) are what its earned entries come to, last entry
    included; and no entry of a part that no payout covers is settled on
    its own row (only entries past a part's coverage are)."""
    columns = ("last_entry_id", *TOTALS)
    adds = entry_totals(FarmEntry)
    summed = (
        select(
            FarmEntry.order_id,
            FarmEntry.farm_id,
            func.max(FarmEntry.id).label("last_entry_id"),
            *(func.sum(adds[name]).label(name) for name in TOTALS),
        )
        .where(FarmEntry.kind.in_(EARNED))
        .group_by(FarmEntry.order_id, FarmEntry.farm_id)
        .subquery()
    )
    kept = PartTotal.__table__
    # Compared in the database: only the parts whose totals differ come back.
    differing = db.session.execute(
        select(
            func.coalesce(summed.c.order_id, kept.c.order_id),
            func.coalesce(summed.c.farm_id, kept.c.farm_id),
            summed.c.order_id.isnot(None),
            kept.c.order_id.isnot(None),
            *(kept.c[name] for name in columns),
            *(summed.c[name] for name in columns),
        )
        .select_from(summed.join(kept, part_of(summed.c, kept.c), full=True))
        .where(or_(*(kept.c[name].is_distinct_from(summed.c[name]) for name in columns)))
        .order_by(func.coalesce(summed.c.order_id, kept.c.order_id), func.coalesce(summed.c.farm_id, kept.c.farm_id))
    )
    problems = []
    for order_id, farm_id, has_entries, has_totals, *values in differing:
        part = f"order {order_id}, farm {farm_id}"
        if not has_totals:
            problems.append(f"{part}: earned entries but no part totals")
        elif not has_entries:
            problems.append(f"{part}: part totals but no earned entries")
        else:
            pairs = zip(columns, values[: len(columns)], values[len(columns) :], strict=True)
            off = ", ".join(f"{name} {have} (entries: {int(want)})" for name, have, want in pairs if have != want)
            problems.append(f"{part}: part totals say {off}")
    for entry_id, kind, order_id, farm_id, payout_id, reversal_id in db.session.execute(
        select(FarmEntry.id, FarmEntry.kind, FarmEntry.order_id, FarmEntry.farm_id)
        .add_columns(FarmEntry.payout_id, FarmEntry.reversal_id)
        .outerjoin(PayoutCoverage, part_of(FarmEntry))
        .where(
            FarmEntry.kind.in_(EARNED),
            PayoutCoverage.order_id.is_(None),
            FarmEntry.payout_id.isnot(None) | FarmEntry.reversal_id.isnot(None),
        )
        .order_by(FarmEntry.id)
    ):
        problems.append(
            f"{kind} entry {entry_id} (order {order_id}, farm {farm_id}) names payout {payout_id}, "
            f"reversal {reversal_id}, but no payout covers its part"
        )
    return problems


def transfer_mismatches() -> list[str]:
    """Per Stripe payout: its transfers add up to it, and once it is paid
    every one of them is made; per transfer: its reversals take back no
    more than it paid."""
    planned = _by_key(
        db.session.execute(
            select(PayoutTransfer.payout_id, func.sum(PayoutTransfer.amount)).group_by(PayoutTransfer.payout_id)
        )
    )
    unmade = _by_key(
        db.session.execute(
            select(PayoutTransfer.payout_id, func.count())
            .where(PayoutTransfer.stripe_transfer_id.is_(None))
            .group_by(PayoutTransfer.payout_id)
        )
    )
    problems = []
    for payout_id, method, status, amount in db.session.execute(
        select(Payout.id, Payout.method, Payout.status, Payout.amount).order_by(Payout.id)
    ):
        expected = amount if method == PayoutMethod.STRIPE else 0
        if planned.get(payout_id, 0) != expected:
            problems.append(
                f"payout {payout_id} of {amount} ({method}): its transfers add up to {planned.get(payout_id, 0)}"
            )
        if status == PayoutStatus.PAID and unmade.get(payout_id):
            problems.append(f"payout {payout_id} is paid but {unmade[payout_id]} of its transfers were never made")
    for transfer_id, paid, taken in db.session.execute(
        select(PayoutTransfer.id, PayoutTransfer.amount, func.sum(TransferReversal.amount))
        .join(TransferReversal, TransferReversal.transfer_id == PayoutTransfer.id)
        .where(TransferReversal.status != ReversalStatus.FAILED)
        .group_by(PayoutTransfer.id, PayoutTransfer.amount)
        .having(func.sum(TransferReversal.amount) > PayoutTransfer.amount)
        .order_by(PayoutTransfer.id)
    ):
        problems.append(f"transfer {transfer_id} of {paid}: its reversals take back {taken}")
    return problems


def order_mismatches() -> list[str]:
    """Per order: captured less refunded is what its captured lines are
    still worth, and never more was captured than authorised."""
    worth = _by_key(
        db.session.execute(
            select(Payment.order_id, func.sum(CapturedLine.amount + CapturedLine.premium))
            .join(CapturedLine, CapturedLine.payment_id == Payment.id)
            .where(Payment.status == PaymentStatus.CAPTURED)
            .group_by(Payment.order_id)
        )
    )
    returned = _by_key(
        db.session.execute(
            select(Refund.order_id, func.sum(RefundLine.amount + RefundLine.premium))
            .join(RefundLine, RefundLine.refund_id == Refund.id)
            .where(Refund.status == RefundStatus.SUCCEEDED)
            .group_by(Refund.order_id)
        )
    )
    problems = []
    rows = db.session.execute(
        select(Payment.order_id, Payment.amount, Payment.amount_captured, Payment.amount_refunded).order_by(
            Payment.order_id
        )
    )
    for order_id, authorised, captured, refunded in rows:
        kept = worth.get(order_id, 0) - returned.get(order_id, 0)
        if captured - refunded != kept:
            problems.append(
                f"order {order_id}: captured {captured} less refunded {refunded} is {captured - refunded}, "
                f"but its lines are worth {kept}"
            )
        if captured > authorised:
            problems.append(f"order {order_id}: captured {captured}, more than the {authorised} authorised")
    return problems


def unpaid_order_mismatches() -> list[str]:
    """An order not paid yet asks for what its live lines can reach: its
    max_total, what its offline payment waits for and what an intent not
    made yet will hold (a part cancelled meanwhile lowers all three)."""
    unpaid = Order.status == OrderStatus.PENDING_PAYMENT
    reach = _by_key(
        db.session.execute(
            select(OrderLine.order_id, func.sum(OrderLine.max_amount))
            .join(OrderPart, OrderPart.id == OrderLine.part_id)
            .join(Order, Order.id == OrderLine.order_id)
            .where(unpaid, OrderPart.status != PartStatus.CANCELLED)
            .group_by(OrderLine.order_id)
        )
    )
    problems = []
    rows = db.session.execute(
        select(Order.id, Order.max_total, Payment.provider, Payment.status, Payment.amount)
        .outerjoin(Payment, Payment.order_id == Order.id)
        .where(unpaid)
        .order_by(Order.id)
    )
    for order_id, max_total, provider, status, asked in rows:
        if max_total != reach.get(order_id, 0):
            problems.append(
                f"order {order_id}: reaches {max_total} at most, but its live lines {reach.get(order_id, 0)}"
            )
        waiting = status == PaymentStatus.CREATING or (
            provider == Provider.OFFLINE and status == PaymentStatus.REQUIRES_PAYMENT
        )
        if waiting and asked != max_total:
            problems.append(
                f"order {order_id}: its payment asks for {asked}, but the order reaches {max_total} at most"
            )
    return problems


def programme_mismatches() -> list[str]:
    """Per sponsor programme: the budget used is what its lines hold
    (reserved while open, earned less reversed once captured), never above
    the cap; what the farms earned is what the captured lines hold; a line
    cancelled before any capture holds nothing."""
    held = _by_key(
        db.session.execute(
            select(LinePremium.programme_id, func.sum(LinePremium.amount))
            .where(LinePremium.funded_by == FundedBy.SPONSOR)
            .group_by(LinePremium.programme_id)
        )
    )
    captured_lines = select(CapturedLine.order_line_id).join(Payment).where(Payment.status == PaymentStatus.CAPTURED)
    held_captured = _by_key(
        db.session.execute(
            select(LinePremium.programme_id, func.sum(LinePremium.amount))
            .where(LinePremium.funded_by == FundedBy.SPONSOR, LinePremium.order_line_id.in_(captured_lines))
            .group_by(LinePremium.programme_id)
        )
    )
    earned = _entries_by(FarmEntry.programme_id, FarmEntry.kind.in_(PREMIUM_KINDS))
    decided = select(CapturedLine.order_line_id)
    stranded = _by_key(
        db.session.execute(
            select(LinePremium.programme_id, func.sum(LinePremium.amount))
            .join(OrderLine, OrderLine.id == LinePremium.order_line_id)
            .join(OrderPart, OrderPart.id == OrderLine.part_id)
            .where(
                LinePremium.funded_by == FundedBy.SPONSOR,
                OrderPart.status == PartStatus.CANCELLED,
                LinePremium.order_line_id.not_in(decided),
            )
            .group_by(LinePremium.programme_id)
        )
    )
    problems = []
    for programme_id, used, cap in db.session.execute(
        select(PremiumProgramme.id, PremiumProgramme.budget_used, PremiumProgramme.budget_cap)
        .where(PremiumProgramme.funded_by == FundedBy.SPONSOR)
        .order_by(PremiumProgramme.id)
    ):
        if used != held.get(programme_id, 0):
            problems.append(
                f"programme {programme_id}: budget used is {used} but its lines hold {held.get(programme_id, 0)}"
            )
        if cap is not None and used > cap:
            problems.append(f"programme {programme_id}: budget used {used} is over its cap of {cap}")
        if earned.get(programme_id, 0) != held_captured.get(programme_id, 0):
            problems.append(
                f"programme {programme_id}: farms earned {earned.get(programme_id, 0)} net of reversals, "
                f"but its captured lines hold {held_captured.get(programme_id, 0)}"
            )
        if stranded.get(programme_id, 0):
            problems.append(
                f"programme {programme_id}: {stranded[programme_id]} is still reserved for lines cancelled "
                "before any money was taken"
            )
    return problems


def sponsor_account_mismatches() -> list[str]:
    """Per programme: the sponsor's account (`sponsor_liability:<id>`) holds
    what the farms earned from it net of reversals, less what the sponsor
    deposited: what the sponsor owes. Only sponsor-funded programmes take
    deposits."""
    booked = {
        int(code.removeprefix(SPONSOR_ACCOUNT_PREFIX)): int(amount)
        for code, amount in db.session.execute(
            select(LedgerAccount.code, func.sum(LedgerEntry.amount))
            .join(LedgerEntry, LedgerEntry.account_id == LedgerAccount.id)
            .where(LedgerAccount.code.startswith(SPONSOR_ACCOUNT_PREFIX, autoescape=True))
            .group_by(LedgerAccount.code)
        ).tuples()
    }
    earned = _entries_by(FarmEntry.programme_id, FarmEntry.kind.in_(PREMIUM_KINDS))
    deposited = _by_key(
        db.session.execute(
            select(SponsorDeposit.programme_id, func.sum(SponsorDeposit.amount)).group_by(SponsorDeposit.programme_id)
        )
    )
    problems = []
    for programme_id in sorted(set(booked) | set(earned) | set(deposited)):
        owed = earned.get(programme_id, 0) - deposited.get(programme_id, 0)
        if booked.get(programme_id, 0) != owed:
            problems.append(
                f"programme {programme_id}: its sponsor's account holds {booked.get(programme_id, 0)}, but farms "
                f"earned {earned.get(programme_id, 0)} net of reversals and the sponsor deposited "
                f"{deposited.get(programme_id, 0)}: it owes {owed}"
            )
    for (programme_id,) in db.session.execute(
        select(SponsorDeposit.programme_id)
        .join(PremiumProgramme, PremiumProgramme.id == SponsorDeposit.programme_id)
        .where(PremiumProgramme.funded_by != FundedBy.SPONSOR)
        .distinct()
        .order_by(SponsorDeposit.programme_id)
    ):
        problems.append(f"programme {programme_id} is funded by its buyers but has sponsor deposits")
    return problems


def station_cash_mismatches() -> list[str]:
    """Per station: its account (`station_cash:<point>`) holds the cash
    taken at its counter, corrected by its cash-ups' counted differences,
    less the counted cash of its deposits; per cash-up, `expected` is the
    cash of the payments it counted; `station_cash_difference` holds every
    shortfall less every surplus, of counts and of deposits."""
    booked = {
        int(code.removeprefix(ledger.STATION_CASH_PREFIX)): int(amount)
        for code, amount in db.session.execute(
            select(LedgerAccount.code, func.sum(LedgerEntry.amount))
            .join(LedgerEntry, LedgerEntry.account_id == LedgerAccount.id)
            .where(LedgerAccount.code.startswith(ledger.STATION_CASH_PREFIX, autoescape=True))
            .group_by(LedgerAccount.code)
        ).tuples()
    }
    taken = _by_key(
        db.session.execute(
            select(Payment.cash_point_id, func.sum(Payment.amount))
            .where(Payment.cash_point_id.isnot(None), Payment.cash_received_at.isnot(None))
            .group_by(Payment.cash_point_id)
        )
    )
    deposited = func.coalesce(func.sum(CashUp.counted).filter(CashUp.deposited.isnot(None)), 0)
    by_point = {
        point_id: (int(differences), int(paid_in))
        for point_id, differences, paid_in in db.session.execute(
            select(CashUp.fulfilment_point_id, func.sum(CashUp.counted - CashUp.expected), deposited).group_by(
                CashUp.fulfilment_point_id
            )
        ).tuples()
    }
    problems = []
    for point_id in sorted(set(booked) | set(taken) | set(by_point)):
        differences, paid_in = by_point.get(point_id, (0, 0))
        holds = taken.get(point_id, 0) + differences - paid_in
        if booked.get(point_id, 0) != holds:
            problems.append(
                f"station {point_id}: its cash account holds {booked.get(point_id, 0)}, but it took "
                f"{taken.get(point_id, 0)} in cash, its counts found {differences} more and its deposits took "
                f"{paid_in}: it should hold {holds}"
            )
    counted_in = (
        select(Payment.cash_up_id, func.coalesce(func.sum(Payment.amount), 0).label("cash"))
        .where(Payment.cash_up_id.isnot(None))
        .group_by(Payment.cash_up_id)
        .subquery()
    )
    for cash_up_id, expected, cash in db.session.execute(
        select(CashUp.id, CashUp.expected, func.coalesce(counted_in.c.cash, 0))
        .outerjoin(counted_in, counted_in.c.cash_up_id == CashUp.id)
        .where(CashUp.expected != func.coalesce(counted_in.c.cash, 0))
        .order_by(CashUp.id)
    ):
        problems.append(f"cash-up {cash_up_id} expected {expected}, but its payments took {cash}")
    lost = (
        db.session.scalar(
            select(
                func.coalesce(func.sum(CashUp.expected - CashUp.counted), 0)
                + func.coalesce(func.sum(CashUp.counted - CashUp.deposited), 0)
            )
        )
        or 0
    )
    difference = ledger.balance(ledger.STATION_CASH_DIFFERENCE)
    if difference != lost:
        problems.append(
            f"{ledger.STATION_CASH_DIFFERENCE} is {difference} but cash-ups and deposits found {lost} less than taken"
        )
    return problems


def _seller_entries(*conditions: Any) -> dict[int, int]:
    return _by_key(
        db.session.execute(
            select(CommissionEntry.seller_id, func.sum(CommissionEntry.amount))
            .where(*conditions)
            .group_by(CommissionEntry.seller_id)
        )
    )


def seller_mismatches() -> list[str]:
    """Per seller: its account (`seller_payable:<id>`) owes what its entries
    add up to, and earned = paid + payable (each payout pays exactly the
    entries naming it). Per captured line: what the sellers keep of it is
    neither negative nor more than the platform keeps of its commission on
    it. The platform's commission account holds the captured lines'
    commission less refunds' and less what the sellers keep."""
    booked = _by_key(
        db.session.execute(
            select(LedgerAccount.code, func.sum(LedgerEntry.amount))
            .join(LedgerEntry, LedgerEntry.account_id == LedgerAccount.id)
            .where(LedgerAccount.code.startswith(SELLER_PAYABLE_PREFIX))
            .group_by(LedgerAccount.code)
        )
    )
    booked = {int(str(code).removeprefix(SELLER_PAYABLE_PREFIX)): amount for code, amount in booked.items()}
    entries = _seller_entries()
    problems = []
    for seller_id in sorted(set(booked) | set(entries)):
        if -booked.get(seller_id, 0) != entries.get(seller_id, 0):
            problems.append(
                f"seller {seller_id}: {ledger.seller_payable(seller_id)} owes {-booked.get(seller_id, 0)} "
                f"but the seller's entries add up to {entries.get(seller_id, 0)}"
            )
    earned = (CommissionEntry.kind.in_((CommissionKind.EARNED, CommissionKind.REVERSED)),)
    paid = _by_key(
        db.session.execute(
            select(CommissionEntry.payout_id, func.sum(CommissionEntry.amount))
            .where(*earned, CommissionEntry.payout_id.isnot(None))
            .group_by(CommissionEntry.payout_id)
        )
    )
    payouts = db.session.execute(
        select(SellerPayout.id, SellerPayout.amount, CommissionEntry.amount)
        .outerjoin(
            CommissionEntry,
            (CommissionEntry.payout_id == SellerPayout.id) & (CommissionEntry.kind == CommissionKind.PAYOUT),
        )
        .order_by(SellerPayout.id)
    )
    for payout_id, amount, entry in payouts:
        if paid.get(payout_id, 0) != amount or entry != -amount:
            problems.append(
                f"seller payout {payout_id}: pays {amount}, its entry takes {entry}, "
                f"the entries it paid add up to {paid.get(payout_id, 0)}"
            )
    kept = db.session.execute(
        select(CommissionEntry.order_line_id, CommissionEntry.seller_id, func.sum(CommissionEntry.amount))
        .where(*earned)
        .group_by(CommissionEntry.order_line_id, CommissionEntry.seller_id)
    ).all()
    returned = _by_key(
        db.session.execute(
            select(RefundLine.order_line_id, func.sum(RefundLine.commission))
            .join(Refund, Refund.id == RefundLine.refund_id)
            .where(Refund.status == RefundStatus.SUCCEEDED)
            .group_by(RefundLine.order_line_id)
        )
    )
    captured = _by_key(
        db.session.execute(
            select(CapturedLine.order_line_id, CapturedLine.commission)
            .join(Payment, Payment.id == CapturedLine.payment_id)
            .where(Payment.status == PaymentStatus.CAPTURED)
        )
    )
    sellers_keep: dict[int, int] = {}
    for line_id, seller_id, amount in kept:
        if amount < 0:
            problems.append(f"order line {line_id}: seller {seller_id} gave back {-amount} more than it earned")
        sellers_keep[line_id] = sellers_keep.get(line_id, 0) + int(amount)
    for line_id, amount in sorted(sellers_keep.items()):
        platform = captured.get(line_id, 0) - returned.get(line_id, 0)
        if amount > platform:
            problems.append(f"order line {line_id}: sellers keep {amount} of a commission of which {platform} is left")
    commission = sum(captured.values()) - sum(returned.values()) - sum(sellers_keep.values())
    actual = -ledger.balance(ledger.PLATFORM_COMMISSION)
    if actual != commission:
        problems.append(
            f"{ledger.PLATFORM_COMMISSION} holds {actual} but captured commission less refunds' and sellers' "
            f"comes to {commission}"
        )
    return problems


def in_transit_mismatch() -> list[str]:
    unpaid = (
        db.session.scalar(select(func.coalesce(func.sum(Payout.amount), 0)).where(Payout.status != PayoutStatus.PAID))
        or 0
    ) + (
        db.session.scalar(
            select(func.coalesce(func.sum(SellerPayout.amount), 0)).where(
                SellerPayout.status != SellerPayoutStatus.PAID
            )
        )
        or 0
    )
    actual = ledger.balance(ledger.PAYOUTS_IN_TRANSIT)
    if actual != -unpaid:
        return [f"{ledger.PAYOUTS_IN_TRANSIT} is {actual} but payouts not yet paid total {unpaid}"]
    return []


def check_ledger() -> list[str]:
    """Every mismatch found, as sentences; empty when settlement is right."""
    return (
        unbalanced_transactions()
        + farm_mismatches()
        + payout_mismatches()
        + coverage_mismatches()
        + part_total_mismatches()
        + transfer_mismatches()
        + order_mismatches()
        + unpaid_order_mismatches()
        + programme_mismatches()
        + sponsor_account_mismatches()
        + station_cash_mismatches()
        + seller_mismatches()
        + in_transit_mismatch()
    )
