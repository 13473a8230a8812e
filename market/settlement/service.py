"""Settlement: the one place that decides what an order line is worth to the
buyer, to its farm and to each premium programme, and that moves the goods
and the money those decisions imply.

Every decision follows the payment's own state, never the order's status
(docs/settlement.md states the rules and the invariants they keep):

- Until a capture is decided, a line costs nobody anything: cancelling it
  gives its goods back to stock and its sponsor reservation back to the
  programme's budget.
- A capture is decided once, under the payment's lock, from the lines
  still live at that moment (`decide_capture`); from then on those lines are
  the buyer's purchase, and cancelling one is a refund of what is left of
  it, never a change of what is captured.
- A sponsor premium is earned when the capture is recorded and is worth, at
  any time, what the grams the buyer keeps earn, up to what was reserved
  (`sponsor_due`); a refund takes back only what the kept grams no longer
  earn, when the refund succeeds.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import case, func, select, text
from sqlalchemy.orm import selectinload

from market.catalog import service as catalog
from market.commissions import earning as commissions
from market.db import locked, upsert
from market.extensions import db
from market.ledger import service as ledger
from market.money import line_amount, prorate, share
from market.orders.models import AT_FARM, Order, OrderLine, OrderPart, OrderStatus, PartStatus
from market.payments.models import CapturedLine, Payment, PaymentStatus, Provider, Refund, RefundLine, RefundStatus
from market.premiums import service as premiums
from market.premiums.models import FundedBy, LinePremium
from market.settlement.models import TOTALS, EntryKind, FarmEntry, PartTotal, entry, entry_totals

# The payment states in which the lines to capture are fixed.
CAPTURE_DECIDED = frozenset({PaymentStatus.CAPTURING, PaymentStatus.CAPTURED})


class CaptureMismatch(Exception):
    """The provider took another amount than the capture decided."""


def lock_payment(order_id: int) -> Payment | None:
    """The order's payment, locked and read afresh (not from the session's
    possibly stale copy): every settlement decision is taken under it. The
    caller holds the order's lock already: every path takes the order's lock
    first and the payment's second, so no two of them can deadlock."""
    return db.session.scalars(locked(select(Payment).where(Payment.order_id == order_id))).one_or_none()


def lock_order_and_payment(order_id: int) -> Payment | None:
    """The order's lock, then its payment locked and read afresh."""
    db.session.execute(select(Order.id).where(Order.id == order_id).with_for_update())
    return lock_payment(order_id)


def capture_decided(payment: Payment | None) -> bool:
    return payment is not None and payment.status in CAPTURE_DECIDED


# --- goods ------------------------------------------------------------------


def close_parts(order: Order, parts: Iterable[OrderPart]) -> bool:
    """Settle parts the caller is about to cancel: the goods still at the
    farm go back to stock (the weighed grams once packed: packing already
    moved stock by the difference), and while no capture is decided their
    sponsor reservations go back to the budgets. Parts already cancelled
    were settled when they were. Returns whether a capture was decided (the
    caller then leaves the order's total alone: a refund follows)."""
    closing = [part for part in parts if part.status != PartStatus.CANCELLED]
    payment = lock_payment(order.id)
    catalog.add_stock(
        catalog.StockLine(line.listing_id, line.billed_g)
        for part in closing
        if part.status in AT_FARM
        for line in part.lines
        if line.billed_g > 0
    )
    decided = capture_decided(payment)
    if not decided:
        premiums.release(
            (premium for part in closing for line in part.lines for premium in line.premiums),
            "the order line was cancelled before any money was taken",
        )
    return decided


def ask_for_what_is_left(order: Order) -> None:
    """After a part of an order was cancelled: a payment nobody has paid yet
    asks for what the order can still reach (its new max_total), not what
    it could when placed. An offline payment of an unpaid order waits for
    exactly that amount, and an intent not made yet (an unpaid order's, or
    the new one a lapsed hold asks for) is made for it. A card hold already
    opened stays as it was made: the capture takes only what is due and
    releases the rest."""
    payment = lock_payment(order.id)
    if payment is None:
        return
    unpaid_offline = (
        order.status == OrderStatus.PENDING_PAYMENT
        and payment.provider == Provider.OFFLINE
        and payment.status == PaymentStatus.REQUIRES_PAYMENT
    )
    if unpaid_offline or payment.status == PaymentStatus.CREATING:
        payment.amount = order.max_total


# --- what a line is worth ---------------------------------------------------


def sponsor_due(premium: LinePremium, grams: int) -> int:
    """What `grams` of the line earn from a sponsor programme: the rate on
    those grams, never more than was reserved for the line."""
    return min(premium.granted, line_amount(premium.rate_per_kg, grams))


def weigh(line: OrderLine, weighed_g: int) -> None:
    """Price a line on its weighed grams: produce and buyer premiums follow
    the weight; a sponsor premium follows it down (the excess goes back to
    the budget) but never past what was reserved."""
    line.weighed_g = weighed_g
    line.amount = line_amount(line.price_per_kg, weighed_g)
    buyer = 0
    for premium in line.premiums:
        if premium.funded_by == FundedBy.BUYER:
            premium.amount = line_amount(premium.rate_per_kg, weighed_g)
            buyer += premium.amount
        else:
            premiums.reverse_to(premium, sponsor_due(premium, weighed_g))
    line.premium_amount = buyer


def commission_bp() -> int:
    bp: int = current_app.config["COMMISSION_BP"]
    return bp


def decide_capture(order: Order, payment: Payment) -> None:
    """Fix what the capture takes: every live line worth something, as
    weighed, with the commission on its produce. The payment is capturing
    from now on; the caller commits before asking the provider."""
    lines = [line for line in order.lines if line.part.status != PartStatus.CANCELLED and line.charged > 0]
    payment.captured_lines = [
        CapturedLine(
            order_line_id=line.id,
            farm_id=line.farm_id,
            grams=line.billed_g,
            price_per_kg=line.price_per_kg,
            amount=line.amount,
            premium=line.premium_amount,
            commission=share(line.amount, commission_bp()),
        )
        for line in lines
    ]
    payment.capture_amount = sum(line.amount + line.premium for line in payment.captured_lines)
    payment.status = PaymentStatus.CAPTURING
    payment.attention = None


def undecide_capture(payment: Payment) -> None:
    """The provider refused the capture: nothing was taken, the lines are
    open again (an operator decides what follows). Lines cancelled while it
    was being decided hold nothing now (their stock came back when they
    were cancelled): their sponsor reservations go back to the budgets."""
    for line in list(payment.captured_lines):
        db.session.delete(line)
    payment.captured_lines = []
    payment.capture_amount = None
    payment.status = PaymentStatus.AUTHORISED
    order = db.session.get(Order, payment.order_id)
    assert order is not None
    closed = order.status in (OrderStatus.CANCELLED, OrderStatus.EXPIRED)
    premiums.release(
        (
            premium
            for part in order.parts
            if closed or part.status == PartStatus.CANCELLED
            for line in part.lines
            for premium in line.premiums
        ),
        "the order line was cancelled and the capture refused",
    )


def _order_lines(ids: Iterable[int]) -> dict[int, OrderLine]:
    return {
        line.id: line
        for line in db.session.scalars(
            select(OrderLine)
            .where(OrderLine.id.in_(list(ids)))
            .execution_options(populate_existing=True)
            .options(selectinload(OrderLine.premiums), selectinload(OrderLine.part))
        )
    }


# Any fixed number: a payout run holds this PostgreSQL advisory lock alone;
# whatever writes earned farm entries, or frees one a transfer reversal held,
# shares it (`hold_payout_runs`).
PAYOUT_RUN_LOCK = 0x7061796F


def hold_payout_runs() -> None:
    """Keep payout runs out until this transaction ends, and wait for one
    under way to finish, before writing earned farm entries or freeing
    them: a run then sees every entry of an order part it pays, so that
    its coverage up to the part's last entry is exactly what it paid
    (docs/settlement.md). Shared: the writers do not wait for each other.
    SQLite has one writer at a time already."""
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(text("SELECT pg_advisory_xact_lock_shared(:key)"), {"key": PAYOUT_RUN_LOCK})


def add_earned(entries: list[FarmEntry]) -> None:
    """Write earned entries, and add them to their order parts' totals
    (`PartTotal`) in one statement. The caller holds `hold_payout_runs`."""
    if not entries:
        return
    db.session.add_all(entries)
    db.session.flush()
    adds = entry_totals(FarmEntry)
    new = upsert(PartTotal).from_select(
        ["order_id", "farm_id", "last_entry_id", *TOTALS],
        select(FarmEntry.order_id, FarmEntry.farm_id, func.max(FarmEntry.id), *(func.sum(adds[t]) for t in TOTALS))
        .where(FarmEntry.id.in_([e.id for e in entries]))
        .group_by(FarmEntry.order_id, FarmEntry.farm_id),
    )
    db.session.execute(
        new.on_conflict_do_update(
            index_elements=["order_id", "farm_id"],
            set_={
                # Entries are written under the order's lock, in id order; the
                # larger id is kept all the same.
                "last_entry_id": case(
                    (new.excluded.last_entry_id > PartTotal.last_entry_id, new.excluded.last_entry_id),
                    else_=PartTotal.last_entry_id,
                ),
                **{t: getattr(PartTotal, t) + getattr(new.excluded, t) for t in TOTALS},
            },
        )
    )


def record_capture(payment: Payment, received: int) -> None:
    """The provider took `received`: record it, each captured line as a sale
    of its farm and each sponsor premium of those lines as earned, with the
    ledger transactions that say the same."""
    hold_payout_runs()
    if received != payment.capture_amount:
        raise CaptureMismatch(
            f"The provider captured {received} for order {payment.order_id}, "
            f"but the capture decided {payment.capture_amount}."
        )
    captured = list(payment.captured_lines)
    payment.amount_captured = received
    payment.status = PaymentStatus.CAPTURED
    sales = [
        entry(
            EntryKind.SALE, f"line:{line.order_line_id}:sale", line.farm_id, order_id=payment.order_id,
            order_line_id=line.order_line_id, grams=line.grams, produce=line.amount, commission=line.commission,
            premium=line.premium,
        )
        for line in captured
    ]  # fmt: skip
    add_earned(sales)
    order = db.session.get(Order, payment.order_id)
    assert order is not None
    source = ledger.BUYER_DEPOSITS if payment.provider == Provider.OFFLINE else ledger.gateway_cash(payment.provider)
    credits = ledger.split(
        [
            *(
                pair
                for sale in sales
                for pair in (
                    (ledger.farm_payable(sale.farm_id), -sale.net),
                    (ledger.PLATFORM_COMMISSION, -sale.commission),
                )
            ),
            *commissions.record_earned(order, captured),
        ]
    )
    ledger.post("capture", f"payment:{payment.id}:capture", {source: received, **credits}, order_id=payment.order_id)
    lines = _order_lines(line.order_line_id for line in captured)
    for premium in (p for line in captured for p in lines[line.order_line_id].premiums):
        if premium.funded_by == FundedBy.SPONSOR and premium.amount:
            _premium_moved(premium, premium.amount, EntryKind.SPONSOR_PREMIUM, f"line_premium:{premium.id}:earned")
    if payment.provider == Provider.OFFLINE and payment.amount > received:
        # The buyer paid the most the order could reach; the rest goes back.
        released = payment.amount - received
        ledger.post(
            "release",
            f"payment:{payment.id}:release",
            {ledger.BUYER_DEPOSITS: released, ledger.gateway_cash(Provider.OFFLINE): -released},
            order_id=payment.order_id,
        )


def _premium_moved(premium: LinePremium, amount: int, kind: EntryKind, reference: str, refund_id: int | None = None
                   ) -> None:  # fmt: skip
    """A sponsor premium earned by (`amount` > 0) or taken back from
    (`amount` < 0) the farm, out of or back into the sponsor's liability."""
    line = db.session.get(OrderLine, premium.order_line_id)
    assert line is not None
    add_earned([
        entry(
            kind, reference, premium.farm_id, order_id=line.order_id, order_line_id=line.id,
            programme_id=premium.programme_id, refund_id=refund_id, premium=amount,
        )
    ])  # fmt: skip
    ledger.post(
        "premium" if amount > 0 else "premium_reversal",
        reference,
        {premiums.sponsor_liability(premium.programme_id): amount, ledger.farm_payable(premium.farm_id): -amount},
        order_id=line.order_id,
    )


# --- refunds ----------------------------------------------------------------


@dataclass(frozen=True)
class Refunded:
    """What refunds (pending or done) already give back on a captured line."""

    grams: int
    amount: int
    premium: int
    commission: int


def refunded(captured: CapturedLine, *, succeeded_only: bool = False) -> Refunded:
    statuses = [RefundStatus.SUCCEEDED] if succeeded_only else [RefundStatus.SUCCEEDED, RefundStatus.PENDING]
    rows = db.session.execute(
        select(RefundLine.grams, RefundLine.amount, RefundLine.premium, RefundLine.commission)
        .join(Refund)
        .where(RefundLine.order_line_id == captured.order_line_id, Refund.status.in_(statuses))
    ).all()
    return Refunded(
        grams=sum(r.grams for r in rows),
        amount=sum(r.amount for r in rows),
        premium=sum(r.premium for r in rows),
        commission=sum(r.commission for r in rows),
    )


def refund_share(line: CapturedLine, grams: int, done: Refunded) -> RefundLine:
    """What a refund of `grams` gives back: produce, buyer premium and the
    commission on the produce, in proportion; the last grams of a line take
    exactly what is left, so rounding never returns more than was paid."""
    if grams == line.grams - done.grams:
        amount = line.amount - done.amount
        premium = line.premium - done.premium
        commission = line.commission - done.commission
    else:
        amount = min(line_amount(line.price_per_kg, grams), line.amount - done.amount)
        premium = min(prorate(line.premium, grams, line.grams), line.premium - done.premium)
        commission = min(prorate(line.commission, amount, line.amount), line.commission - done.commission)
    return RefundLine(
        order_line_id=line.order_line_id,
        farm_id=line.farm_id,
        grams=grams,
        amount=amount,
        premium=premium,
        commission=commission,
    )


def record_refund(refund: Refund, payment: Payment) -> None:
    """The provider returned the refund (or it returns no money): record it,
    each refunded part of a line as a take-back from its farm, then take
    back from each sponsor premium of those lines what the grams the buyer
    keeps no longer earn."""
    hold_payout_runs()
    refund.status = RefundStatus.SUCCEEDED
    payment.amount_refunded += refund.amount
    db.session.flush()
    backs = [
        entry(
            EntryKind.REFUND, f"refund_line:{line.id}", line.farm_id, order_id=refund.order_id,
            order_line_id=line.order_line_id, refund_id=refund.id, grams=-line.grams, produce=-line.amount,
            commission=-line.commission, premium=-line.premium,
        )
        for line in refund.lines
    ]  # fmt: skip
    add_earned(backs)
    captured = {line.order_line_id: line for line in payment.captured_lines}
    commission_left = {
        line.order_line_id: line.commission - refunded(line, succeeded_only=True).commission
        for line in (captured[back.order_line_id] for back in refund.lines)
    }
    debits = ledger.split(
        [
            *(
                pair
                for back in backs
                for pair in (
                    (ledger.farm_payable(back.farm_id), -back.net),
                    (ledger.PLATFORM_COMMISSION, -back.commission),
                )
            ),
            *commissions.record_reversed(refund, captured, commission_left),
        ]
    )
    amounts = {**debits, ledger.gateway_cash(payment.provider): -refund.amount}
    if any(amounts.values()):
        ledger.post("refund", f"refund:{refund.id}", amounts, order_id=refund.order_id, memo=refund.reason)
    lines = _order_lines(line.order_line_id for line in refund.lines)
    premiums.lock_budgets(premium for line in lines.values() for premium in line.premiums)
    for refund_line in refund.lines:
        line = captured[refund_line.order_line_id]
        kept = line.grams - refunded(line, succeeded_only=True).grams
        for premium in lines[line.order_line_id].premiums:
            if premium.funded_by != FundedBy.SPONSOR:
                continue
            taken = premiums.reverse_to(premium, sponsor_due(premium, kept))
            if taken:
                reference = f"refund:{refund.id}:premium:{premium.id}"
                _premium_moved(premium, -taken, EntryKind.PREMIUM_REVERSAL, reference, refund.id)
