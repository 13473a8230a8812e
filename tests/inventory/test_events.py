"""Sales and returns reported by a channel: each event id applied once, stock
never below zero, bad input named by field."""

from __future__ import annotations

import threading

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from market.accounts.models import Role
from market.catalog.models import Listing, ListingStatus
from market.extensions import db
from market.inventory.models import InboundEvent, SalesChannel
from market.notifications import service as notifications
from market.notifications.models import Notification
from market.outbox import OutboxMessage
from tests.conftest import needs
from tests.factories import user_with_token
from tests.inventory.conftest import Stall, create_channel, other_farmer

EVENTS = "/api/v1/inventory/events"


def _stock(listing: Listing) -> int:
    db.session.rollback()
    return db.session.scalar(select(Listing.stock_g).where(Listing.id == listing.id)) or 0


def _sale(channel_id: int, event_id: str = "pos-1", grams: int = 1500, sku: str = "ORANGE", **extra: object) -> dict:  # type: ignore[type-arg]
    return {"channel_id": channel_id, "event_id": event_id, "type": "sale", "sku": sku, "grams": grams, **extra}


def test_a_replayed_sale_is_applied_once(client: FlaskClient, stall: Stall) -> None:
    channel = create_channel(client, stall)
    first = client.post(EVENTS, json=_sale(channel["id"]), headers=stall.farmer_h)
    assert first.status_code == 201, first.json
    assert first.json["stock_after_g"] == 48_500
    again = client.post(EVENTS, json=_sale(channel["id"]), headers=stall.farmer_h)
    assert again.status_code == 200
    assert again.json == first.json
    assert _stock(stall.oranges) == 48_500
    assert len(db.session.scalars(select(InboundEvent)).all()) == 1


def test_a_return_gives_stock_back(client: FlaskClient, stall: Stall) -> None:
    channel = create_channel(client, stall)
    body = _sale(channel["id"], type="return", sku="CHESTNUT", grams=750)
    response = client.post(EVENTS, json=body, headers=stall.farmer_h)
    assert response.status_code == 201
    assert response.json["type"] == "return"
    assert _stock(stall.chestnuts) == 20_750


def test_the_same_event_id_with_other_content_is_refused(client: FlaskClient, stall: Stall) -> None:
    channel = create_channel(client, stall)
    assert client.post(EVENTS, json=_sale(channel["id"]), headers=stall.farmer_h).status_code == 201
    response = client.post(EVENTS, json=_sale(channel["id"], grams=2000), headers=stall.farmer_h)
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    assert "event_id" in response.json["errors"]
    assert _stock(stall.oranges) == 48_500


def test_an_unknown_sku_is_refused_by_field(client: FlaskClient, stall: Stall) -> None:
    channel = create_channel(client, stall)
    response = client.post(EVENTS, json=_sale(channel["id"], sku="PEACH"), headers=stall.farmer_h)
    assert response.status_code == 422
    assert "sku" in response.json["errors"]


def test_a_sale_larger_than_the_stock_is_refused_and_the_farmer_told(client: FlaskClient, stall: Stall) -> None:
    channel = create_channel(client, stall)
    response = client.post(EVENTS, json=_sale(channel["id"], sku="CHESTNUT", grams=25_000), headers=stall.farmer_h)
    assert response.status_code == 409
    assert response.json["errors"] == {"grams": ["Only 20000 g in stock."]}
    assert response.json["available_g"] == 20_000
    assert _stock(stall.chestnuts) == 20_000
    assert db.session.scalars(select(InboundEvent)).all() == []
    stored = db.session.get(SalesChannel, channel["id"])
    assert stored is not None and stored.last_error is not None and "exceeds the stock" in stored.last_error

    (told,) = [
        m for m in db.session.scalars(select(OutboxMessage)) if m.kwargs.get("event") == "inventory.sale_refused"
    ]
    ids = {k: v for k, v in told.kwargs.items() if k != "event"}
    assert notifications.handle_event("outbox-1", "inventory.sale_refused", **ids) == 1
    (email,) = db.session.scalars(select(Notification)).all()
    assert email.recipient == stall.farmer.email
    assert "25000 g" in email.body and "20000 g" in email.body

    # Not recorded, so the channel may send it again once there is stock.
    stall.chestnuts.stock_g = 30_000
    db.session.commit()
    again = client.post(EVENTS, json=_sale(channel["id"], sku="CHESTNUT", grams=25_000), headers=stall.farmer_h)
    assert again.status_code == 201
    assert _stock(stall.chestnuts) == 5_000


def test_only_the_channels_farmer_reports_its_events(client: FlaskClient, stall: Stall) -> None:
    channel = create_channel(client, stall)
    refused = client.post(EVENTS, json=_sale(channel["id"]), headers=other_farmer())
    assert refused.status_code == 422
    assert "channel_id" in refused.json["errors"]
    _, buyer_h = user_with_token(Role.BUYER)
    assert client.post(EVENTS, json=_sale(channel["id"]), headers=buyer_h).status_code == 403
    assert client.post(EVENTS, json=_sale(channel["id"])).status_code == 401
    assert _stock(stall.oranges) == 50_000


def test_malformed_events_are_refused_by_field(client: FlaskClient, stall: Stall) -> None:
    channel = create_channel(client, stall)
    for body, field in [
        (_sale(channel["id"], grams=0), "grams"),
        (_sale(channel["id"], grams=1.5), "grams"),
        (_sale(channel["id"], type="theft"), "type"),
        (_sale(channel["id"], event_id=""), "event_id"),
        (_sale(channel["id"], colour="red"), "colour"),
    ]:
        response = client.post(EVENTS, json=body, headers=stall.farmer_h)
        assert response.status_code == 422, body
        assert field in response.json["errors"], body


def test_the_same_event_sent_at_once_from_many_clients_is_applied_once(
    app: Flask, client: FlaskClient, stall: Stall
) -> None:
    needs("postgresql")
    channel = create_channel(client, stall)
    statuses: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def post() -> None:
        with app.test_client() as own:
            start.wait()
            status = own.post(EVENTS, json=_sale(channel["id"], event_id="race"), headers=stall.farmer_h).status_code
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=post) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200] * 7 + [201]
    assert _stock(stall.oranges) == 48_500


def test_concurrent_sales_never_take_stock_below_zero(app: Flask, client: FlaskClient, stall: Stall) -> None:
    needs("postgresql")
    channel = create_channel(client, stall)
    statuses: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(10)

    def post(n: int) -> None:
        body = _sale(channel["id"], event_id=f"sale-{n}", sku="CHESTNUT", grams=3_000)
        with app.test_client() as own:
            start.wait()
            status = own.post(EVENTS, json=body, headers=stall.farmer_h).status_code
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=post, args=(n,)) for n in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [201] * 6 + [409] * 4  # 20 kg in 3 kg sales
    assert _stock(stall.chestnuts) == 2_000


def test_a_recorded_sale_is_at_its_location_for_the_channels_farmer(client: FlaskClient, stall: Stall) -> None:
    channel = create_channel(client, stall)
    first = client.post(EVENTS, json=_sale(channel["id"]), headers=stall.farmer_h)
    assert first.headers["Location"] == f"/api/v1/sales-channels/{channel['id']}/events/{first.json['id']}"
    assert client.get(first.headers["Location"], headers=stall.farmer_h).json == first.json
    assert client.get(first.headers["Location"], headers=other_farmer()).status_code == 404


def test_a_return_of_an_archived_listing_is_refused_and_nothing_moves(client: FlaskClient, stall: Stall) -> None:
    channel = create_channel(client, stall)
    stall.chestnuts.status = ListingStatus.ARCHIVED
    db.session.commit()
    body = _sale(channel["id"], type="return", sku="CHESTNUT", grams=750)
    response = client.post(EVENTS, json=body, headers=stall.farmer_h)
    assert response.status_code == 409
    assert response.mimetype == "application/problem+json"
    assert response.json["errors"] == {"sku": ["The listing is archived; its stock cannot change."]}
    assert _stock(stall.chestnuts) == 20_000
    assert db.session.get(Listing, stall.chestnuts.id).status == ListingStatus.ARCHIVED  # type: ignore[union-attr]
    assert db.session.scalars(select(InboundEvent)).all() == []
    assert db.session.scalars(select(OutboxMessage)).all() == []
    stored = db.session.get(SalesChannel, channel["id"])
    assert stored is not None and stored.last_error == (
        f"Event pos-1: a return of 750 g of SKU CHESTNUT was refused: listing {stall.chestnuts.id} is archived."
    )


def test_a_sale_of_an_archived_listing_is_refused_as_not_for_sale_not_as_short_of_stock(
    client: FlaskClient, stall: Stall
) -> None:
    channel = create_channel(client, stall)
    stall.chestnuts.status = ListingStatus.ARCHIVED
    db.session.commit()
    response = client.post(EVENTS, json=_sale(channel["id"], sku="CHESTNUT", grams=100), headers=stall.farmer_h)
    assert response.status_code == 409
    assert response.mimetype == "application/problem+json"
    assert response.json["detail"] == (
        f"Listing {stall.chestnuts.id} (SKU CHESTNUT) is archived: it cannot be sold now; nothing was taken."
    )
    assert response.json["errors"] == {"sku": ["The listing is archived; it cannot be sold now."]}
    assert "available_g" not in response.json
    assert _stock(stall.chestnuts) == 20_000
    assert db.session.scalars(select(InboundEvent)).all() == []
    # No stock to check: the farmer is not told of a sale beyond it.
    assert db.session.scalars(select(OutboxMessage)).all() == []
    stored = db.session.get(SalesChannel, channel["id"])
    assert stored is not None and stored.last_error == (
        f"Event pos-1: a sale of 100 g of SKU CHESTNUT was refused: listing {stall.chestnuts.id} is archived."
    )
