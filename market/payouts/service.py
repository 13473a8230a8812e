"""Payout rules: connecting a farm for payouts, payout runs with their
statements, Stripe transfers and reversals, bank-file payouts, and reading.

A run pays what the ledger owes each farm for settled orders and nothing
else: every captured line, refund line and premium transaction it pays is
recorded in a coverage table with a unique key, so a repeated or
overlapping run finds it taken and pays nobody twice. Runs are built with
set-based SQL (one statement per kind of row, never a loop over lines).

Ledger conventions (debits positive):
- "payout" `payout:<id>`: Dr farm_payable:<farm> / Cr payouts_in_transit
- "payout_paid" `payout:<id>:paid`: Dr payouts_in_transit / Cr gateway_cash:stripe
  (a transfer) or gateway_cash:offline (a confirmed bank transfer)
- "transfer_reversal" `reversal:<id>`: Dr gateway_cash:stripe / Cr farm_payable:<farm>

Provider calls run outside open transactions, keyed by our ids
(`farm-<id>-account`, `farm-<id>-link-<n>`, `payout-<id>`, `reversal-<id>`).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    Select,
    String,
    Table,
    case,
    cast,
    delete,
    false,
    func,
    insert,
    literal,
    null,
    select,
    text,
    true,
    union_all,
    update,
)
from sqlalchemy.exc import IntegrityError

from market.accounts.models import Role
from market.auth import Actor
from market.catalog.models import Farm, PayoutMethod
from market.db import utcnow
from market.errors import Conflict, Invalid, NotFound
from market.events import publish
from market.extensions import db
from market.ledger import service as ledger
from market.ledger.models import LedgerAccount, LedgerEntry, LedgerTransaction
from market.money import format_minor
from market.orders.models import Order, OrderEvent, OrderLine, OrderStatus
from market.outbox import enqueue
from market.pagination import Page, SortKey, keyset_page
from market.payments.gateway import GatewayError, gateway
from market.payments.models import CapturedLine, Payment, Provider, Refund, RefundLine, RefundStatus
from market.payouts.models import (
    Payout,
    PayoutAccount,
    PayoutLine,
    PayoutPremium,
    PayoutRefundLine,
    PayoutRun,
    PayoutStatus,
    ReversalStatus,
    TransferReversal,
)

SETTLED_STATES = (OrderStatus.DELIVERED, OrderStatus.COLLECTED, OrderStatus.COMPLETED)
SETTLING_EVENTS = ("order.delivered", "order.collected", "order.completed")
# Sponsor premiums credit the farm ("premium") and are taken back when the
# produce is refunded ("premium_reversal"); both are read by programme.
PREMIUM_KINDS = ("premium", "premium_reversal")
# Stripe forgets idempotency keys after about a day; a transfer retried
# later than this first asks Stripe whether it was made.
KEY_LIFETIME = timedelta(hours=23)
# An onboarding link about to expire is not handed out; a new one is made.
LINK_MARGIN = timedelta(minutes=1)
# Any fixed number: runs hold this PostgreSQL advisory lock, so two runs
# never choose their lines at the same time.
RUN_LOCK = 0x7061796F
# The captured lines a run pays, chosen once into a temporary table (dropped
# before the run commits): the payouts' totals and the lines they cover are
# built from that one choice, and PostgreSQL plans the joins on it from its
# analysed size rather than from an estimate of an anti-join.
RUN_SALES = Table(
    "payout_run_sales",
    MetaData(),
    Column("captured_line_id", Integer, nullable=False),
    Column("farm_id", Integer, nullable=False),
    Column("order_id", Integer, nullable=False),
    Column("grams", Integer, nullable=False),
    Column("amount", Integer, nullable=False),
    Column("commission", Integer, nullable=False),
    prefixes=["TEMPORARY"],
)


class PayoutNotFound(NotFound):
    pass


# --- payout accounts --------------------------------------------------------


def _owned_farm(actor: Actor, farm_id: int) -> Farm:
    farm = db.session.get(Farm, farm_id)
    if farm is None or farm.owner_id != actor.user_id:
        raise NotFound(f"Farm {farm_id} not found.")
    return farm


def _account_of(farm_id: int, *, lock: bool = False) -> PayoutAccount | None:
    stmt = select(PayoutAccount).where(PayoutAccount.farm_id == farm_id)
    if lock:
        stmt = stmt.with_for_update()
    return db.session.scalars(stmt).one_or_none()


def get_payout_account(actor: Actor, farm_id: int) -> PayoutAccount:
    """The farm's payout account (its owner; operators)."""
    farm = db.session.get(Farm, farm_id)
    if farm is None or (farm.owner_id != actor.user_id and not actor.has(Role.OPERATOR)):
        raise NotFound(f"Farm {farm_id} not found.")
    account = _account_of(farm_id)
    if account is None:
        raise NotFound(f"Farm {farm_id} has not set up payouts yet.")
    return account


def mask_account_number(number: str) -> str:
    digits = number.replace(" ", "")
    return "*" * max(len(digits) - 4, 0) + digits[-4:]


def connect_payout_account(
    actor: Actor,
    farm_id: int,
    *,
    method: PayoutMethod,
    account_holder: str | None = None,
    bank_name: str | None = None,
    account_number: str | None = None,
) -> PayoutAccount:
    """The farmer chooses how the farm is paid. Stripe: a worker makes the
    connected account and an onboarding link (answered once there); bank
    transfer: the details are stored for the operators' bank file."""
    actor.require(Role.FARMER)
    farm = _owned_farm(actor, farm_id)
    if method == PayoutMethod.BANK_TRANSFER:
        missing = {
            name: ["Required for bank transfer payouts."]
            for name, value in (
                ("account_holder", account_holder),
                ("bank_name", bank_name),
                ("account_number", account_number),
            )
            if not value
        }
        if missing:
            raise Invalid("Bank transfer payouts need the bank details.", missing)
    account = _account_of(farm_id, lock=True)
    if account is None:
        account = PayoutAccount(
            farm_id=farm_id,
            method=method,
            payouts_enabled=False,
            details_submitted=False,
            link_requests=0,
            link_requested_for=0,
        )
        db.session.add(account)
    account.method = method
    farm.payout_method = method
    if method == PayoutMethod.BANK_TRANSFER:
        assert account_number is not None  # checked above
        account.bank_account_holder = account_holder
        account.bank_name = bank_name
        account.bank_account_number = account_number.replace(" ", "")
        account.bank_account_masked = mask_account_number(account_number)
    else:
        _request_onboarding_link(account)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise Conflict("The payout account changed at the same time; try again.") from None
    return account


def _request_onboarding_link(account: PayoutAccount) -> None:
    now = utcnow()
    fresh = account.onboarding_url is not None and (
        account.onboarding_expires_at is not None and account.onboarding_expires_at > now + LINK_MARGIN
    )
    outstanding = account.link_requests > account.link_requested_for
    if account.payouts_enabled or fresh or outstanding:
        return
    account.link_requests += 1
    account.onboarding_url = None
    account.onboarding_expires_at = None
    db.session.flush()
    enqueue("payouts.connect_account", farm_id=account.farm_id)


def connect_account(farm_id: int) -> PayoutAccount | None:
    """Worker: make the farm's Express account (once) and the onboarding
    link last asked for. Repeating it changes nothing."""
    account = _account_of(farm_id)
    if account is None or account.method != PayoutMethod.STRIPE:
        return account
    try:
        if account.stripe_account_id is None:
            key = f"farm-{farm_id}-account"
            country = current_app.config["STRIPE_CONNECT_COUNTRY"]
            db.session.commit()  # no transaction stays open across the provider call
            created = gateway().create_connected_account(farm_id=farm_id, country=country, key=key)
            account = _account_of(farm_id, lock=True)
            assert account is not None
            if account.stripe_account_id is None:
                account.stripe_account_id = created.id
                account.payouts_enabled = created.payouts_enabled
                account.details_submitted = created.details_submitted
            db.session.commit()
        if account.payouts_enabled or account.link_requests == account.link_requested_for:
            return account
        number, stripe_id = account.link_requests, account.stripe_account_id
        assert stripe_id is not None
        db.session.commit()
        link = gateway().create_account_link(
            stripe_id,
            refresh_url=current_app.config["PAYOUT_ONBOARDING_REFRESH_URL"],
            return_url=current_app.config["PAYOUT_ONBOARDING_RETURN_URL"],
            key=f"farm-{farm_id}-link-{number}",
        )
    except GatewayError as error:
        account = _account_of(farm_id, lock=True)
        assert account is not None
        account.attention = str(error)[:2000]
        db.session.commit()
        return account
    account = _account_of(farm_id, lock=True)
    assert account is not None
    if account.link_requests == number:  # else a newer request's own task fetches its link
        account.onboarding_url = link.url
        account.onboarding_expires_at = datetime.fromtimestamp(link.expires_at, UTC)
        account.link_requested_for = number
        account.attention = None
    db.session.commit()
    return account


def flag_account(farm_id: int, problem: str) -> None:
    account = _account_of(farm_id)
    if account is not None:
        account.attention = problem[:2000]
        db.session.commit()


def account_updated(account_id: str, *, payouts_enabled: bool, details_submitted: bool, created: int) -> None:
    """Stripe's account.updated: keep payouts_enabled current. An event
    older than the one last applied is ignored (events come in any order).
    The webhook receiver commits."""
    account = db.session.scalars(
        select(PayoutAccount).where(PayoutAccount.stripe_account_id == account_id).with_for_update()
    ).one_or_none()
    if account is None or (account.stripe_state_at is not None and created < account.stripe_state_at):
        return
    account.payouts_enabled = payouts_enabled
    account.details_submitted = details_submitted
    account.stripe_state_at = created


# --- choosing what a run pays ----------------------------------------------


def _settled_orders(cutoff: datetime) -> Select[Any]:
    """Orders delivered, collected or completed, settled before `cutoff`."""
    return (
        select(OrderEvent.order_id.label("order_id"))
        .join(Order, Order.id == OrderEvent.order_id)
        .where(OrderEvent.type.in_(SETTLING_EVENTS), Order.status.in_(SETTLED_STATES))
        .group_by(OrderEvent.order_id)
        .having(func.min(OrderEvent.created_at) < cutoff)
    )


def _ready_farms() -> Select[Any]:
    return select(PayoutAccount.farm_id).where(
        ((PayoutAccount.method == PayoutMethod.STRIPE) & PayoutAccount.payouts_enabled)
        | ((PayoutAccount.method == PayoutMethod.BANK_TRANSFER) & PayoutAccount.bank_account_number.isnot(None))
    )


def _unpaid_sales(cutoff: datetime) -> Select[Any]:
    """Captured lines of settled orders that no payout has paid."""
    settled = _settled_orders(cutoff).subquery()
    return (
        select(
            CapturedLine.id.label("captured_line_id"),
            CapturedLine.farm_id.label("farm_id"),
            Payment.order_id.label("order_id"),
            CapturedLine.grams.label("grams"),
            # Sales include buyer-funded premiums: the farm gets them whole.
            (CapturedLine.amount + CapturedLine.premium).label("amount"),
            CapturedLine.commission.label("commission"),
        )
        .join(Payment, Payment.id == CapturedLine.payment_id)
        .join(settled, settled.c.order_id == Payment.order_id)
        .where(~select(PayoutLine.id).where(PayoutLine.captured_line_id == CapturedLine.id).exists())
        .where(CapturedLine.farm_id.in_(_ready_farms()))
    )


def _unsettled_refunds() -> Select[Any]:
    """Succeeded refund lines no payout or reversal has settled, with the
    payout that paid the refunded line (`paid_by`, None if none has yet)."""
    return (
        select(
            RefundLine.id.label("refund_line_id"),
            RefundLine.farm_id.label("farm_id"),
            (RefundLine.amount - RefundLine.commission + RefundLine.premium).label("farm_amount"),
            CapturedLine.id.label("captured_line_id"),
            PayoutLine.payout_id.label("paid_by"),
        )
        .join(Refund, Refund.id == RefundLine.refund_id)
        .join(CapturedLine, CapturedLine.order_line_id == RefundLine.order_line_id)
        .outerjoin(PayoutLine, PayoutLine.captured_line_id == CapturedLine.id)
        .where(Refund.status == RefundStatus.SUCCEEDED)
        .where(~select(PayoutRefundLine.id).where(PayoutRefundLine.refund_line_id == RefundLine.id).exists())
    )


def _unpaid_premiums(cutoff: datetime) -> Select[Any]:
    """Credits of "premium" ledger transactions to farms, not yet paid, for
    settled orders (or, without an order, posted before the cutoff). The
    programme is the transaction's other account (`sponsor_liability:<id>`
    for a sponsor's premium)."""
    settled = _settled_orders(cutoff).subquery()
    counterpart = LedgerAccount.__table__.alias("counterpart")
    counter_entry = LedgerEntry.__table__.alias("counter_entry")
    programme = (
        select(func.min(counterpart.c.code))
        .select_from(counter_entry.join(counterpart, counterpart.c.id == counter_entry.c.account_id))
        .where(counter_entry.c.transaction_id == LedgerTransaction.id, counterpart.c.farm_id.is_(None))
        .scalar_subquery()
    )
    return (
        select(
            LedgerTransaction.id.label("ledger_transaction_id"),
            LedgerAccount.farm_id.label("farm_id"),
            func.coalesce(programme, LedgerTransaction.reference).label("programme"),
            (-func.sum(LedgerEntry.amount)).label("amount"),
        )
        .join(LedgerEntry, LedgerEntry.transaction_id == LedgerTransaction.id)
        .join(LedgerAccount, LedgerAccount.id == LedgerEntry.account_id)
        .where(LedgerTransaction.kind.in_(PREMIUM_KINDS), LedgerAccount.farm_id.isnot(None))
        .where(LedgerAccount.farm_id.in_(_ready_farms()))
        .where(
            (LedgerTransaction.order_id.in_(select(settled.c.order_id)))
            | (LedgerTransaction.order_id.is_(None) & (LedgerTransaction.created_at < cutoff))
        )
        .where(
            ~select(PayoutPremium.id)
            .where(
                PayoutPremium.ledger_transaction_id == LedgerTransaction.id,
                PayoutPremium.farm_id == LedgerAccount.farm_id,
            )
            .exists()
        )
        .group_by(LedgerTransaction.id, LedgerAccount.farm_id, LedgerTransaction.reference)
    )


# --- payout runs ------------------------------------------------------------


def run_cutoff(period_end: date, now: datetime, hold_days: int) -> datetime:
    """Orders settled before the end of `period_end` and at least
    `hold_days` ago are due."""
    period_close = datetime.combine(period_end + timedelta(days=1), time.min, tzinfo=UTC)
    return min(period_close, now - timedelta(days=hold_days))


def create_run(actor: Actor, *, period_end: date) -> PayoutRun:
    """Pay every farm what it is owed for orders settled up to `period_end`
    (and past the hold period): recover refunds of already paid lines by
    transfer reversal where the transfer covers them, net the rest, and
    write one payout per farm with a positive net, its statement and its
    ledger transaction. Nothing already paid is paid again."""
    actor.require(Role.OPERATOR)
    now = utcnow()
    if period_end > now.date():
        raise Invalid(
            "A payout run cannot cover a period that has not ended.", {"period_end": ["Must not be in the future."]}
        )
    cutoff = run_cutoff(period_end, now, current_app.config["PAYOUT_HOLD_DAYS"])
    db.session.commit()  # the serialising lock below is the transaction's first statement
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": RUN_LOCK})
    run = PayoutRun(
        period_end=period_end, cutoff=cutoff, currency=current_app.config["MARKET_CURRENCY"], created_by=actor.user_id
    )
    db.session.add(run)
    db.session.flush()
    try:
        run.reversals_count = _recover_by_reversal(run)
        _write_payouts(run, cutoff)
        _post_payouts(run)
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise Conflict("Another payout run took some of these lines at the same time; run it again.") from None
    totals = db.session.execute(
        select(func.count(Payout.id), func.coalesce(func.sum(Payout.amount), 0)).where(Payout.run_id == run.id)
    ).one()
    run.payouts_count, run.total = totals[0], totals[1]
    enqueue("payouts.dispatch_run", run_id=run.id)
    db.session.commit()
    return run


def _recover_by_reversal(run: PayoutRun) -> int:
    """Refunds of lines a Stripe transfer paid are taken back from that
    transfer when what is left of it covers them; the rest are netted."""
    refunds = _unsettled_refunds().subquery()
    owed_by_payout = db.session.execute(
        select(refunds.c.paid_by, func.sum(refunds.c.farm_amount))
        .where(refunds.c.paid_by.isnot(None))
        .group_by(refunds.c.paid_by)
        .order_by(refunds.c.paid_by)
    ).all()
    made = 0
    for payout_id, owed in owed_by_payout:
        payout = db.session.get(Payout, payout_id)
        assert payout is not None
        if payout.method != PayoutMethod.STRIPE or payout.stripe_transfer_id is None or owed <= 0:
            continue
        if owed > payout.amount - _reversed(payout.id) or _reversal_refused(payout.id):
            continue
        reversal = TransferReversal(
            payout_id=payout.id, run_id=run.id, farm_id=payout.farm_id, amount=owed, status=ReversalStatus.PENDING
        )
        db.session.add(reversal)
        db.session.flush()
        db.session.execute(
            insert(PayoutRefundLine).from_select(
                ["refund_line_id", "reversal_id", "farm_amount", "adjustment"],
                select(refunds.c.refund_line_id, literal(reversal.id), refunds.c.farm_amount, true()).where(
                    refunds.c.paid_by == payout.id
                ),
            )
        )
        # What was actually taken (a refund may have landed meanwhile).
        reversal.amount = db.session.scalar(
            select(func.sum(PayoutRefundLine.farm_amount)).where(PayoutRefundLine.reversal_id == reversal.id)
        )
        enqueue("payouts.reverse", reversal_id=reversal.id)
        made += 1
    return made


def _reversed(payout_id: int) -> int:
    return (
        db.session.scalar(
            select(func.coalesce(func.sum(TransferReversal.amount), 0)).where(
                TransferReversal.payout_id == payout_id, TransferReversal.status != ReversalStatus.FAILED
            )
        )
        or 0
    )


def _reversal_refused(payout_id: int) -> bool:
    """Stripe refused a reversal of this transfer before (the connected
    account's balance was too low, say): net instead of asking again."""
    refused = select(TransferReversal.id).where(
        TransferReversal.payout_id == payout_id, TransferReversal.status == ReversalStatus.FAILED
    )
    return db.session.scalar(refused.exists().select()) or False


def _analyze(*tables: Table) -> None:
    """PostgreSQL plans from the statistics last gathered, which know nothing
    of the rows this transaction wrote; ANALYZE sees them (SQLite has no
    statistics to refresh)."""
    if db.session.get_bind().dialect.name == "postgresql":
        for table in tables:
            db.session.execute(text(f"ANALYZE {table.name}"))


def _choose_sales(cutoff: datetime) -> Table:
    """Fill RUN_SALES for this run. It is created inside the run's
    transaction (on SQLite too, as the run has already written), so a run
    rolled back takes the table with it."""
    RUN_SALES.create(db.session.connection())
    db.session.execute(insert(RUN_SALES).from_select([c.name for c in RUN_SALES.c], _unpaid_sales(cutoff)))
    _analyze(RUN_SALES)
    return RUN_SALES


def _write_payouts(run: PayoutRun, cutoff: datetime) -> None:
    sales = _choose_sales(cutoff)
    refunds = _unsettled_refunds().subquery()
    premiums = _unpaid_premiums(cutoff).subquery()
    zero = literal(0)
    items = union_all(
        select(
            sales.c.farm_id, sales.c.order_id, literal(1).label("lines"), sales.c.grams, sales.c.amount.label("sales"),
            sales.c.commission, zero.label("premiums"), zero.label("refunds"), zero.label("adjustments"),
        ),
        # Refunds of lines paid in this run come off the same payout.
        select(
            refunds.c.farm_id, null(), zero, zero, zero, zero, zero, refunds.c.farm_amount, zero,
        ).join(sales, sales.c.captured_line_id == refunds.c.captured_line_id),
        # Refunds of lines an earlier payout paid, not recovered by reversal.
        select(
            refunds.c.farm_id, null(), zero, zero, zero, zero, zero, zero, refunds.c.farm_amount,
        ).where(refunds.c.paid_by.isnot(None), refunds.c.farm_id.in_(_ready_farms())),
        select(premiums.c.farm_id, null(), zero, zero, zero, zero, premiums.c.amount, zero, zero),
    ).subquery()  # fmt: skip
    net = (
        func.sum(items.c.sales)
        - func.sum(items.c.commission)
        + func.sum(items.c.premiums)
        - func.sum(items.c.refunds)
        - func.sum(items.c.adjustments)
    )
    totals = (
        select(
            items.c.farm_id,
            func.count(func.distinct(items.c.order_id)).label("orders_count"),
            func.sum(items.c.lines).label("lines_count"),
            func.sum(items.c.grams).label("grams"),
            func.sum(items.c.sales).label("sales"),
            func.sum(items.c.commission).label("commission"),
            func.sum(items.c.premiums).label("premiums"),
            func.sum(items.c.refunds).label("refunds"),
            func.sum(items.c.adjustments).label("adjustments"),
            net.label("amount"),
        )
        .group_by(items.c.farm_id)
        .having(net > 0)
        .subquery()
    )
    # The accounts are joined to each farm's totals, not to its lines:
    # grouping lines that carry their account means sorting a million wide rows.
    per_farm = select(
        literal(run.id),
        totals.c.farm_id,
        PayoutAccount.method,
        case(
            (PayoutAccount.method == PayoutMethod.STRIPE, literal(PayoutStatus.PENDING.value)),
            else_=literal(PayoutStatus.AWAITING_CONFIRMATION.value),
        ),
        literal(run.currency),
        *totals.c[1:],  # the statement totals, after the farm
        PayoutAccount.stripe_account_id,
    ).join(PayoutAccount, PayoutAccount.farm_id == totals.c.farm_id)
    columns = ["run_id", "farm_id", "method", "status", "currency", *totals.c.keys()[1:], "stripe_account_id"]
    db.session.execute(insert(Payout).from_select(columns, per_farm))
    _analyze(Payout.__table__)
    this_run = select(Payout.id, Payout.farm_id).where(Payout.run_id == run.id).subquery()
    db.session.execute(
        insert(PayoutLine).from_select(
            ["payout_id", "captured_line_id"],
            select(this_run.c.id, sales.c.captured_line_id)
            .select_from(sales)
            .join(this_run, this_run.c.farm_id == sales.c.farm_id),
        )
    )
    # Now that this run's lines are covered, every refund to settle here
    # has a paying payout: this one (a refund of a line it pays) or an
    # earlier one (an adjustment).
    db.session.execute(
        insert(PayoutRefundLine).from_select(
            ["refund_line_id", "payout_id", "farm_amount", "adjustment"],
            select(
                refunds.c.refund_line_id,
                this_run.c.id,
                refunds.c.farm_amount,
                case((refunds.c.paid_by == this_run.c.id, false()), else_=true()),
            )
            .join(this_run, this_run.c.farm_id == refunds.c.farm_id)
            .where(refunds.c.paid_by.isnot(None)),
        )
    )
    db.session.execute(
        insert(PayoutPremium).from_select(
            ["payout_id", "ledger_transaction_id", "farm_id", "programme", "amount"],
            select(
                this_run.c.id, premiums.c.ledger_transaction_id, premiums.c.farm_id, premiums.c.programme,
                premiums.c.amount,
            ).select_from(premiums).join(this_run, this_run.c.farm_id == premiums.c.farm_id),
        )
    )  # fmt: skip
    sales.drop(db.session.connection())
    _restate_from_coverage(run)


def _restate_from_coverage(run: PayoutRun) -> None:
    """Set each payout's refund and premium totals from what it covers: each
    statement above saw its own moment, so a refund or premium that landed
    between them is counted exactly as it was covered. (The sales totals
    need no restating: the payouts and their lines come from one choice.)"""
    this_run = select(Payout.id).where(Payout.run_id == run.id)
    zero = literal(0)
    covered = union_all(
        select(
            Payout.id.label("payout_id"), zero.label("premiums"), zero.label("refunds"), zero.label("adjustments")
        ).where(Payout.run_id == run.id),
        select(PayoutPremium.payout_id, PayoutPremium.amount, zero, zero).where(PayoutPremium.payout_id.in_(this_run)),
        select(
            PayoutRefundLine.payout_id,
            zero,
            case((PayoutRefundLine.adjustment, 0), else_=PayoutRefundLine.farm_amount),
            case((PayoutRefundLine.adjustment, PayoutRefundLine.farm_amount), else_=0),
        ).where(PayoutRefundLine.payout_id.in_(this_run)),
    ).subquery()
    totals = (
        select(
            covered.c.payout_id,
            func.sum(covered.c.premiums).label("premiums"),
            func.sum(covered.c.refunds).label("refunds"),
            func.sum(covered.c.adjustments).label("adjustments"),
        )
        .group_by(covered.c.payout_id)
        .subquery()
    )
    db.session.execute(
        update(Payout)
        .where(Payout.id == totals.c.payout_id)
        .values(
            premiums=totals.c.premiums,
            refunds=totals.c.refunds,
            adjustments=totals.c.adjustments,
            amount=Payout.sales - Payout.commission + totals.c.premiums - totals.c.refunds - totals.c.adjustments,
        )
        .execution_options(synchronize_session=False)
    )


def _post_payouts(run: PayoutRun) -> None:
    """One "payout" ledger transaction per payout of the run, written set-wise:
    Dr farm_payable:<farm> / Cr payouts_in_transit."""
    farms = db.session.scalars(select(Payout.farm_id).where(Payout.run_id == run.id)).all()
    if not farms:
        return
    ids = ledger.account_ids([ledger.PAYOUTS_IN_TRANSIT, *(ledger.farm_payable(farm) for farm in farms)])
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
    farm_account = literal("farm_payable:") + cast(of_run.c.farm_id, String)
    db.session.execute(
        insert(LedgerEntry).from_select(
            ["transaction_id", "account_id", "amount"],
            union_all(
                select(of_run.c.transaction_id, LedgerAccount.id, of_run.c.amount).join(
                    LedgerAccount, LedgerAccount.code == farm_account
                ),
                select(of_run.c.transaction_id, literal(ids[ledger.PAYOUTS_IN_TRANSIT]), -of_run.c.amount),
            ),
        )
    )


# --- paying -----------------------------------------------------------------


def dispatch_run(run_id: int) -> int:
    """Worker: queue a transfer for each of the run's Stripe payouts still
    to pay (a repeat queues them again, harmlessly)."""
    ids = db.session.scalars(
        select(Payout.id).where(Payout.run_id == run_id, Payout.status == PayoutStatus.PENDING).order_by(Payout.id)
    ).all()
    for payout_id in ids:
        enqueue("payouts.transfer", payout_id=payout_id)
    db.session.commit()
    return len(ids)


def _payout(payout_id: int, *, lock: bool = False) -> Payout:
    stmt = select(Payout).where(Payout.id == payout_id)
    if lock:
        stmt = stmt.with_for_update()
    payout = db.session.scalars(stmt).one_or_none()
    if payout is None:
        raise PayoutNotFound(f"Payout {payout_id} not found.")
    return payout


def _paid(payout: Payout, provider: Provider) -> None:
    ledger.post(
        "payout_paid",
        f"payout:{payout.id}:paid",
        {ledger.PAYOUTS_IN_TRANSIT: payout.amount, ledger.gateway_cash(provider): -payout.amount},
        memo=payout.bank_reference or payout.stripe_transfer_id or "",
    )
    publish("payout.paid", payout_id=payout.id)


def transfer(payout_id: int) -> Payout:
    """Worker: pay a Stripe payout by Transfer to the farm's connected
    account. Repeating it, even after the worker died mid-call, makes one
    transfer: the key is the payout's, and after Stripe has forgotten the
    key, the transfer group is searched first."""
    payout = _payout(payout_id)
    if payout.status != PayoutStatus.PENDING or payout.method != PayoutMethod.STRIPE:
        return payout
    found = None
    if payout.transfer_requested_at is None:
        payout.transfer_requested_at = utcnow()
        db.session.commit()
    elif utcnow() - payout.transfer_requested_at > KEY_LIFETIME:
        group = payout.transfer_group
        db.session.commit()
        found = gateway().find_transfer(transfer_group=group, payout_id=payout_id)
    if found is None:
        payout = _payout(payout_id)
        amount, currency, key = payout.amount, payout.currency, payout.transfer_key
        destination, group = payout.stripe_account_id or "", payout.transfer_group
        db.session.commit()  # no transaction stays open across the provider call
        try:
            found = gateway().create_transfer(
                amount=amount,
                currency=currency,
                destination=destination,
                transfer_group=group,
                payout_id=payout_id,
                key=key,
            )
        except GatewayError as error:
            payout = _payout(payout_id, lock=True)
            if payout.status == PayoutStatus.PENDING:
                payout.mark_failed(str(error))
                publish("payout.failed", payout_id=payout.id)
            db.session.commit()
            return payout
    payout = _payout(payout_id, lock=True)
    if payout.status == PayoutStatus.PENDING:
        payout.mark_transferred(found.id)
        _paid(payout, Provider.STRIPE)
    db.session.commit()
    return payout


def flag(payout_id: int, problem: str) -> None:
    """Surface a payout a worker could not pay after all its retries."""
    payout = db.session.get(Payout, payout_id)
    if payout is not None:
        payout.attention = problem[:2000]
        db.session.commit()


def retry_payout(actor: Actor, payout_id: int) -> Payout:
    """An operator sends a failed Stripe payout again (after the farm fixed
    its account, say)."""
    actor.require(Role.OPERATOR)
    payout = _payout(payout_id, lock=True)
    payout.retry()
    enqueue("payouts.transfer", payout_id=payout.id)
    db.session.commit()
    return payout


def confirm_bank_transfer(actor: Actor, payout_id: int, *, bank_reference: str) -> Payout:
    """An operator confirms a bank-file payout was executed."""
    actor.require(Role.OPERATOR)
    payout = _payout(payout_id, lock=True)
    payout.confirm(bank_reference)
    _paid(payout, Provider.OFFLINE)
    db.session.commit()
    return payout


def reverse(reversal_id: int) -> TransferReversal:
    """Worker: take a reversal's amount back from the farm's transfer. If
    Stripe refuses, the refunds it was for are netted from the next payout."""
    reversal = db.session.get(TransferReversal, reversal_id)
    if reversal is None:
        raise NotFound(f"Reversal {reversal_id} not found.")
    if reversal.status != ReversalStatus.PENDING:
        return reversal
    transfer_id, amount = reversal.payout.stripe_transfer_id or "", reversal.amount
    db.session.commit()
    try:
        result = gateway().reverse_transfer(transfer_id, amount=amount, key=f"reversal-{reversal_id}")
    except GatewayError as error:
        reversal = db.session.scalars(
            select(TransferReversal).where(TransferReversal.id == reversal_id).with_for_update()
        ).one()
        if reversal.status == ReversalStatus.PENDING:
            reversal.mark_failed(str(error))
            db.session.execute(delete(PayoutRefundLine).where(PayoutRefundLine.reversal_id == reversal_id))
        db.session.commit()
        return reversal
    reversal = db.session.scalars(
        select(TransferReversal).where(TransferReversal.id == reversal_id).with_for_update()
    ).one()
    if reversal.status == ReversalStatus.PENDING:
        reversal.mark_succeeded(result.id)
        ledger.post(
            "transfer_reversal",
            f"reversal:{reversal.id}",
            {ledger.gateway_cash(Provider.STRIPE): amount, ledger.farm_payable(reversal.farm_id): -amount},
            memo=f"reverses part of payout {reversal.payout_id}",
        )
    db.session.commit()
    return reversal


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


def get_payout(actor: Actor, payout_id: int) -> Payout:
    payout = db.session.scalars(select(Payout).where(Payout.id == payout_id, _visible_payouts(actor))).one_or_none()
    if payout is None:
        raise PayoutNotFound(f"Payout {payout_id} not found.")
    return payout


def statement(actor: Actor, payout_id: int) -> dict[str, Any]:
    """The payout with its detail: orders and lines, refunds (of this
    payout's lines, and of earlier payouts' lines netted here), premiums by
    programme, and reversals taken back from this payout's transfer."""
    payout = get_payout(actor, payout_id)
    lines = db.session.execute(
        select(
            Payment.order_id,
            CapturedLine.order_line_id,
            OrderLine.product_name,
            CapturedLine.grams,
            CapturedLine.price_per_kg,
            CapturedLine.amount,
            CapturedLine.premium,
            CapturedLine.commission,
        )
        .select_from(PayoutLine)
        .join(CapturedLine, CapturedLine.id == PayoutLine.captured_line_id)
        .join(Payment, Payment.id == CapturedLine.payment_id)
        .join(OrderLine, OrderLine.id == CapturedLine.order_line_id)
        .where(PayoutLine.payout_id == payout.id)
        .order_by(Payment.order_id, CapturedLine.order_line_id)
    ).all()
    orders: dict[int, list[dict[str, Any]]] = {}
    for row in lines:
        orders.setdefault(row.order_id, []).append(
            {
                "order_line_id": row.order_line_id,
                "product_name": row.product_name,
                "grams": row.grams,
                "price_per_kg": row.price_per_kg,
                "amount": row.amount,
                "buyer_premium": row.premium,
                "commission": row.commission,
                "net": row.amount - row.commission + row.premium,
            }
        )
    refund_rows = db.session.execute(
        _refund_detail().where(PayoutRefundLine.payout_id == payout.id).order_by(RefundLine.id)
    ).all()
    premiums = db.session.execute(
        select(PayoutPremium.programme, func.sum(PayoutPremium.amount).label("amount"))
        .where(PayoutPremium.payout_id == payout.id)
        .group_by(PayoutPremium.programme)
        .order_by(PayoutPremium.programme)
    ).all()
    reversals = db.session.scalars(
        select(TransferReversal).where(TransferReversal.payout_id == payout.id).order_by(TransferReversal.id)
    ).all()
    reversal_lines = db.session.execute(
        _refund_detail().where(PayoutRefundLine.reversal_id.in_([r.id for r in reversals])).order_by(RefundLine.id)
    ).all()
    return {
        "payout": payout,
        "orders": [{"order_id": order_id, "lines": order_lines} for order_id, order_lines in orders.items()],
        "refunds": [row._asdict() for row in refund_rows if not row.adjustment],
        "adjustments": [row._asdict() for row in refund_rows if row.adjustment],
        "premiums": [{"programme": row.programme, "amount": row.amount} for row in premiums],
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


def _refund_detail() -> Select[Any]:
    return (
        select(
            RefundLine.refund_id,
            Refund.order_id,
            RefundLine.order_line_id,
            RefundLine.grams,
            RefundLine.amount,
            RefundLine.commission,
            PayoutRefundLine.farm_amount.label("net"),
            PayoutRefundLine.adjustment,
            PayoutRefundLine.reversal_id,
        )
        .select_from(PayoutRefundLine)
        .join(RefundLine, RefundLine.id == PayoutRefundLine.refund_line_id)
        .join(Refund, Refund.id == RefundLine.refund_id)
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
    """The run's bank-transfer payouts still to execute, one row each, with
    the full account number (this file is for the operators' bank only)."""
    run = get_run(actor, run_id)
    rows = db.session.execute(
        select(
            Payout.id,
            Payout.amount,
            Payout.currency,
            Farm.name,
            PayoutAccount.bank_account_holder,
            PayoutAccount.bank_name,
            PayoutAccount.bank_account_number,
        )
        .join(Farm, Farm.id == Payout.farm_id)
        .join(PayoutAccount, PayoutAccount.farm_id == Payout.farm_id)
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
            "account_number": row.bank_account_number,
            "amount": row.amount,
            "currency": row.currency,
        }
        for row in rows
    ]


STATEMENT_COLUMNS = (
    "section", "order_id", "order_line_id", "item", "kg", "price_per_kg",
    "amount", "buyer_premium", "commission", "net",
)  # fmt: skip


def statement_rows(detail: dict[str, Any]) -> list[dict[str, Any]]:
    """A statement as spreadsheet rows: sales, refunds, adjustments,
    premiums, reversals, then the totals; amounts as decimals of the currency."""
    payout: Payout = detail["payout"]

    def money(amount: int | None) -> str:
        return "" if amount is None else format_minor(amount)

    rows: list[dict[str, Any]] = []
    for order in detail["orders"]:
        for line in order["lines"]:
            rows.append(
                {
                    "section": "sale",
                    "order_id": order["order_id"],
                    "order_line_id": line["order_line_id"],
                    "item": line["product_name"],
                    "kg": format_minor(line["grams"], 3),
                    "price_per_kg": money(line["price_per_kg"]),
                    "amount": money(line["amount"]),
                    "buyer_premium": money(line["buyer_premium"]),
                    "commission": money(line["commission"]),
                    "net": money(line["net"]),
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
                    "kg": format_minor(refund["grams"], 3),
                    "amount": money(-refund["amount"]),
                    "commission": money(-refund["commission"]),
                    "net": money(-refund["net"]),
                }
            )
    for premium in detail["premiums"]:
        rows.append({"section": "premium", "item": premium["programme"], "net": money(premium["amount"])})
    for reversal in detail["reversals"]:
        rows.append(
            {
                "section": "reversal",
                "item": f"reversal {reversal['id']} ({reversal['status']})",
                "net": money(-reversal["amount"]),
            }
        )
    rows.append(
        {
            "section": "total",
            "item": f"payout {payout.id} ({payout.status})",
            "kg": format_minor(payout.grams, 3),
            "amount": money(payout.sales),
            "commission": money(payout.commission),
            "net": money(payout.amount),
        }
    )
    return rows


def flag_reversal(reversal_id: int, problem: str) -> None:
    reversal = db.session.get(TransferReversal, reversal_id)
    if reversal is not None:
        reversal.failure_reason = problem[:2000]
        db.session.commit()
