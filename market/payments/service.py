"""Payment rules: opening a payment for an order, authorisation, catch-weight
capture, cancellation, refunds, and the ledger entry for every money event.

The provider is called outside any open database transaction where it can
be, with a key derived from our own ids (`order-<id>-intent`,
`order-<id>-capture`, `refund-<id>`), so a worker that dies after the
provider acted repeats the same call and gets the same answer back.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from market.accounts.models import Role
from market.auth import Actor
from market.db import utcnow
from market.errors import Conflict, Invalid, NotFound
from market.events import publish
from market.extensions import db
from market.ledger import service as ledger
from market.money import line_amount, prorate, share
from market.orders import service as orders
from market.orders.models import Order, OrderLine, OrderStatus, PartStatus
from market.outbox import enqueue
from market.payments.gateway import GatewayError, Intent, gateway
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
from market.premiums import service as premiums

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
# Payment states a webhook may no longer move (it arrived late or twice).
SETTLED = frozenset({PaymentStatus.CAPTURED, PaymentStatus.CANCELLED})


class PaymentNotFound(NotFound):
    pass


@dataclass(frozen=True)
class LineRefund:
    line_id: int
    grams: int


# --- reading ----------------------------------------------------------------


def _payment_of(order_id: int, *, lock: bool = False) -> Payment:
    stmt = select(Payment).where(Payment.order_id == order_id)
    if lock:
        stmt = stmt.with_for_update()
    payment = db.session.scalars(stmt).one_or_none()
    if payment is None:
        raise PaymentNotFound(f"Order {order_id} has no payment yet.")
    return payment


def get_payment(actor: Actor, order_id: int) -> Payment:
    """The order's payment, for its buyer (with the client secret) or operators."""
    order = db.session.get(Order, order_id)
    if order is None or (order.buyer_id != actor.user_id and not actor.has(Role.OPERATOR)):
        raise NotFound(f"Order {order_id} not found.")
    return _payment_of(order_id)


def list_attention(actor: Actor) -> list[Payment]:
    """Payments a worker gave up on, for operators to resolve."""
    actor.require(Role.OPERATOR)
    return list(db.session.scalars(select(Payment).where(Payment.attention.isnot(None)).order_by(Payment.id)))


def flag(order_id: int, problem: str) -> None:
    """Surface a payment that could not be confirmed after all retries."""
    payment = db.session.scalars(select(Payment).where(Payment.order_id == order_id)).one_or_none()
    if payment is not None:
        payment.attention = problem[:2000]
        db.session.commit()


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
    for an operator to confirm. Repeating it changes nothing."""
    order = db.session.get(Order, order_id)
    if order is None:
        raise NotFound(f"Order {order_id} not found.")
    payment = db.session.scalars(select(Payment).where(Payment.order_id == order_id)).one_or_none()
    provider = gateway().provider
    if payment is None:
        payment = Payment(
            order_id=order.id,
            provider=provider,
            status=PaymentStatus.CREATING if provider == Provider.STRIPE else PaymentStatus.REQUIRES_PAYMENT,
            currency=order.currency,
            amount=order.max_total,
        )
        db.session.add(payment)
        db.session.commit()
    if payment.status != PaymentStatus.CREATING:
        return payment
    if order.status != OrderStatus.PENDING_PAYMENT:
        payment.status = PaymentStatus.CANCELLED
        db.session.commit()
        return payment
    key = f"order-{order.id}-intent"
    db.session.commit()  # no transaction stays open across the provider call
    intent = gateway().create_intent(order_id=order.id, amount=payment.amount, currency=payment.currency, key=key)
    if intent is None:
        payment.status = PaymentStatus.REQUIRES_PAYMENT
    else:
        payment.stripe_payment_intent_id = intent.id
        payment.client_secret = intent.client_secret
        payment.status = PaymentStatus.REQUIRES_PAYMENT
        _attempt(payment, "create_intent", key, amount=payment.amount, object_id=intent.id)
    db.session.commit()
    return payment


def _by_intent(intent_id: str) -> Payment | None:
    return db.session.scalars(
        select(Payment).where(Payment.stripe_payment_intent_id == intent_id).with_for_update()
    ).one_or_none()


def _authorise(payment: Payment) -> None:
    """Money is held for the order: mark it paid, or, when the order expired
    or was cancelled meanwhile, send the money back (never keep it)."""
    payment.status = PaymentStatus.AUTHORISED
    payment.failure_reason = None
    if not orders.mark_paid(payment.order_id):
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


def intent_captured(intent_id: str, amount_received: int) -> None:
    """Stripe confirms a capture (payment_intent.succeeded); records it if
    our own capture call's answer was lost."""
    payment = _by_intent(intent_id)
    if payment is None or payment.status != PaymentStatus.AUTHORISED:
        return
    _record_capture(payment, amount_received)


def intent_cancelled(intent_id: str) -> None:
    payment = _by_intent(intent_id)
    if payment is None or payment.status in SETTLED:
        return
    payment.status = PaymentStatus.CANCELLED


def confirm_offline(actor: Actor, order_id: int, *, amount: int, reference: str) -> Payment:
    """An operator records cash or a bank transfer received for the order.
    The amount must be what the order asks for (its most within tolerance);
    the difference to the weighed total is handed back at packing."""
    actor.require(Role.OPERATOR)
    payment = _payment_of(order_id, lock=True)
    if payment.provider != Provider.OFFLINE:
        raise Conflict(f"Order {order_id} is paid by card, not offline.")
    if payment.status not in (PaymentStatus.REQUIRES_PAYMENT, PaymentStatus.FAILED):
        raise Conflict(f"The payment of order {order_id} is {payment.status}.", current_status=payment.status.value)
    if amount != payment.amount:
        raise Invalid(
            f"Order {order_id} asks for {payment.amount}, not {amount}.",
            {"amount": [f"Must be exactly {payment.amount} (minor units)."]},
        )
    if not orders.mark_paid(order_id):
        db.session.rollback()
        order = db.session.get(Order, order_id)
        raise Conflict(
            f"Order {order_id} is {order.status if order else 'gone'}; it takes no payment.",
            current_status=order.status.value if order else None,
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
    db.session.commit()
    return payment


# --- capture ----------------------------------------------------------------


def commission_bp(line: OrderLine) -> int:
    bp: int = current_app.config["COMMISSION_BP"]
    return bp


def _settled_lines(order: Order) -> list[OrderLine]:
    return [line for line in order.lines if line.part.status != PartStatus.CANCELLED and line.charged > 0]


def _record_capture(payment: Payment, amount: int) -> None:
    order = db.session.scalars(
        select(Order)
        .where(Order.id == payment.order_id)
        .options(
            selectinload(Order.lines).selectinload(OrderLine.part),
            selectinload(Order.lines).selectinload(OrderLine.premiums),
        )
    ).one()
    lines = _settled_lines(order)
    captured = [
        CapturedLine(
            order_line_id=line.id,
            farm_id=line.farm_id,
            grams=line.billed_g,
            price_per_kg=line.price_per_kg,
            amount=line.amount,
            premium=line.premium_amount,
            commission=share(line.amount, commission_bp(line)),
        )
        for line in lines
    ]
    if sum(line.amount + line.premium for line in captured) != amount:
        raise GatewayError(f"Captured {amount} but order {order.id} totals {order.total}.")
    payment.captured_lines = captured
    payment.amount_captured = amount
    payment.status = PaymentStatus.CAPTURED
    source = ledger.BUYER_DEPOSITS if payment.provider == Provider.OFFLINE else ledger.gateway_cash(payment.provider)
    sales = ledger.split(
        pair
        for line in captured
        for pair in (
            (ledger.farm_payable(line.farm_id), -line.farm_share),
            (ledger.PLATFORM_COMMISSION, -line.commission),
        )
    )
    ledger.post("capture", f"payment:{payment.id}:capture", {source: amount, **sales}, order_id=order.id)
    premiums.post_sponsor_premiums((p for line in lines for p in line.premiums), order.id)
    if payment.provider == Provider.OFFLINE and payment.amount > amount:
        # The buyer paid the most the order could reach; the rest goes back.
        released = payment.amount - amount
        ledger.post(
            "release",
            f"payment:{payment.id}:release",
            {ledger.BUYER_DEPOSITS: released, ledger.gateway_cash(Provider.OFFLINE): -released},
            order_id=order.id,
        )


def capture(order_id: int) -> Payment:
    """Take exactly the weighed total of a packed order; release the rest of
    the authorisation. Repeating it after success changes nothing."""
    payment = _payment_of(order_id)
    order = db.session.get(Order, order_id)
    if payment.status == PaymentStatus.CAPTURED:
        return payment
    if order is None or order.status not in PACKED_OR_LATER:
        raise Conflict(f"Order {order_id} is not packed; nothing to capture yet.")
    if payment.status != PaymentStatus.AUTHORISED:
        raise Conflict(f"The payment of order {order_id} is {payment.status}, not authorised.")
    amount = order.total
    if payment.provider == Provider.OFFLINE:
        payment = _payment_of(order_id, lock=True)
        _record_capture(payment, amount)
        db.session.commit()
        return payment
    intent_id = payment.stripe_payment_intent_id
    assert intent_id is not None  # an authorised card payment has its intent
    key = f"order-{order_id}-capture"
    db.session.commit()
    if amount == 0:  # every line came out short: nothing to take
        intent = gateway().cancel(intent_id, key=f"order-{order_id}-cancel")
    else:
        try:
            intent = gateway().capture(intent_id, amount=amount, key=key)
        except GatewayError as error:
            intent = _already_captured(intent_id, error)
    payment = _payment_of(order_id, lock=True)
    if payment.status == PaymentStatus.CAPTURED:  # a webhook recorded it meanwhile
        return payment
    if intent.status == "canceled":
        payment.status = PaymentStatus.CANCELLED
        _attempt(payment, "cancel", f"order-{order_id}-cancel", object_id=intent.id)
    else:
        _attempt(payment, "capture", key, amount=intent.amount_received, object_id=intent.id)
        _record_capture(payment, intent.amount_received)
    db.session.commit()
    return payment


def _already_captured(intent_id: str, error: GatewayError) -> Intent:
    """A capture refused because it already happened (the answer to our first
    call was lost and the key has expired) counts as that capture."""
    intent = gateway().get_intent(intent_id)
    if intent.status == "succeeded":
        return intent
    raise error


# --- cancellation and refunds -----------------------------------------------


def settle_closed_order(order_id: int) -> Payment | None:
    """The order was cancelled or expired: release an authorisation, hand
    back an offline deposit, or refund what was captured."""
    payment = db.session.scalars(select(Payment).where(Payment.order_id == order_id)).one_or_none()
    if payment is None:
        return None
    if payment.status == PaymentStatus.CAPTURED:
        if _left_to_refund(payment) and not _open_refunds(payment):
            request_refund(None, order_id, reason="order cancelled")
        return payment
    if payment.status == PaymentStatus.CANCELLED:
        return payment
    if payment.provider == Provider.OFFLINE:
        payment = _payment_of(order_id, lock=True)
        if payment.status == PaymentStatus.AUTHORISED:
            ledger.post(
                "deposit_returned",
                f"payment:{payment.id}:deposit_returned",
                {ledger.BUYER_DEPOSITS: payment.amount, ledger.gateway_cash(Provider.OFFLINE): -payment.amount},
                order_id=order_id,
            )
        payment.status = PaymentStatus.CANCELLED
        db.session.commit()
        return payment
    if payment.stripe_payment_intent_id is None:
        payment.status = PaymentStatus.CANCELLED
        db.session.commit()
        return payment
    intent_id = payment.stripe_payment_intent_id
    key = f"order-{order_id}-cancel"
    db.session.commit()
    intent = gateway().cancel(intent_id, key=key)
    payment = _payment_of(order_id, lock=True)
    _attempt(payment, "cancel", key, object_id=intent.id)
    if payment.status != PaymentStatus.CAPTURED:
        payment.status = PaymentStatus.CANCELLED
    db.session.commit()
    return payment


@dataclass(frozen=True)
class Refunded:
    """What refunds (pending or done) already give back on a captured line."""

    grams: int
    amount: int
    premium: int
    commission: int


def _refunded(captured: CapturedLine) -> Refunded:
    rows = db.session.execute(
        select(RefundLine.grams, RefundLine.amount, RefundLine.premium, RefundLine.commission)
        .join(Refund)
        .where(RefundLine.order_line_id == captured.order_line_id, Refund.status != RefundStatus.FAILED)
    ).all()
    return Refunded(
        grams=sum(r.grams for r in rows),
        amount=sum(r.amount for r in rows),
        premium=sum(r.premium for r in rows),
        commission=sum(r.commission for r in rows),
    )


def _left_to_refund(payment: Payment, lines: Iterable[CapturedLine] | None = None) -> list[LineRefund]:
    left = [
        LineRefund(line.order_line_id, line.grams - _refunded(line).grams)
        for line in (payment.captured_lines if lines is None else lines)
    ]
    return [line for line in left if line.grams > 0]


def _open_refunds(payment: Payment) -> bool:
    return any(refund.status == RefundStatus.PENDING for refund in payment.refunds)


def refund_cancelled_part(order_id: int, part_id: int) -> None:
    """A part cancelled after the money was taken is refunded line by line."""
    payment = db.session.scalars(select(Payment).where(Payment.order_id == order_id)).one_or_none()
    if payment is None or payment.status != PaymentStatus.CAPTURED:
        return  # not captured yet: the capture takes the recomputed total
    part_lines = set(db.session.scalars(select(OrderLine.id).where(OrderLine.part_id == part_id)))
    left = _left_to_refund(payment, [line for line in payment.captured_lines if line.order_line_id in part_lines])
    if left:
        request_refund(None, order_id, lines=left, reason=f"part {part_id} cancelled")


def request_refund(
    actor: Actor | None, order_id: int, *, lines: Sequence[LineRefund] | None = None, reason: str
) -> Refund:
    """Refund whole lines or grams of them (all that is left when `lines` is
    None). Never more than was captured; a worker then asks the provider."""
    if actor is not None:
        actor.require(Role.OPERATOR)
    payment = _payment_of(order_id, lock=True)
    if payment.status != PaymentStatus.CAPTURED:
        raise Conflict(
            f"The payment of order {order_id} is {payment.status}; only captured money can be refunded.",
            current_status=payment.status.value,
        )
    captured = {line.order_line_id: line for line in payment.captured_lines}
    wanted = _left_to_refund(payment) if lines is None else list(lines)
    errors: dict[str, list[str]] = {}
    refund_lines: list[RefundLine] = []
    for index, request in enumerate(wanted):
        line = captured.get(request.line_id)
        if line is None:
            errors[f"lines.{index}.line_id"] = ["Not a paid line of this order."]
            continue
        done = _refunded(line)
        left = line.grams - done.grams
        if not 0 < request.grams <= left:
            errors[f"lines.{index}.grams"] = [f"Between 1 and {left} g can still be refunded on this line."]
            continue
        refund_lines.append(_refund_line(line, request.grams, done))
    if not refund_lines and not errors:
        errors["lines"] = ["Nothing is left to refund."]
    amount = sum(r.amount + r.premium for r in refund_lines)
    pending = sum(r.amount for r in payment.refunds if r.status == RefundStatus.PENDING)
    if not errors and amount + pending > payment.refundable:
        errors["lines"] = [f"At most {payment.refundable - pending} can still be refunded."]
    if errors:
        db.session.rollback()
        raise Invalid("The refund cannot be made; nothing was changed.", errors)
    refund = Refund(
        payment=payment,
        order_id=order_id,
        amount=amount,
        reason=reason,
        status=RefundStatus.PENDING,
        requested_by=actor.user_id if actor else None,
        lines=refund_lines,
    )
    db.session.add(refund)
    db.session.flush()
    enqueue("payments.refund", refund_id=refund.id, order_id=order_id)
    db.session.commit()
    return refund


def _refund_line(line: CapturedLine, grams: int, done: Refunded) -> RefundLine:
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


def _reverse_premiums(refund: Refund, payment: Payment) -> None:
    """Sponsor premiums follow the produce back: the refunded share of each
    leaves the farm and returns to the programme's budget."""
    captured = {line.order_line_id: line for line in payment.captured_lines}
    for refund_line in refund.lines:
        line = db.session.get(OrderLine, refund_line.order_line_id)
        assert line is not None  # captured lines point at order lines
        earlier = _refunded(captured[line.id]).grams - refund_line.grams
        premiums.reverse_sponsor_premiums(
            line.premiums,
            refund_line.grams,
            captured[line.id].grams - earlier,
            refund_id=refund.id,
            order_id=refund.order_id,
        )


def _refund(refund_id: int) -> Refund:
    refund = db.session.get(Refund, refund_id)
    if refund is None:
        raise NotFound(f"Refund {refund_id} not found.")
    return refund


def process_refund(refund_id: int) -> Refund:
    """Ask the provider to return a pending refund; record it with its entry."""
    refund = _refund(refund_id)
    if refund.status != RefundStatus.PENDING:
        return refund
    key = f"refund-{refund.id}"
    order_id, amount, reason = refund.order_id, refund.amount, refund.reason
    intent_id = refund.payment.stripe_payment_intent_id or ""
    db.session.commit()  # no transaction stays open across the provider call
    try:
        result = gateway().refund(intent_id, amount=amount, key=key, reason=reason)
    except GatewayError as error:
        refund = _refund(refund_id)
        refund.status = RefundStatus.FAILED
        refund.failure_reason = str(error)
        _attempt(refund.payment, "refund", key, amount=amount, ok=False, error=str(error))
        db.session.commit()
        return refund
    payment = _payment_of(order_id, lock=True)
    refund = _refund(refund_id)
    if refund.status != RefundStatus.PENDING:
        return refund
    refund.status = RefundStatus.SUCCEEDED
    refund.stripe_refund_id = result.id if payment.provider == Provider.STRIPE else None
    refund.settled_at = utcnow()
    payment.amount_refunded += amount
    _attempt(payment, "refund", key, amount=amount, object_id=result.id)
    debits = ledger.split(
        pair
        for line in refund.lines
        for pair in (
            (ledger.farm_payable(line.farm_id), line.farm_share),
            (ledger.PLATFORM_COMMISSION, line.commission),
        )
    )
    ledger.post(
        "refund",
        f"refund:{refund.id}",
        {**debits, ledger.gateway_cash(payment.provider): -amount},
        order_id=order_id,
        memo=reason,
    )
    _reverse_premiums(refund, payment)
    db.session.commit()
    return refund
