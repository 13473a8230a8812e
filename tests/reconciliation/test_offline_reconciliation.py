"""Offline money reconciles against the operators' confirmations: each
offline receipt and bank payout in the ledger against the Payment or Payout
record it confirmed."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select, update

from market.db import utcnow
from market.extensions import db
from market.payouts.models import Payout, PayoutStatus
from tests.payouts.conftest import bank_details, run, settled_order
from tests.reconciliation.conftest import items, reconcile
from tests.shop import Shop


@pytest.fixture
def app_overrides() -> dict[str, Any]:
    return {"PAYOUT_HOLD_DAYS": 0}


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
