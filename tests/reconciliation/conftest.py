"""A Stripe marketplace with a period's worth of money movements: captures,
a refund, transfers to two farms and a transfer reversal."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from market.db import utcnow
from market.extensions import db
from market.payouts import service as payouts
from market.payouts.models import Payout, TransferReversal
from market.reconciliation import service as reconciliation
from tests.fakes.stripe_server import FakeStripe, FakeStripeServer
from tests.payouts.conftest import connect_stripe, queued, refund, run, settled_order
from tests.payouts.conftest import operator as operator  # noqa: PLC0414 (re-exported for the tests)
from tests.shop import Shop

# What busy_period leaves at the gateway: 4 charges, 2 refunds, 5 transfers (one per
# order's charge: the first run pays the orchard's three orders and the chestnuts'
# one, the second the last order) and 1 reversal.
RECORDS = 12
# The items they make: a payout's transfers together match its one payout_paid.
ITEMS = 10
# Its reconciliation when gateway and ledger agree: every item matched, a fee on each charge to resolve.
CLEAN = {
    "matched": ITEMS,
    "missing_at_gateway": 0,
    "missing_in_ledger": 0,
    "amount_differs": 0,
    "currency_differs": 0,
    "fee": 4,
    "unresolved": 4,
}


@pytest.fixture
def stripe_server() -> Iterator[FakeStripeServer]:
    with FakeStripeServer() as server:
        yield server


@pytest.fixture
def fake(stripe_server: FakeStripeServer) -> FakeStripe:
    return stripe_server.fake


@dataclass
class Period:
    start: datetime
    orders: list[dict[str, Any]]
    payouts: list[Payout]
    reversal: TransferReversal

    def body(self) -> dict[str, str]:
        return {"period_start": self.start.isoformat(), "period_end": utcnow().isoformat()}


def line_of(order: dict[str, Any], listing_id: int) -> int:
    return next(ln["id"] for p in order["parts"] for ln in p["lines"] if ln["listing_id"] == listing_id)


def busy_period(client: FlaskClient, shop: Shop, fake: FakeStripe) -> Period:
    """Four captured orders, two runs of transfers, a refund after a
    transfer taken back by reversal, and a refund netted: 4 charges,
    3 transfers, 2 refunds and 1 reversal at the gateway."""
    start = utcnow() - timedelta(seconds=2)
    connect_stripe(client, shop, fake, shop.orchard.id)
    connect_stripe(client, shop, fake, shop.chestnuts.id)
    orders = [
        settled_order(client, shop, (shop.oranges, 2000), fake=fake),
        settled_order(client, shop, (shop.oranges, 1000), (shop.nuts, 1000), fake=fake),
        settled_order(client, shop, (shop.pomelos, 3000), fake=fake),
    ]
    assert run(client, shop).status_code == 201
    for payout in db.session.scalars(select(Payout)).all():
        payouts.transfer(payout.id)
    refund(orders[0]["id"], line_of(orders[0], shop.oranges.id), 1000)
    orders.append(settled_order(client, shop, (shop.pomelos, 1500), fake=fake))
    refund(orders[3]["id"], line_of(orders[3], shop.pomelos.id), 500)
    assert run(client, shop).status_code == 201
    (reversal,) = db.session.scalars(select(TransferReversal)).all()
    payouts.reverse(reversal.id)
    paid = db.session.scalars(select(Payout).order_by(Payout.id)).all()
    for payout in paid:
        payouts.transfer(payout.id)
    db.session.expire_all()
    return Period(start=start, orders=orders, payouts=list(paid), reversal=reversal)


def reconcile(client: FlaskClient, shop: Shop, body: dict[str, str]) -> dict[str, Any]:
    """Ask for a run as an operator, then do what its queued task does."""
    started = client.post("/api/v1/reconciliations", json=body, headers=shop.operator_h)
    assert started.status_code == 201, started.json
    assert {"run_id": started.json["id"]} in queued("reconciliation.run")
    reconciliation.perform(started.json["id"])
    shown = client.get(f"/api/v1/reconciliations/{started.json['id']}", headers=shop.operator_h)
    assert shown.status_code == 200
    return shown.json  # type: ignore[no-any-return]


def items(client: FlaskClient, shop: Shop, run_id: int, **query: Any) -> list[dict[str, Any]]:
    """Every item of the run, following the cursor page by page."""
    found: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {"limit": 3, **query} | ({"cursor": cursor} if cursor else {})
        page = client.get(f"/api/v1/reconciliations/{run_id}/items", query_string=params, headers=shop.operator_h)
        assert page.status_code == 200, page.json
        found.extend(page.json["items"])
        cursor = page.json["next_cursor"]
        if cursor is None:
            return found


def by_outcome(found: list[dict[str, Any]], outcome: str) -> list[dict[str, Any]]:
    return [item for item in found if item["outcome"] == outcome]
