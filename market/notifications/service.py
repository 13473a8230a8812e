"""Who hears about what, on which channel, and the sending itself.

An event reaches `handle_event` once per occurrence (the outbox message that
carried it, so a redelivered task is recognised). It writes one
`Notification` row per user and chosen channel and one `WebhookDelivery` per
subscribed endpoint, and queues a task for each in the same transaction.
Each row is then sent by its own task, which locks it and sends only while
it is still pending: a retried task never sends again what was sent.

Events and the ids they carry (`market.events.publish(event, **ids)`):

- order.placed, order.paid, order.packed, order.shipped,
  order.ready_for_pickup, order.pickup_code_renewed, order.cancelled,
  order.expired: order_id
- payment.failed, payment.hold_expiring, payment.hold_lapsed,
  payment.renewed: order_id; refund.failed: order_id, refund_id (the
  payments domain publishes them)
- payout.paid, payout.failed: payout_id (the payouts domain)
- listing.stock_low: listing_id (the catalog, when stock falls below the
  listing's low_stock_threshold_g)
- inventory.sale_refused: channel_id, listing_id, grams, stock_g
- cash_up.flagged: cash_up_id (the stations domain, when staff count a
  day's cash short or over); to every operator
- account.confirmation, account.registration_attempted: user_id (the
  accounts domain, at registration); by email only, never to webhooks

A webhook delivery's body is built by `payloads` (one versioned schema per
event type); a farmer's holds only the parts of their own farms.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from flask import current_app
from sqlalchemy import Select, exists, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased, selectinload

from market.accounts import service as accounts
from market.accounts.models import Role, User, UserRole
from market.auth import Actor
from market.catalog.models import Farm, FulfilmentPoint, Listing
from market.db import local_time, locked, outside_transaction, unit_of_work, utcnow
from market.errors import Invalid, NotFound
from market.extensions import TransientError, db
from market.inventory.models import SalesChannel
from market.money import format_kg, format_minor
from market.notifications import payloads
from market.notifications.models import (
    Channel,
    DeliveryStatus,
    Notification,
    NotificationPreference,
    WebhookDelivery,
    WebhookEndpoint,
)
from market.notifications.notifiers import Message, PermanentFailure, notifier_for
from market.notifications.outbound import UnsafeUrl, post_signed, require_quota, require_safe_url
from market.notifications.templates import EXPIRED_UNCOLLECTED, TEMPLATES, events_for, render
from market.orders.models import Order, OrderPart, PartStatus
from market.outbox import enqueue
from market.pagination import Page, SortKey, count_rows, keyset_page
from market.payments.models import Payment, Refund
from market.payouts.models import Payout
from market.stations.models import CashUp

SEND_TASK = "notifications.send"
DELIVER_TASK = "notifications.deliver_webhook"
ERROR_LENGTH = 2000
# How long a worker's claim to be sending a notification or delivery holds
# (many times the outbound timeouts); past it, the worker is taken to have died.
SEND_LEASE = timedelta(minutes=5)
# The order events that tell its farms to pack: a part cancelled by the
# time one is handled is not packed, and a farm with no other part of the
# order does not hear it.
PACK_NOW = frozenset({"order.paid", "order.confirmed"})


@dataclass(frozen=True)
class Audience:
    user: User
    # The values the notification's text shows (and the webhook's `display`).
    context: dict[str, Any]
    # As whom the user hears it: the farmer's text differs for some events.
    role: Role | None = None
    # The event's data for webhooks, as `payloads` builds it.
    data: dict[str, Any] = field(default_factory=dict)
    # The text to use where the event's own would be wrong (`templates.VARIANTS`).
    text: str | None = None


# --- who hears about an event -------------------------------------------------


def _order(order_id: int) -> Order | None:
    return db.session.scalars(
        select(Order)
        .where(Order.id == order_id)
        .options(
            selectinload(Order.parts).selectinload(OrderPart.farm).selectinload(Farm.owner),
            selectinload(Order.parts).selectinload(OrderPart.lines),
            selectinload(Order.buyer),
            selectinload(Order.fulfilment_point),
        )
    ).one_or_none()


def _grams(grams: int) -> str:
    return f"{format_kg(grams)} kg"


def _order_audience(event: str, order: Order, extra: dict[str, Any]) -> Iterator[Audience]:
    """Each role the event's template names, once per user: the buyer, each
    farmer with the parts of their own farms only, the operators. A user
    met twice (a farmer buying from their own farm) hears it once, as the
    first role that names them."""
    payment = db.session.scalars(select(Payment).where(Payment.order_id == order.id)).one_or_none()
    base: dict[str, Any] = {"order_id": order.id, "currency": order.currency} | _payment_context(payment)
    heard: set[int] = set()
    # An order paid on collection expires at its station once shipped: it
    # was not "not paid in time", and there is nothing left to pack.
    uncollected = event == "order.expired" and any(part.shipped_at is not None for part in order.parts)
    text = EXPIRED_UNCOLLECTED if uncollected else None

    def audience(user: User, role: Role, context: dict[str, Any], parts: list[OrderPart]) -> Iterator[Audience]:
        if user.id not in heard:
            heard.add(user.id)
            data = payloads.order_data(order, payment, role, parts) | extra
            yield Audience(user, base | context, role, data, text)

    for role in TEMPLATES[event].audiences:
        if role == Role.FARMER:
            by_owner: dict[int, list[OrderPart]] = {}
            for part in order.parts:
                if part.status == PartStatus.CANCELLED and event in PACK_NOW:
                    continue
                by_owner.setdefault(part.farm.owner_id, []).append(part)
            for parts in by_owner.values():
                lines = ", ".join(f"{line.product_name} {_grams(line.ordered_g)}" for p in parts for line in p.lines)
                farms = ", ".join(p.farm.name for p in parts)
                context = {"farm": farms, "lines": lines, "reason": _cancel_reason(order, parts)}
                yield from audience(parts[0].farm.owner, role, context, parts)
        elif role == Role.OPERATOR:
            for user in _operators():
                yield from audience(user, role, {}, list(order.parts))
        else:
            context = {
                "total": format_minor(order.total),
                "pickup_code": order.pickup_code or "",
                "point": order.fulfilment_point.name if order.fulfilment_point else "",
                "reason": _cancel_reason(order, order.parts),
            }
            yield from audience(order.buyer, role, context, list(order.parts))


def _cancel_reason(order: Order, parts: list[OrderPart]) -> str:
    """Why the order was cancelled: the reason given with its cancellation,
    or, when its farms cancelled every part of it, theirs, of the parts the
    audience is shown (a farmer is not told another farm's reason)."""
    reasons = dict.fromkeys(part.cancel_reason for part in parts if part.cancel_reason)
    return order.cancel_reason or "; ".join(reasons)


def _operators() -> list[User]:
    return list(
        db.session.scalars(select(User).where(User.roles.any(UserRole.role == Role.OPERATOR)).order_by(User.id))
    )


def _payment_context(payment: Payment | None) -> dict[str, str]:
    """When the order's card hold lapses and by when its buyer must pay
    again, in the marketplace's time zone."""
    if payment is None:
        return {}
    return {
        name: local_time(moment)
        for name, moment in (("hold_until", payment.authorised_until), ("renew_by", payment.renew_by))
        if moment is not None
    }


def _payout_audience(event: str, ids: dict[str, int]) -> list[Audience]:
    payout = db.session.get(Payout, ids["payout_id"])
    if payout is None:
        return []
    farm = db.session.get(Farm, payout.farm_id)
    if farm is None:
        return []
    context = {
        "payout_id": payout.id,
        "farm": farm.name,
        "amount": format_minor(payout.amount),
        "currency": payout.currency,
        "reason": payout.failure_reason or "",
    }
    return [Audience(farm.owner, context, Role.FARMER, payloads.payout_data(payout))]


def _cash_up_audience(event: str, ids: dict[str, int]) -> list[Audience]:
    """Every operator, of a station's cash-up counted short or over."""
    cash_up = db.session.get(CashUp, ids["cash_up_id"])
    if cash_up is None:
        return []
    point = db.session.get(FulfilmentPoint, cash_up.fulfilment_point_id)
    currency = current_app.config["MARKET_CURRENCY"]
    context = {
        "cash_up_id": cash_up.id,
        "station": point.name if point is not None else cash_up.fulfilment_point_id,
        "day": cash_up.business_day.isoformat(),
        "expected": format_minor(cash_up.expected),
        "counted": format_minor(cash_up.counted),
        "difference": format_minor(abs(cash_up.difference)),
        "currency": currency,
        "note": cash_up.note or "-",
    }
    data = payloads.cash_up_data(cash_up, currency)
    return [Audience(operator, context, Role.OPERATOR, data) for operator in _operators()]


def _stock_low_audience(event: str, ids: dict[str, int]) -> list[Audience]:
    listing = db.session.get(Listing, ids["listing_id"])
    if listing is None:
        return []
    context = {
        "listing_id": listing.id,
        "product": listing.product_name,
        "sku": listing.sku or "-",
        "stock_g": listing.stock_g,
        "threshold_g": listing.low_stock_threshold_g,
    }
    return [Audience(listing.farm.owner, context, Role.FARMER, payloads.stock_low_data(listing))]


def _sale_refused_audience(event: str, ids: dict[str, int]) -> list[Audience]:
    channel = db.session.get(SalesChannel, ids["channel_id"])
    listing = db.session.get(Listing, ids["listing_id"])
    if channel is None or listing is None:
        return []
    context = {
        "channel": channel.name,
        "product": listing.product_name,
        "grams": ids["grams"],
        "stock_g": ids["stock_g"],
    }
    data = payloads.sale_refused_data(channel, listing, grams=ids["grams"], stock_g=ids["stock_g"])
    return [Audience(channel.farm.owner, context, Role.FARMER, data)]


def _account_audience(event: str, ids: dict[str, int]) -> list[Audience]:
    """The account itself; its confirmation link is signed here, when the
    email is written, and none is sent for an account confirmed meanwhile."""
    user = db.session.get(User, ids["user_id"])
    if user is None:
        return []
    context: dict[str, Any] = {"name": user.name}
    if event == "account.confirmation":
        if user.confirmed_at is not None:
            return []
        token = accounts.confirmation_token(user)
        link = f"{current_app.config['ACCOUNT_CONFIRM_URL']}?{urlencode({'token': token})}"
        context |= {"token": token, "link": link, "hours": current_app.config["ACCOUNT_CONFIRM_HOURS"]}
    return [Audience(user, context)]


def _order_event_audience(event: str, ids: dict[str, int]) -> list[Audience]:
    order = _order(ids["order_id"])
    if order is None:
        return []
    extra: dict[str, Any] = {}
    if "refund_id" in ids:
        refund = db.session.get(Refund, ids["refund_id"])
        if refund is None:
            return []
        extra = payloads.refund_data(refund)
    return list(_order_audience(event, order, extra))


AUDIENCES: dict[str, Callable[[str, dict[str, int]], list[Audience]]] = {
    "payout.paid": _payout_audience,
    "payout.failed": _payout_audience,
    "listing.stock_low": _stock_low_audience,
    "cash_up.flagged": _cash_up_audience,
    "inventory.sale_refused": _sale_refused_audience,
    "account.confirmation": _account_audience,
    "account.registration_attempted": _account_audience,
}


def _audience(event: str, ids: dict[str, int]) -> list[Audience]:
    """The users `event` concerns, each with the values their text needs.
    Rows that vanished meanwhile make an empty audience, not an error."""
    return AUDIENCES.get(event, _order_event_audience)(event, ids)


# --- preferences ----------------------------------------------------------------


def _choices(user_id: int) -> dict[str, list[str]]:
    rows = db.session.scalars(select(NotificationPreference).where(NotificationPreference.user_id == user_id))
    return {row.event: list(row.channels) for row in rows}


def channels_for(user: User, event: str) -> list[Channel]:
    chosen = _choices(user.id).get(event)
    channels = list(TEMPLATES[event].defaults) if chosen is None else [Channel(name) for name in chosen]
    unproven_address = user.confirmed_at is None and event != "account.confirmation"
    if (user.email is None or unproven_address) and Channel.EMAIL in channels:
        # A villager's account opened by phone at a station: what would be
        # emailed is sent by SMS. So too while the address it was claimed
        # with is not confirmed: only the link that confirms it goes there.
        channels = [c for c in channels if c != Channel.EMAIL]
        channels += [] if Channel.SMS in channels else [Channel.SMS]
    return channels


@dataclass(frozen=True)
class Preference:
    event: str
    channels: list[Channel]
    default: bool


def get_preferences(actor: Actor) -> list[Preference]:
    """Every event the caller can hear about, with the channels chosen (or
    the default ones)."""
    chosen = _choices(actor.user_id)
    result = []
    for event in events_for(actor.roles):
        if event in chosen:
            result.append(Preference(event, [Channel(c) for c in chosen[event]], default=False))
        else:
            result.append(Preference(event, list(TEMPLATES[event].defaults), default=True))
    return result


def set_preferences(actor: Actor, items: list[dict[str, Any]]) -> list[Preference]:
    """Choose the channels for some events; the others keep their choice.
    An empty list of channels silences an event."""
    allowed = set(events_for(actor.roles))
    errors: dict[str, list[str]] = {}
    seen: set[str] = set()
    for index, item in enumerate(items):
        if item["event"] not in allowed:
            errors[f"items.{index}.event"] = [
                f"Not an event for your roles; choose from: {', '.join(sorted(allowed))}."
            ]
        elif item["event"] in seen:
            errors[f"items.{index}.event"] = ["Given twice."]
        seen.add(item["event"])
    if errors:
        raise Invalid("Some preferences name events you cannot receive; nothing was changed.", errors)
    with unit_of_work():
        existing = {
            row.event: row
            for row in db.session.scalars(
                select(NotificationPreference).where(NotificationPreference.user_id == actor.user_id)
            )
        }
        for item in items:
            channels = sorted({Channel(c).value for c in item["channels"]})
            row = existing.get(item["event"])
            if row is None:
                db.session.add(NotificationPreference(user_id=actor.user_id, event=item["event"], channels=channels))
            else:
                row.channels = channels
    return get_preferences(actor)


# --- handling an event ------------------------------------------------------------


def _handled(occurrence: str) -> bool:
    return bool(
        db.session.scalar(
            select(
                exists().where(Notification.occurrence == occurrence)
                | exists().where(WebhookDelivery.occurrence == occurrence)
            )
        )
    )


def send_now(user: User, event: str, context: dict[str, Any], *, occurrence: str) -> None:
    """Write and queue `event`'s message to `user` by SMS in the caller's
    transaction, for a text that carries a secret the caller holds only
    now (a one-time code, stored hashed): it cannot wait for an event's
    handler to render it later. The message is sent like any other."""
    if not user.phone:
        raise Invalid("The account has no mobile number to send the code to.", {"phone": ["Required."]})
    subject, body = render(event, user.language, context)
    notification = Notification(
        occurrence=occurrence, user_id=user.id, event=event, channel=Channel.SMS, recipient=user.phone,
        subject=subject, body=body, next_attempt_at=utcnow(),
    )  # fmt: skip
    db.session.add(notification)
    db.session.flush()
    enqueue(SEND_TASK, notification_id=notification.id)


def _recipient(user: User, channel: Channel) -> str | None:
    return user.email if channel == Channel.EMAIL else user.phone


def handle_event(occurrence: str, event: str, **ids: int) -> int:
    """Write and queue every notification and webhook delivery for one
    occurrence of `event`; returns how many. A repeat of an occurrence
    already handled writes nothing."""
    try:
        with unit_of_work():
            return 0 if _handled(occurrence) else _write_event(occurrence, event, ids)
    except IntegrityError:
        # A concurrent run of the same occurrence won; its rows stand.
        return 0


def _write_event(occurrence: str, event: str, ids: dict[str, int]) -> int:
    now = utcnow()
    created = 0
    for audience in _audience(event, ids):
        user = audience.user
        for channel in channels_for(user, event):
            recipient = _recipient(user, channel)
            if not recipient:
                continue
            subject, body = render(audience.text or event, user.language, audience.context, audience.role)
            notification = Notification(
                occurrence=occurrence,
                user_id=user.id,
                event=event,
                channel=channel,
                recipient=recipient,
                subject=subject,
                body=body,
                next_attempt_at=now,
            )
            db.session.add(notification)
            db.session.flush()
            enqueue(SEND_TASK, notification_id=notification.id)
            created += 1
        endpoints = [
            endpoint
            for endpoint in db.session.scalars(select(WebhookEndpoint).where(WebhookEndpoint.user_id == user.id))
            if endpoint.wants(event)
        ]
        if endpoints:
            payload = payloads.envelope(occurrence, event, now, audience.data, audience.context)
        for endpoint in endpoints:
            _queue_delivery(endpoint, occurrence, event, payload, now)
            created += 1
    return created


def _queue_delivery(endpoint: WebhookEndpoint, occurrence: str, event: str, payload: str, now: datetime) -> None:
    delivery = WebhookDelivery(
        occurrence=occurrence, endpoint=endpoint, event=event, payload=payload, next_attempt_at=now
    )
    db.session.add(delivery)
    db.session.flush()
    enqueue(DELIVER_TASK, delivery_id=delivery.id)


# --- sending ------------------------------------------------------------------------


def _backoff(attempts: int, base_key: str) -> float:
    base: float = current_app.config[base_key]
    return float(base * 2 ** (attempts - 1))


def _claim(row: Notification | WebhookDelivery | None) -> tuple[int | None, float | None]:
    """Claim a row to send: (the attempt this is, None); or (None, the
    seconds until another worker's claim runs out); or (None, None) when
    it is no longer pending."""
    if row is None or row.status != DeliveryStatus.PENDING:
        return None, None
    now = utcnow()
    if row.sending_since is not None and row.sending_since + SEND_LEASE > now:
        return None, (row.sending_since + SEND_LEASE - now).total_seconds()
    row.attempts += 1
    row.sending_since = now
    return row.attempts, None


def _notification(notification_id: int) -> Notification | None:
    return db.session.scalars(locked(select(Notification).where(Notification.id == notification_id))).one_or_none()


def send_notification(notification_id: int) -> float | None:
    """Send one notification if it is still pending. Returns the seconds to
    wait before another try, or None when it is done (sent or given up).

    It is claimed first and sent with no transaction open; the outcome is
    recorded on the row locked afresh, unless another worker took it over
    (after SEND_LEASE) meanwhile. While one worker sends it, another one
    sends nothing and looks again once the claim has run out."""
    with unit_of_work():
        notification = _notification(notification_id)
        attempt, wait = _claim(notification)
        if notification is None or attempt is None:
            return wait
        channel = notification.channel
        message = Message(
            recipient=notification.recipient,
            subject=notification.subject,
            body=notification.body,
            idempotency_key=f"notification-{notification.id}",
        )
    error, permanent = None, False
    try:
        outside_transaction(lambda: notifier_for(channel).send(message))
    except TransientError as exc:
        error = str(exc)
    except PermanentFailure as exc:
        error, permanent = str(exc), True
    retry_in = None
    with unit_of_work():
        notification = _notification(notification_id)
        if notification is None or notification.status != DeliveryStatus.PENDING or notification.attempts != attempt:
            return None  # deleted, or taken over by a worker that found the claim run out
        notification.sending_since = None
        if error is None:
            notification.status = DeliveryStatus.SENT
            notification.sent_at = utcnow()
            notification.last_error = None
            return None
        notification.last_error = error[:ERROR_LENGTH]
        if permanent or notification.attempts >= current_app.config["NOTIFY_MAX_ATTEMPTS"]:
            notification.status = DeliveryStatus.FAILED
        else:
            retry_in = _backoff(notification.attempts, "NOTIFY_RETRY_BASE_SECONDS")
            notification.next_attempt_at = utcnow() + timedelta(seconds=retry_in)
    return retry_in


def _delivery(delivery_id: int) -> WebhookDelivery | None:
    return db.session.scalars(
        locked(select(WebhookDelivery).where(WebhookDelivery.id == delivery_id)).options(
            selectinload(WebhookDelivery.endpoint)
        )
    ).one_or_none()


def deliver_webhook(delivery_id: int) -> float | None:
    """POST one delivery to its endpoint if still pending; a non-2xx answer
    or no answer is retried with exponential backoff up to
    WEBHOOK_MAX_ATTEMPTS, then the delivery is failed. Returns the seconds to
    wait before the next try, or None when done. Claimed and posted as a
    notification is sent (`send_notification`)."""
    with unit_of_work():
        delivery = _delivery(delivery_id)
        attempt, wait = _claim(delivery)
        if delivery is None or attempt is None:
            return wait
        endpoint = delivery.endpoint
        delivery.last_attempt_at = utcnow()
        delivery.response_status = None
        if not endpoint.active:
            delivery.status = DeliveryStatus.FAILED
            delivery.last_error = "The endpoint is disabled."
            delivery.sending_since = None
            return None
        url, secret = endpoint.url, endpoint.secret
        payload, key = delivery.payload.encode(), f"webhook-{delivery.occurrence}-{endpoint.id}"
    status = error = refused = None
    try:
        status = outside_transaction(lambda: post_signed(url, payload, secret=secret, idempotency_key=key))
    except UnsafeUrl as exc:
        refused = f"Refused to call the URL: {exc}"
    except TransientError as exc:
        error = str(exc)
    else:
        if not 200 <= status < 300:
            # The status alone: what the receiver wrote is not ours to show.
            error = f"The endpoint answered HTTP {status}."
    return _record_delivery(delivery_id, attempt, status=status, error=error, refused=refused)


def _record_delivery(
    delivery_id: int, attempt: int, *, status: int | None, error: str | None, refused: str | None
) -> float | None:
    retry_in = None
    with unit_of_work():
        delivery = _delivery(delivery_id)
        if delivery is None or delivery.status != DeliveryStatus.PENDING or delivery.attempts != attempt:
            return None  # deleted, or taken over by a worker that found the claim run out
        delivery.sending_since = None
        delivery.response_status = status
        if refused is not None:
            delivery.status = DeliveryStatus.FAILED
            delivery.last_error = refused[:ERROR_LENGTH]
            return None
        if error is None:
            delivery.status = DeliveryStatus.SENT
            delivery.delivered_at = utcnow()
            delivery.last_error = None
            return None
        delivery.last_error = error[:ERROR_LENGTH]
        if delivery.attempts >= current_app.config["WEBHOOK_MAX_ATTEMPTS"]:
            delivery.status = DeliveryStatus.FAILED
        else:
            retry_in = _backoff(delivery.attempts, "WEBHOOK_RETRY_BASE_SECONDS")
            delivery.next_attempt_at = utcnow() + timedelta(seconds=retry_in)
    return retry_in


def requeue_overdue(now: datetime | None = None) -> int:
    """Queue again the pending notifications and deliveries whose retry is
    long overdue (the broker lost the delayed task, a worker died holding
    it). Sending checks the status, so a spare task sends nothing twice."""
    with unit_of_work():
        now = now or utcnow()
        overdue = now - timedelta(seconds=current_app.config["NOTIFY_REQUEUE_AFTER_SECONDS"])
        notification_ids = db.session.scalars(
            select(Notification.id)
            .where(Notification.status == DeliveryStatus.PENDING, Notification.next_attempt_at < overdue)
            .limit(500)
        ).all()
        delivery_ids = db.session.scalars(
            select(WebhookDelivery.id)
            .where(WebhookDelivery.status == DeliveryStatus.PENDING, WebhookDelivery.next_attempt_at < overdue)
            .limit(500)
        ).all()
        for notification_id in notification_ids:
            enqueue(SEND_TASK, notification_id=notification_id)
        for delivery_id in delivery_ids:
            enqueue(DELIVER_TASK, delivery_id=delivery_id)
        # Not overdue again until another grace period has passed.
        db.session.execute(
            update(Notification).where(Notification.id.in_(notification_ids)).values(next_attempt_at=now)
        )
        db.session.execute(
            update(WebhookDelivery).where(WebhookDelivery.id.in_(delivery_ids)).values(next_attempt_at=now)
        )
    return len(notification_ids) + len(delivery_ids)


# --- webhook endpoints ---------------------------------------------------------------


@dataclass(frozen=True)
class CreatedEndpoint:
    endpoint: WebhookEndpoint
    secret: str


def _check_event_types(event_types: list[str]) -> None:
    known = [event for event, template in TEMPLATES.items() if template.audiences]
    unknown = sorted(set(event_types) - set(known))
    if unknown:
        raise Invalid(
            f"Unknown event types: {', '.join(unknown)}.",
            {"event_types": [f"Choose from: {', '.join(known)}."]},
        )


def create_endpoint(actor: Actor, *, url: str, event_types: list[str], description: str = "") -> CreatedEndpoint:
    """Register a URL for signed events; the secret is returned only here.
    An account has at most WEBHOOK_ENDPOINTS_PER_ACCOUNT endpoints."""
    require_safe_url(url, "url")
    _check_event_types(event_types)
    secret = "whsec_" + secrets.token_urlsafe(32)
    endpoint = WebhookEndpoint(
        user_id=actor.user_id,
        url=url,
        event_types=sorted(set(event_types)),
        secret=secret,
        description=description,
        active=True,
    )
    with unit_of_work():
        owned = select(func.count(WebhookEndpoint.id)).where(WebhookEndpoint.user_id == actor.user_id)
        require_quota(actor.user_id, owned, "WEBHOOK_ENDPOINTS_PER_ACCOUNT", "webhook endpoints")
        db.session.add(endpoint)
    return CreatedEndpoint(endpoint, secret)


def _own_endpoint(actor: Actor, endpoint_id: int) -> WebhookEndpoint:
    endpoint = db.session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None or (endpoint.user_id != actor.user_id and not actor.has(Role.OPERATOR)):
        raise NotFound(f"Webhook endpoint {endpoint_id} not found.")
    return endpoint


def get_endpoint(actor: Actor, endpoint_id: int) -> WebhookEndpoint:
    return _own_endpoint(actor, endpoint_id)


def list_endpoints(actor: Actor, *, limit: int, cursor: str | None = None) -> Page[WebhookEndpoint]:
    stmt = select(WebhookEndpoint).where(WebhookEndpoint.user_id == actor.user_id)
    return keyset_page(stmt, [SortKey(WebhookEndpoint.id, "id")], limit=limit, cursor=cursor)


def update_endpoint(actor: Actor, endpoint_id: int, **changes: Any) -> WebhookEndpoint:
    with unit_of_work():
        endpoint = _own_endpoint(actor, endpoint_id)
        if "url" in changes:
            require_safe_url(changes["url"], "url")
        if "event_types" in changes:
            _check_event_types(changes["event_types"])
            changes["event_types"] = sorted(set(changes["event_types"]))
        for name, value in changes.items():
            setattr(endpoint, name, value)
    return endpoint


def delete_endpoint(actor: Actor, endpoint_id: int) -> None:
    """Remove an endpoint and its delivery log."""
    with unit_of_work():
        db.session.delete(_own_endpoint(actor, endpoint_id))


def list_deliveries(actor: Actor, endpoint_id: int, *, limit: int, cursor: str | None = None) -> Page[WebhookDelivery]:
    """An endpoint's delivery log, newest first."""
    endpoint = _own_endpoint(actor, endpoint_id)
    stmt = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id)
    return keyset_page(stmt, [SortKey(WebhookDelivery.id, "id", descending=True)], limit=limit, cursor=cursor)


def redeliver(actor: Actor, endpoint_id: int, delivery_id: int) -> WebhookDelivery:
    """Send a delivery's event again, as a new entry in the log with the same
    body (and so the same event id, for receivers that drop repeats)."""
    with unit_of_work():
        endpoint = _own_endpoint(actor, endpoint_id)
        original = db.session.get(WebhookDelivery, delivery_id)
        if original is None or original.endpoint_id != endpoint.id:
            raise NotFound(f"Delivery {delivery_id} not found on webhook endpoint {endpoint_id}.")
        occurrence = f"{original.occurrence[:60]}~{secrets.token_hex(6)}"
        delivery = WebhookDelivery(
            occurrence=occurrence,
            endpoint=endpoint,
            event=original.event,
            payload=original.payload,
            next_attempt_at=utcnow(),
        )
        db.session.add(delivery)
        db.session.flush()
        enqueue(DELIVER_TASK, delivery_id=delivery.id)
    return delivery


def _failed_deliveries(actor: Actor) -> Select[tuple[WebhookDelivery]]:
    """Deliveries given up on (failed after their retries, or refused) and
    not sent again since: a redelivery carries the same body, so a later
    delivery of the same body to the same endpoint replaces the failed one."""
    actor.require(Role.OPERATOR)
    later = aliased(WebhookDelivery)
    sent_again = exists().where(
        later.endpoint_id == WebhookDelivery.endpoint_id,
        later.id > WebhookDelivery.id,
        later.payload == WebhookDelivery.payload,
    )
    return select(WebhookDelivery).where(WebhookDelivery.status == DeliveryStatus.FAILED, ~sent_again)


def list_failed_deliveries(actor: Actor, *, limit: int, cursor: str | None = None) -> Page[WebhookDelivery]:
    """Webhook deliveries that failed and were not sent again, newest first (operators)."""
    stmt = _failed_deliveries(actor).options(selectinload(WebhookDelivery.endpoint))
    return keyset_page(stmt, [SortKey(WebhookDelivery.id, "id", descending=True)], limit=limit, cursor=cursor)


def count_failed_deliveries(actor: Actor) -> int:
    """How many deliveries `list_failed_deliveries` lists, over all its pages."""
    return count_rows(_failed_deliveries(actor))


def list_notifications(actor: Actor, *, limit: int, cursor: str | None = None) -> Page[Notification]:
    """The caller's notification log, newest first."""
    stmt = select(Notification).where(Notification.user_id == actor.user_id)
    return keyset_page(stmt, [SortKey(Notification.id, "id", descending=True)], limit=limit, cursor=cursor)
