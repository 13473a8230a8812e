"""Reconciliation: the ledger matched against the payment provider's records
and against the operators' own confirmations, for one period.

Stripe: every balance transaction of the period (charges, refunds,
transfers, transfer reversals) is matched by its source object to the ledger
transaction that recorded it (`capture` by PaymentIntent, `refund` by
Refund, `payout_paid` by Transfer, `transfer_reversal` by TransferReversal),
comparing the gross amount with the `gateway_cash:stripe` entry. Stripe's
fee on each balance transaction is reported as a `fee` item and never
posted by itself; an operator may book it into `gateway_fees` on resolving.

Currencies: the ledger is in MARKET_CURRENCY; a balance transaction is in
the currency Stripe settles in (STRIPE_SETTLEMENT_CURRENCY). A balance
transaction in the marketplace currency is compared as it is. One in the
settlement currency is compared by its source's own (presentment) amount,
which must be in the marketplace currency; what the balance moved and the
exchange rate are reported beside it. Anything else (a balance transaction
in a third currency, a source in another currency or not given) is
`currency_differs`, with the reason, and never compared. Fees are in the
balance transaction's currency, and booked in it: `gateway_fees:<CUR>`
against `gateway_cash:stripe:<CUR>` when that is not the ledger's.

Offline: each confirmed offline payment (`offline_receipt`), confirmed
bank payout to a farm (`payout_paid` from `gateway_cash:offline`) or to a
seller (`seller_payout_paid`) and confirmed station deposit
(`station_deposit` into it) is matched to the Payment, Payout, seller
payout or cash-up record the operator confirmed. Cash taken at a station
is not the bank's until its cash-up's deposit: it is matched there.

Records near the period's edges are fetched with a margin on both sides, so
a capture posted at 23:59:59 that Stripe timestamps 00:00:00 matches; an
item belongs to the period when either side falls in it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from flask import current_app
from sqlalchemy import Row, Select, func, select
from sqlalchemy.exc import IntegrityError

from market.accounts.models import Role
from market.auth import Actor
from market.catalog.models import PayoutMethod
from market.commissions import service as commissions
from market.commissions.models import SellerPayout, SellerPayoutStatus
from market.csv_export import Text, major
from market.db import get_or_404, locked, outside_transaction, unit_of_work, utcnow
from market.errors import Conflict, Invalid, NotFound
from market.extensions import db
from market.ledger import service as ledger
from market.ledger.models import LedgerAccount, LedgerEntry, LedgerTransaction
from market.orders.models import Order
from market.outbox import enqueue
from market.pagination import Page, SortKey, count_rows, keyset_page
from market.payments.gateway import BalanceTransaction, GatewayError, gateway
from market.payments.models import Payment, Provider, Refund
from market.payouts.models import Payout, PayoutStatus, PayoutTransfer, TransferReversal
from market.reconciliation.models import Outcome, ReconciliationItem, ReconciliationRun, RunStatus, rate_text
from market.stations.cashups import DEPOSIT_KIND
from market.stations.models import CashUp

GATEWAY_FEES = "gateway_fees"
FEE_KIND = "gateway_fee"
# Stripe's `created` is Unix seconds: nothing it holds is older than this.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
# Balance transaction types, by the object our ledger knows them by.
CHARGE_TYPES = frozenset({"charge", "payment"})
REVERSAL_TYPES = frozenset({"transfer_refund", "transfer_cancel"})
# The items' CSV. Each amount is in major units of the currency in the
# column beside it (docs/reconciliation.md): a row's sides may be in
# different currencies, and Stripe's in one that is not yuan.
ITEM_COLUMNS = (
    "id", "provider", "object_type", "object_id", "balance_transaction_id", "ledger_reference", "order_id",
    "gateway_amount_major", "gateway_currency", "ledger_amount_major", "ledger_currency", "settlement_amount_major",
    "settlement_currency", "exchange_rate", "fee_major", "fee_currency", "occurred_at", "outcome", "reason",
    "resolved_at", "resolution_note", "fee_booked",
)  # fmt: skip
# Item attributes by the currency attribute each is in (the fee is in the settlement currency).
ITEM_AMOUNTS = {
    "gateway_amount": "gateway_currency", "ledger_amount": "ledger_currency",
    "settlement_amount": "settlement_currency", "fee": "settlement_currency",
}  # fmt: skip
MAJOR = tuple(f"{amount}_major" for amount in ITEM_AMOUNTS)
ITEM_IDENTIFIERS = ("object_id", "balance_transaction_id", "ledger_reference", "fee_booked")


class ReconciliationNotFound(NotFound):
    pass


@dataclass
class _Side:
    """What one side (gateway or ledger) says about one thing; for Stripe,
    also what its balance moved (`settled`, in `settlement_currency`), at
    what rate, and why the record cannot be compared, if it cannot."""

    amount: int
    currency: str
    at: datetime
    object_type: str
    object_id: str | None = None
    balance_transaction_id: str | None = None
    reference: str | None = None
    order_id: int | None = None
    settled: int | None = None
    settlement_currency: str | None = None
    exchange_rate: Decimal | None = None
    reason: str | None = None


@dataclass
class _Match:
    provider: str
    gateway: dict[str, _Side] = field(default_factory=dict)
    ledger: dict[str, _Side] = field(default_factory=dict)

    def add_gateway(self, key: str, side: _Side) -> None:
        earlier = self.gateway.get(key)
        if earlier is not None:  # two records of one object: their sum is what the gateway holds
            if (earlier.currency, earlier.settlement_currency) != (side.currency, side.settlement_currency):
                side.reason = side.reason or f"The gateway recorded {key} in {earlier.currency} and {side.currency}."
            side.amount += earlier.amount
            side.at = min(side.at, earlier.at)
            side.reason = side.reason or earlier.reason
            if side.settled is not None and earlier.settled is not None:
                side.settled += earlier.settled
        self.gateway[key] = side

    def add_ledger(self, key: str, side: _Side) -> None:
        earlier = self.ledger.get(key)
        if earlier is not None:
            side.amount += earlier.amount
            side.at = min(side.at, earlier.at)
        self.ledger[key] = side

    def items(self, run_id: int, start: datetime, end: datetime) -> list[ReconciliationItem]:
        items = []
        for key in self.gateway.keys() | self.ledger.keys():
            theirs, ours = self.gateway.get(key), self.ledger.get(key)
            if not any(side is not None and start <= side.at < end for side in (theirs, ours)):
                continue  # fetched for the margin only
            reason = theirs.reason if theirs else None
            if theirs is not None and ours is not None and reason is None and theirs.currency != ours.currency:
                reason = f"The gateway's amount is in {theirs.currency}, the ledger's in {ours.currency}."
            if reason is not None:
                outcome = Outcome.CURRENCY_DIFFERS
            elif theirs is None:
                outcome = Outcome.MISSING_AT_GATEWAY
            elif ours is None:
                outcome = Outcome.MISSING_IN_LEDGER
            else:
                outcome = Outcome.MATCHED if theirs.amount == ours.amount else Outcome.AMOUNT_DIFFERS
            either = theirs or ours
            assert either is not None
            items.append(
                ReconciliationItem(
                    run_id=run_id,
                    key=key,
                    provider=self.provider,
                    object_type=either.object_type,
                    object_id=(theirs and theirs.object_id) or (ours and ours.object_id),
                    balance_transaction_id=theirs.balance_transaction_id if theirs else None,
                    ledger_reference=ours.reference if ours else None,
                    order_id=(ours and ours.order_id) or (theirs and theirs.order_id),
                    gateway_amount=theirs.amount if theirs else None,
                    gateway_currency=theirs.currency if theirs else None,
                    ledger_amount=ours.amount if ours else None,
                    ledger_currency=ours.currency if ours else None,
                    settlement_amount=theirs.settled if theirs else None,
                    settlement_currency=theirs.settlement_currency if theirs else None,
                    exchange_rate=theirs.exchange_rate if theirs else None,
                    fee=0,
                    occurred_at=min(side.at for side in (theirs, ours) if side is not None),
                    outcome=outcome,
                    reason=reason,
                )
            )
        return items


# --- starting and running ---------------------------------------------------


def start_run(actor: Actor, *, period_start: datetime, period_end: datetime) -> dict[str, Any]:
    """Queue a reconciliation of [period_start, period_end) (operators). The
    period must have ended: a period still running would report records
    that simply have not happened yet."""
    actor.require(Role.OPERATOR)
    errors: dict[str, list[str]] = {}
    if period_start < EARLIEST:
        errors["period_start"] = ["Must not be before 1970-01-01T00:00:00Z."]
    if period_end <= period_start:
        errors["period_end"] = ["Must be after period_start."]
    elif period_end > utcnow():
        errors["period_end"] = ["Must not be in the future."]
    if errors:
        raise Invalid("The period cannot be reconciled.", errors)
    with unit_of_work():
        run = ReconciliationRun(
            period_start=period_start,
            period_end=period_end,
            status=RunStatus.PENDING,
            requested_by=actor.user_id,
            settlement_currency=current_app.config["STRIPE_SETTLEMENT_CURRENCY"],
        )
        db.session.add(run)
        db.session.flush()
        enqueue("reconciliation.run", run_id=run.id)
    return _summary(run, _counts([run.id])[run.id])


def _locked_run(run_id: int) -> ReconciliationRun:
    return get_or_404(ReconciliationRun, run_id, "Reconciliation", lock=True, missing=ReconciliationNotFound)


def perform(run_id: int) -> ReconciliationRun:
    """Worker: fetch the gateway's records (outside any transaction), match
    them and the offline confirmations to the ledger, and store every item
    with the run's completion in one commit. Repeating it after it finished
    changes nothing."""
    with unit_of_work():
        run = _run(run_id)
        if run.status != RunStatus.PENDING:
            return run
        margin = timedelta(seconds=current_app.config["RECONCILIATION_MARGIN_SECONDS"])
        since, until = run.period_start - margin, run.period_end + margin
    page_size = current_app.config["RECONCILIATION_PAGE_SIZE"]
    try:
        records = outside_transaction(
            lambda: gateway().balance_transactions(
                created_gte=math.floor(since.timestamp()), created_lt=math.ceil(until.timestamp()), page_size=page_size
            )
        )
    except GatewayError as error:
        return fail(run_id, f"The gateway refused the balance transactions: {error}")
    with unit_of_work():
        run = _locked_run(run_id)
        if run.status != RunStatus.PENDING:
            return run
        start, end = run.period_start, run.period_end
        items = [
            *_stripe(records, since, until, run.settlement_currency).items(run.id, start, end),
            *_fees(run.id, records, start, end),
            *_offline(since, until).items(run.id, start, end),
        ]
        items.sort(key=lambda item: (item.provider != Provider.STRIPE, item.occurred_at or start, item.key))
        db.session.add_all(items)
        run.gateway_records = sum(1 for r in records if start <= _moment(r.created) < end)
        run.fees_total = sum(
            r.fee for r in records if start <= _moment(r.created) < end and r.currency == run.settlement_currency
        )
        run.status = RunStatus.COMPLETED
        run.finished_at = utcnow()
    return run


def fail(run_id: int, problem: str) -> ReconciliationRun:
    """The run could not fetch the gateway's records (refused, or still
    unreachable after the worker's retries): say so on the run."""
    with unit_of_work():
        run = _locked_run(run_id)
        if run.status == RunStatus.PENDING:
            run.status = RunStatus.FAILED
            run.error = problem[:2000]
            run.finished_at = utcnow()
    return run


def _moment(created: int) -> datetime:
    return datetime.fromtimestamp(created, UTC)


def _cash_movements(code: str, since: datetime, until: datetime, kinds: Iterable[str]) -> list[Row[Any]]:
    """Ledger transactions of `kinds` in the window, with what each moved
    through the cash account `code` (debits positive)."""
    return list(
        db.session.execute(
            select(
                LedgerTransaction.id,
                LedgerTransaction.kind,
                LedgerTransaction.reference,
                LedgerTransaction.order_id,
                LedgerTransaction.created_at,
                func.sum(LedgerEntry.amount).label("amount"),
            )
            .join(LedgerEntry, LedgerEntry.transaction_id == LedgerTransaction.id)
            .join(LedgerAccount, LedgerAccount.id == LedgerEntry.account_id)
            .where(
                LedgerAccount.code == code,
                LedgerTransaction.kind.in_(list(kinds)),
                LedgerTransaction.created_at >= since,
                LedgerTransaction.created_at < until,
            )
            .group_by(
                LedgerTransaction.id,
                LedgerTransaction.kind,
                LedgerTransaction.reference,
                LedgerTransaction.order_id,
                LedgerTransaction.created_at,
            )
        )
    )


def _id_in(reference: str, prefix: str, suffix: str = "") -> int | None:
    middle = reference.removeprefix(prefix).removesuffix(suffix)
    return int(middle) if reference.startswith(prefix) and reference.endswith(suffix) and middle.isdigit() else None


def _lookup(column: Any, key_column: Any, keys: Iterable[Any]) -> dict[Any, Any]:
    wanted = list({key for key in keys if key is not None})
    if not wanted:
        return {}
    return dict(db.session.execute(select(key_column, column).where(key_column.in_(wanted))).tuples().all())


def _presentment(record: BalanceTransaction, market: str, settlement: str) -> tuple[int, str, str | None]:
    """What of `record` compares with the ledger (in `market`): its amount
    and currency, and why it cannot be compared, if it cannot."""
    if record.currency == market:
        return record.amount, record.currency, None
    if record.currency != settlement:
        return (
            record.amount,
            record.currency,
            f"Stripe settled this in {record.currency}, neither the marketplace currency {market} nor the "
            f"settlement currency {settlement} (STRIPE_SETTLEMENT_CURRENCY).",
        )
    if record.source_amount is None or record.source_currency is None:
        return (
            record.amount,
            record.currency,
            f"Settled in {record.currency}, and Stripe gave no source amount in {market} to compare.",
        )
    if record.source_currency != market:
        return (
            record.source_amount,
            record.source_currency,
            f"Converted from {record.source_currency}, not from the marketplace currency {market}.",
        )
    return record.source_amount, record.source_currency, None


def _stripe(records: list[BalanceTransaction], since: datetime, until: datetime, settlement: str) -> _Match:
    match = _Match(Provider.STRIPE.value)
    market = ledger.market_currency()
    # A payout is paid by one transfer per charge it draws on (and one from
    # the balance): its transfers together match its one `payout_paid`.
    transferred = (r.source_id for r in records if r.type == "transfer")
    payout_of = _lookup(PayoutTransfer.payout_id, PayoutTransfer.stripe_transfer_id, transferred)
    for record in records:
        source = record.source_id or record.id
        if record.type in CHARGE_TYPES:
            key, kind, object_id = f"charge:{record.payment_intent_id or source}", "charge", source
        elif record.type == "refund":
            key, kind, object_id = f"refund:{source}", "refund", source
        elif record.type == "transfer":
            payout = payout_of.get(source)
            key, kind, object_id = (f"payout:{payout}" if payout else f"transfer:{source}"), "transfer", source
        elif record.type in REVERSAL_TYPES:
            key, kind, object_id = f"transfer_reversal:{source}", "transfer_reversal", source
        else:  # a kind of money movement the ledger does not record
            key, kind, object_id = f"{record.type}:{source}", record.type, source
        amount, currency, reason = _presentment(record, market, settlement)
        match.add_gateway(
            key,
            _Side(
                amount=amount,
                currency=currency,
                at=_moment(record.created),
                object_type=kind,
                object_id=object_id,
                balance_transaction_id=record.id,
                settled=record.amount,
                settlement_currency=record.currency,
                exchange_rate=record.exchange_rate,
                reason=reason,
            ),
        )
    rows = _cash_movements(
        ledger.gateway_cash(Provider.STRIPE), since, until, ("capture", "refund", "payout_paid", "transfer_reversal")
    )
    intents = _lookup(
        Payment.stripe_payment_intent_id, Payment.order_id, (r.order_id for r in rows if r.kind == "capture")
    )
    refunds = _lookup(Refund.stripe_refund_id, Refund.id, (_id_in(r.reference, "refund:") for r in rows))
    transfers = _lookup(
        PayoutTransfer.stripe_transfer_id,
        PayoutTransfer.payout_id,
        (_id_in(r.reference, "payout:", ":paid") for r in rows if r.kind == "payout_paid"),
    )
    reversals = _lookup(
        TransferReversal.stripe_reversal_id, TransferReversal.id, (_id_in(r.reference, "reversal:") for r in rows)
    )
    for row in rows:
        recorded, provider_id = {
            "capture": ("charge", intents.get(row.order_id)),
            "refund": ("refund", refunds.get(_id_in(row.reference, "refund:"))),
            "payout_paid": ("transfer", transfers.get(_id_in(row.reference, "payout:", ":paid"))),
            "transfer_reversal": ("transfer_reversal", reversals.get(_id_in(row.reference, "reversal:"))),
        }[row.kind]
        # Without the provider's id there is nothing at the gateway to match.
        if not provider_id:
            key = f"ledger:{row.reference}"
        elif row.kind == "payout_paid":
            key = f"payout:{_id_in(row.reference, 'payout:', ':paid')}"
        else:
            key = f"{recorded}:{provider_id}"
        match.add_ledger(
            key,
            _Side(
                amount=int(row.amount),
                currency=market,
                at=row.created_at,
                object_type=recorded,
                object_id=provider_id,
                reference=row.reference,
                order_id=row.order_id,
            ),
        )
    return match


def _fee_reference(balance_transaction_id: str) -> str:
    return f"{FEE_KIND}:{balance_transaction_id}"


def _fees(run_id: int, records: list[BalanceTransaction], start: datetime, end: datetime) -> list[ReconciliationItem]:
    """A `fee` item for each fee the gateway took in the period, in the
    currency it took it in; one an operator has booked already is matched
    to its ledger transaction."""
    charged = [r for r in records if r.fee and start <= _moment(r.created) < end]
    cash = ledger.gateway_cash(Provider.STRIPE)
    booked = {
        reference: (int(amount), currency)
        for reference, currency, amount in db.session.execute(
            select(LedgerTransaction.reference, LedgerAccount.currency, func.sum(LedgerEntry.amount))
            .join(LedgerEntry, LedgerEntry.transaction_id == LedgerTransaction.id)
            .join(LedgerAccount, LedgerAccount.id == LedgerEntry.account_id)
            .where(
                LedgerAccount.code.in_({ledger.in_currency(cash, r.currency) for r in charged}),
                LedgerTransaction.reference.in_([_fee_reference(r.id) for r in charged]),
            )
            .group_by(LedgerTransaction.reference, LedgerAccount.currency)
        ).tuples()
    }
    items = []
    for record in charged:
        reference = _fee_reference(record.id)
        ours, ours_in = booked.get(reference, (None, None))
        items.append(
            ReconciliationItem(
                run_id=run_id,
                key=f"fee:{record.id}",
                provider=Provider.STRIPE.value,
                object_type="fee",
                object_id=record.source_id,
                balance_transaction_id=record.id,
                ledger_reference=reference if ours is not None else None,
                gateway_amount=-record.fee,
                gateway_currency=record.currency,
                ledger_amount=ours,
                ledger_currency=ours_in,
                settlement_amount=-record.fee,
                settlement_currency=record.currency,
                fee=record.fee,
                occurred_at=_moment(record.created),
                outcome=Outcome.FEE if ours is None else Outcome.MATCHED,
                fee_booked=reference if ours is not None else None,
            )
        )
    return items


def _offline(since: datetime, until: datetime) -> _Match:
    """Offline receipts, bank payouts (to farms and to sellers) and station
    deposits in the ledger against the Payment, Payout, seller payout and
    cash-up records the operators confirmed."""
    match = _Match(Provider.OFFLINE.value)
    market = ledger.market_currency()
    receipts = db.session.execute(
        select(Payment.id, Payment.order_id, Payment.amount, Payment.offline_reference, Order.paid_at)
        .join(Order, Order.id == Payment.order_id)
        .where(
            Payment.provider == Provider.OFFLINE,
            Payment.offline_reference.isnot(None),
            Payment.cash_point_id.is_(None),
            Order.paid_at >= since,
            Order.paid_at < until,
        )
    ).all()
    for payment in receipts:
        match.add_gateway(
            f"receipt:payment-{payment.id}",
            _Side(
                amount=payment.amount,
                currency=market,
                at=payment.paid_at,
                object_type="offline_receipt",
                object_id=payment.offline_reference,
                order_id=payment.order_id,
            ),
        )
    # Bank movements an operator confirmed with the bank's reference: by
    # item kind and key prefix, each record's id, signed amount, reference
    # and time of confirmation.
    confirmed: dict[tuple[str, str], Select[Any]] = {
        ("bank_payout", "payout"): select(
            Payout.id, (-Payout.amount).label("amount"), Payout.bank_reference, Payout.paid_at.label("at")
        ).where(
            Payout.method == PayoutMethod.BANK_TRANSFER,
            Payout.status == PayoutStatus.PAID,
            Payout.paid_at >= since,
            Payout.paid_at < until,
        ),
        ("seller_payout", "seller-payout"): select(
            SellerPayout.id,
            (-SellerPayout.amount).label("amount"),
            SellerPayout.bank_reference,
            SellerPayout.paid_at.label("at"),
        ).where(
            SellerPayout.status == SellerPayoutStatus.PAID,
            SellerPayout.paid_at >= since,
            SellerPayout.paid_at < until,
        ),
        ("station_deposit", "cash-up"): select(
            CashUp.id, CashUp.deposited.label("amount"), CashUp.bank_reference, CashUp.confirmed_at.label("at")
        ).where(CashUp.confirmed_at >= since, CashUp.confirmed_at < until),
    }
    for (kind, prefix), records in confirmed.items():
        for record in db.session.execute(records):
            match.add_gateway(
                f"{kind}:{prefix}-{record.id}",
                _Side(
                    amount=record.amount,
                    currency=market,
                    at=record.at,
                    object_type=kind,
                    object_id=record.bank_reference,
                ),
            )
    rows = _cash_movements(
        ledger.gateway_cash(Provider.OFFLINE),
        since,
        until,
        ("offline_receipt", "payout_paid", commissions.PAID_KIND, DEPOSIT_KIND),
    )
    payments = _lookup(Payment.id, Payment.order_id, (r.order_id for r in rows if r.kind == "offline_receipt"))
    for row in rows:
        if row.kind == "offline_receipt":
            key, kind = f"receipt:payment-{payments.get(row.order_id)}", "offline_receipt"
        elif row.kind == commissions.PAID_KIND:
            paid_id = _id_in(row.reference, "seller_payout:", ":paid")
            key, kind = f"seller_payout:seller-payout-{paid_id}", "seller_payout"
        elif row.kind == DEPOSIT_KIND:
            key, kind = f"station_deposit:cash-up-{_id_in(row.reference, 'cash_up:', ':deposit')}", "station_deposit"
        else:
            key, kind = f"bank_payout:payout-{_id_in(row.reference, 'payout:', ':paid')}", "bank_payout"
        match.add_ledger(
            key,
            _Side(
                amount=int(row.amount),
                currency=market,
                at=row.created_at,
                object_type=kind,
                reference=row.reference,
                order_id=row.order_id,
            ),
        )
    return match


# --- resolving --------------------------------------------------------------


def resolve_item(actor: Actor, run_id: int, item_id: int, *, note: str, book_fee: bool = False) -> ReconciliationItem:
    """An operator closes an item with a note; for a fee, optionally books
    it as a `gateway_fees` expense in the currency Stripe took it in (once
    per balance transaction, however many runs report it)."""
    actor.require(Role.OPERATOR)
    try:
        with unit_of_work():
            item = _resolve(actor, run_id, item_id, note=note, book_fee=book_fee)
    except IntegrityError:
        raise Conflict(f"Item {item_id} was resolved at the same time.") from None
    return item


def _resolve(actor: Actor, run_id: int, item_id: int, *, note: str, book_fee: bool) -> ReconciliationItem:
    item = db.session.scalars(
        locked(select(ReconciliationItem).where(ReconciliationItem.id == item_id, ReconciliationItem.run_id == run_id))
    ).one_or_none()
    if item is None:
        raise ReconciliationNotFound(f"Reconciliation {run_id} has no item {item_id}.")
    if book_fee and item.outcome != Outcome.FEE:
        raise Invalid(f"Item {item_id} is not a gateway fee.", {"book_fee": ["Only fee items can be booked."]})
    item.resolve(actor.user_id, note)
    if book_fee:
        assert item.balance_transaction_id is not None  # fee items come from balance transactions
        reference = _fee_reference(item.balance_transaction_id)
        if ledger.already_posted(reference):
            raise Conflict(f"The fee of {item.balance_transaction_id} is booked already.")
        # Items from before currencies were recorded are in the marketplace currency.
        currency = item.settlement_currency or ledger.market_currency()
        ledger.post(
            FEE_KIND,
            reference,
            {
                ledger.in_currency(GATEWAY_FEES, currency): item.fee,
                ledger.in_currency(ledger.gateway_cash(item.provider), currency): -item.fee,
            },
            order_id=item.order_id,
            memo=note[:500],
            currency=currency,
        )
        item.fee_booked = reference
    return item


# --- reading ----------------------------------------------------------------


def _counts(run_ids: list[int]) -> dict[int, dict[str, int]]:
    counts: dict[int, dict[str, int]] = {run_id: dict.fromkeys(Outcome, 0) | {"unresolved": 0} for run_id in run_ids}
    rows = db.session.execute(
        select(
            ReconciliationItem.run_id,
            ReconciliationItem.outcome,
            func.count(),
            func.count() - func.count(ReconciliationItem.resolved_at),
        )
        .where(ReconciliationItem.run_id.in_(run_ids))
        .group_by(ReconciliationItem.run_id, ReconciliationItem.outcome)
    ).all()
    for run_id, outcome, count, unresolved in rows:
        counts[run_id][outcome] = count
        if outcome != Outcome.MATCHED:
            counts[run_id]["unresolved"] += unresolved
    return counts


def _summary(run: ReconciliationRun, counts: dict[str, int]) -> dict[str, Any]:
    return {
        "id": run.id,
        "period_start": run.period_start,
        "period_end": run.period_end,
        "status": run.status,
        "gateway_records": run.gateway_records,
        "fees_total": run.fees_total,
        "settlement_currency": run.settlement_currency,
        "error": run.error,
        "created_at": run.created_at,
        "finished_at": run.finished_at,
        "counts": counts,
    }


def _run(run_id: int) -> ReconciliationRun:
    return get_or_404(ReconciliationRun, run_id, "Reconciliation", missing=ReconciliationNotFound)


def get_run(actor: Actor, run_id: int) -> dict[str, Any]:
    """The run's status and how many items it found of each outcome."""
    actor.require(Role.OPERATOR)
    run = _run(run_id)
    return _summary(run, _counts([run.id])[run.id])


def list_runs(actor: Actor, *, limit: int, cursor: str | None = None) -> Page[dict[str, Any]]:
    actor.require(Role.OPERATOR)
    page = keyset_page(
        select(ReconciliationRun), [SortKey(ReconciliationRun.id, "id", descending=True)], limit=limit, cursor=cursor
    )
    counts = _counts([run.id for run in page.items])
    return Page(items=[_summary(run, counts[run.id]) for run in page.items], next_cursor=page.next_cursor)


def count_unresolved(actor: Actor) -> int:
    """How many items of every run did not match and are not resolved yet (operators)."""
    actor.require(Role.OPERATOR)
    return count_rows(
        select(ReconciliationItem).where(
            ReconciliationItem.outcome != Outcome.MATCHED, ReconciliationItem.resolved_at.is_(None)
        )
    )


def _items(run_id: int, outcome: Outcome | None, resolved: bool | None) -> Any:
    stmt = select(ReconciliationItem).where(ReconciliationItem.run_id == run_id)
    if outcome is not None:
        stmt = stmt.where(ReconciliationItem.outcome == outcome)
    if resolved is not None:
        stmt = stmt.where(
            ReconciliationItem.resolved_at.isnot(None) if resolved else ReconciliationItem.resolved_at.is_(None)
        )
    return stmt


def list_items(
    actor: Actor,
    run_id: int,
    *,
    outcome: Outcome | None = None,
    resolved: bool | None = None,
    limit: int,
    cursor: str | None = None,
) -> Page[ReconciliationItem]:
    actor.require(Role.OPERATOR)
    _run(run_id)
    return keyset_page(
        _items(run_id, outcome, resolved), [SortKey(ReconciliationItem.id, "id")], limit=limit, cursor=cursor
    )


def _cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return rate_text(value) if isinstance(value, Decimal) else value


def _item_row(item: ReconciliationItem, market: str) -> dict[str, Any]:
    """One item as a CSV row: each amount in major units of its currency,
    named beside it. Items from before currencies were recorded are in the
    marketplace currency."""
    row = {name: _cell(getattr(item, name)) for name in ITEM_COLUMNS if name not in ("fee_currency", *MAJOR)}
    row.update({name: Text(row[name]) for name in ITEM_IDENTIFIERS if row[name] is not None})
    for amount, currency_of in ITEM_AMOUNTS.items():
        value = getattr(item, amount)
        currency = getattr(item, currency_of) or market
        row[f"{amount}_major"] = major(value, currency)
        if value is not None:
            row["fee_currency" if amount == "fee" else currency_of] = currency
    return row


def item_rows(
    actor: Actor, run_id: int, *, outcome: Outcome | None = None, resolved: bool | None = None
) -> list[dict[str, Any]]:
    """Every item of the run (optionally of one outcome) as CSV rows."""
    actor.require(Role.OPERATOR)
    _run(run_id)
    items = db.session.scalars(_items(run_id, outcome, resolved).order_by(ReconciliationItem.id)).all()
    market = ledger.market_currency()
    return [_item_row(item, market) for item in items]
