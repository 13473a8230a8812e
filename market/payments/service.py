"""Payment rules: opening a payment for an order, authorisation, catch-weight
capture, cancellation, refunds, and the ledger entry for every money event.

The provider is called outside any open database transaction where it can
be, with a key derived from our own ids (`order-<id>-intent`,
`order-<id>-capture`, `refund-<id>`), so a worker that dies after the
provider acted repeats the same call and gets the same answer back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import Select, select
from sqlalchemy.orm import selectinload

from market.accounts.models import Role
from market.auth import Actor
from market.db import locked, outside_transaction, unit_of_work, utcnow
from market.errors import Conflict, Invalid, NotFound, NotReadyYet
from market.events import publish
from market.extensions import db
from market.ledger import service as ledger
from market.money import smallest_grams_worth_a_unit
from market.orders import service as orders
from market.orders.models import Order, OrderLine, OrderStatus, PartStatus
from market.outbox import enqueue
from market.pagination import Page, SortKey, count_rows, keyset_page
from market.payments.gateway import AmbiguousAnswer, GatewayError, Intent, KeySpent, gateway, id_of
from market.payments.models import (
    CapturedLine,
    Payment,
    PaymentAttempt,
    PaymentStatus,
    Provider,
    Refund,
    RefundLine,
    RefundStatus,
)
from market.settlement import service as settlement

PACKED_OR_LATER = frozenset(
    {
        OrderStatus.PACKED,
        OrderStatus.SHIPPED,
        OrderStatus.READY_FOR_PICKUP,
        OrderStatus.COLLECTED,
        OrderStatus.DELIVERED,
        OrderStatus.COMPLETED,
    }
)
log = logging.getLogger(__name__)

# Payment states a webhook may no longer move (it arrived late or twice).
SETTLED = frozenset({PaymentStatus.CAPTURING, PaymentStatus.CAPTURED, PaymentStatus.CANCELLED})
CLOSED = frozenset({OrderStatus.CANCELLED, OrderStatus.EXPIRED})


class PaymentNotFound(NotFound):
    pass


class PaymentBeingPrepared(NotReadyYet):
    slug = "payment-being-prepared"
    title = "Payment being prepared"


# A worker opens the payment as soon as the order is placed; asked again
# after this many seconds, it is usually there.
PREPARING_RETRY_AFTER_SECONDS = 2


@dataclass(frozen=True)
class LineRefund:
    line_id: int
    grams: int


# --- reading ----------------------------------------------------------------


def _payment_of(order_id: int) -> Payment:
    payment = db.session.scalars(select(Payment).where(Payment.order_id == order_id)).one_or_none()
    if payment is None:
        raise PaymentNotFound(f"Order {order_id} has no payment yet.")
    return payment


def _visible_order(actor: Actor, order_id: int) -> Order:
    order = db.session.get(Order, order_id)
    if order is None or (order.buyer_id != actor.user_id and not actor.has(Role.OPERATOR)):
        raise NotFound(f"Order {order_id} not found.")
    return order


def get_payment(actor: Actor, order_id: int) -> Payment:
    """The order's payment, for its buyer (with the client secret) or
    operators. Right after the order is placed (or a lapsed hold is
    renewed) a worker is still opening it: `PaymentBeingPrepared`, to ask
    again shortly, rather than "no payment"."""
    order = _visible_order(actor, order_id)
    payment = db.session.scalars(select(Payment).where(Payment.order_id == order_id)).one_or_none()
    if payment is None and order.status == OrderStatus.PENDING_PAYMENT:
        raise PaymentBeingPrepared(
            f"The payment of order {order_id} is still being prepared; ask again shortly.",
            retry_after=PREPARING_RETRY_AFTER_SECONDS,
        )
    if payment is not None and payment.status == PaymentStatus.CREATING:
        raise PaymentBeingPrepared(
            f"The payment of order {order_id} is being opened with the payment provider; ask again shortly.",
            retry_after=PREPARING_RETRY_AFTER_SECONDS,
            payment_status=payment.status.value,
        )
    if payment is None:
        raise PaymentNotFound(f"Order {order_id} has no payment: it closed before one was opened.")
    return payment


def refunds_of(actor: Actor, order_id: int) -> list[Refund]:
    """An order's refunds, for whoever may see its payment."""
    _visible_order(actor, order_id)
    return list(_payment_of(order_id).refunds)


def get_refund(actor: Actor, order_id: int, refund_id: int) -> Refund:
    """One refund of an order, for whoever may see its payment."""
    refund = next((r for r in refunds_of(actor, order_id) if r.id == refund_id), None)
    if refund is None:
        raise NotFound(f"Refund {refund_id} not found on order {order_id}.")
    return refund


def refundable(actor: Actor, order_id: int) -> list[LineRefund]:
    """What is left to refund of each paid line of an order, in grams
    (operators): captured, less what was refunded or is being refunded."""
    actor.require(Role.OPERATOR)
    payment = db.session.scalars(select(Payment).where(Payment.order_id == order_id)).one_or_none()
    if payment is None or payment.status != PaymentStatus.CAPTURED:
        return []
    return _left_to_refund(payment.captured_lines)


def _needing_attention(actor: Actor) -> Select[tuple[Payment]]:
    actor.require(Role.OPERATOR)
    return select(Payment).where(Payment.attention.isnot(None))


def list_attention(actor: Actor, *, limit: int, cursor: str | None = None) -> Page[Payment]:
    """Payments a worker gave up on, for operators to resolve."""
    return keyset_page(_needing_attention(actor), [SortKey(Payment.id, "id")], limit=limit, cursor=cursor)


def count_attention(actor: Actor) -> int:
    """How many payments `list_attention` lists, over all its pages."""
    return count_rows(_needing_attention(actor))


def _holds_lapsing_by(moment: datetime) -> Select[tuple[Payment]]:
    """Card holds of open orders that lapse at the provider by `moment`."""
    return select(Payment).where(
        Payment.provider == Provider.STRIPE,
        Payment.status == PaymentStatus.AUTHORISED,
        Payment.order_id.in_(select(Order.id).where(Order.status.not_in(CLOSED))),
        Payment.authorised_until <= moment,
    )


def _lapsing_soon(actor: Actor) -> Select[tuple[Payment]]:
    actor.require(Role.OPERATOR)
    return _holds_lapsing_by(utcnow() + timedelta(hours=current_app.config["HOLD_WARNING_HOURS"]))


def list_holds_lapsing(actor: Actor, *, limit: int, cursor: str | None = None) -> Page[Payment]:
    """Card holds of open orders lapsing within HOLD_WARNING_HOURS (the
    window `watch_holds` warns in), soonest first, for operators."""
    keys = [SortKey(Payment.authorised_until, "authorised_until"), SortKey(Payment.id, "id")]
    return keyset_page(_lapsing_soon(actor), keys, limit=limit, cursor=cursor)


def count_holds_lapsing(actor: Actor) -> int:
    """How many holds `list_holds_lapsing` lists, over all its pages."""
    return count_rows(_lapsing_soon(actor))


def flag(order_id: int, problem: str) -> None:
    """Surface a payment that could not be confirmed after all retries."""
    with unit_of_work():
        payment = settlement.lock_order_and_payment(order_id)
        if payment is not None:
            payment.attention = problem[:2000]


def _attempt(payment: Payment, action: str, key: str, *, amount: int | None = None, ok: bool = True,
             object_id: str | None = None, error: str | None = None) -> None:  # fmt: skip
    payment.attempts.append(
        PaymentAttempt(
            action=action, idempotency_key=key, amount=amount, succeeded=ok, provider_object_id=object_id, error=error
        )
    )


# --- opening and authorising ------------------------------------------------


def open_payment(order_id: int) -> Payment:
    """Open the order's payment: a manual-capture PaymentIntent for the most
    the order can reach within the weighing tolerance, or an offline payment
    for an operator to confirm. Repeating it changes nothing. After a card
    hold lapsed on an open order, it opens the new intent the buyer pays."""
    provider = gateway().provider
    with unit_of_work():
        order = db.session.get(Order, order_id)
        if order is None:
            raise NotFound(f"Order {order_id} not found.")
        payment = settlement.lock_order_and_payment(order_id)
        if payment is None:
            payment = Payment(
                order_id=order.id,
                provider=provider,
                status=PaymentStatus.CREATING if provider == Provider.STRIPE else PaymentStatus.REQUIRES_PAYMENT,
                currency=order.currency,
                amount=order.max_total,
            )
            db.session.add(payment)
        if payment.status != PaymentStatus.CREATING:
            return payment
        renewing = payment.renew_by is not None
        if order.status in CLOSED or (not renewing and order.status != OrderStatus.PENDING_PAYMENT):
            payment.status = PaymentStatus.CANCELLED
            return payment
        amount, currency = payment.amount, payment.currency
        key = _fresh_key(payment, _intent_key(payment))
        sent = _unanswered(payment, key)
        if sent is not None and sent != amount:
            # The key went out for another amount (a part was cancelled
            # since) and may have been used: Stripe would refuse it for this
            # one, so it is given up for a new key before it is sent again.
            _attempt(payment, "create_intent", key, amount=sent, ok=False,
                     error=f"sent for {sent} and not answered; the order now asks for {amount}")  # fmt: skip
            key = _fresh_key(payment, _intent_key(payment))
            sent = None
    try:
        intent = outside_transaction(
            lambda: gateway().create_intent(order_id=order_id, amount=amount, currency=currency, key=key)
        )
        intent = _as_it_is_now(intent, asked_before=sent is not None)
    except KeySpent as error:
        # Whatever the provider may have made under this key holds no money
        # (the buyer only ever pays the intent recorded here): the next try
        # makes one under a new key.
        _spend_key(order_id, "create_intent", key, error)
        raise
    except AmbiguousAnswer:
        _note_unanswered(order_id, key, amount)
        raise
    except GatewayError as error:
        return _intent_refused(order_id, key, amount, error)
    with unit_of_work():
        payment = settlement.lock_order_and_payment(order_id)
        assert payment is not None
        if payment.status == PaymentStatus.CREATING:
            payment.status = PaymentStatus.REQUIRES_PAYMENT
            if intent is not None:
                payment.amount = amount  # what the intent holds, had a part been cancelled meanwhile
                payment.stripe_payment_intent_id = intent.id
                payment.client_secret = intent.client_secret
                _attempt(payment, "create_intent", key, amount=amount, object_id=intent.id)
                if intent.status == "canceled":
                    intent_cancelled(intent.id)
                    return payment
            if payment.renew_by is not None:
                publish("payment.hold_lapsed", order_id=order_id)  # the buyer can pay the new intent now
    return payment


# An intent asked for under a key and not answered (a timeout, a request
# with the key still in flight): the key may have been used, for that amount.
UNANSWERED = "create_intent_unanswered"


def _as_it_is_now(intent: Intent | None, *, asked_before: bool) -> Intent | None:
    """The intent Stripe answered with, as it is now. Asked before under
    the same key with no answer, Stripe answers with what it made then, and
    the intent may have changed since (cancelled in its dashboard, the
    webhook dropped as naming an intent not recorded here): it is looked
    up afresh."""
    if intent is None or not asked_before:
        return intent
    return gateway().get_intent(intent.id)


def _unanswered(payment: Payment, key: str) -> int | None:
    """The amount the last unanswered intent under `key` was asked for."""
    sent = [a.amount for a in payment.attempts if a.action == UNANSWERED and a.idempotency_key == key]
    return sent[-1] if sent else None


def _note_unanswered(order_id: int, key: str, amount: int) -> None:
    with unit_of_work():
        payment = settlement.lock_order_and_payment(order_id)
        assert payment is not None
        if _unanswered(payment, key) != amount:
            _attempt(payment, UNANSWERED, key, amount=amount, ok=False, error="no answer: it may have been made")


def _intent_refused(order_id: int, key: str, amount: int, error: GatewayError) -> Payment:
    """The provider will not open a payment for the order (an amount over
    its limit, say): the buyer cannot pay it by card, and the operators
    see why; the order expires (or, after a lapsed hold, is cancelled at
    its deadline) unless they settle it otherwise."""
    with unit_of_work():
        payment = settlement.lock_order_and_payment(order_id)
        assert payment is not None
        if payment.status == PaymentStatus.CREATING:
            _attempt(payment, "create_intent", key, amount=amount, ok=False, error=str(error)[:2000])
            payment.status = PaymentStatus.FAILED
            payment.failure_reason = str(error)[:2000]
            payment.attention = f"The provider refused to open the payment of order {order_id}: {error}"[:2000]
            publish("payment.failed", order_id=order_id)
    return payment


def _renewals(payment: Payment) -> int:
    """How many intents were made for the payment after the first (one per
    card hold that lapsed on the open order)."""
    return max(0, sum(1 for a in payment.attempts if a.action == "create_intent" and a.succeeded) - 1)


def _intent_key(payment: Payment) -> str:
    """The key of the next intent to make: `order-<id>-intent`, then
    `order-<id>-intent-renewal-<n>` for the n-th made after a lapsed hold."""
    made = sum(1 for a in payment.attempts if a.action == "create_intent" and a.succeeded)
    return f"order-{payment.order_id}-intent" + (f"-renewal-{made}" if made else "")


def _key_base(payment: Payment, action: str) -> str:
    """Our key for `action` (capture, cancel) on the payment's current
    intent: `order-<id>-<action>`, with `-renewal-<n>` on an intent made
    after a lapsed hold (Stripe refuses a key reused on another intent)."""
    renewals = _renewals(payment)
    return f"order-{payment.order_id}-{action}" + (f"-renewal-{renewals}" if renewals else "")


def _fresh_key(payment: Payment, base: str) -> str:
    """`base`, until a call with it was refused or failed at the provider:
    Stripe keeps that answer for the key and replays it to a repeat, so the
    next call (made once the object was looked up and found not done) needs
    a new key, `<base>-retry-<n>`."""
    spent = sum(
        1
        for a in payment.attempts
        if not a.succeeded
        and a.action != UNANSWERED  # not answered: the key is not spent
        and (a.idempotency_key == base or a.idempotency_key.startswith(f"{base}-retry-"))
    )
    return base if spent == 0 else f"{base}-retry-{spent}"


def _by_intent(intent_id: str) -> Payment | None:
    order_id = db.session.scalar(select(Payment.order_id).where(Payment.stripe_payment_intent_id == intent_id))
    return None if order_id is None else settlement.lock_order_and_payment(order_id)


def _authorise(payment: Payment) -> None:
    """Money is held for the order: mark it paid, or go on with an order
    whose buyer paid again after a lapsed hold; when the order expired or
    was cancelled meanwhile, send the money back (never keep it). A card
    hold is taken to last PAYMENT_HOLD_HOURS until the provider says when
    it lapses."""
    payment.status = PaymentStatus.AUTHORISED
    payment.failure_reason = None
    if payment.provider == Provider.STRIPE:
        payment.authorised_until = utcnow() + timedelta(hours=current_app.config["PAYMENT_HOLD_HOURS"])
        payment.hold_warned_at = None
        enqueue("payments.read_hold", order_id=payment.order_id)
    if orders.mark_paid(payment.order_id):
        return
    order = db.session.get(Order, payment.order_id)
    assert order is not None
    if payment.renew_by is not None and order.status not in CLOSED:
        payment.renew_by = None
        payment.attention = None  # the lapsed hold it was on the list for is replaced
        publish("payment.renewed", order_id=order.id)
        if order.status in PACKED_OR_LATER:
            enqueue("payments.capture", order_id=order.id)
        return
    enqueue("payments.settle_closed_order", order_id=payment.order_id)


def intent_authorised(intent_id: str) -> None:
    """Stripe says the card is authorised (amount_capturable_updated)."""
    payment = _by_intent(intent_id)
    if payment is None or payment.status in SETTLED or payment.status == PaymentStatus.AUTHORISED:
        return
    _authorise(payment)


def intent_failed(intent_id: str, reason: str) -> None:
    """A card attempt failed; the order stays payable until it expires."""
    payment = _by_intent(intent_id)
    if payment is None or payment.status not in (PaymentStatus.REQUIRES_PAYMENT, PaymentStatus.FAILED):
        return
    payment.status = PaymentStatus.FAILED
    payment.failure_reason = reason
    publish("payment.failed", order_id=payment.order_id)


def intent_captured(intent_id: str, amount_received: int, charge_id: str | None = None) -> None:
    """Stripe confirms a capture (payment_intent.succeeded); records it if
    our own capture call's answer was lost. A capture the marketplace never
    decided (made at the provider by hand) is for operators to look at."""
    payment = _by_intent(intent_id)
    if payment is None:
        return
    if payment.status == PaymentStatus.CAPTURING:
        payment.stripe_charge_id = charge_id
        _record_capture(payment, amount_received)
    elif payment.status != PaymentStatus.CAPTURED:
        payment.attention = (
            f"The provider captured {amount_received} while the payment was {payment.status}; "
            "the marketplace did not decide this capture."
        )


def intent_cancelled(intent_id: str) -> None:
    """Stripe cancelled the intent: released by us (the order closed), or a
    hold that lapsed. A lapsed hold of an order still open is never a silent
    loss: the buyer is asked to pay again (see `_hold_lapsed`). The new
    intent cancelled at the provider before the buyer paid it (in Stripe's
    dashboard, say) leaves the payment failed, not cancelled: the order
    still waits for its deadline, and is cancelled then."""
    payment = _by_intent(intent_id)
    if payment is None or payment.status in SETTLED:
        return
    order = db.session.get(Order, payment.order_id)
    assert order is not None
    if payment.status == PaymentStatus.AUTHORISED and order.status not in CLOSED:
        _hold_lapsed(payment, order)
    elif payment.renew_by is not None and order.status not in CLOSED:
        payment.status = PaymentStatus.FAILED
        payment.failure_reason = "The payment was cancelled at the payment provider before it was paid."
    else:
        payment.status = PaymentStatus.CANCELLED


# --- card holds ---------------------------------------------------------------


def _hold_lapsed(payment: Payment, order: Order) -> None:
    """The card hold of an open order lapsed before its capture: a new
    intent, for what the order can reach now, is opened for the buyer to
    pay by PAYMENT_RENEW_HOURS from now
    (they and the farms are told once it exists); the order is cancelled,
    its stock given back, if they do not. Operators see it on the attention
    list until the buyer pays."""
    renew_by = utcnow() + timedelta(hours=current_app.config["PAYMENT_RENEW_HOURS"])
    payment.status = PaymentStatus.CREATING
    payment.amount = order.max_total  # what the order can reach now: a part cancelled since asks for less
    payment.stripe_payment_intent_id = None  # gone; its attempts keep its id, its late events find nothing
    payment.client_secret = None
    payment.authorised_until = None
    payment.renew_by = renew_by
    payment.attention = (
        f"The card hold of order {order.id} lapsed at the provider while the order is {order.status}; "
        f"the buyer is asked to pay again by {renew_by:%Y-%m-%d %H:%M} UTC, or the order is cancelled then."
    )
    enqueue("payments.open", order_id=order.id)


def read_hold(order_id: int) -> Payment | None:
    """Worker: ask the provider when the card hold of an authorised payment
    lapses (it may be sooner than PAYMENT_HOLD_HOURS on some networks), or
    whether it already has, for a lapse whose webhook never came."""
    with unit_of_work():
        payment = settlement.lock_order_and_payment(order_id)
        if payment is None or payment.status != PaymentStatus.AUTHORISED or payment.stripe_payment_intent_id is None:
            return payment
        intent_id = payment.stripe_payment_intent_id
    intent = outside_transaction(lambda: gateway().get_intent(intent_id))
    with unit_of_work():
        payment = settlement.lock_order_and_payment(order_id)
        if payment is None or (payment.status, payment.stripe_payment_intent_id) != (
            PaymentStatus.AUTHORISED,
            intent_id,
        ):
            return payment
        if intent.status == "canceled":
            intent_cancelled(intent_id)
        elif intent.capture_before is not None:
            payment.authorised_until = datetime.fromtimestamp(intent.capture_before, UTC)
    return payment


def watch_holds(now: datetime | None = None) -> dict[str, int]:
    """Beat: warn the farms and operators of card holds about to lapse on
    open orders (once per hold), check holds past their time with the
    provider, and cancel the orders whose buyer did not pay again in time.
    Each order is its own transaction; one that fails is logged and tried
    on the next run. Returns how many of each were done."""
    now = now or utcnow()
    warn_before = now + timedelta(hours=current_app.config["HOLD_WARNING_HOURS"])
    open_order = Payment.order_id.in_(select(Order.id).where(Order.status.not_in(CLOSED)))
    to_warn = db.session.scalars(
        _holds_lapsing_by(warn_before)
        .where(Payment.hold_warned_at.is_(None))
        .order_by(Payment.authorised_until)
        .with_only_columns(Payment.order_id)
    ).all()
    overdue = db.session.scalars(_holds_lapsing_by(now).with_only_columns(Payment.order_id)).all()
    unrenewed = db.session.scalars(
        select(Payment.order_id).where(Payment.status.in_(AWAITING_RENEWAL), open_order, Payment.renew_by <= now)
    ).all()
    db.session.rollback()
    return {
        "warned": _each(to_warn, lambda order_id: _warn_hold(order_id, warn_before)),
        "checked": _each(overdue, lambda order_id: read_hold(order_id) is not None),
        "cancelled": _each(unrenewed, lambda order_id: _cancel_unrenewed(order_id, now)),
    }


AWAITING_RENEWAL = (PaymentStatus.CREATING, PaymentStatus.REQUIRES_PAYMENT, PaymentStatus.FAILED)


def _each(order_ids: Sequence[int], step: Callable[[int], bool]) -> int:
    done = 0
    for order_id in order_ids:
        try:
            done += step(order_id)
        except Exception:
            db.session.rollback()
            log.exception("The card hold of order %s could not be handled; it is tried again next run.", order_id)
    return done


def _warn_hold(order_id: int, warn_before: datetime) -> bool:
    with unit_of_work():
        payment = settlement.lock_order_and_payment(order_id)
        if (
            payment is None
            or payment.status != PaymentStatus.AUTHORISED
            or payment.hold_warned_at is not None
            or payment.authorised_until is None
            or payment.authorised_until > warn_before
        ):
            return False
        payment.hold_warned_at = utcnow()
        publish("payment.hold_expiring", order_id=order_id)
    return True


def _cancel_unrenewed(order_id: int, now: datetime) -> bool:
    """Cancel the order whose buyer did not pay again by the deadline,
    checked under the order's and the payment's locks (a payment that
    arrives meanwhile wins)."""
    payment = settlement.lock_order_and_payment(order_id)
    if payment is None or payment.status not in AWAITING_RENEWAL or payment.renew_by is None or payment.renew_by > now:
        db.session.rollback()
        return False
    payment.attention = None  # settled by the cancellation
    return orders.cancel_unpaid(order_id, "not paid again after the card hold lapsed")


def confirm_offline(actor: Actor, order_id: int, *, amount: int, reference: str) -> Payment:
    """An operator records cash or a bank transfer received for the order.
    The amount must be what the order asks for (its most within tolerance);
    the difference to the weighed total is handed back at packing."""
    actor.require(Role.OPERATOR)
    with unit_of_work():
        payment = settlement.lock_order_and_payment(order_id)
        if payment is None:
            raise PaymentNotFound(f"Order {order_id} has no payment yet.")
        if payment.provider != Provider.OFFLINE:
            raise Conflict(f"Order {order_id} is paid by card, not offline.")
        if payment.cash_point_id is not None:
            raise Conflict(
                f"Order {order_id} is paid in cash on collection at its station, against its weighed total "
                f"(POST /api/v1/orders/{order_id}/cash-collection)."
            )
        if payment.status not in (PaymentStatus.REQUIRES_PAYMENT, PaymentStatus.FAILED):
            raise Conflict(
                f"The payment of order {order_id} is {payment.status} already"
                + (f" (confirmed as {payment.offline_reference})" if payment.offline_reference else "")
                + ": it takes no further confirmation.",
                current_status=payment.status.value,
            )
        if amount != payment.amount:
            raise Invalid(
                f"Order {order_id} asks for {payment.amount}, not {amount}.",
                {"amount": [f"Must be exactly {payment.amount} (minor units)."]},
            )
        if not orders.mark_paid(order_id):
            order = db.session.get(Order, order_id)
            assert order is not None
            raise Conflict(
                f"Order {order_id} is {order.status}; it takes no payment.", current_status=order.status.value
            )
        payment.status = PaymentStatus.AUTHORISED
        payment.offline_reference = reference
        ledger.post(
            "offline_receipt",
            f"payment:{payment.id}:receipt",
            {ledger.gateway_cash(Provider.OFFLINE): amount, ledger.BUYER_DEPOSITS: -amount},
            order_id=order_id,
            memo=reference,
        )
    return payment


def open_cash_on_collection(order: Order, point_id: int) -> Payment:
    """The payment of an order placed for a villager at a station: offline,
    paid in cash there on collection (`take_cash`). Flushes only."""
    payment = Payment(
        order_id=order.id,
        provider=Provider.OFFLINE,
        status=PaymentStatus.REQUIRES_PAYMENT,
        currency=order.currency,
        amount=order.max_total,
        cash_point_id=point_id,
    )
    db.session.add(payment)
    db.session.flush()
    return payment


def take_cash(order: Order, amount: int, staff_id: int) -> Payment:
    """The villager paid `amount` in cash at the station on collecting the
    order: it must be the weighed total (what the order's lines, as weighed,
    are worth; not the most it could have reached). The station holds the
    cash (`station_cash:<point>`) until it is paid into the bank at a
    cash-up; the capture of the weighed lines is decided and recorded at
    once, with its farm entries, as for any capture. Flushes only; the
    caller holds the order's lock and commits."""
    payment = settlement.lock_payment(order.id)
    if payment is None or payment.cash_point_id is None:
        raise Conflict(f"Order {order.id} is not paid in cash on collection.")
    if payment.status != PaymentStatus.REQUIRES_PAYMENT:
        raise Conflict(f"The payment of order {order.id} is {payment.status}.", current_status=payment.status.value)
    if amount != order.total:
        raise Invalid(
            f"Order {order.id} weighed in at {order.total}; the cash taken must be exactly that, not {amount}.",
            {"amount": [f"Must be exactly {order.total} (minor units), the weighed total."]},
        )
    now = utcnow()
    payment.status = PaymentStatus.AUTHORISED
    payment.amount = amount
    payment.cash_received_by = staff_id
    payment.cash_received_at = now
    payment.offline_reference = f"cash at fulfilment point {payment.cash_point_id}"
    order.paid_at = now
    ledger.post(
        "cash_receipt",
        f"payment:{payment.id}:cash",
        {ledger.station_cash(payment.cash_point_id): amount, ledger.BUYER_DEPOSITS: -amount},
        order_id=order.id,
    )
    settlement.decide_capture(order, payment)
    settlement.record_capture(payment, amount)
    return payment


# --- capture ----------------------------------------------------------------


def _decide_capture(order_id: int) -> Payment:
    """Fix what the capture of a packed order takes, under the order's and
    the payment's locks (in that order, as cancelling takes them), once."""
    order = db.session.scalars(
        locked(select(Order).where(Order.id == order_id)).options(
            selectinload(Order.lines).selectinload(OrderLine.part)
        )
    ).one_or_none()
    if order is None:
        raise NotFound(f"Order {order_id} not found.")
    payment = settlement.lock_payment(order_id)
    if payment is None:
        raise PaymentNotFound(f"Order {order_id} has no payment yet.")
    if payment.status in settlement.CAPTURE_DECIDED or payment.renew_by is not None:
        return payment  # decided already, or waiting for the buyer to pay again (then queued)
    if payment.cash_point_id is not None:
        return payment  # paid in cash on collection, captured there and then (take_cash)
    if order.status not in PACKED_OR_LATER:
        raise Conflict(f"Order {order_id} is {order.status}, not packed; nothing to capture.")
    if payment.status != PaymentStatus.AUTHORISED:
        raise Conflict(f"The payment of order {order_id} is {payment.status}, not authorised.")
    settlement.decide_capture(order, payment)
    return payment


def capture(order_id: int) -> Payment:
    """Take the weighed total of a packed order and release the rest of the
    authorisation. The lines to capture are fixed first; a part cancelled
    after that is refunded once the capture is recorded. Repeating it
    (a retry, a second event) finishes the same capture or changes nothing.

    A refusal puts the payment on the operators' list with the provider's
    reason; an answer that may hide a success (a refused repeat of a capture
    whose first answer was lost) is checked against the intent first."""
    with unit_of_work():
        payment = _decide_capture(order_id)
    if payment.status != PaymentStatus.CAPTURING:
        return payment
    if payment.provider == Provider.OFFLINE:
        return _finish_capture(order_id, payment.capture_amount or 0, None)
    intent_id, amount = payment.stripe_payment_intent_id, payment.capture_amount or 0
    assert intent_id is not None  # an authorised card payment has its intent
    action = "capture" if amount else "cancel"  # every line came out short: nothing to take
    key = _fresh_key(payment, _key_base(payment, action))
    try:
        intent = outside_transaction(
            lambda: (
                gateway().capture(intent_id, amount=amount, key=key) if amount else gateway().cancel(intent_id, key=key)
            )
        )
    except (AmbiguousAnswer, KeySpent, GatewayError) as error:
        intent = gateway().get_intent(intent_id)
        if intent.status != ("succeeded" if amount else "canceled"):  # it did not happen
            if intent.status == "requires_capture" and not isinstance(error, GatewayError):
                if isinstance(error, KeySpent):
                    _spend_key(order_id, action, key, error)
                raise  # still undecided at the provider: the retry asks again
            # Refused, or the hold is gone (it lapsed): never a silent loss.
            return _capture_refused(
                order_id, key, f"{error} (the payment intent is {intent.status})", lapsed=intent.status == "canceled"
            )
    return _finish_capture(order_id, intent.amount_received, intent, key=key)


def _spend_key(order_id: int, action: str, key: str, error: Exception) -> None:
    """Record a call the provider failed on, so the retry uses a new key."""
    with unit_of_work():
        payment = settlement.lock_order_and_payment(order_id)
        assert payment is not None
        _attempt(payment, action, key, ok=False, error=f"{error} (the provider replays this for the key)"[:2000])


def _finish_capture(order_id: int, received: int, intent: Intent | None, *, key: str = "") -> Payment:
    with unit_of_work():
        payment = settlement.lock_order_and_payment(order_id)
        assert payment is not None
        if payment.status != PaymentStatus.CAPTURING:  # a webhook recorded it meanwhile
            return payment
        if intent is not None:
            _attempt(payment, "capture", key, amount=received, object_id=intent.id)
            payment.stripe_charge_id = intent.latest_charge
        if intent is not None and intent.status == "canceled":
            payment.status = PaymentStatus.CANCELLED
        else:
            _record_capture(payment, received)
    return payment


def _record_capture(payment: Payment, received: int) -> None:
    """Record a capture, then refund at once what was cancelled after it
    was decided (the provider took it all the same)."""
    try:
        settlement.record_capture(payment, received)
    except settlement.CaptureMismatch as error:
        payment.attention = str(error)
        return
    order = db.session.get(Order, payment.order_id, populate_existing=True)
    assert order is not None
    closed = order.status in CLOSED
    cancelled = {line.id for line in order.lines if closed or line.part.status == PartStatus.CANCELLED}
    _refund_rest(payment, cancelled, reason="cancelled while the payment was being captured")


def _capture_refused(order_id: int, key: str, reason: str, *, lapsed: bool) -> Payment:
    """Nothing was taken: the lines are open again. A hold that lapsed on an
    open order asks the buyer to pay again; on a closed one there is nothing
    left to release. Any other refusal is for operators to look at."""
    with unit_of_work():
        payment = settlement.lock_order_and_payment(order_id)
        assert payment is not None
        if payment.status != PaymentStatus.CAPTURING:
            return payment
        _attempt(payment, "capture", key, ok=False, error=reason)
        settlement.undecide_capture(payment)
        order = db.session.get(Order, order_id)
        assert order is not None
        if lapsed and order.status in CLOSED:
            payment.status = PaymentStatus.CANCELLED
        elif lapsed:
            _hold_lapsed(payment, order)
        else:
            payment.attention = f"The provider refused the capture: {reason}"[:2000]
            if order.status in CLOSED:
                enqueue("payments.settle_closed_order", order_id=order_id)  # release the hold
    return payment


# --- cancellation and refunds -----------------------------------------------


def settle_closed_order(order_id: int) -> Payment | None:
    """The order was cancelled or expired: release an authorisation, hand
    back an offline deposit, or refund all that was captured and is not
    refunded or being refunded yet."""
    with unit_of_work():
        payment = settlement.lock_order_and_payment(order_id)
        if payment is None or payment.status == PaymentStatus.CANCELLED:
            return payment
        if payment.status == PaymentStatus.CAPTURED:
            _refund_rest(payment, None, reason="order cancelled")
            return payment
        if payment.status == PaymentStatus.CAPTURING:
            pass  # finished below: recording it refunds it
        elif payment.provider == Provider.OFFLINE:
            if payment.status == PaymentStatus.AUTHORISED:
                ledger.post(
                    "deposit_returned",
                    f"payment:{payment.id}:deposit_returned",
                    {ledger.BUYER_DEPOSITS: payment.amount, ledger.gateway_cash(Provider.OFFLINE): -payment.amount},
                    order_id=order_id,
                )
            payment.status = PaymentStatus.CANCELLED
            return payment
        elif payment.stripe_payment_intent_id is None:
            payment.status = PaymentStatus.CANCELLED
            return payment
    if payment.status == PaymentStatus.CAPTURING:
        return capture(order_id)
    return _release_hold(order_id, payment)


def _release_hold(order_id: int, payment: Payment | None) -> Payment | None:
    """Cancel the card authorisation of a closed order. A failure is looked
    up at the provider first: an intent already cancelled (by this call, or
    a hold that lapsed) is done."""
    assert payment is not None
    intent_id = payment.stripe_payment_intent_id
    assert intent_id is not None
    key = _fresh_key(payment, _key_base(payment, "cancel"))
    try:
        intent = outside_transaction(lambda: gateway().cancel(intent_id, key=key))
    except (AmbiguousAnswer, KeySpent, GatewayError) as error:
        intent = gateway().get_intent(intent_id)
        if intent.status != "canceled":
            if isinstance(error, KeySpent):
                _spend_key(order_id, "cancel", key, error)
            if not isinstance(error, GatewayError):
                raise
            with unit_of_work():
                payment = settlement.lock_order_and_payment(order_id)
                assert payment is not None
                _attempt(payment, "cancel", key, ok=False, error=str(error))
                payment.attention = (
                    f"The order is closed but its authorisation could not be released ({intent.status}): {error}"
                )[:2000]
            return payment
    with unit_of_work():
        payment = settlement.lock_order_and_payment(order_id)
        assert payment is not None
        _attempt(payment, "cancel", key, object_id=intent.id)
        if payment.status not in settlement.CAPTURE_DECIDED:
            payment.status = PaymentStatus.CANCELLED
    return payment


def refund_cancelled_part(order_id: int, part_id: int) -> None:
    """A part cancelled after its capture was decided is refunded line by
    line (before that, it is simply not captured)."""
    with unit_of_work():
        payment = settlement.lock_order_and_payment(order_id)
        if payment is None or payment.status not in settlement.CAPTURE_DECIDED:
            return
        if payment.status == PaymentStatus.CAPTURED:
            part_lines = set(db.session.scalars(select(OrderLine.id).where(OrderLine.part_id == part_id)))
            _refund_rest(payment, part_lines, reason=f"part {part_id} cancelled")
            return
    capture(order_id)  # recording the capture refunds the part


def _refund_rest(payment: Payment, line_ids: set[int] | None, *, reason: str) -> None:
    """Refund whatever of these captured lines (all when None) is not
    refunded or being refunded yet, pending refunds notwithstanding."""
    lines = [line for line in payment.captured_lines if line_ids is None or line.order_line_id in line_ids]
    left = _left_to_refund(lines)
    if left:
        _new_refund(payment, left, reason=reason, requested_by=None)


def _left_to_refund(lines: Iterable[CapturedLine]) -> list[LineRefund]:
    left = [LineRefund(line.order_line_id, line.grams - settlement.refunded(line).grams) for line in lines]
    return [line for line in left if line.grams > 0]


def request_refund(
    actor: Actor | None, order_id: int, *, lines: Sequence[LineRefund] | None = None, reason: str
) -> Refund:
    """Refund whole lines or grams of them (all that is left when `lines` is
    None). Never more than was captured; a worker then asks the provider."""
    if actor is not None:
        actor.require(Role.OPERATOR)
    with unit_of_work():
        payment = settlement.lock_order_and_payment(order_id)
        if payment is None:
            raise PaymentNotFound(f"Order {order_id} has no payment yet.")
        if payment.status != PaymentStatus.CAPTURED:
            raise Conflict(
                f"The payment of order {order_id} is {payment.status}; only captured money can be refunded.",
                current_status=payment.status.value,
            )
        wanted = _left_to_refund(payment.captured_lines) if lines is None else list(lines)
        return _new_refund(payment, wanted, reason=reason, requested_by=actor.user_id if actor else None)


def _new_refund(payment: Payment, wanted: Sequence[LineRefund], *, reason: str, requested_by: int | None) -> Refund:
    """A pending refund of `wanted`, checked line by line, queued for the
    provider; one that returns no money (rounding gave it all back already)
    is recorded at once."""
    captured = {line.order_line_id: line for line in payment.captured_lines}
    errors: dict[str, list[str]] = {}
    refund_lines: list[RefundLine] = []
    given: set[int] = set()
    for index, request in enumerate(wanted):
        line = captured.get(request.line_id)
        if line is None:
            errors[f"lines.{index}.line_id"] = ["Not a paid line of this order."]
            continue
        if request.line_id in given:
            errors[f"lines.{index}.line_id"] = ["Given twice: name each line once, with all its grams."]
            continue
        given.add(request.line_id)
        done = settlement.refunded(line)
        left = line.grams - done.grams
        if not 0 < request.grams <= left:
            errors[f"lines.{index}.grams"] = [f"Between 1 and {left} g can still be refunded on this line."]
            continue
        refund_line = settlement.refund_share(line, request.grams, done)
        if requested_by is not None and request.grams < left and refund_line.amount + refund_line.premium == 0:
            errors[f"lines.{index}.grams"] = [
                f"{request.grams} g returns less than one minor unit; refund at least "
                f"{smallest_grams_worth_a_unit(line.price_per_kg)} g, or all {left} g left."
            ]
            continue
        refund_lines.append(refund_line)
    if not refund_lines and not errors:
        errors["lines"] = ["Nothing is left to refund."]
    if errors:
        raise Invalid("The refund cannot be made; nothing was changed.", errors)
    refund = Refund(
        payment=payment,
        order_id=payment.order_id,
        amount=sum(r.amount + r.premium for r in refund_lines),
        reason=reason,
        status=RefundStatus.PENDING,
        requested_by=requested_by,
        lines=refund_lines,
    )
    db.session.add(refund)
    db.session.flush()
    if refund.amount == 0:
        settlement.record_refund(refund, payment)
        refund.settled_at = utcnow()
    else:
        enqueue("payments.refund", refund_id=refund.id, order_id=payment.order_id)
    return refund


def _refund(refund_id: int) -> Refund:
    """The refund read afresh (its payment's lock, taken first, guards it)."""
    refund = db.session.get(Refund, refund_id, populate_existing=True)
    if refund is None:
        raise NotFound(f"Refund {refund_id} not found.")
    return refund


def process_refund(refund_id: int) -> Refund:
    """Ask the provider to return a pending refund. Its answer decides: done
    (recorded with its entries), still pending at the provider (the refund
    stays pending until Stripe's refund.updated says how it ended), or
    refused, failed or cancelled (the refund no longer counts, and the
    payment goes on the operators' list with the provider's reason)."""
    refund = _refund(refund_id)
    if refund.status != RefundStatus.PENDING or refund.stripe_refund_id is not None:
        return refund
    reference = refund_key(refund.id)
    key = _fresh_key(refund.payment, reference)
    order_id, amount, reason = refund.order_id, refund.amount, refund.reason
    intent_id = refund.payment.stripe_payment_intent_id or ""
    try:
        result = outside_transaction(
            lambda: gateway().refund(intent_id, amount=amount, key=key, reason=reason, reference=reference)
        )
    except (AmbiguousAnswer, KeySpent) as error:
        found = gateway().find_refund(intent_id, reference=reference)
        if found is None:  # not made: the retry asks again
            if isinstance(error, KeySpent):
                _spend_key(order_id, "refund", key, error)
            raise
        result = found
    except GatewayError as error:
        with unit_of_work():
            payment = settlement.lock_order_and_payment(order_id)
            assert payment is not None
            _attempt(payment, "refund", key, amount=amount, ok=False, error=str(error))
            return _refund_ended(payment, _refund(refund_id), "failed", str(error))
    with unit_of_work():
        payment = settlement.lock_order_and_payment(order_id)
        assert payment is not None
        _attempt(payment, "refund", key, amount=amount, object_id=result.id)
        refund = _refund(refund_id)
        if payment.provider == Provider.STRIPE and refund.stripe_refund_id is None:
            refund.stripe_refund_id = result.id
        return _refund_ended(payment, refund, result.status, result.failure_reason)


def refund_key(refund_id: int) -> str:
    return f"refund-{refund_id}"


def _refund_ended(payment: Payment, refund: Refund, status: str, reason: str | None) -> Refund:
    """Apply the provider's word on a refund, once: a pending refund that
    succeeded is recorded; one that failed or was cancelled stops counting
    and is put before the operators; anything else leaves it pending. A
    refund that fails after it had succeeded (rare: the buyer's bank sent
    it back) goes to the operators as it is."""
    if refund.status == RefundStatus.PENDING and status == "succeeded":
        refund.settled_at = utcnow()
        settlement.record_refund(refund, payment)
    elif refund.status == RefundStatus.PENDING and status in ("failed", "canceled"):
        refund.status = RefundStatus.FAILED
        refund.failure_reason = reason or status
        refund.settled_at = utcnow()
        payment.attention = f"Refund {refund.id} of {refund.amount} {status}: {refund.failure_reason}"[:2000]
        publish("refund.failed", order_id=refund.order_id, refund_id=refund.id)
    elif refund.status == RefundStatus.SUCCEEDED and status in ("failed", "canceled"):
        payment.attention = (
            f"Refund {refund.id} of {refund.amount} {status} at the provider after it had succeeded "
            f"({reason or 'no reason given'}); the money is back in the platform's balance, not with the buyer."
        )[:2000]
        publish("refund.failed", order_id=refund.order_id, refund_id=refund.id)
    return refund


def refund_updated(obj: dict[str, Any]) -> None:
    """Stripe's refund.updated, refund.failed or charge.refund.updated: how
    a refund ended. Found by its id, or, when the event overtook our record
    of the provider's first answer, by the key in its metadata, and then
    only when it is a refund of our payment's intent: another environment
    sharing the Stripe account names its refunds by the same keys. The
    webhook receiver commits."""
    refund_id = db.session.scalar(select(Refund.id).where(Refund.stripe_refund_id == obj.get("id")))
    by_key = refund_id is None
    key = str((obj.get("metadata") or {}).get("key") or "")
    if by_key and key.startswith("refund-") and key.removeprefix("refund-").isdigit():
        refund_id = int(key.removeprefix("refund-"))
    refund = db.session.get(Refund, refund_id) if refund_id is not None else None
    if refund is None:
        return
    payment = settlement.lock_order_and_payment(refund.order_id)
    assert payment is not None
    if by_key and (
        payment.stripe_payment_intent_id is None or id_of(obj.get("payment_intent")) != payment.stripe_payment_intent_id
    ):
        return  # not a refund of this payment: not ours
    refund = _refund(refund.id)
    if refund.stripe_refund_id is None:
        refund.stripe_refund_id = str(obj.get("id"))
    _refund_ended(payment, refund, str(obj.get("status")), obj.get("failure_reason"))
