"""Handling an event and sending each notification, against a real SMTP
server and a local SMS gateway and webhook receiver (no worker: the service
functions the tasks call, called directly)."""

from __future__ import annotations

import json
import mailbox
import multiprocessing
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import delete, select

from market.accounts.models import Language, Role
from market.catalog.models import Farm, Listing
from market.catalog.service import StockLine, add_stock, take_stock
from market.db import utcnow
from market.extensions import db
from market.notifications import service
from market.notifications.models import Channel, DeliveryStatus, Notification, WebhookDelivery, WebhookEndpoint
from market.notifications.notifiers import MailboxNotifier, Message
from market.outbox import OutboxMessage
from tests.factories import FarmFactory, ListingFactory, UserFactory
from tests.notifications.conftest import SMS_PATH, make_payout
from tests.notifications.receivers import HttpReceiver, SmtpInbox
from tests.shop import Shop, part_of, pay, place


def _farmer(**fields: object) -> tuple[object, int]:
    farm = FarmFactory(owner=UserFactory(roles=[Role.FARMER], **fields))
    return farm.owner, farm.id


def _payout_paid(farm_id: int, occurrence: str = "outbox-1") -> int:
    return service.handle_event(occurrence, "payout.paid", payout_id=make_payout(farm_id, 123456))


def _payout_failed(farm_id: int) -> int:
    payout_id = make_payout(farm_id, 500, failed_because="account closed")
    return service.handle_event("outbox-1", "payout.failed", payout_id=payout_id)


def _sent(channel: Channel) -> list[Notification]:
    return list(db.session.scalars(select(Notification).where(Notification.channel == channel)))


def _send_all() -> None:
    for notification_id in db.session.scalars(select(Notification.id).order_by(Notification.id)).all():
        service.send_notification(notification_id)


def test_an_event_becomes_one_row_per_chosen_channel_and_queues_each(channels: Flask) -> None:
    farmer, farm_id = _farmer(phone="+8613800000001")
    assert _payout_failed(farm_id) == 2
    rows = db.session.scalars(select(Notification).order_by(Notification.channel)).all()
    assert [(r.channel, r.recipient, r.status) for r in rows] == [
        (Channel.EMAIL, farmer.email, DeliveryStatus.PENDING),  # type: ignore[attr-defined]
        (Channel.SMS, "+8613800000001", DeliveryStatus.PENDING),
    ]
    queued = db.session.scalars(select(OutboxMessage).where(OutboxMessage.task == "notifications.send")).all()
    assert sorted(m.kwargs["notification_id"] for m in queued) == sorted(r.id for r in rows)


def test_the_same_occurrence_handled_twice_adds_nothing(channels: Flask) -> None:
    _, farm_id = _farmer()
    payout_id = make_payout(farm_id, 100)
    assert service.handle_event("outbox-1", "payout.paid", payout_id=payout_id) == 1
    assert service.handle_event("outbox-1", "payout.paid", payout_id=payout_id) == 0
    assert service.handle_event("outbox-2", "payout.paid", payout_id=payout_id) == 1
    assert len(db.session.scalars(select(Notification)).all()) == 2


def test_sms_is_skipped_for_a_user_without_a_phone(channels: Flask) -> None:
    _, farm_id = _farmer(phone=None)
    _payout_failed(farm_id)
    assert [n.channel for n in db.session.scalars(select(Notification))] == [Channel.EMAIL]


def test_a_sent_notification_is_never_sent_again(channels: Flask, smtp: SmtpInbox) -> None:
    farmer, farm_id = _farmer()
    _payout_paid(farm_id)
    (notification,) = _sent(Channel.EMAIL)
    assert service.send_notification(notification.id) is None
    assert service.send_notification(notification.id) is None  # a retried task
    assert len(smtp.to(farmer.email)) == 1  # type: ignore[attr-defined]
    db.session.refresh(notification)
    assert notification.status == DeliveryStatus.SENT
    assert notification.attempts == 1
    assert notification.sent_at is not None


def test_a_notification_one_worker_is_sending_is_not_sent_by_another(
    channels: Flask, smtp: SmtpInbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    farmer, farm_id = _farmer()
    _payout_paid(farm_id)
    (notification,) = _sent(Channel.EMAIL)
    notifier_for = service.notifier_for
    meanwhile: list[float | None] = []

    class SlowNotifier:
        """While the first worker's message is on its way, a second worker
        (a redelivered task) takes up the same notification."""

        def __init__(self, channel: Channel) -> None:
            self.notifier = notifier_for(channel)

        def send(self, message: Message) -> None:
            if not meanwhile:
                meanwhile.append(-1.0)
                meanwhile[0] = service.send_notification(notification.id)
            self.notifier.send(message)

    monkeypatch.setattr(service, "notifier_for", SlowNotifier)
    assert service.send_notification(notification.id) is None
    (wait,) = meanwhile
    assert wait is not None and 0 < wait <= service.SEND_LEASE.total_seconds()  # it looks again later
    assert len(smtp.to(farmer.email)) == 1  # type: ignore[attr-defined]
    db.session.refresh(notification)
    assert (notification.status, notification.attempts, notification.sending_since) == (DeliveryStatus.SENT, 1, None)
    assert service.send_notification(notification.id) is None  # and then finds it sent


def test_a_claim_left_by_a_worker_that_died_runs_out(channels: Flask, smtp: SmtpInbox) -> None:
    farmer, farm_id = _farmer()
    _payout_paid(farm_id)
    (notification,) = _sent(Channel.EMAIL)
    notification.attempts, notification.sending_since = 1, utcnow() - service.SEND_LEASE - timedelta(seconds=1)
    db.session.commit()
    assert service.send_notification(notification.id) is None
    assert len(smtp.to(farmer.email)) == 1  # type: ignore[attr-defined]
    db.session.refresh(notification)
    assert (notification.status, notification.attempts) == (DeliveryStatus.SENT, 2)


def test_texts_follow_the_users_language(channels: Flask, smtp: SmtpInbox) -> None:
    zh, zh_farm = _farmer(language=Language.ZH)
    en, en_farm = _farmer(language=Language.EN)
    _payout_paid(zh_farm, "outbox-1")
    _payout_paid(en_farm, "outbox-2")
    _send_all()
    (zh_mail,) = smtp.to(zh.email)  # type: ignore[attr-defined]
    (en_mail,) = smtp.to(en.email)  # type: ignore[attr-defined]
    assert str(zh_mail["Subject"]).startswith("结算 #") and str(zh_mail["Subject"]).endswith(" 已付款")
    assert "1234.56 CNY" in zh_mail.get_content()
    assert str(en_mail["Subject"]).startswith("Payout #") and str(en_mail["Subject"]).endswith(" is paid")
    assert " to Orchard " in en_mail.get_content()


def test_an_sms_gateway_that_fails_then_recovers_sends_once(
    channels: Flask, receiver: HttpReceiver, smtp: SmtpInbox
) -> None:
    receiver.route(SMS_PATH, script=[503, 500])
    _, farm_id = _farmer(phone="+8613800000002")
    _payout_failed(farm_id)
    (sms,) = _sent(Channel.SMS)
    assert service.send_notification(sms.id) == 0.2
    assert service.send_notification(sms.id) == 0.4
    assert service.send_notification(sms.id) is None
    assert service.send_notification(sms.id) is None
    db.session.refresh(sms)
    assert (sms.status, sms.attempts, sms.last_error) == (DeliveryStatus.SENT, 3, None)
    posts = receiver.at(SMS_PATH)
    assert len(posts) == 3
    assert posts[-1].headers["Authorization"] == "Bearer sms-test-key"
    assert posts[-1].headers["Idempotency-Key"] == f"notification-{sms.id}"
    assert posts[-1].json() == {"to": "+8613800000002", "text": sms.body, "reference": f"notification-{sms.id}"}


def test_a_channel_that_never_recovers_is_failed_after_the_limit(channels: Flask, receiver: HttpReceiver) -> None:
    channels.config["NOTIFY_MAX_ATTEMPTS"] = 2
    receiver.route(SMS_PATH, status=502)
    _, farm_id = _farmer(phone="+8613800000003")
    _payout_failed(farm_id)
    (sms,) = _sent(Channel.SMS)
    assert service.send_notification(sms.id) == 0.2
    assert service.send_notification(sms.id) is None
    db.session.refresh(sms)
    assert (sms.status, sms.attempts, sms.last_error) == (DeliveryStatus.FAILED, 2, "SMS gateway answered 502")


def test_a_refused_number_fails_at_once(channels: Flask, receiver: HttpReceiver) -> None:
    receiver.route(SMS_PATH, status=400)
    _, farm_id = _farmer(phone="+8613800000004")
    _payout_failed(farm_id)
    (sms,) = _sent(Channel.SMS)
    assert service.send_notification(sms.id) is None
    db.session.refresh(sms)
    assert sms.status == DeliveryStatus.FAILED
    assert sms.last_error is not None and "refused" in sms.last_error


def test_without_smtp_or_gateway_messages_land_in_the_local_mailbox(app: Flask, tmp_path: Path) -> None:
    path = tmp_path / "outbox.mbox"
    app.config.update(SMTP_HOST="", SMS_GATEWAY_URL="", NOTIFICATION_MAILBOX=str(path))
    farmer, farm_id = _farmer(phone="+8613800000005")
    _payout_failed(farm_id)
    _send_all()
    messages = list(mailbox.mbox(path))
    assert sorted((m["X-Market-Channel"], m["To"]) for m in messages) == [
        ("email", farmer.email),  # type: ignore[attr-defined]
        ("sms", "+8613800000005"),
    ]


def test_stock_falling_below_the_threshold_is_announced_once(channels: Flask) -> None:
    listing = ListingFactory(stock_g=10_000, low_stock_threshold_g=4_000)

    def stock_low_events() -> int:
        return sum(
            1
            for m in db.session.scalars(select(OutboxMessage))
            if m.kwargs.get("event") == "listing.stock_low" and m.kwargs.get("listing_id") == listing.id
        )

    take_stock([StockLine(listing.id, 5_000)])  # 5 kg left: still above
    db.session.commit()
    assert stock_low_events() == 0
    take_stock([StockLine(listing.id, 2_000)])  # 3 kg: crosses below
    db.session.commit()
    assert stock_low_events() == 1
    take_stock([StockLine(listing.id, 1_000)])  # further below: no repeat
    db.session.commit()
    assert stock_low_events() == 1
    add_stock([StockLine(listing.id, 10_000)])
    take_stock([StockLine(listing.id, 10_000)])  # restocked, then below again
    db.session.commit()
    assert stock_low_events() == 2

    assert service.handle_event("outbox-9", "listing.stock_low", listing_id=listing.id) == 1
    (notification,) = _sent(Channel.EMAIL)
    assert "2000 g" in notification.body
    assert "4000 g" in notification.body


def test_the_low_stock_threshold_is_set_on_the_listing(channels: Flask) -> None:
    listing = ListingFactory()
    db.session.refresh(listing)
    assert listing.low_stock_threshold_g is None
    listing_id = listing.id
    listing.low_stock_threshold_g = 2_500
    db.session.commit()
    assert db.session.get(Listing, listing_id).low_stock_threshold_g == 2_500  # type: ignore[union-attr]


def test_a_webhook_url_that_now_resolves_inward_is_not_called(channels: Flask, receiver: HttpReceiver) -> None:
    _, farm_id = _farmer()
    farm = db.session.get(Farm, farm_id)
    assert farm is not None
    endpoint = WebhookEndpoint(
        user_id=farm.owner_id, url=receiver.url("/hook"), event_types=["payout.paid"], secret="whsec_x", active=True
    )
    db.session.add(endpoint)
    db.session.commit()
    _payout_paid(farm_id)
    (delivery,) = db.session.scalars(select(WebhookDelivery)).all()
    channels.config["WEBHOOK_ALLOW_PRIVATE_NETWORKS"] = []  # as if DNS now pointed inside
    assert service.deliver_webhook(delivery.id) is None
    db.session.refresh(delivery)
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.last_error is not None and "not public" in delivery.last_error
    assert receiver.at("/hook") == []
    payload = json.loads(delivery.payload)
    assert payload["type"] == "payout.paid"
    assert payload["data"]["amount"] == 123456  # fen; the text's "1234.56" rides along for display
    assert payload["display"]["amount"] == "1234.56"


def test_pending_messages_long_past_their_retry_are_queued_again(channels: Flask) -> None:
    _, farm_id = _farmer()
    _payout_paid(farm_id)
    (notification,) = _sent(Channel.EMAIL)
    db.session.execute(delete(OutboxMessage))
    notification.next_attempt_at = utcnow() - timedelta(hours=1)
    db.session.commit()

    assert service.requeue_overdue() == 1
    queued = db.session.scalars(select(OutboxMessage)).all()
    assert [(m.task, m.kwargs) for m in queued] == [("notifications.send", {"notification_id": notification.id})]
    assert service.requeue_overdue() == 0  # not overdue again until another grace period passes
    service.send_notification(notification.id)
    db.session.refresh(notification)
    assert notification.status == DeliveryStatus.SENT


def _append_many(path: str, sender: int, count: int) -> None:
    notifier = MailboxNotifier(Path(path), Channel.EMAIL, "market@example.test")
    for n in range(count):
        notifier.send(Message(f"buyer{sender}@example.test", f"{sender}-{n}", "Body.", f"n-{sender}-{n}"))


def test_pool_processes_appending_to_the_mailbox_at_once_wait_for_each_other(tmp_path: Path) -> None:
    """The embedded mode's worker runs two pool processes: each waits for
    the other's lock on the mbox instead of failing the notification."""
    path = str(tmp_path / "outbox.mbox")
    processes = [multiprocessing.get_context("fork").Process(target=_append_many, args=(path, s, 40)) for s in (1, 2)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
    assert [process.exitcode for process in processes] == [0, 0]
    subjects = sorted(str(message["Subject"]) for message in mailbox.mbox(path))
    assert subjects == sorted(f"{s}-{n}" for s in (1, 2) for n in range(40))


def test_a_farm_whose_part_was_cancelled_is_not_told_to_pack_it(client: FlaskClient, shop: Shop) -> None:
    order = place(client, shop, (shop.oranges, 2000), (shop.nuts, 1000))
    orchard = part_of(order, shop.orchard)
    cancelled = client.post(
        f"/api/v1/orders/{order['id']}/parts/{orchard['id']}/cancel", json={"reason": "hail"}, headers=shop.orchard_h
    )
    assert cancelled.status_code == 200, cancelled.json
    pay(order["id"])

    service.handle_event("outbox-paid", "order.paid", order_id=order["id"])

    told = set(db.session.scalars(select(Notification.user_id).where(Notification.event == "order.paid")))
    assert told == {shop.buyer.id, shop.chestnuts.owner_id}


def test_an_order_closed_by_its_last_part_tells_the_buyer_why(client: FlaskClient, shop: Shop) -> None:
    order = place(client, shop, (shop.nuts, 1000))
    (part,) = order["parts"]
    pay(order["id"])
    closed = client.post(
        f"/api/v1/orders/{order['id']}/parts/{part['id']}/cancel",
        json={"reason": "hail split the chestnuts"},
        headers=shop.chestnut_h,
    )
    assert closed.status_code == 200, closed.json
    assert closed.json["status"] == "cancelled"

    service.handle_event("outbox-cancelled", "order.cancelled", order_id=order["id"])

    (told,) = db.session.scalars(
        select(Notification).where(Notification.event == "order.cancelled", Notification.user_id == shop.buyer.id)
    )
    assert told.body.endswith("hail split the chestnuts")


def test_a_farmer_is_not_told_why_another_farm_cancelled_its_part(client: FlaskClient, shop: Shop) -> None:
    order = place(client, shop, (shop.oranges, 2000), (shop.nuts, 1000))
    pay(order["id"])
    for farm, headers, reason in ((shop.orchard, shop.orchard_h, "frost"), (shop.chestnuts, shop.chestnut_h, "hail")):
        part = part_of(order, farm)
        cancelled = client.post(
            f"/api/v1/orders/{order['id']}/parts/{part['id']}/cancel", json={"reason": reason}, headers=headers
        )
        assert cancelled.status_code == 200, cancelled.json

    service.handle_event("outbox-cancelled", "order.cancelled", order_id=order["id"])

    def told(user_id: int) -> str:
        (row,) = db.session.scalars(
            select(Notification.body).where(Notification.event == "order.cancelled", Notification.user_id == user_id)
        )
        return row

    assert told(shop.buyer.id).endswith("frost; hail")
    assert told(shop.orchard.owner_id).endswith("frost")
    assert told(shop.chestnuts.owner_id).endswith("hail")


def test_a_farmer_is_told_the_grams_ordered_to_the_gram(client: FlaskClient, shop: Shop) -> None:
    shop.nuts.stock_g = 20_000_000
    db.session.commit()
    order = place(client, shop, (shop.nuts, 12_000_250))  # a shop's twelve tonnes and a quarter kilo

    service.handle_event("outbox-placed", "order.placed", order_id=order["id"])

    (told,) = db.session.scalars(
        select(Notification).where(Notification.event == "order.placed", Notification.channel == Channel.EMAIL)
    )
    assert "Chestnut 12000.25 kg" in told.body
