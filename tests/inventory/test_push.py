"""Pushing stock changes to a channel: signed, coalesced to the latest stock
per listing, each with a version the receiver can drop stale ones by."""

from __future__ import annotations

import json

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from market.catalog.models import Listing
from market.catalog.service import StockLine, add_stock, take_stock
from market.extensions import db
from market.inventory import service
from market.inventory.models import SalesChannel
from market.outbox import OutboxMessage
from tests.inventory.conftest import Stall, create_channel
from tests.notifications.receivers import HttpReceiver, Received
from tests.notifications.test_delivery import verify_market_signature
from tests.workers.conftest import wait_for

PUSH = "/stock"


class ChannelReceiver:
    """What a channel does with our pushes: keep, per SKU, the stock of the
    highest version seen and drop anything older."""

    def __init__(self) -> None:
        self.stock: dict[str, int] = {}
        self.version: dict[str, int] = {}

    def apply(self, request: Received) -> None:
        for item in request.json()["items"]:
            if item["version"] > self.version.get(item["sku"], 0):
                self.version[item["sku"]] = item["version"]
                self.stock[item["sku"]] = item["stock_g"]


def _stock(listing: Listing) -> int:
    db.session.rollback()
    return db.session.scalar(select(Listing.stock_g).where(Listing.id == listing.id)) or 0


def _queue_pushes() -> None:
    """What the worker does for every `listing.stock_changed` in the outbox."""
    for message in db.session.scalars(select(OutboxMessage).where(OutboxMessage.task == "inventory.queue_push")):
        service.queue_push(message.kwargs["listing_id"])
        db.session.delete(message)
    db.session.commit()


def _sell(listing: Listing, grams: int) -> None:
    take_stock([StockLine(listing.id, grams)], purchasable_only=False)
    db.session.commit()


def test_a_push_carries_the_latest_stock_per_listing_with_rising_versions(
    client: FlaskClient, stall: Stall, receiver: HttpReceiver
) -> None:
    created = create_channel(client, stall, push_url=receiver.url(PUSH))
    _sell(stall.oranges, 1_000)
    _sell(stall.oranges, 2_000)
    _sell(stall.chestnuts, 500)
    _queue_pushes()
    assert service.push_channel(created["id"]) == 2  # three changes, two listings
    assert service.push_channel(created["id"]) == 0  # nothing new to say

    (push,) = receiver.at(PUSH)
    assert verify_market_signature(created["secret"], push.body, push.headers["Market-Signature"])
    assert push.json() == {
        "channel_id": created["id"],
        "items": [
            {"sku": "ORANGE", "listing_id": stall.oranges.id, "stock_g": 47_000, "version": 2},
            {"sku": "CHESTNUT", "listing_id": stall.chestnuts.id, "stock_g": 19_500, "version": 1},
        ],
    }

    add_stock([StockLine(stall.oranges.id, 10_000)])
    db.session.commit()
    _queue_pushes()
    assert service.push_channel(created["id"]) == 1
    assert receiver.at(PUSH)[-1].json()["items"] == [
        {"sku": "ORANGE", "listing_id": stall.oranges.id, "stock_g": 57_000, "version": 3}
    ]


def test_a_channel_that_was_down_gets_the_latest_stock_once_it_is_back(
    client: FlaskClient, stall: Stall, receiver: HttpReceiver
) -> None:
    receiver.route(PUSH, status=503)
    created = create_channel(client, stall, push_url=receiver.url(PUSH))
    _sell(stall.oranges, 1_000)
    _queue_pushes()
    assert service.push_channel(created["id"]) == 0
    channel = db.session.get(SalesChannel, created["id"])
    assert channel is not None
    assert channel.last_error is not None and "503" in channel.last_error
    assert channel.push_retry_at is not None  # shown to the farmer as the next try

    _sell(stall.oranges, 1_000)  # more changes while it is down
    _queue_pushes()
    service.push_channel(created["id"])
    receiver.route(PUSH, status=200)
    assert service.run_due() == 1  # the backoff (0 s in tests) has passed
    queued = db.session.scalars(
        select(OutboxMessage).where(OutboxMessage.task == "inventory.push_channel").order_by(OutboxMessage.id.desc())
    ).first()
    assert queued is not None and queued.kwargs == {"channel_id": created["id"]}
    assert service.push_channel(created["id"]) == 1

    channel_view = ChannelReceiver()
    for request in receiver.at(PUSH):
        channel_view.apply(request)
    assert channel_view.stock == {"ORANGE": 48_000}
    db.session.refresh(channel)
    assert (channel.last_error, channel.push_failures, channel.push_retry_at) == (None, 0, None)
    assert channel.last_success_at is not None


def test_listings_without_a_sku_or_push_channel_push_nothing(
    client: FlaskClient, stall: Stall, receiver: HttpReceiver
) -> None:
    _sell(stall.oranges, 1_000)
    _queue_pushes()  # no channel yet
    create_channel(client, stall, feed_url=receiver.url("/feed"))  # a feed-only channel
    _sell(stall.oranges, 1_000)
    _queue_pushes()
    assert db.session.scalars(select(OutboxMessage).where(OutboxMessage.task == "inventory.push_channel")).all() == []


@pytest.mark.usefixtures("worker")
def test_pushes_from_the_worker_are_droppable_by_version_and_end_at_the_current_stock(
    channels: Flask, client: FlaskClient, stall: Stall, receiver: HttpReceiver
) -> None:
    created = create_channel(client, stall, push_url=receiver.url(PUSH))
    for grams in (1_000, 2_000, 500, 250):
        _sell(stall.oranges, grams)
    add_stock([StockLine(stall.chestnuts.id, 3_000)])
    db.session.commit()
    final = {"ORANGE": _stock(stall.oranges), "CHESTNUT": _stock(stall.chestnuts)}

    channel_view = ChannelReceiver()

    def caught_up() -> bool:
        channel_view.__init__()  # type: ignore[misc]
        for request in receiver.at(PUSH):
            channel_view.apply(request)
        return channel_view.stock == final

    assert wait_for(caught_up, timeout=30)
    assert final == {"ORANGE": 46_250, "CHESTNUT": 23_000}
    versions: dict[str, list[int]] = {}
    for request in receiver.at(PUSH):
        assert verify_market_signature(created["secret"], request.body, request.headers["Market-Signature"])
        for item in request.json()["items"]:
            versions.setdefault(item["sku"], []).append(item["version"])
    assert max(versions["ORANGE"]) == 4
    assert max(versions["CHESTNUT"]) == 1
    for seen in versions.values():
        assert len(seen) == len(set(seen))  # no version sent twice with a different stock
    assert json.loads(receiver.at(PUSH)[-1].body)["channel_id"] == created["id"]


def test_an_archived_listing_is_pushed_with_no_stock_and_a_new_sku_is_pushed(
    client: FlaskClient, stall: Stall, receiver: HttpReceiver
) -> None:
    """Archived, a listing is sold on no channel: the channels are told so
    at once, not left selling the grams it still holds. Given another SKU,
    they are told its stock under the new one."""
    created = create_channel(client, stall, push_url=receiver.url(PUSH))
    archived = client.post(f"/api/v1/listings/{stall.oranges.id}/archive", headers=stall.farmer_h)
    assert archived.status_code == 200 and archived.json["stock_g"] == 50_000
    renamed = client.patch(f"/api/v1/listings/{stall.chestnuts.id}", json={"sku": "CHESTNUT-2"}, headers=stall.farmer_h)
    assert renamed.status_code == 200, renamed.json
    _queue_pushes()
    assert service.push_channel(created["id"]) == 2

    (push,) = receiver.at(PUSH)
    assert push.json()["items"] == [
        {"sku": "ORANGE", "listing_id": stall.oranges.id, "stock_g": 0, "version": 1},
        {"sku": "CHESTNUT-2", "listing_id": stall.chestnuts.id, "stock_g": 20_000, "version": 1},
    ]

    add_stock([StockLine(stall.oranges.id, 1_000)])  # an order closing gives grams back to it
    db.session.commit()
    _queue_pushes()
    assert service.push_channel(created["id"]) == 1
    assert receiver.at(PUSH)[-1].json()["items"] == [
        {"sku": "ORANGE", "listing_id": stall.oranges.id, "stock_g": 0, "version": 2}
    ]


@pytest.mark.parametrize(
    ("patch", "pushed"),
    [
        ({"sku": "CHESTNUT-2", "stock_g": 12_000}, {"sku": "CHESTNUT-2", "stock_g": 12_000}),
        ({"sku": "CHESTNUT-2"}, {"sku": "CHESTNUT-2", "stock_g": 20_000}),
        ({"stock_g": 12_000}, {"sku": "CHESTNUT", "stock_g": 12_000}),
        ({"sku": "CHESTNUT-2", "stock_g": 20_000}, {"sku": "CHESTNUT-2", "stock_g": 20_000}),
    ],
    ids=["sku-and-stock", "sku-only", "stock-only", "sku-and-the-same-stock"],
)
def test_an_edit_of_sku_or_stock_is_one_stock_change_pushed_once(
    client: FlaskClient, stall: Stall, receiver: HttpReceiver, patch: dict[str, object], pushed: dict[str, object]
) -> None:
    """One edit, one event: a new SKU and a new stock together are one
    version for the channels, not the same stock pushed twice."""
    created = create_channel(client, stall, push_url=receiver.url(PUSH))
    edited = client.patch(f"/api/v1/listings/{stall.chestnuts.id}", json=patch, headers=stall.farmer_h)
    assert edited.status_code == 200, edited.json

    queued = db.session.scalars(select(OutboxMessage).where(OutboxMessage.task == "inventory.queue_push")).all()
    assert [message.kwargs for message in queued] == [
        {"event": "listing.stock_changed", "listing_id": stall.chestnuts.id}
    ]
    _queue_pushes()
    assert service.push_channel(created["id"]) == 1
    (push,) = receiver.at(PUSH)
    assert push.json()["items"] == [{**pushed, "listing_id": stall.chestnuts.id, "version": 1}]


def _rename(client: FlaskClient, stall: Stall, listing: Listing, sku: str | None) -> None:
    renamed = client.patch(f"/api/v1/listings/{listing.id}", json={"sku": sku}, headers=stall.farmer_h)
    assert renamed.status_code == 200, renamed.json


def _held(requests: list[Received]) -> dict[str, int]:
    """What a channel holds once it has applied `requests` in that order."""
    channel_view = ChannelReceiver()
    for request in requests:
        channel_view.apply(request)
    return channel_view.stock


def test_a_listing_given_another_sku_is_pushed_with_no_stock_under_the_old_one_first(
    client: FlaskClient, stall: Stall, receiver: HttpReceiver
) -> None:
    """The channel stops selling the old SKU, in whatever order our pushes
    reach it: the old SKU's nothing outranks every stock it was pushed
    before, even one the channel was sent while it failed and applies late."""
    created = create_channel(client, stall, push_url=receiver.url(PUSH))
    _sell(stall.oranges, 1_000)
    _queue_pushes()
    assert service.push_channel(created["id"]) == 1  # ORANGE 49 kg, version 1

    receiver.route(PUSH, status=503)  # down: what it was sent may still be applied later
    _sell(stall.oranges, 1_000)
    _queue_pushes()
    assert service.push_channel(created["id"]) == 0  # ORANGE 48 kg, version 2
    _rename(client, stall, stall.oranges, "ORANGE-NAVEL")
    _queue_pushes()
    assert service.push_channel(created["id"]) == 0
    receiver.route(PUSH, status=200)
    assert service.run_due() == 1
    assert service.push_channel(created["id"]) == 1

    pushes = receiver.at(PUSH)
    assert pushes[-1].json()["items"] == [
        {"sku": "ORANGE", "listing_id": stall.oranges.id, "stock_g": 0, "version": 3},
        {"sku": "ORANGE-NAVEL", "listing_id": stall.oranges.id, "stock_g": 48_000, "version": 4},
    ]
    assert pushes[-2].json() == pushes[-1].json()  # the failed try said the same
    gone = {"ORANGE": 0, "ORANGE-NAVEL": 48_000}
    assert _held(pushes) == gone
    assert _held(pushes[::-1]) == gone  # the stale pushes of ORANGE arriving last change nothing

    _sell(stall.oranges, 500)  # once told, the old SKU is not pushed again
    _queue_pushes()
    assert service.push_channel(created["id"]) == 1
    assert receiver.at(PUSH)[-1].json()["items"] == [
        {"sku": "ORANGE-NAVEL", "listing_id": stall.oranges.id, "stock_g": 47_500, "version": 5}
    ]


def test_every_sku_a_listing_had_since_the_last_push_is_pushed_with_no_stock(
    client: FlaskClient, stall: Stall, receiver: HttpReceiver
) -> None:
    """Renamed twice before the channel heard either, then its SKU taken
    away: each SKU it may hold is told there is none, and a SKU given back
    is pushed with the stock, not as gone."""
    created = create_channel(client, stall, push_url=receiver.url(PUSH))
    _sell(stall.chestnuts, 500)
    _queue_pushes()
    service.push_channel(created["id"])  # CHESTNUT 19.5 kg, version 1
    _rename(client, stall, stall.chestnuts, "CHESTNUT-B")
    _queue_pushes()
    _rename(client, stall, stall.chestnuts, "CHESTNUT-C")
    _queue_pushes()
    assert service.push_channel(created["id"]) == 1
    assert receiver.at(PUSH)[-1].json()["items"] == [
        {"sku": "CHESTNUT", "listing_id": stall.chestnuts.id, "stock_g": 0, "version": 2},
        {"sku": "CHESTNUT-B", "listing_id": stall.chestnuts.id, "stock_g": 0, "version": 4},
        {"sku": "CHESTNUT-C", "listing_id": stall.chestnuts.id, "stock_g": 19_500, "version": 5},
    ]

    _rename(client, stall, stall.chestnuts, None)
    _queue_pushes()
    assert service.push_channel(created["id"]) == 1
    assert receiver.at(PUSH)[-1].json()["items"] == [
        {"sku": "CHESTNUT-C", "listing_id": stall.chestnuts.id, "stock_g": 0, "version": 6}
    ]
    _sell(stall.chestnuts, 500)  # sold under no SKU: nothing to tell
    _queue_pushes()
    assert service.push_channel(created["id"]) == 0

    _rename(client, stall, stall.chestnuts, "CHESTNUT")
    _queue_pushes()
    assert service.push_channel(created["id"]) == 1
    assert receiver.at(PUSH)[-1].json()["items"] == [
        {"sku": "CHESTNUT", "listing_id": stall.chestnuts.id, "stock_g": 19_000, "version": 7}
    ]
    assert _held(receiver.at(PUSH)) == {"CHESTNUT": 19_000, "CHESTNUT-B": 0, "CHESTNUT-C": 0}


@pytest.mark.usefixtures("worker")
def test_the_worker_leaves_a_renamed_listing_gone_under_its_old_sku(
    channels: Flask, client: FlaskClient, stall: Stall, receiver: HttpReceiver
) -> None:
    create_channel(client, stall, push_url=receiver.url(PUSH))
    _sell(stall.oranges, 1_000)
    assert wait_for(lambda: _held(receiver.at(PUSH)) == {"ORANGE": 49_000}, timeout=30)
    _sell(stall.oranges, 1_000)
    _rename(client, stall, stall.oranges, "ORANGE-NAVEL")
    _sell(stall.oranges, 500)
    final = {"ORANGE": 0, "ORANGE-NAVEL": 47_500}
    assert wait_for(lambda: _held(receiver.at(PUSH)) == final, timeout=30)
    assert _held(receiver.at(PUSH)[::-1]) == final
