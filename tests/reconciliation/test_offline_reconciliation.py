"""Offline money reconciles against the operators' confirmations: each
offline receipt and bank payout (to a farm or a seller) in the ledger
against the Payment, Payout or seller payout record it confirmed."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select, update

from market.commissions.models import SellerPayout, SellerPayoutStatus
from market.db import utcnow
from market.extensions import db
from market.payouts.models import Payout, PayoutStatus
from tests.commissions.test_commissions import BANK, make_host
from tests.payouts.conftest import bank_details, run, settled_order
from tests.reconciliation.conftest import items, reconcile
from tests.shop import Shop


@pytest.fixture
def app_overrides() -> dict[str, Any]:
    return {"PAYOUT_HOLD_DAYS": 0, "COMMISSION_BP": 500, "HOST_COMMISSION_BP": 200}


def test_receipts_and_bank_payouts_match_their_confirmations(client: FlaskClient, shop: Shop) -> None:
    start = utcnow()
    bank_details(client, shop, shop.orchard.id)
    bank_details(client, shop, shop.chestnuts.id)
    orders = [
        settled_order(client, shop, (shop.oranges, 2000)),
        settled_order(client, shop, (shop.nuts, 1000)),
    ]
    assert run(client, shop).status_code == 201
    orchard, chestnuts = db.session.scalars(select(Payout).order_by(Payout.farm_id)).all()
    confirmed = client.post(
        f"/api/v1/payouts/{orchard.id}/confirm", json={"bank_reference": "ABC-1"}, headers=shop.operator_h
    )
    assert confirmed.status_code == 200
    # A record says paid, but no operator confirmed it, so the ledger never saw it.
    db.session.execute(
        update(Payout).where(Payout.id == chestnuts.id).values(status=PayoutStatus.PAID, paid_at=utcnow())
    )
    db.session.commit()

    result = reconcile(client, shop, {"period_start": start.isoformat(), "period_end": utcnow().isoformat()})

    assert result["counts"] | {"unresolved": 0} == {
        "matched": 3,
        "missing_at_gateway": 0,
        "missing_in_ledger": 1,
        "amount_differs": 0,
        "currency_differs": 0,
        "fee": 0,
        "unresolved": 0,
    }
    found: list[dict[str, Any]] = items(client, shop, result["id"])
    receipts = [i for i in found if i["object_type"] == "offline_receipt"]
    assert sorted(i["order_id"] for i in receipts) == sorted(o["id"] for o in orders)
    assert all(i["provider"] == "offline" and i["gateway_amount"] == i["ledger_amount"] for i in receipts)
    bank = {i["outcome"]: i for i in found if i["object_type"] == "bank_payout"}
    assert bank["matched"]["object_id"] == "ABC-1"
    assert (bank["matched"]["gateway_amount"], bank["matched"]["ledger_amount"]) == (-orchard.amount, -orchard.amount)
    assert (bank["missing_in_ledger"]["gateway_amount"], bank["missing_in_ledger"]["ledger_amount"]) == (
        -chestnuts.amount,
        None,
    )


def test_seller_payouts_match_their_confirmations(client: FlaskClient, shop: Shop) -> None:
    start = utcnow()
    make_host(client, shop, rate_bp=200, **BANK)
    make_host(client, shop, rate_bp=200, code="LI-LIVE", **BANK)
    settled_order(client, shop, (shop.oranges, 2000), attribution_code="hong-live")
    settled_order(client, shop, (shop.oranges, 1000), attribution_code="li-live")
    made = run(client, shop)
    assert made.status_code == 201, made.json
    paid, unconfirmed = db.session.scalars(select(SellerPayout).order_by(SellerPayout.id)).all()
    confirm = f"/api/v1/seller-payouts/{paid.id}/confirm"
    assert client.post(confirm, json={"bank_reference": "XW-77"}, headers=shop.operator_h).status_code == 200
    # A record says paid, but no operator confirmed it, so the ledger never saw it.
    db.session.execute(
        update(SellerPayout)
        .where(SellerPayout.id == unconfirmed.id)
        .values(status=SellerPayoutStatus.PAID, paid_at=utcnow())
    )
    db.session.commit()

    result = reconcile(client, shop, {"period_start": start.isoformat(), "period_end": utcnow().isoformat()})

    found: list[dict[str, Any]] = items(client, shop, result["id"])
    sellers = {i["outcome"]: i for i in found if i["object_type"] == "seller_payout"}
    assert set(sellers) == {"matched", "missing_in_ledger"}
    assert sellers["matched"]["object_id"] == "XW-77"
    assert sellers["matched"]["ledger_reference"] == f"seller_payout:{paid.id}:paid"
    assert (sellers["matched"]["gateway_amount"], sellers["matched"]["ledger_amount"]) == (-paid.amount, -paid.amount)
    assert (sellers["missing_in_ledger"]["gateway_amount"], sellers["missing_in_ledger"]["ledger_amount"]) == (
        -unconfirmed.amount,
        None,
    )
    # Nothing else is left over: the receipts match, and no payout is counted twice.
    assert result["counts"]["missing_at_gateway"] == 0
    assert result["counts"]["missing_in_ledger"] == 1
