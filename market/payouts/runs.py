"""Payout runs: each farm is paid the net of its settled farm entries
(market/settlement/models.py) that no payout or transfer reversal has
settled yet. A payout covers each order part it pays up to the part's last
entry (`PayoutCoverage`, once per part); an entry the part gets later names
the payout or reversal that settled it on its own row. So a repeated or
overlapping run pays nobody twice. Runs are built with set-based SQL: one
statement per step, never a loop over lines.

Which entries are due (docs/settlement.md):
- every entry of an order delivered, collected or completed before the
  run's cutoff, and of an order closed (cancelled, expired) before it with
  no refund still pending: by then it is known what the farm keeps;
- a take-back (refund, premium reversal) of a line an earlier payout paid,
  as soon as it is recorded. When a Stripe transfer paid that line's
  order and what is left of it covers it, it is taken back from that
  transfer (a reversal) rather than netted.

A farm with due entries that a run does not pay (no payout account, one not
ready, or a net that is not positive) is recorded on the run as skipped,
with the reason (`PayoutRunSkip`); its entries wait for a later run.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import (
    BigInteger,
    Column,
    CompoundSelect,
    Integer,
    MetaData,
    Select,
    String,
    Table,
    and_,
    case,
    cast,
    exists,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.orm import aliased

from market.accounts.models import Role
from market.auth import Actor
from market.catalog.models import PayoutMethod
from market.commissions import service as commissions
from market.db import business_day, business_day_range, unit_of_work, utcnow
from market.errors import Conflict, Invalid
from market.extensions import db
from market.ledger import service as ledger
from market.ledger.models import LedgerAccount, LedgerEntry, LedgerTransaction
from market.orders.models import Order, OrderEvent, OrderStatus
from market.outbox import enqueue
from market.payments.models import Payment, Refund, RefundStatus
from market.payouts.models import (
    BANK_COLUMNS,
    Payout,
    PayoutAccount,
    PayoutRun,
    PayoutRunSkip,
    PayoutStatus,
    PayoutTransfer,
    ReversalStatus,
    SkipReason,
    TransferReversal,
)
from market.settlement.models import (
    EARNED,
    TAKE_BACKS,
    TOTALS,
    EntryKind,
    FarmEntry,
    PartTotal,
    PayoutCoverage,
    entry_totals,
    part_of,
)
from market.settlement.service import PAYOUT_RUN_LOCK

SETTLED_STATES = (OrderStatus.DELIVERED, OrderStatus.COLLECTED, OrderStatus.COMPLETED)
SETTLING_EVENTS = ("order.delivered", "order.collected", "order.completed")
CLOSED_STATES = (OrderStatus.CANCELLED, OrderStatus.EXPIRED)
# What a run pays, chosen once into a temporary table (dropped before the run
# commits), totalled per order part (an order's entries for one farm) not yet
# covered (its PartTotal), and per entry for an entry settled alone (one of a
# part an earlier payout covered). The payouts' totals, the
# coverage, the transfers and the skipped farms all come from that one
# choice, and PostgreSQL plans the joins on it from its analysed size.
RUN_PARTS = Table(
    "payout_run_parts",
    MetaData(),
    Column("farm_id", Integer, nullable=False),
    Column("order_id", Integer, nullable=False),
    Column("entry_id", Integer),  # set for an entry settled alone
    Column("last_entry_id", Integer, nullable=False),
    Column("entries", Integer, nullable=False),
    Column("lines", Integer, nullable=False),
    Column("grams", BigInteger, nullable=False),
    Column("sales", BigInteger, nullable=False),
    Column("commission", BigInteger, nullable=False),
    Column("premiums", BigInteger, nullable=False),
    Column("refunds", BigInteger, nullable=False),
    # Take-backs of lines an earlier payout paid (_adjustments).
    Column("adjustments", BigInteger, nullable=False, server_default="0"),
    Column("net", BigInteger, nullable=False),
    prefixes=["TEMPORARY"],
)


def run_cutoff(period_end: date, now: datetime, hold_days: int) -> datetime:
    """Orders settled before the end of the business day `period_end` (in
    the marketplace's time zone) and at least `hold_days` ago are due."""
    return min(business_day_range(period_end)[1], now - timedelta(days=hold_days))


def ready_farms() -> Select[Any]:
    return select(PayoutAccount.farm_id).where(
        ((PayoutAccount.method == PayoutMethod.STRIPE) & PayoutAccount.transfers_active)
        | ((PayoutAccount.method == PayoutMethod.BANK_TRANSFER) & PayoutAccount.bank_account_number.isnot(None))
    )


def _skip_reason(net: Any) -> Any:
    """Why a farm (its payout account outer-joined) whose due entries come
    to `net` is not paid, or NULL when it is."""
    return case(
        (PayoutAccount.id.is_(None), SkipReason.NO_PAYOUT_ACCOUNT.value),
        (
            (PayoutAccount.method == PayoutMethod.STRIPE) & PayoutAccount.transfers_active.is_not(True),
            SkipReason.STRIPE_TRANSFERS_INACTIVE.value,
        ),
        (
            (PayoutAccount.method == PayoutMethod.BANK_TRANSFER) & PayoutAccount.bank_account_number.is_(None),
            SkipReason.BANK_DETAILS_MISSING.value,
        ),
        (net < 0, SkipReason.NEGATIVE_NET.value),
        (net == 0, SkipReason.NOTHING_TO_PAY.value),
        else_=null(),
    )


def _settled_orders(cutoff: datetime) -> Select[Any]:
    """Orders delivered, collected or completed, settled before `cutoff`:
    one of those events is older than it (a semi-join, where grouping the
    events to find each order's first took twice as long)."""
    settling = select(OrderEvent.id).where(
        OrderEvent.order_id == Order.id, OrderEvent.type.in_(SETTLING_EVENTS), OrderEvent.created_at < cutoff
    )
    return select(Order.id.label("order_id")).where(Order.status.in_(SETTLED_STATES), settling.exists())


def _closed_orders(cutoff: datetime) -> Select[Any]:
    """Orders closed before `cutoff` whose refunds have all come back."""
    pending = select(Refund.id).where(Refund.order_id == Order.id, Refund.status == RefundStatus.PENDING)
    return select(Order.id.label("order_id")).where(
        Order.status.in_(CLOSED_STATES), Order.closed_at < cutoff, ~pending.exists()
    )


def _due_orders(cutoff: datetime) -> CompoundSelect[Any]:
    """The orders a run pays for: settled or closed before `cutoff` (each
    once: an order is settled or closed, never both, by its status)."""
    return _settled_orders(cutoff).union_all(_closed_orders(cutoff))


def _sale_paid(entry: Any, coverage: Any) -> Any:
    """The sale of `entry`'s line is paid: by `coverage` (the part's, outer
    joined) or by the payout its own row names."""
    sale = aliased(FarmEntry)
    return exists().where(
        sale.order_line_id == entry.order_line_id,
        sale.kind == EntryKind.SALE,
        or_(sale.payout_id.isnot(None), sale.id <= coverage.last_entry_id),
    )


def _unsettled(entry: Any, coverage: Any) -> Any:
    """Settled by no payout or reversal: its part's coverage (outer joined
    as `coverage`) stops below it and its own row names neither."""
    return and_(
        entry.payout_id.is_(None),
        entry.reversal_id.is_(None),
        or_(coverage.last_entry_id.is_(None), entry.id > coverage.last_entry_id),
    )


def _due_parts(cutoff: datetime) -> CompoundSelect[Any]:
    """Earned entries, due and not yet settled, of every farm (those whose
    payout account is not ready are recorded as skipped), in RUN_PARTS'
    columns: each order part of a due order not yet covered, as its
    `PartTotal` says (none of its entries is settled: only a covered part's
    entries are settled alone), and each entry past its part's coverage
    (settled alone) that is due or takes back a line paid earlier."""
    due_orders = _due_orders(cutoff).subquery()
    coverage = PayoutCoverage
    uncovered = (
        select(
            PartTotal.farm_id,
            PartTotal.order_id,
            null(),
            PartTotal.last_entry_id,
            *(getattr(PartTotal, name) for name in TOTALS),
        )
        .join(due_orders, due_orders.c.order_id == PartTotal.order_id)
        .where(~select(coverage.order_id).where(part_of(PartTotal, coverage)).exists())
    )
    adds = entry_totals(FarmEntry)
    paid_earlier = and_(FarmEntry.kind.in_(TAKE_BACKS), _sale_paid(FarmEntry, coverage))
    past_coverage = (
        select(FarmEntry.farm_id, FarmEntry.order_id, FarmEntry.id, FarmEntry.id, *(adds[name] for name in TOTALS))
        .select_from(PartTotal)
        # Only the parts with entries past their coverage are read entry by entry.
        .join(coverage, and_(part_of(PartTotal, coverage), PartTotal.last_entry_id > coverage.last_entry_id))
        .join(FarmEntry, part_of(FarmEntry, PartTotal))
        .outerjoin(due_orders, due_orders.c.order_id == FarmEntry.order_id)
        .where(
            FarmEntry.kind.in_(EARNED),
            _unsettled(FarmEntry, coverage),
            or_(due_orders.c.order_id.isnot(None), paid_earlier),
        )
    )
    return uncovered.union_all(past_coverage)


def create_run(actor: Actor, *, period_end: date) -> PayoutRun:
    """Pay every farm what its due entries come to: take refunds of lines a
    Stripe transfer paid back from that transfer where it still covers them,
    then write one payout per farm with a positive net, settle its entries
    and post its ledger transaction. Nothing already paid is paid again."""
    actor.require(Role.OPERATOR)
    now = utcnow()
    if period_end > business_day(now):
        raise Invalid(
            "A payout run cannot cover a period that has not ended.", {"period_end": ["Must not be in the future."]}
        )
    cutoff = run_cutoff(period_end, now, current_app.config["PAYOUT_HOLD_DAYS"])
    db.session.commit()  # the serialising lock below is the transaction's first statement
    with unit_of_work():
        if db.session.get_bind().dialect.name == "postgresql":
            # Alone: no other run, and no entry written or freed meanwhile.
            db.session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PAYOUT_RUN_LOCK})
            # It hashes and sorts its order parts: PostgreSQL's default
            # work_mem (4 MB) would do that on disk from a few ten thousand
            # parts on. JIT compilation is off: the statements' estimated costs
            # pass its threshold, and compiling them took longer than running
            # them (docs/performance.md, "Payout run").
            work_mem = int(current_app.config["PAYOUT_RUN_WORK_MEM_MB"])
            db.session.execute(text(f"SET LOCAL work_mem = '{work_mem}MB'"))
            db.session.execute(text("SET LOCAL jit = off"))
        run = PayoutRun(
            period_end=period_end,
            cutoff=cutoff,
            currency=current_app.config["MARKET_CURRENCY"],
            created_by=actor.user_id,
        )
        db.session.add(run)
        db.session.flush()
        run.reversals_count = _recover_by_reversal(run)
        _write_payouts(run, cutoff)
        _post_payouts(run)
        commissions.pay_sellers(run, _due_orders(cutoff))
        totals = db.session.execute(
            select(func.count(Payout.id), func.coalesce(func.sum(Payout.amount), 0)).where(Payout.run_id == run.id)
        ).one()
        run.payouts_count, run.total = totals[0], int(totals[1])
        enqueue("payouts.dispatch_run", run_id=run.id)
    return run


def _recover_by_reversal(run: PayoutRun) -> int:
    """Take-backs of lines a Stripe transfer paid come back from that
    transfer when what is left of it covers them; the rest are netted. The
    transfer is the one drawn on the line's order's charge, or else the
    payout's transfer from the balance."""
    sale = aliased(FarmEntry)
    coverage = PayoutCoverage
    # The payout that paid the line: its part's coverage, or the sale's row.
    payer = func.coalesce(sale.payout_id, case((sale.id <= coverage.last_entry_id, coverage.payout_id)))
    from_charge, from_balance = aliased(PayoutTransfer), aliased(PayoutTransfer)
    charge_paid = and_(from_charge.payout_id == payer, from_charge.stripe_transfer_id.isnot(None))
    owed = (
        select(
            FarmEntry.id.label("entry_id"),
            func.coalesce(from_charge.id, from_balance.id).label("transfer_id"),
            FarmEntry.net,
        )
        .outerjoin(coverage, part_of(FarmEntry))
        .join(sale, and_(sale.order_line_id == FarmEntry.order_line_id, sale.kind == EntryKind.SALE))
        .outerjoin(from_charge, and_(charge_paid, from_charge.order_id == FarmEntry.order_id))
        .outerjoin(
            from_balance,
            and_(
                from_balance.payout_id == payer,
                from_balance.order_id.is_(None),
                from_balance.stripe_transfer_id.isnot(None),
            ),
        )
        .where(FarmEntry.kind.in_(TAKE_BACKS), _unsettled(FarmEntry, coverage), payer.isnot(None))
        .subquery()
    )
    by_transfer = db.session.execute(
        select(owed.c.transfer_id, -func.sum(owed.c.net))
        .where(owed.c.transfer_id.isnot(None))
        .group_by(owed.c.transfer_id)
        .order_by(owed.c.transfer_id)
    ).all()
    made = 0
    for transfer_id, amount in by_transfer:
        transfer = db.session.get(PayoutTransfer, transfer_id)
        assert transfer is not None
        if amount <= 0 or amount > transfer.amount - _reversed(transfer.id) or _reversal_refused(transfer.id):
            continue
        reversal = TransferReversal(
            payout_id=transfer.payout_id,
            transfer_id=transfer.id,
            run_id=run.id,
            farm_id=transfer.payout.farm_id,
            amount=amount,
            status=ReversalStatus.PENDING,
        )
        db.session.add(reversal)
        db.session.flush()
        db.session.execute(
            update(FarmEntry)
            .where(FarmEntry.id.in_(select(owed.c.entry_id).where(owed.c.transfer_id == transfer.id)))
            .values(reversal_id=reversal.id)
            .execution_options(synchronize_session=False)
        )
        enqueue("payouts.reverse", reversal_id=reversal.id)
        made += 1
    return made


def _reversed(transfer_id: int) -> int:
    return int(
        db.session.scalar(
            select(func.coalesce(func.sum(TransferReversal.amount), 0)).where(
                TransferReversal.transfer_id == transfer_id, TransferReversal.status != ReversalStatus.FAILED
            )
        )
        or 0
    )


def _reversal_refused(transfer_id: int) -> bool:
    """Stripe refused a reversal of this transfer before (the connected
    account's balance was too low, say): net instead of asking again."""
    refused = select(TransferReversal.id).where(
        TransferReversal.transfer_id == transfer_id, TransferReversal.status == ReversalStatus.FAILED
    )
    return bool(db.session.scalar(refused.exists().select()))


def _analyze(*tables: Table) -> None:
    """PostgreSQL plans from the statistics last gathered, which know nothing
    of the rows this transaction wrote; ANALYZE sees them (SQLite has no
    statistics to refresh)."""
    if db.session.get_bind().dialect.name == "postgresql":
        for table in tables:
            db.session.execute(text(f"ANALYZE {table.name}"))


def _write_payouts(run: PayoutRun, cutoff: datetime) -> None:
    """Choose the due entries once, total them per farm, write a payout for
    each ready farm with a positive net, cover the order parts it pays and
    settle the entries it pays alone; record every other farm with due
    entries as skipped, and why."""
    chosen = RUN_PARTS
    chosen.create(db.session.connection())
    columns = ["farm_id", "order_id", "entry_id", "last_entry_id", *TOTALS]
    db.session.execute(insert(chosen).from_select(columns, _due_parts(cutoff)))
    _adjustments()
    _analyze(chosen)

    def total(column: Any) -> Any:
        return func.coalesce(func.sum(column), 0)

    net = func.sum(chosen.c.net)
    totals = (
        select(
            chosen.c.farm_id,
            # Orders with a line sold: each part row is one order's, and a
            # part's sales are all written with its capture, before any
            # payout covers it, so none is ever settled alone.
            func.count(case((chosen.c.entry_id.is_(None) & (chosen.c.lines > 0), 1))).label("orders_count"),
            total(chosen.c.lines).label("lines_count"),
            *(total(chosen.c[name]).label(name) for name in ("grams", "sales", "commission", "premiums")),
            *(total(chosen.c[name]).label(name) for name in ("refunds", "adjustments")),
            net.label("amount"),
        )
        .where(chosen.c.farm_id.in_(ready_farms()))
        .group_by(chosen.c.farm_id)
        .having(net > 0)
        .subquery()
    )
    # The accounts are joined to each farm's totals, not to its parts.
    per_farm = select(
        literal(run.id),
        totals.c.farm_id,
        PayoutAccount.method,
        case(
            (PayoutAccount.method == PayoutMethod.STRIPE, literal(PayoutStatus.PENDING.value)),
            else_=literal(PayoutStatus.AWAITING_CONFIRMATION.value),
        ),
        literal(run.currency),
        *totals.c[1:],
        PayoutAccount.stripe_account_id,
        # A bank transfer goes to the details the farm has now, kept with the payout.
        *(
            case((PayoutAccount.method == PayoutMethod.BANK_TRANSFER, getattr(PayoutAccount, name)))
            for name in BANK_COLUMNS
        ),
    ).join(PayoutAccount, PayoutAccount.farm_id == totals.c.farm_id)
    columns = [
        "run_id", "farm_id", "method", "status", "currency", *totals.c.keys()[1:], "stripe_account_id", *BANK_COLUMNS,
    ]  # fmt: skip
    db.session.execute(insert(Payout).from_select(columns, per_farm))
    _analyze(Payout.__table__)
    this_run = select(Payout.id, Payout.farm_id).where(Payout.run_id == run.id).subquery()
    # Each part paid is covered up to its last entry: the run holds the
    # lock every entry writer shares, so it chose every entry of the part.
    # A part covered before is refused by the primary key.
    db.session.execute(
        insert(PayoutCoverage).from_select(
            ["order_id", "farm_id", "payout_id", "last_entry_id"],
            select(chosen.c.order_id, chosen.c.farm_id, this_run.c.id, chosen.c.last_entry_id)
            .join(this_run, this_run.c.farm_id == chosen.c.farm_id)
            .where(chosen.c.entry_id.is_(None))
            # In key order: each row then goes to the right edge of the
            # primary key, not to a page anywhere in it.
            .order_by(chosen.c.order_id, chosen.c.farm_id),
        )
    )
    paying = select(chosen.c.entry_id, this_run.c.id.label("payout_id")).join(
        this_run, this_run.c.farm_id == chosen.c.farm_id
    )
    alone = paying.where(chosen.c.entry_id.isnot(None))
    expected = db.session.scalar(select(func.count()).select_from(alone.subquery()))
    if expected:
        paid = alone.subquery()
        settled = db.session.execute(  # type: ignore[attr-defined]  # an UPDATE's result has its rowcount
            update(FarmEntry)
            .where(FarmEntry.id == paid.c.entry_id, FarmEntry.payout_id.is_(None), FarmEntry.reversal_id.is_(None))
            .values(payout_id=paid.c.payout_id)
            .execution_options(synchronize_session=False)
        ).rowcount
        if settled != expected:
            raise Conflict("Some of these entries were settled at the same time; run it again.")
    _plan_transfers(run)
    _record_skips(run)
    chosen.drop(db.session.connection())


def _adjustments() -> None:
    """A refund settled alone whose line's sale a payout paid before is an
    adjustment (netted here, but paid earlier), not a refund of this
    payout's lines. Decided on the few chosen rows that are refunds settled
    alone, not while grouping every entry."""
    chosen = RUN_PARTS
    entry = aliased(FarmEntry)
    coverage = aliased(PayoutCoverage)
    paid_earlier = (
        select(entry.id)
        .outerjoin(coverage, part_of(entry, coverage))
        .where(entry.id == chosen.c.entry_id, _sale_paid(entry, coverage))
        .exists()
    )
    db.session.execute(
        update(chosen)
        .where(chosen.c.entry_id.isnot(None), chosen.c.refunds != 0, paid_earlier)
        .values(adjustments=chosen.c.refunds, refunds=0)
    )


def _record_skips(run: PayoutRun) -> None:
    """Each farm with chosen entries that the run did not pay, with why and
    what its entries come to."""
    chosen = RUN_PARTS
    per_farm = (
        select(chosen.c.farm_id, func.sum(chosen.c.net).label("net"), func.sum(chosen.c.entries).label("entries"))
        .group_by(chosen.c.farm_id)
        .subquery()
    )
    reason = _skip_reason(per_farm.c.net).label("reason")
    skipped = (
        select(literal(run.id).label("run_id"), per_farm.c.farm_id, reason, per_farm.c.net, per_farm.c.entries)
        .outerjoin(PayoutAccount, PayoutAccount.farm_id == per_farm.c.farm_id)
        .subquery()
    )
    db.session.execute(
        insert(PayoutRunSkip).from_select(
            ["run_id", "farm_id", "reason", "amount", "entries_count"],
            select(skipped).where(skipped.c.reason.isnot(None)),
        )
    )


def _plan_transfers(run: PayoutRun) -> None:
    """The transfers that pay the run's Stripe payouts (docs/settlement.md):
    one per order with a positive share in the payout, drawn on the order's
    charge (`source_transaction`) up to what is left of it, and one from the
    balance for the rest. Take-backs netted in the payout come off the
    balance transfer first, then off the charge transfers in order id
    order, so that the transfers always add up to the payout."""
    chosen = RUN_PARTS
    stripe_payouts = (
        select(Payout.id, Payout.farm_id, Payout.amount)
        .where(Payout.run_id == run.id, Payout.method == PayoutMethod.STRIPE)
        .subquery()
    )
    shares = (
        select(stripe_payouts.c.id.label("payout_id"), chosen.c.order_id, func.sum(chosen.c.net).label("share"))
        .join(stripe_payouts, stripe_payouts.c.farm_id == chosen.c.farm_id)
        .group_by(stripe_payouts.c.id, chosen.c.order_id)
        .subquery()
    )
    charges = (
        select(shares.c.payout_id, shares.c.order_id, shares.c.share, Payment.stripe_charge_id, Payment.amount_captured)
        .join(Payment, Payment.order_id == shares.c.order_id)
        .where(shares.c.share > 0, Payment.stripe_charge_id.isnot(None), Payment.currency == run.currency)
        .subquery()
    )
    drawn = (
        select(PayoutTransfer.stripe_charge_id, func.sum(PayoutTransfer.amount).label("amount"))
        .where(PayoutTransfer.stripe_charge_id.in_(select(charges.c.stripe_charge_id)))
        .group_by(PayoutTransfer.stripe_charge_id)
        .subquery()
    )
    # What is left of each charge, less what the run's earlier payouts (two
    # farms of one order) draw on it first.
    earlier = (
        func.sum(charges.c.share).over(partition_by=charges.c.stripe_charge_id, order_by=charges.c.payout_id)
        - charges.c.share
    )
    left = (charges.c.amount_captured - func.coalesce(drawn.c.amount, 0) - earlier).label("left")
    with_left = (
        select(charges.c.payout_id, charges.c.order_id, charges.c.stripe_charge_id, charges.c.share, left)
        .outerjoin(drawn, drawn.c.stripe_charge_id == charges.c.stripe_charge_id)
        .subquery()
    )
    drawable = select(
        with_left.c.payout_id,
        with_left.c.order_id,
        with_left.c.stripe_charge_id,
        case((with_left.c.share < with_left.c.left, with_left.c.share), else_=with_left.c.left).label("amount"),
    ).subquery()
    drawable_rows = select(drawable).where(drawable.c.amount > 0).subquery()
    # What the charges draw beyond the payout (its take-backs), cut from
    # the charge transfers in order id order.
    by_payout = drawable_rows.c.payout_id
    over_payout = (
        select(
            drawable_rows,
            (func.sum(drawable_rows.c.amount).over(partition_by=by_payout) - stripe_payouts.c.amount).label("excess"),
            (
                func.sum(drawable_rows.c.amount).over(partition_by=by_payout, order_by=drawable_rows.c.order_id)
                - drawable_rows.c.amount
            ).label("before"),
        )
        .join(stripe_payouts, stripe_payouts.c.id == drawable_rows.c.payout_id)
        .subquery()
    )
    cut = case(
        (over_payout.c.excess <= over_payout.c.before, 0),
        (over_payout.c.excess - over_payout.c.before >= over_payout.c.amount, over_payout.c.amount),
        else_=over_payout.c.excess - over_payout.c.before,
    )
    planned = select(
        over_payout.c.payout_id,
        over_payout.c.order_id,
        over_payout.c.stripe_charge_id,
        (over_payout.c.amount - cut).label("amount"),
    ).subquery()
    columns = ["payout_id", "order_id", "stripe_charge_id", "amount"]
    db.session.execute(insert(PayoutTransfer).from_select(columns, select(planned).where(planned.c.amount > 0)))
    from_charges = (
        select(PayoutTransfer.payout_id, func.sum(PayoutTransfer.amount).label("amount"))
        .where(PayoutTransfer.payout_id.in_(select(stripe_payouts.c.id)))
        .group_by(PayoutTransfer.payout_id)
        .subquery()
    )
    rest = (stripe_payouts.c.amount - func.coalesce(from_charges.c.amount, 0)).label("amount")
    balance = (
        select(stripe_payouts.c.id, rest)
        .outerjoin(from_charges, from_charges.c.payout_id == stripe_payouts.c.id)
        .where(rest > 0)
    )
    db.session.execute(insert(PayoutTransfer).from_select(["payout_id", "amount"], balance))


def _post_payouts(run: PayoutRun) -> None:
    """Each payout of the run as the farm's entry and one "payout" ledger
    transaction (Dr farm_payable:<farm> / Cr payouts_in_transit), set-wise."""
    farms = select(Payout.farm_id).where(Payout.run_id == run.id)
    if db.session.scalar(farms.limit(1)) is None:
        return
    db.session.execute(
        insert(FarmEntry).from_select(
            ["reference", "farm_id", "kind", "grams", "produce", "commission", "premium", "net", "payout_id"],
            select(
                literal("payout:") + cast(Payout.id, String),
                Payout.farm_id,
                literal(EntryKind.PAYOUT.value),
                literal(0),
                literal(0),
                literal(0),
                literal(0),
                -Payout.amount,
                Payout.id,
            ).where(Payout.run_id == run.id),
        )
    )
    ledger.open_farm_accounts(farms)
    in_transit = ledger.account_ids([ledger.PAYOUTS_IN_TRANSIT])[ledger.PAYOUTS_IN_TRANSIT]
    reference = literal("payout:") + cast(Payout.id, String)
    db.session.execute(
        insert(LedgerTransaction).from_select(
            ["kind", "reference", "memo"],
            select(literal("payout"), reference, literal(f"payout run {run.id}")).where(Payout.run_id == run.id),
        )
    )
    of_run = (
        select(LedgerTransaction.id.label("transaction_id"), Payout.farm_id, Payout.amount)
        .join(LedgerTransaction, LedgerTransaction.reference == reference)
        .where(Payout.run_id == run.id)
        .subquery()
    )
    farm_account = ledger.farm_payable_of(of_run.c.farm_id)
    db.session.execute(
        insert(LedgerEntry).from_select(
            ["transaction_id", "account_id", "amount"],
            select(of_run.c.transaction_id, LedgerAccount.id, of_run.c.amount)
            .join(LedgerAccount, LedgerAccount.code == farm_account)
            .union_all(
                select(of_run.c.transaction_id, literal(in_transit), -of_run.c.amount),
            ),
        )
    )
