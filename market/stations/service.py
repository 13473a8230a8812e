"""Orders station staff place for villagers, and the cash they pay on
collection (docs/stations.md).

A villager who does not buy online orders at the village station: staff
place the order for them, identified by their mobile number (an account is
opened on the spot if none has it), the villager confirms it with the
one-time code texted to that number, the farms pack and ship it to the
station, and the villager pays the weighed total in cash when collecting
it, against the pickup code texted when it arrived. Until confirmed the
order expires like any unpaid order; confirmed and never collected, it
expires STATION_COLLECT_DAYS after it arrived.
"""

from __future__ import annotations

from collections.abc import Sequence

from flask import current_app
from sqlalchemy import select

from market.accounts import service as accounts
from market.auth import Actor
from market.catalog import service as catalog
from market.db import commit_keeping_state, locked, utcnow
from market.errors import Conflict, Invalid, NotFound
from market.extensions import db
from market.money import format_kg
from market.notifications import service as notifications
from market.orders import service as orders
from market.orders.models import Order, OrderStatus, StationStaff
from market.orders.service import LineRequest, OrderView, TooManyAttempts
from market.payments import service as payments
from market.stations import codes
from market.stations.models import ConfirmationCode


def require_staff(actor: Actor, point_id: int) -> None:
    """Staff of the station only: an order is placed for a villager by the
    people of the station they collect it at."""
    catalog.get_fulfilment_point(point_id)
    mine = (StationStaff.user_id == actor.user_id, StationStaff.fulfilment_point_id == point_id)
    staff = db.session.scalar(select(StationStaff.id).where(*mine))
    if staff is None:
        raise NotFound(f"Fulfilment point {point_id} is not one of yours.")


def _subject(order: Order) -> str:
    return f"order-{order.id}"


def _send_code(order: Order, confirmation: ConfirmationCode) -> None:
    """A fresh code for the order, texted to its buyer; only its hash is kept."""
    code = codes.renew(confirmation, _subject(order))
    minutes = current_app.config["VILLAGER_CODE_MINUTES"]
    db.session.flush()
    point = order.fulfilment_point
    assert point is not None
    lines = ", ".join(f"{line.product_name} {format_kg(line.ordered_g)} kg" for line in order.lines)
    notifications.send_now(
        order.buyer,
        "order.confirmation_code",
        {"station": point.name, "order_id": order.id, "lines": lines, "code": code, "minutes": minutes},
        occurrence=f"order-{order.id}-code-{confirmation.sent}",
    )


def place_for_villager(
    actor: Actor, point_id: int, *, phone: str, name: str, lines: Sequence[LineRequest], notes: str = ""
) -> OrderView:
    """Station staff place an order for the villager with mobile number
    `phone`, collected and paid in cash at their station. The order takes
    its stock like any other and waits, unpaid, for the villager to confirm
    it with the code texted to them (until ORDER_PAYMENT_MINUTES, when an
    unconfirmed order expires and its stock comes back)."""
    require_staff(actor, point_id)
    villager = accounts.villager(phone, name)
    order = orders.placed(
        villager.id, actor, lines=lines, fulfilment_point_id=point_id, notes=notes, placed_by_id=actor.user_id
    )
    payments.open_cash_on_collection(order, point_id)
    confirmation = ConfirmationCode(order_id=order.id, sent=1)
    db.session.add(confirmation)
    _send_code(order, confirmation)
    commit_keeping_state()
    return orders.view(actor, order)


def _confirmation(order: Order) -> ConfirmationCode:
    confirmation = db.session.scalars(
        locked(select(ConfirmationCode).where(ConfirmationCode.order_id == order.id))
    ).one_or_none()
    if confirmation is None:
        raise NotFound(f"Order {order.id} was not placed for a villager.")
    if order.status != OrderStatus.PENDING_PAYMENT or confirmation.confirmed_at is not None:
        raise Conflict(
            f"Order {order.id} is {order.status}; only an order waiting for the villager's code takes one.",
            current_status=order.status.value,
        )
    return confirmation


def resend_code(actor: Actor, order_id: int) -> OrderView:
    """A new code for the villager (the last one expired, was lost or was
    tried wrong too often); the one before stops working. At most
    VILLAGER_CODE_MAX_SENDS codes per order."""
    order = orders.station_order(actor, order_id)
    confirmation = _confirmation(order)
    most = current_app.config["VILLAGER_CODE_MAX_SENDS"]
    if confirmation.sent >= most:
        db.session.rollback()
        raise TooManyAttempts(f"{most} codes were sent for order {order_id}; it can be placed again later.")
    confirmation.sent += 1
    _send_code(order, confirmation)
    commit_keeping_state()
    return orders.view(actor, order)


def confirm_for_villager(actor: Actor, order_id: int, code: str) -> OrderView:
    """The villager tells station staff the code texted to them: the order
    is confirmed, and its farms pack it. A wrong code is counted; past
    VILLAGER_CODE_MAX_FAILURES, or once the code expired, only a new code
    confirms it."""
    order = orders.station_order(actor, order_id)
    confirmation = _confirmation(order)
    right = codes.matches(confirmation, _subject(order), code, renewal="send the villager a new one")

    def change() -> bool:
        if not right:
            confirmation.failures += 1
            return False
        confirmation.confirmed_at = utcnow()
        order.confirm()
        return True

    if not orders.changing(order, actor, change):
        raise Invalid("The code is wrong.", {"code": ["Does not match the code texted to the villager."]})
    return orders.view(actor, order)


def collect_with_cash(actor: Actor, order_id: int, *, code: str, amount: int) -> OrderView:
    """The villager collects an order paid on collection: the pickup code
    texted when it arrived, and `amount` in cash, exactly its weighed
    total. The order is paid, collected and completed at once; the cash is
    the station's to pay in (`station_cash:<point>`) and the farms' sales
    are recorded as for any capture. A wrong amount changes nothing; a
    wrong code is counted, as at any pickup."""
    order = orders.station_order(actor, order_id)
    if not order.uncollected_unpaid:
        raise Conflict(
            f"Order {order_id} is {order.status}; only an order paid on collection and ready for pickup takes cash.",
            current_status=order.status.value,
        )

    def paid_at_the_counter() -> None:
        payments.take_cash(order, amount, actor.user_id)
        orders.record_event(order, "order.collected", actor)
        orders.record_event(order, "order.paid_in_cash", actor, detail=str(amount))
        order.complete()

    orders.hand_over(actor, order, code, paid_at_the_counter)
    return orders.view(actor, order)
