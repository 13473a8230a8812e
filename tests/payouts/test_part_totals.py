"""What each order part's earned entries come to (`PartTotal`): kept as the
entries are written, recomputed by `ledger-check`, and filled in for the
entries written before the table existed."""

from __future__ import annotations

import threading
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from flask_migrate import downgrade, upgrade
from sqlalchemy import delete, event, select, update

import config
from market.db import business_today
from market.extensions import db
from market.payments import service as payments
from market.payments.service import LineRefund
from market.payouts import service as payouts
from market.payouts.models import Payout
from market.settlement import checks
from market.settlement.models import TOTALS, EntryKind, FarmEntry, PartTotal, PayoutCoverage
from tests.conftest import needs, wait_for_backends
from tests.payouts.conftest import bank_details, navel_bonus, operator, refund, run, settled_order
from tests.shop import Shop

MIGRATIONS = str(config.ROOT / "migrations")
BEFORE_PART_TOTALS = "b4e7a1c9d3f2"


def sponsored_order_partly_refunded(client: FlaskClient, shop: Shop) -> dict[str, Any]:
    """Oranges (2 kg) and nuts (500 g), each with a sponsor premium of 1 yuan
    a kg, delivered; then 500 g of the oranges refunded, which takes back
    their premium too."""
    navel_bonus(client, shop)
    order = settled_order(client, shop, (shop.oranges, 2000), (shop.nuts, 500))
    oranges = next(line for part in order["parts"] for line in part["lines"] if line["listing_id"] == shop.oranges.id)
    refund(order["id"], oranges["id"], 500)
    return order


def part_totals() -> dict[tuple[int, int], tuple[int, ...]]:
    db.session.expire_all()
    columns = ("last_entry_id", *TOTALS)
    return {
        (row.order_id, row.farm_id): tuple(getattr(row, name) for name in columns)
        for row in db.session.scalars(select(PartTotal))
    }


def test_each_part_totals_its_earned_entries_as_they_are_written(client: FlaskClient, shop: Shop) -> None:
    order = sponsored_order_partly_refunded(client, shop)
    entries = db.session.scalars(select(FarmEntry).where(FarmEntry.farm_id == shop.orchard.id)).all()
    kinds = sorted(entry.kind for entry in entries)
    assert kinds == sorted([EntryKind.SALE, EntryKind.SPONSOR_PREMIUM, EntryKind.REFUND, EntryKind.PREMIUM_REVERSAL])
    sale = next(entry for entry in entries if entry.kind == EntryKind.SALE)
    back = next(entry for entry in entries if entry.kind == EntryKind.REFUND)

    orchard = db.session.get(PartTotal, (order["id"], shop.orchard.id))
    assert orchard is not None
    assert orchard.last_entry_id == max(entry.id for entry in entries)
    assert (orchard.entries, orchard.lines, orchard.grams) == (4, 1, 2000)
    assert (orchard.sales, orchard.commission) == (sale.produce + sale.premium, sale.commission)
    assert orchard.premiums == 200 - 50  # 2 kg earned, 500 g taken back with the refund
    assert orchard.refunds == -back.net > 0
    assert orchard.net == sum(entry.net for entry in entries)
    nuts = db.session.get(PartTotal, (order["id"], shop.chestnuts.id))
    assert nuts is not None
    assert (nuts.entries, nuts.lines, nuts.grams, nuts.premiums, nuts.refunds) == (2, 1, 500, 50, 0)
    assert checks.part_total_mismatches() == []


def test_ledger_check_lists_part_totals_that_are_not_their_entries(app: Flask, client: FlaskClient, shop: Shop) -> None:
    bank_details(client, shop, shop.orchard.id)
    order = settled_order(client, shop, (shop.oranges, 1000), (shop.nuts, 500))
    run(client, shop)  # pays the orchard; the chestnuts have no payout account
    paid = db.session.scalars(select(Payout)).one()
    # A total changed by hand, a part whose totals are gone, and an entry of
    # a part no payout covers that names a payout of its own.
    db.session.execute(
        update(PartTotal).where(PartTotal.farm_id == shop.orchard.id).values(net=PartTotal.net + 1, lines=2)
    )
    orchard = db.session.get(PartTotal, (order["id"], shop.orchard.id))
    assert orchard is not None
    db.session.execute(delete(PartTotal).where(PartTotal.farm_id == shop.chestnuts.id))
    nuts = db.session.scalars(select(FarmEntry).where(FarmEntry.farm_id == shop.chestnuts.id)).one()
    db.session.execute(update(FarmEntry).where(FarmEntry.id == nuts.id).values(payout_id=paid.id))
    db.session.commit()

    result = app.test_cli_runner().invoke(args=["ledger-check"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    net = orchard.net
    assert f"order {order['id']}, farm {shop.orchard.id}: part totals say lines 2 (entries: 1), net {net} " \
        f"(entries: {net - 1})" in lines  # fmt: skip
    assert f"order {order['id']}, farm {shop.chestnuts.id}: earned entries but no part totals" in lines
    assert (
        f"sale entry {nuts.id} (order {order['id']}, farm {shop.chestnuts.id}) names payout {paid.id}, "
        "reversal None, but no payout covers its part"
    ) in lines


def test_the_migration_totals_the_entries_written_before_it(app: Flask, client: FlaskClient, shop: Shop) -> None:
    sponsored_order_partly_refunded(client, shop)
    written = part_totals()
    assert len(written) == 2
    db.session.remove()
    downgrade(directory=MIGRATIONS, revision=BEFORE_PART_TOTALS)
    upgrade(directory=MIGRATIONS)
    assert part_totals() == written
    assert checks.part_total_mismatches() == []


def test_a_run_waits_for_entries_being_written_and_pays_their_part_with_them(
    app: Flask, client: FlaskClient, shop: Shop
) -> None:
    """A refund being recorded (its entries and its part's totals written,
    not yet committed) holds a payout run back; the run then pays the part
    with the refund in it, and its coverage reaches the refund's entry."""
    needs("postgresql")
    bank_details(client, shop, shop.orchard.id)
    order = settled_order(client, shop, (shop.oranges, 2000))
    (line,) = order["parts"][0]["lines"]
    pending = payments.request_refund(operator(), order["id"], lines=[LineRefund(line["id"], 500)], reason="bruised")
    runner = operator()
    written, release = threading.Event(), threading.Event()
    recording: list[int] = []  # the recording thread

    def hold_after_the_totals(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith("INSERT INTO part_totals") and threading.get_ident() in recording:
            written.set()
            assert release.wait(30)

    def record() -> None:
        recording.append(threading.get_ident())
        with app.app_context():
            payments.process_refund(pending.id)

    def pay() -> None:
        with app.app_context():
            payouts.create_run(runner, period_end=business_today())

    event.listen(db.engine, "after_cursor_execute", hold_after_the_totals)
    try:
        recorder = threading.Thread(target=record)
        recorder.start()
        assert written.wait(30), "the refund never wrote its part's totals"
        paying = threading.Thread(target=pay)
        paying.start()
        wait_for_backends("wait_event = 'advisory'", 1, "the run waiting for the refund being recorded")
        release.set()
        recorder.join(30)
        paying.join(30)
    finally:
        release.set()
        event.remove(db.engine, "after_cursor_execute", hold_after_the_totals)
    db.session.expire_all()
    back = db.session.scalars(select(FarmEntry).where(FarmEntry.kind == EntryKind.REFUND)).one()
    sale = db.session.scalars(select(FarmEntry).where(FarmEntry.kind == EntryKind.SALE)).one()
    paid = db.session.scalars(select(Payout)).one()
    coverage = db.session.scalars(select(PayoutCoverage)).one()
    assert paid.amount == sale.net + back.net
    assert (paid.refunds, coverage.payout_id, coverage.last_entry_id) == (-back.net, paid.id, back.id)
    assert checks.check_ledger() == []
