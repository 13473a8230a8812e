"""Stripe Connect payouts against the local fake Stripe: connecting a farm,
transfers, failures (for good and transient), reversals and netting."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from market.extensions import TransientError, db
from market.ledger import service as ledger
from market.payments.gateway import OfflineGateway
from market.payouts import service as payouts
from market.payouts.models import Payout, PayoutAccount, PayoutStatus, ReversalStatus, TransferReversal
from market.settlement import checks
from tests.fakes.stripe_server import FakeStripe, FakeStripeServer
from tests.payouts.conftest import (
    account_updated,
    bank_details,
    connect_stripe,
    queued,
    refund,
    run,
    settled_order,
    stripe_overrides,
)
from tests.shop import Shop


@pytest.fixture
def app_overrides(stripe_server: FakeStripeServer) -> dict[str, Any]:
    return stripe_overrides(stripe_server)


@pytest.fixture
def fake(stripe_server: FakeStripeServer) -> FakeStripe:
    return stripe_server.fake


def only_payout() -> Payout:
    db.session.expire_all()
    return db.session.scalars(select(Payout).order_by(Payout.id.desc())).first()  # type: ignore[return-value]


def line_of(order: dict[str, Any], listing_id: int) -> int:
    return next(ln["id"] for p in order["parts"] for ln in p["lines"] if ln["listing_id"] == listing_id)


def test_connecting_a_farm_makes_an_express_account_and_an_onboarding_link(
    client: FlaskClient, shop: Shop, fake: FakeStripe
) -> None:
    url = f"/api/v1/farms/{shop.orchard.id}/payout-account"
    first = client.post(url, json={"method": "stripe"}, headers=shop.orchard_h)
    assert first.status_code == 200
    assert (first.json["status"], first.json["onboarding_url"]) == ("connecting", None)
    assert queued("payouts.connect_account") == [{"farm_id": shop.orchard.id}]
    # Asking again before the worker ran asks for nothing more.
    client.post(url, json={"method": "stripe"}, headers=shop.orchard_h)
    assert len(queued("payouts.connect_account")) == 1

    payouts.connect_account(shop.orchard.id)
    payouts.connect_account(shop.orchard.id)  # a redelivered task makes nothing new
    (account_id,) = fake.accounts
    assert fake.accounts[account_id]["type"] == "express"
    assert fake.calls["POST /v1/accounts"] == 1
    shown = client.post(url, json={"method": "stripe"}, headers=shop.orchard_h).json
    assert shown["status"] == "onboarding"
    assert shown["onboarding_url"].startswith(f"https://connect.stripe.test/setup/e/{account_id}/")
    assert shown["stripe_account_id"] == account_id
    assert len(queued("payouts.connect_account")) == 1  # the link is fresh: no new one

    enabled = fake.finish_onboarding(account_id)
    assert account_updated(client, fake, enabled).status_code == 200
    # An older event arriving late does not undo the newer state.
    stale = dict(enabled, payouts_enabled=False, capabilities={"transfers": "inactive"})
    assert account_updated(client, fake, stale, created=1).status_code == 200
    now = client.get(url, headers=shop.operator_h).json
    assert (now["status"], now["payouts_enabled"], now["transfers_active"]) == ("enabled", True, True)


def test_transfers_go_only_to_an_account_whose_transfers_capability_is_active(
    client: FlaskClient, shop: Shop, fake: FakeStripe
) -> None:
    """Stripe pays an account out to its bank (payouts_enabled) separately
    from accepting transfers to it (capabilities.transfers): the run follows
    the capability."""
    account = connect_stripe(client, shop, fake, shop.orchard.id)
    assert account.stripe_account_id is not None
    restricted = dict(fake.accounts[account.stripe_account_id], capabilities={"transfers": "pending"})
    assert account_updated(client, fake, restricted).status_code == 200
    settled_order(client, shop, (shop.oranges, 2000), fake=fake)
    assert run(client, shop).json["payouts_count"] == 0  # owed, but not sent where Stripe would refuse it
    active = dict(restricted, payouts_enabled=False, capabilities={"transfers": "active"})
    assert account_updated(client, fake, active).status_code == 200
    assert run(client, shop).json["payouts_count"] == 1


def test_a_stripe_payout_is_paid_by_one_transfer(client: FlaskClient, shop: Shop, fake: FakeStripe) -> None:
    account = connect_stripe(client, shop, fake, shop.orchard.id)
    settled_order(client, shop, (shop.oranges, 2000), fake=fake)
    run_id = run(client, shop).json["id"]
    payout = only_payout()
    assert payout.status == PayoutStatus.PENDING
    assert payouts.dispatch_run(run_id) == 1
    assert {"payout_id": payout.id} in queued("payouts.transfer")

    payouts.transfer(payout.id)
    payouts.transfer(payout.id)  # a redelivered task pays nothing more
    (transfer,) = fake.transfers.values()
    assert (transfer["amount"], transfer["destination"]) == (1998 - 100, account.stripe_account_id)
    assert transfer["transfer_group"] == f"payout-run-{run_id}"
    assert transfer["metadata"] == {"payout_id": str(payout.id)}
    assert f"payout-{payout.id}" in fake._keys
    paid = only_payout()
    assert (paid.status, paid.stripe_transfer_id) == (PayoutStatus.PAID, transfer["id"])
    assert ledger.balance(ledger.PAYOUTS_IN_TRANSIT) == 0
    assert ledger.balance("gateway_cash:stripe") == 100  # the commission stays
    assert checks.check_ledger() == []

    by_hand = client.post(f"/api/v1/payouts/{paid.id}/confirm", json={"bank_reference": "X"}, headers=shop.operator_h)
    assert by_hand.status_code == 409
    assert by_hand.mimetype == "application/problem+json"


def test_a_refused_transfer_fails_with_stripes_reason_and_can_be_retried(
    client: FlaskClient, shop: Shop, fake: FakeStripe
) -> None:
    connect_stripe(client, shop, fake, shop.orchard.id)
    settled_order(client, shop, (shop.oranges, 1000), fake=fake)
    run(client, shop)
    payout = only_payout()
    fake.available_balance = 100

    payouts.transfer(payout.id)
    failed = only_payout()
    assert failed.status == PayoutStatus.FAILED
    assert failed.failure_reason == "You have insufficient available funds in your Stripe account."
    listed = client.get("/api/v1/payouts", query_string={"status": "failed"}, headers=shop.operator_h).json
    assert [p["failure_reason"] for p in listed["items"]] == [failed.failure_reason]
    assert fake.transfers == {}
    assert ledger.balance(ledger.PAYOUTS_IN_TRANSIT) == -949  # still owed to the farm

    fake.available_balance = None
    retried = client.post(f"/api/v1/payouts/{payout.id}/retry", headers=shop.operator_h)
    assert retried.status_code == 200
    assert retried.json["status"] == "pending"
    assert client.post(f"/api/v1/payouts/{payout.id}/retry", headers=shop.operator_h).status_code == 409
    payouts.transfer(payout.id)
    assert only_payout().status == PayoutStatus.PAID
    assert len(fake.transfers) == 1
    assert checks.check_ledger() == []


def test_a_transient_failure_is_retried_and_pays_once(client: FlaskClient, shop: Shop, fake: FakeStripe) -> None:
    connect_stripe(client, shop, fake, shop.orchard.id)
    settled_order(client, shop, (shop.oranges, 1000), fake=fake)
    run(client, shop)
    payout = only_payout()
    fake.fail_next.extend([("/v1/transfers", 500)] * 3)  # outlasts the client's own two retries
    with pytest.raises(TransientError):
        payouts.transfer(payout.id)
    assert only_payout().status == PayoutStatus.PENDING
    payouts.transfer(payout.id)
    assert only_payout().status == PayoutStatus.PAID
    assert len(fake.transfers) == 1


def test_a_refund_after_a_transfer_is_reversed_from_it(client: FlaskClient, shop: Shop, fake: FakeStripe) -> None:
    connect_stripe(client, shop, fake, shop.orchard.id)
    order = settled_order(client, shop, (shop.oranges, 2000), fake=fake)
    run(client, shop)
    first = only_payout()
    payouts.transfer(first.id)
    refund(order["id"], line_of(order, shop.oranges.id), 1000)  # 9.99 back, 0.50 commission back

    second_run = run(client, shop).json
    assert (second_run["payouts_count"], second_run["reversals_count"]) == (0, 1)
    reversal = db.session.scalars(select(TransferReversal)).one()
    assert (reversal.amount, reversal.payout_id) == (999 - 50, first.id)
    assert {"reversal_id": reversal.id} in queued("payouts.reverse")
    payouts.reverse(reversal.id)
    payouts.reverse(reversal.id)
    transfer = fake.transfers[first.stripe_transfer_id or ""]
    assert transfer["amount_reversed"] == 949
    assert ledger.balance(ledger.farm_payable(shop.orchard.id)) == 0
    assert checks.check_ledger() == []

    statement = client.get(f"/api/v1/payouts/{first.id}", headers=shop.orchard_h).json
    (shown,) = statement["reversals"]
    assert (shown["amount"], shown["status"]) == (949, "succeeded")
    assert [(r["grams"], r["amount"], r["commission"], r["net"]) for r in shown["refunds"]] == [(1000, 999, 50, 949)]
    # A third run finds nothing more to recover.
    assert run(client, shop).json["reversals_count"] == 0


def test_a_refund_not_recovered_by_reversal_is_netted_from_the_next_payout(
    client: FlaskClient, shop: Shop, fake: FakeStripe
) -> None:
    connect_stripe(client, shop, fake, shop.orchard.id)
    order = settled_order(client, shop, (shop.oranges, 2000), fake=fake)
    run(client, shop)
    payouts.transfer(only_payout().id)
    refund(order["id"], line_of(order, shop.oranges.id), 1000)
    run(client, shop)
    reversal = db.session.scalars(select(TransferReversal)).one()
    fake.refuse_next.append(("/v1/transfers/", "The connected account's balance is too low to reverse this."))
    payouts.reverse(reversal.id)
    db.session.expire_all()
    assert reversal.status == ReversalStatus.FAILED

    settled_order(client, shop, (shop.pomelos, 2000), fake=fake)  # 16.00, commission 0.80
    run(client, shop)
    netted = only_payout()
    assert (netted.sales, netted.commission, netted.adjustments) == (1600, 80, 949)
    assert netted.amount == 1600 - 80 - 949
    statement = client.get(f"/api/v1/payouts/{netted.id}", headers=shop.orchard_h).json
    assert [(a["grams"], a["net"]) for a in statement["adjustments"]] == [(1000, 949)]
    payouts.transfer(netted.id)
    assert fake.transferred_to(netted.stripe_account_id or "") == 1898 + 571
    assert checks.check_ledger() == []


def test_a_bank_farms_refund_after_payment_is_netted(client: FlaskClient, shop: Shop, fake: FakeStripe) -> None:
    bank_details(client, shop, shop.chestnuts.id)
    order = settled_order(client, shop, (shop.nuts, 1000), fake=fake)  # 24.00, commission 1.20
    run(client, shop)
    refund(order["id"], line_of(order, shop.nuts.id), 250)  # 6.00 back, 0.30 commission back
    # Nothing new to pay: the farm owes 5.70, so no payout until it earns more.
    assert run(client, shop).json["payouts_count"] == 0
    assert ledger.balance(ledger.farm_payable(shop.chestnuts.id)) == 570
    settled_order(client, shop, (shop.nuts, 500), fake=fake)  # 12.00, commission 0.60
    run(client, shop)
    netted = only_payout()
    assert (netted.sales, netted.commission, netted.adjustments, netted.amount) == (1200, 60, 570, 570)
    assert db.session.scalar(select(func.count()).select_from(TransferReversal)) == 0
    assert checks.check_ledger() == []


def test_offline_gateway_cannot_connect_stripe(client: FlaskClient, shop: Shop) -> None:
    client.application.extensions["payment_gateway"] = OfflineGateway()
    client.post(f"/api/v1/farms/{shop.orchard.id}/payout-account", json={"method": "stripe"}, headers=shop.orchard_h)
    account = payouts.connect_account(shop.orchard.id)
    assert isinstance(account, PayoutAccount)
    assert account.stripe_account_id is None
    assert "not configured" in (account.attention or "")
