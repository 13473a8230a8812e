"""The stock functions the orders domain calls: take_stock and return_stock;
and stock at the scale of a county's harvest."""

from __future__ import annotations

import threading

import pytest
from flask import Flask
from flask.testing import FlaskClient

from market.catalog import service
from market.catalog.models import FarmStatus, Listing, ListingStatus
from market.catalog.service import OutOfStock, StockLine
from market.errors import Invalid, NotFound
from market.extensions import db
from tests.conftest import needs
from tests.factories import FarmFactory, ListingFactory
from tests.shop import Shop, place


def stock_and_status(listing_id: int) -> tuple[int, ListingStatus]:
    db.session.expire_all()
    listing = db.session.get(Listing, listing_id)
    assert listing is not None
    return listing.stock_g, listing.status


def test_take_stock_decrements_and_sells_out_at_zero(app: Flask) -> None:
    oranges = ListingFactory(stock_g=5000)
    chestnuts = ListingFactory(stock_g=9000)
    service.take_stock([StockLine(chestnuts.id, 1000), StockLine(oranges.id, 3000), StockLine(oranges.id, 2000)])
    db.session.commit()
    assert stock_and_status(oranges.id) == (0, ListingStatus.SOLD_OUT)
    assert stock_and_status(chestnuts.id) == (8000, ListingStatus.ACTIVE)


def test_take_stock_refuses_more_than_is_left_and_leaves_it_to_the_caller_to_roll_back(app: Flask) -> None:
    first = ListingFactory(stock_g=5000)
    second = ListingFactory(stock_g=1000)
    with pytest.raises(OutOfStock) as refused:
        service.take_stock([StockLine(first.id, 2000), StockLine(second.id, 1500)])
    db.session.rollback()
    assert refused.value.extra == {"listing_id": second.id, "available_g": 1000}
    assert stock_and_status(first.id) == (5000, ListingStatus.ACTIVE)
    assert stock_and_status(second.id) == (1000, ListingStatus.ACTIVE)


@pytest.mark.parametrize("status", [ListingStatus.DRAFT, ListingStatus.PAUSED, ListingStatus.ARCHIVED])
def test_take_stock_refuses_listings_not_on_sale(app: Flask, status: ListingStatus) -> None:
    listing = ListingFactory(stock_g=5000, status=status)
    with pytest.raises(OutOfStock):
        service.take_stock([StockLine(listing.id, 1000)])
    db.session.rollback()
    assert stock_and_status(listing.id) == (5000, status)


def test_take_stock_refuses_listings_of_farms_not_verified(app: Flask) -> None:
    listing = ListingFactory(stock_g=5000, farm=FarmFactory(status=FarmStatus.SUSPENDED))
    with pytest.raises(OutOfStock) as refused:
        service.take_stock([StockLine(listing.id, 1000)])
    assert "cannot be bought" in refused.value.detail


def test_take_stock_refuses_non_positive_grams(app: Flask) -> None:
    listing = ListingFactory(stock_g=5000)
    with pytest.raises(Invalid):
        service.take_stock([StockLine(listing.id, 0)])


def test_return_stock_restocks_and_reactivates_a_sold_out_listing(app: Flask) -> None:
    sold_out = ListingFactory(stock_g=0, status=ListingStatus.SOLD_OUT)
    archived = ListingFactory(stock_g=0, status=ListingStatus.ARCHIVED)
    service.return_stock([StockLine(sold_out.id, 2500), StockLine(archived.id, 1000)])
    db.session.commit()
    assert stock_and_status(sold_out.id) == (2500, ListingStatus.ACTIVE)
    assert stock_and_status(archived.id) == (1000, ListingStatus.ARCHIVED)
    with pytest.raises(NotFound):
        service.return_stock([StockLine(999_999, 1000)])


def test_stock_changes_move_updated_at(app: Flask) -> None:
    listing = ListingFactory(stock_g=5000)
    before = listing.updated_at
    service.take_stock([StockLine(listing.id, 1000)])
    db.session.commit()
    db.session.expire_all()
    assert db.session.get(Listing, listing.id).updated_at > before  # type: ignore[union-attr]


def test_an_order_on_a_listing_stocked_past_a_32_bit_integer_of_grams_can_be_cancelled(
    client: FlaskClient, shop: Shop
) -> None:
    """Three harvest lots of 1,000 t put over 2,147,483,647 g on one
    listing; orders on it still take their grams and give them back."""
    for day in (10, 20, 30):
        lot = {"code": f"XW-2026-11-{day}", "harvest_date": f"2026-11-{day}", "grams": 1_000_000_000}
        created = client.post(f"/api/v1/listings/{shop.oranges.id}/lots", json=lot, headers=shop.orchard_h)
        assert created.status_code == 201, created.json
    stocked = 100_000 + 3_000_000_000
    assert stock_and_status(shop.oranges.id) == (stocked, ListingStatus.ACTIVE)
    order = place(client, shop, (shop.oranges, 2000))
    assert stock_and_status(shop.oranges.id)[0] == stocked - 2000

    cancel = client.post(f"/api/v1/orders/{order['id']}/cancel", json={"reason": "ordered twice"}, headers=shop.buyer_h)
    assert cancel.status_code == 200, cancel.json
    assert cancel.json["status"] == "cancelled"
    assert stock_and_status(shop.oranges.id) == (stocked, ListingStatus.ACTIVE)


def test_the_purchasable_filter_selects_active_listings_of_verified_farms(app: Flask) -> None:
    on_sale = ListingFactory()
    ListingFactory(status=ListingStatus.PAUSED)
    ListingFactory(farm=FarmFactory(status=FarmStatus.PENDING))
    ListingFactory(farm=FarmFactory(status=FarmStatus.SUSPENDED))
    found = db.session.scalars(db.select(Listing.id).where(service.purchasable_listing_filter())).all()
    assert found == [on_sale.id]


def test_concurrent_buyers_never_oversell(app: Flask) -> None:
    needs("postgresql")
    listing_id = ListingFactory(stock_g=10_000).id
    buyers = 25
    start = threading.Barrier(buyers)
    outcomes: list[str] = []
    lock = threading.Lock()

    def buy() -> None:
        with app.app_context():
            start.wait()
            try:
                service.take_stock([StockLine(listing_id, 1000)])
                db.session.commit()
                outcome = "bought"
            except OutOfStock:
                db.session.rollback()
                outcome = "refused"
            finally:
                db.session.remove()
            with lock:
                outcomes.append(outcome)

    threads = [threading.Thread(target=buy) for _ in range(buyers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert outcomes.count("bought") == 10
    assert outcomes.count("refused") == buyers - 10
    assert stock_and_status(listing_id) == (0, ListingStatus.SOLD_OUT)


@pytest.mark.parametrize(
    ("grams", "accepted"), [(2500, True), (5000, True), (7500, True), (2000, False), (6000, False)]
)
def test_an_order_quantity_must_reach_the_minimum_in_whole_steps(app: Flask, grams: int, accepted: bool) -> None:
    listing = ListingFactory(min_order_g=2500, step_g=2500)
    assert listing.accepts_grams(grams) is accepted
