"""Reading a channel's stock feed: drops are sales here, rises are returns;
bad feeds are a visible sync error and never move stock or lose a change."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from market.catalog.models import Listing, ListingStatus
from market.db import utcnow
from market.extensions import db
from market.inventory import feeds, service
from market.inventory.models import SalesChannel
from market.money import MAX_STOCK_G
from market.outbox import OutboxMessage
from tests.factories import ListingFactory
from tests.inventory.conftest import Stall, create_channel
from tests.notifications.receivers import HttpReceiver

FEED = "/feed"


def _stock(listing: Listing) -> int:
    db.session.rollback()
    return db.session.scalar(select(Listing.stock_g).where(Listing.id == listing.id)) or 0


def _feed(receiver: HttpReceiver, items: object, etag: str | None = None) -> None:
    receiver.route(FEED, body=json.dumps(items).encode(), etag=etag)


def _channel(client: FlaskClient, stall: Stall, receiver: HttpReceiver, **fields: object) -> SalesChannel:
    created = create_channel(client, stall, feed_url=receiver.url(FEED), **fields)
    channel = db.session.get(SalesChannel, created["id"])
    assert channel is not None
    return channel


def _state(channel: SalesChannel) -> tuple[str | None, bool]:
    db.session.refresh(channel)
    return channel.last_error, channel.last_success_at is not None


def test_drops_in_the_feed_are_sales_and_rises_are_returns(
    client: FlaskClient, stall: Stall, receiver: HttpReceiver
) -> None:
    channel = _channel(client, stall, receiver)
    _feed(receiver, [{"sku": "ORANGE", "quantity_g": 10_000}, {"sku": "CHESTNUT", "quantity_g": 4_000}], etag='"v1"')
    assert service.pull_channel(channel.id) == 0  # the first read is the baseline
    assert (_stock(stall.oranges), _stock(stall.chestnuts)) == (50_000, 20_000)

    _feed(
        receiver, {"items": [{"sku": "ORANGE", "quantity_g": 7_500}, {"sku": "CHESTNUT", "quantity_g": 4_500}]}, '"v2"'
    )
    assert service.pull_channel(channel.id) == 2
    assert (_stock(stall.oranges), _stock(stall.chestnuts)) == (47_500, 20_500)
    assert _state(channel) == (None, True)

    assert service.pull_channel(channel.id) == 0  # not modified: nothing moves
    assert receiver.at(FEED, method="GET")[-1].headers["If-None-Match"] == '"v2"'
    assert (_stock(stall.oranges), _stock(stall.chestnuts)) == (47_500, 20_500)


def test_a_csv_feed_is_read_the_same_way(client: FlaskClient, stall: Stall, receiver: HttpReceiver) -> None:
    channel = _channel(client, stall, receiver, feed_format="csv")
    receiver.route(FEED, body="\ufeffsku,quantity_g\r\nORANGE,9000\r\n".encode(), content_type="text/csv")
    service.pull_channel(channel.id)
    receiver.route(FEED, body=b"sku,quantity_g,note\nORANGE,8000,sold one box\n", content_type="text/csv")
    assert service.pull_channel(channel.id) == 1
    assert _stock(stall.oranges) == 49_000


def test_a_malformed_feed_is_a_sync_error_and_moves_nothing(
    client: FlaskClient, stall: Stall, receiver: HttpReceiver
) -> None:
    channel = _channel(client, stall, receiver)
    _feed(receiver, [{"sku": "ORANGE", "quantity_g": 10_000}])
    service.pull_channel(channel.id)
    for body, error in [
        (b"{not json", "not valid JSON"),
        (json.dumps([{"sku": "ORANGE", "quantity_g": -5}]).encode(), "quantity_g"),
        (json.dumps([{"sku": "ORANGE", "quantity_g": 1.5}]).encode(), "quantity_g"),
        (json.dumps([{"sku": "ORANGE", "quantity_g": MAX_STOCK_G + 1}]).encode(), "the most a listing may hold"),
        (json.dumps([{"quantity_g": 5}]).encode(), "sku is missing"),
        (
            json.dumps([{"sku": "ORANGE", "quantity_g": 1}, {"sku": "ORANGE", "quantity_g": 2}]).encode(),
            "the same SKU as item 0",
        ),
        (json.dumps({"stock": []}).encode(), "list of items"),
    ]:
        receiver.route(FEED, body=body)
        assert service.pull_channel(channel.id) == 0
        last_error, _ = _state(channel)
        assert last_error is not None and error in last_error, body
        assert _stock(stall.oranges) == 50_000

    _feed(receiver, [{"sku": "ORANGE", "quantity_g": 9_000}])
    assert service.pull_channel(channel.id) == 1
    assert _stock(stall.oranges) == 49_000
    assert _state(channel) == (None, True)


def test_a_feed_over_the_size_limit_is_refused(
    channels: Flask, client: FlaskClient, stall: Stall, receiver: HttpReceiver
) -> None:
    channels.config["INVENTORY_FEED_MAX_BYTES"] = 100
    channel = _channel(client, stall, receiver)
    _feed(receiver, [{"sku": f"SKU-{n}", "quantity_g": n} for n in range(50)])
    assert service.pull_channel(channel.id) == 0
    last_error, succeeded = _state(channel)
    assert (last_error is not None and "limit of 100 bytes" in last_error) or "the limit is 100" in str(last_error)
    assert not succeeded


def test_a_feed_that_cannot_be_reached_is_a_sync_error(
    client: FlaskClient, stall: Stall, receiver: HttpReceiver
) -> None:
    channel = _channel(client, stall, receiver)
    receiver.route(FEED, status=500)
    assert service.pull_channel(channel.id) == 0
    assert _state(channel)[0] == "Feed not applied: The feed answered HTTP 500."


def test_unknown_skus_are_reported_and_the_rest_applied(
    client: FlaskClient, stall: Stall, receiver: HttpReceiver
) -> None:
    channel = _channel(client, stall, receiver)
    _feed(receiver, [{"sku": "ORANGE", "quantity_g": 10_000}, {"sku": "DURIAN", "quantity_g": 1}])
    service.pull_channel(channel.id)
    _feed(receiver, [{"sku": "ORANGE", "quantity_g": 6_000}, {"sku": "DURIAN", "quantity_g": 0}])
    assert service.pull_channel(channel.id) == 1
    assert _stock(stall.oranges) == 46_000
    last_error, succeeded = _state(channel)
    assert last_error == "Unknown SKUs skipped at items 1."
    assert succeeded


def test_a_sale_beyond_the_stock_is_kept_for_the_next_read_not_lost(
    client: FlaskClient, stall: Stall, receiver: HttpReceiver
) -> None:
    channel = _channel(client, stall, receiver)
    _feed(receiver, [{"sku": "CHESTNUT", "quantity_g": 30_000}])
    service.pull_channel(channel.id)
    _feed(receiver, [{"sku": "CHESTNUT", "quantity_g": 5_000}])  # sold 25 kg; we have 20 kg
    assert service.pull_channel(channel.id) == 0
    assert _stock(stall.chestnuts) == 20_000
    last_error, _ = _state(channel)
    assert last_error is not None and "exceeds the stock" in last_error
    refused = [
        m for m in db.session.scalars(select(OutboxMessage)) if m.kwargs.get("event") == "inventory.sale_refused"
    ]
    assert len(refused) == 1

    assert service.pull_channel(channel.id) == 0  # still refused, told only once
    refused = [
        m for m in db.session.scalars(select(OutboxMessage)) if m.kwargs.get("event") == "inventory.sale_refused"
    ]
    assert len(refused) == 1

    stall.chestnuts.stock_g = 26_000  # a harvest comes in
    db.session.commit()
    assert service.pull_channel(channel.id) == 1
    assert _stock(stall.chestnuts) == 1_000
    assert _state(channel) == (None, True)


def test_each_skus_refused_sale_is_told_though_another_skus_error_holds_its_letters(
    client: FlaskClient, stall: Stall, receiver: HttpReceiver
) -> None:
    """The farmer hears of each SKU's refused sale once, however the SKUs
    are spelt: GE is not taken as told because ORANGE's error holds it."""
    ange = ListingFactory(farm=stall.farm, sku="GE", stock_g=1_000)
    channel = _channel(client, stall, receiver)
    _feed(receiver, [{"sku": "ORANGE", "quantity_g": 90_000}, {"sku": "GE", "quantity_g": 9_000}])
    service.pull_channel(channel.id)
    _feed(receiver, [{"sku": "ORANGE", "quantity_g": 10_000}, {"sku": "GE", "quantity_g": 9_000}])
    service.pull_channel(channel.id)  # ORANGE: 80 kg sold there, 50 kg here
    _feed(receiver, [{"sku": "ORANGE", "quantity_g": 10_000}, {"sku": "GE", "quantity_g": 4_000}])
    service.pull_channel(channel.id)  # GE: 5 kg sold there, 1 kg here; ORANGE still refused
    service.pull_channel(channel.id)  # both still refused: nobody told again

    refused = [
        m.kwargs["listing_id"]
        for m in db.session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))
        if m.kwargs.get("event") == "inventory.sale_refused"
    ]
    assert refused == [stall.oranges.id, ange.id]
    assert (_stock(stall.oranges), _stock(ange)) == (50_000, 1_000)


@pytest.mark.parametrize(
    "case",
    [
        (20_000, 5_000, "exceeds the stock", 26_000, 1_000),  # sold 25 kg; 20 kg here
        (MAX_STOCK_G - 1_000, 55_000, "was refused", 10_000, 35_000),  # 25 kg back; room for 1 kg
    ],
    ids=["sale beyond the stock", "return past the most a listing holds"],
)
def test_a_refused_move_is_tried_again_though_the_feed_answers_not_modified(
    client: FlaskClient, stall: Stall, receiver: HttpReceiver, case: tuple[int, int, str, int, int]
) -> None:
    """A feed with an ETag that refused a move is read whole next time: an
    unchanged feed would answer 304, and the move wait for the feed's next
    change while the stock here is wrong and the channel shows no error."""
    stock_g, quantity_g, refusal, restocked_g, after_g = case
    stall.chestnuts.stock_g = stock_g
    db.session.commit()
    channel = _channel(client, stall, receiver)
    _feed(receiver, [{"sku": "CHESTNUT", "quantity_g": 30_000}], etag='"v1"')
    service.pull_channel(channel.id)
    _feed(receiver, [{"sku": "CHESTNUT", "quantity_g": quantity_g}], etag='"v2"')
    assert service.pull_channel(channel.id) == 0
    assert _stock(stall.chestnuts) == stock_g

    assert service.pull_channel(channel.id) == 0  # the same feed, still refused
    assert "If-None-Match" not in receiver.at(FEED, method="GET")[-1].headers
    last_error, _ = _state(channel)
    assert last_error is not None and refusal in last_error

    stall.chestnuts.stock_g = restocked_g  # the stock here changes; the feed does not
    db.session.commit()
    assert service.pull_channel(channel.id) == 1
    assert _stock(stall.chestnuts) == after_g
    assert _state(channel) == (None, True)
    assert service.pull_channel(channel.id) == 0  # applied: the validators are sent again
    assert receiver.at(FEED, method="GET")[-1].headers["If-None-Match"] == '"v2"'
    assert _stock(stall.chestnuts) == after_g


@pytest.mark.parametrize(
    ("quantity_g", "refused"),
    [
        (29_000, "a sale of 1000 g was refused: listing {id} is archived."),
        (31_000, "a return of 1000 g was refused: Listing {id} is archived; its stock cannot change."),
    ],
)
def test_a_sale_or_return_of_an_archived_listing_is_refused_and_kept(
    client: FlaskClient, stall: Stall, receiver: HttpReceiver, quantity_g: int, refused: str
) -> None:
    """An archived listing is sold nowhere (not refused as a sale beyond its
    stock) and takes no new stock, as with a sale or return event."""
    channel = _channel(client, stall, receiver)
    _feed(receiver, [{"sku": "CHESTNUT", "quantity_g": 30_000}])
    service.pull_channel(channel.id)
    stall.chestnuts.status = ListingStatus.ARCHIVED
    db.session.commit()
    _feed(receiver, [{"sku": "CHESTNUT", "quantity_g": quantity_g}])
    assert service.pull_channel(channel.id) == 0
    assert _stock(stall.chestnuts) == 20_000
    last_error, _ = _state(channel)
    assert last_error == "SKU CHESTNUT: " + refused.format(id=stall.chestnuts.id)
    assert [
        m for m in db.session.scalars(select(OutboxMessage)) if m.kwargs.get("event") == "inventory.sale_refused"
    ] == []


def test_a_listing_given_another_sku_starts_a_new_baseline_rather_than_moving_stock(
    client: FlaskClient, stall: Stall, receiver: HttpReceiver
) -> None:
    """The quantity a feed reported under a listing's old SKU is no baseline
    for its new one: two listings whose SKUs are swapped, or a SKU taken off
    and a new one given months later, move no stock from one to the other
    or out of nothing."""
    channel = _channel(client, stall, receiver)
    _feed(receiver, [{"sku": "ORANGE", "quantity_g": 10_000}, {"sku": "CHESTNUT", "quantity_g": 4_000}])
    service.pull_channel(channel.id)

    def relabel(listing: Listing, sku: str | None) -> None:
        url = f"/api/v1/listings/{listing.id}"
        assert client.patch(url, json={"sku": sku}, headers=stall.farmer_h).status_code == 200

    relabel(stall.oranges, "SWAP")
    relabel(stall.chestnuts, "ORANGE")
    relabel(stall.oranges, "CHESTNUT")
    assert service.pull_channel(channel.id) == 0  # the same feed: nothing was sold or returned
    assert (_stock(stall.oranges), _stock(stall.chestnuts)) == (50_000, 20_000)

    relabel(stall.chestnuts, None)  # no longer synced...
    _feed(receiver, [{"sku": "CHESTNUT", "quantity_g": 4_000}, {"sku": "HAZELNUT", "quantity_g": 90_000}])
    service.pull_channel(channel.id)
    relabel(stall.chestnuts, "HAZELNUT")  # ...and synced again, as another SKU
    assert service.pull_channel(channel.id) == 0
    assert (_stock(stall.oranges), _stock(stall.chestnuts)) == (50_000, 20_000)

    _feed(receiver, [{"sku": "CHESTNUT", "quantity_g": 3_000}, {"sku": "HAZELNUT", "quantity_g": 89_500}])
    assert service.pull_channel(channel.id) == 2  # from the new baselines, sales as before
    assert (_stock(stall.oranges), _stock(stall.chestnuts)) == (49_000, 19_500)
    assert _state(channel) == (None, True)


def test_the_scheduler_queues_due_feeds_and_sets_the_next_run(
    client: FlaskClient, stall: Stall, receiver: HttpReceiver
) -> None:
    due = _channel(client, stall, receiver, pull_interval_seconds=600)
    later = _channel(client, stall, receiver)
    later.next_run_at = utcnow() + timedelta(hours=1)
    db.session.commit()
    assert service.run_due() == 1
    queued = db.session.scalars(select(OutboxMessage).where(OutboxMessage.task == "inventory.pull_channel")).all()
    assert [m.kwargs for m in queued] == [{"channel_id": due.id}]
    db.session.refresh(due)
    assert due.next_run_at is not None and due.next_run_at > utcnow() + timedelta(seconds=590)
    assert service.run_due() == 0


def test_a_read_that_another_read_overtook_while_it_fetched_is_dropped(
    client: FlaskClient, stall: Stall, receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    channel = _channel(client, stall, receiver)
    _feed(receiver, [{"sku": "ORANGE", "quantity_g": 10_000}])
    service.pull_channel(channel.id)
    _feed(receiver, [{"sku": "ORANGE", "quantity_g": 7_500}])
    fetch = feeds.fetch

    def fetch_overtaken(url: str, **conditions: str | None) -> feeds.Fetched:
        fetched = fetch(url, **conditions)  # the older quantity
        # Meanwhile another read fetches a newer feed and applies it; the
        # fetch runs with no transaction open, so it does not wait for us.
        _feed(receiver, [{"sku": "ORANGE", "quantity_g": 8_000}])
        monkeypatch.setattr(feeds, "fetch", fetch)
        assert service.pull_channel(channel.id) == 1
        return fetched

    monkeypatch.setattr(feeds, "fetch", fetch_overtaken)
    assert service.pull_channel(channel.id) == 0
    assert _stock(stall.oranges) == 48_000  # the newer read's 2 kg sale, not another 500 g
    assert service.pull_channel(channel.id) == 0
    assert _stock(stall.oranges) == 48_000
