"""`flask ledger-check`: silent success on a consistent ledger; every
mismatch listed, and a non-zero exit, otherwise."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from market.extensions import db
from market.ledger import service as ledger
from market.ledger.models import LedgerAccount, LedgerEntry, LedgerTransaction
from market.money import CurrencyMismatch
from market.payouts.models import Payout
from market.settlement.models import EntryKind, FarmEntry, PayoutCoverage
from tests.payouts.conftest import bank_details, run, settled_order
from tests.shop import Shop


def test_a_consistent_ledger_passes(app: Flask, client: FlaskClient, shop: Shop) -> None:
    bank_details(client, shop, shop.orchard.id)
    settled_order(client, shop, (shop.oranges, 1000), (shop.nuts, 500))
    run(client, shop)
    result = app.test_cli_runner().invoke(args=["ledger-check"])
    assert result.exit_code == 0, result.output
    assert "consistent" in result.output


def test_every_mismatch_is_listed_and_the_exit_is_non_zero(app: Flask, client: FlaskClient, shop: Shop) -> None:
    bank_details(client, shop, shop.orchard.id)
    settled_order(client, shop, (shop.oranges, 1000))
    run(client, shop)
    # An entry changed by hand unbalances its transaction and the farm's payable ...
    capture = db.session.scalars(select(LedgerTransaction).where(LedgerTransaction.kind == "capture")).one()
    farm_account = db.session.scalars(
        select(LedgerAccount).where(LedgerAccount.code == ledger.farm_payable(shop.orchard.id))
    ).one()
    db.session.execute(
        update(LedgerEntry)
        .where(LedgerEntry.transaction_id == capture.id, LedgerEntry.account_id == farm_account.id)
        .values(amount=LedgerEntry.amount - 1)
    )
    # ... and a payout whose amount no longer matches its ledger transaction.
    db.session.execute(update(Payout).values(amount=Payout.amount + 5, sales=Payout.sales + 5))
    db.session.commit()

    result = app.test_cli_runner().invoke(args=["ledger-check"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert any("payment:" in line and "does not balance" in line for line in lines)
    assert any(line.startswith(f"farm {shop.orchard.id}: farm_payable:{shop.orchard.id} owes ") for line in lines)
    assert any(line.startswith("payout ") and "the entries it settled add up to" in line for line in lines)
    assert any(line.startswith("payouts_in_transit is ") for line in lines)
    assert len(lines) == 4


def test_an_entry_paid_twice_or_a_part_covered_by_another_farms_payout_is_listed(
    app: Flask, client: FlaskClient, shop: Shop
) -> None:
    bank_details(client, shop, shop.orchard.id)
    bank_details(client, shop, shop.chestnuts.id)
    settled_order(client, shop, (shop.oranges, 1000), (shop.nuts, 500))
    run(client, shop)
    orchard, chestnuts = (
        db.session.scalars(select(Payout).where(Payout.farm_id == farm.id)).one()
        for farm in (shop.orchard, shop.chestnuts)
    )
    # The orchard's sale, covered by its part's coverage, also names a payout ...
    sale = db.session.scalars(
        select(FarmEntry).where(FarmEntry.farm_id == shop.orchard.id, FarmEntry.kind == EntryKind.SALE)
    ).one()
    db.session.execute(update(FarmEntry).where(FarmEntry.id == sale.id).values(payout_id=orchard.id))
    # ... and the chestnuts' part is said to be covered by the orchard's payout.
    db.session.execute(
        update(PayoutCoverage).where(PayoutCoverage.farm_id == shop.chestnuts.id).values(payout_id=orchard.id)
    )
    db.session.commit()

    result = app.test_cli_runner().invoke(args=["ledger-check"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    twice = f"sale entry {sale.id} is covered by payout {orchard.id} but names payout {orchard.id}, reversal None"
    assert twice in lines
    assert any(
        line.endswith(f"farm {shop.chestnuts.id}: covered by payout {orchard.id}, which paid farm {shop.orchard.id}")
        for line in lines
    )
    # Each payout is no longer what it paid: the orchard's counts its sale twice, the chestnuts' nothing.
    assert any(line.startswith(f"payout {orchard.id} of ") for line in lines)
    assert any(line.startswith(f"payout {chestnuts.id} of ") for line in lines)


def test_each_currency_balances_on_its_own_and_a_transaction_never_mixes_two(app: Flask) -> None:
    fees, cash = ledger.in_currency("gateway_fees", "USD"), ledger.in_currency("gateway_cash:stripe", "USD")
    assert (fees, cash) == ("gateway_fees:USD", "gateway_cash:stripe:USD")
    assert ledger.in_currency("gateway_fees", "CNY") == "gateway_fees"
    ledger.post("gateway_fee", "gateway_fee:txn_1", {fees: 88, cash: -88}, currency="USD")
    db.session.commit()
    assert {a.code: a.currency for a in db.session.scalars(select(LedgerAccount))} == {fees: "USD", cash: "USD"}
    with pytest.raises(CurrencyMismatch, match="gateway_fees:USD holds USD"):
        ledger.post("gateway_fee", "gateway_fee:txn_2", {fees: 5, "gateway_cash:stripe": -5})
    db.session.rollback()
    assert app.test_cli_runner().invoke(args=["ledger-check"]).exit_code == 0

    # Amounts that add up to zero only across two currencies balance in neither.
    ledger.post("capture", "payment:1:capture", {"gateway_cash:stripe": 100, "buyer_deposits": -100})
    mixed = db.session.scalars(select(LedgerEntry).join(LedgerAccount).where(LedgerAccount.code == fees)).one()
    db.session.execute(
        update(LedgerEntry)
        .where(LedgerEntry.account_id == mixed.account_id)
        .values(account_id=select(LedgerAccount.id).where(LedgerAccount.code == "buyer_deposits").scalar_subquery())
    )
    db.session.commit()
    result = app.test_cli_runner().invoke(args=["ledger-check"])
    assert result.exit_code == 1
    assert "transaction gateway_fee:txn_1 does not balance: debits exceed credits by 88 CNY" in result.output
    assert "transaction gateway_fee:txn_1 does not balance: debits exceed credits by -88 USD" in result.output
