"""Stripe Connect payouts against the local fake Stripe: connecting a farm,
transfers, failures (for good and transient), reversals and netting."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from market.db import utcnow
from market.extensions import TransientError, db
from market.ledger import service as ledger
from market.payments.gateway import OfflineGateway, gateway
from market.payouts import service as payouts
from market.payouts.models import (
    Payout,
    PayoutAccount,
    PayoutStatus,
    ReversalStatus,
    TransferReversal,
)
from market.payouts.transfers import KEY_LIFETIME
from market.settlement import checks
from tests.fakes.stripe_server import FakeStripe, FakeStripeServer
from tests.payouts.conftest import (
    account_updated,
    bank_details,
    connect_stripe,
    payment_of,
    queued,
    refund,
    run,
    settled_order,
    stripe_overrides,
)
from tests.premiums.test_premiums import programme
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
    held = run(client, shop).json
    assert held["payouts_count"] == 0  # owed, but not sent where Stripe would refuse it
    assert [(s["farm_id"], s["reason"], s["amount"]) for s in held["skipped"]] == [
        (shop.orchard.id, "stripe_transfers_inactive", 1998 - 100)
    ]
    active = dict(restricted, payouts_enabled=False, capabilities={"transfers": "active"})
    assert account_updated(client, fake, active).status_code == 200
    paid = run(client, shop).json
    assert (paid["payouts_count"], paid["skipped"]) == (1, [])


def test_a_stripe_payout_is_paid_by_a_transfer_drawn_on_its_orders_charge(
    client: FlaskClient, shop: Shop, fake: FakeStripe
) -> None:
    account = connect_stripe(client, shop, fake, shop.orchard.id)
    order = settled_order(client, shop, (shop.oranges, 2000), fake=fake)
    charge = payment_of(order["id"]).stripe_charge_id
    assert charge is not None and charge in fake.charges  # the capture's latest_charge
    run_id = run(client, shop).json["id"]
    payout = only_payout()
    assert payout.status == PayoutStatus.PENDING
    assert payouts.dispatch_run(run_id) == 1
    assert {"payout_id": payout.id} in queued("payouts.transfer")

    payouts.transfer(payout.id)
    payouts.transfer(payout.id)  # a redelivered task pays nothing more
    (transfer,) = fake.transfers.values()
    assert (transfer["amount"], transfer["destination"]) == (1998 - 100, account.stripe_account_id)
    assert transfer["source_transaction"] == charge
    assert transfer["transfer_group"] == f"payout-run-{run_id}"
    assert transfer["metadata"] == {"payout_id": str(payout.id), "order_id": str(order["id"])}
    assert f"payout-{payout.id}-order-{order['id']}" in fake._keys
    paid = only_payout()
    assert (paid.status, paid.stripe_transfer_id) == (PayoutStatus.PAID, transfer["id"])
    assert [(t.order_id, t.amount, t.stripe_transfer_id) for t in paid.transfers] == [
        (order["id"], 1898, transfer["id"])
    ]
    assert ledger.balance(ledger.PAYOUTS_IN_TRANSIT) == 0
    assert ledger.balance("gateway_cash:stripe") == 100  # the commission stays
    assert checks.check_ledger() == []

    by_hand = client.post(f"/api/v1/payouts/{paid.id}/confirm", json={"bank_reference": "X"}, headers=shop.operator_h)
    assert by_hand.status_code == 409
    assert by_hand.mimetype == "application/problem+json"


def test_a_payout_is_paid_with_no_available_balance_each_order_from_its_charge(
    client: FlaskClient, shop: Shop, fake: FakeStripe
) -> None:
    """Each transfer draws on its order's charge, so it is made before the
    charges' money is available to the platform."""
    connect_stripe(client, shop, fake, shop.orchard.id)
    first = settled_order(client, shop, (shop.oranges, 2000), fake=fake)  # 19.98, commission 1.00
    second = settled_order(client, shop, (shop.pomelos, 1500), fake=fake)  # 12.00, commission 0.60
    run(client, shop)
    payout = only_payout()
    assert payout.amount == 1898 + 1140
    fake.available_balance = 0

    payouts.transfer(payout.id)
    paid = only_payout()
    assert paid.status == PayoutStatus.PAID
    assert paid.stripe_transfer_id is None  # paid by two transfers, each on its own row
    made = {t["source_transaction"]: t for t in fake.transfers.values()}
    charges = {order["id"]: payment_of(order["id"]).stripe_charge_id for order in (first, second)}
    assert {charge: t["amount"] for charge, t in made.items()} == {
        charges[first["id"]]: 1898,
        charges[second["id"]]: 1140,
    }
    assert [(t.order_id, t.stripe_charge_id, t.stripe_transfer_id) for t in paid.transfers] == [
        (first["id"], charges[first["id"]], made[charges[first["id"]]]["id"]),
        (second["id"], charges[second["id"]], made[charges[second["id"]]]["id"]),
    ]
    assert fake.available_balance == 0
    assert ledger.balance(ledger.PAYOUTS_IN_TRANSIT) == 0
    assert checks.check_ledger() == []


def test_what_no_charge_covers_goes_from_the_balance_and_a_refusal_keeps_what_was_made(
    client: FlaskClient, shop: Shop, fake: FakeStripe
) -> None:
    """A sponsor premium beyond the commission makes the farm's share more
    than the buyer's charge: the rest is one transfer from the balance.
    Refused for want of balance, it fails the payout; the transfer already
    drawn on the charge stays made, and the retry makes only the other."""
    programme(client, shop, funded_by="sponsor", rate_per_kg=100, budget_cap=10_000)
    connect_stripe(client, shop, fake, shop.orchard.id)
    order = settled_order(client, shop, (shop.oranges, 2000), fake=fake)  # 19.98 charged; 18.98 + 2.00 earned
    run(client, shop)
    payout = only_payout()
    assert payout.amount == 2098
    assert sorted((t.order_id or 0, t.amount) for t in payout.transfers) == [(0, 100), (order["id"], 1998)]
    fake.available_balance = 50

    payouts.transfer(payout.id)
    failed = only_payout()
    assert failed.status == PayoutStatus.FAILED
    assert failed.failure_reason == "You have insufficient available funds in your Stripe account."
    (drawn,) = fake.transfers.values()
    assert (drawn["amount"], drawn["source_transaction"]) == (1998, payment_of(order["id"]).stripe_charge_id)
    assert [t.stripe_transfer_id for t in failed.transfers if t.order_id] == [drawn["id"]]
    assert ledger.balance(ledger.PAYOUTS_IN_TRANSIT) == -2098  # not paid until every transfer is made

    fake.available_balance = 100
    assert client.post(f"/api/v1/payouts/{payout.id}/retry", headers=shop.operator_h).status_code == 200
    payouts.transfer(payout.id)
    paid = only_payout()
    assert paid.status == PayoutStatus.PAID
    assert sorted((t["amount"], t["source_transaction"] or "") for t in fake.transfers.values()) == [
        (100, ""),
        (1998, drawn["source_transaction"]),
    ]
    assert f"payout-{payout.id}-retry-1" in fake._keys  # the refused key is not replayed
    assert fake.drawn_on(drawn["source_transaction"]) == 1998
    assert checks.check_ledger() == []


def test_a_refused_transfer_fails_with_stripes_reason_and_can_be_retried(
    client: FlaskClient, shop: Shop, fake: FakeStripe
) -> None:
    """A payment captured before charges were recorded has none to draw on:
    its payout goes from the balance, keyed `payout-<id>` as before."""
    connect_stripe(client, shop, fake, shop.orchard.id)
    order = settled_order(client, shop, (shop.oranges, 1000), fake=fake)
    payment_of(order["id"]).stripe_charge_id = None
    db.session.commit()
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
    (transfer,) = fake.transfers.values()
    assert (transfer["source_transaction"], transfer["metadata"]) == (None, {"payout_id": str(payout.id)})
    assert checks.check_ledger() == []


def test_a_transfer_retried_after_stripe_forgot_its_key_is_found_not_made_again(
    app: Flask, client: FlaskClient, shop: Shop, fake: FakeStripe
) -> None:
    """The worker died after Stripe made the transfer; a day later Stripe
    no longer knows the key, and the retry finds it by transfer group."""
    connect_stripe(client, shop, fake, shop.orchard.id)
    order = settled_order(client, shop, (shop.oranges, 2000), fake=fake)
    settled_order(client, shop, (shop.pomelos, 1500), fake=fake)
    run(client, shop)
    payout = only_payout()
    first = payout.transfers[0]
    assert first.order_id == order["id"]
    made = gateway().create_transfer(
        amount=first.amount, currency=payout.currency, destination=payout.stripe_account_id or "",
        transfer_group=payout.transfer_group, payout_id=payout.id, key=first.key(0), order_id=first.order_id,
        source_transaction=first.stripe_charge_id,
    )  # fmt: skip
    payout.transfer_requested_at = utcnow() - KEY_LIFETIME - timedelta(hours=1)
    db.session.commit()
    fake._keys.clear()

    payouts.transfer(payout.id)
    paid = only_payout()
    assert paid.status == PayoutStatus.PAID
    assert len(fake.transfers) == 2
    assert paid.transfers[0].stripe_transfer_id == made.id
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


def test_a_refund_is_reversed_from_the_transfer_drawn_on_its_orders_charge(
    client: FlaskClient, shop: Shop, fake: FakeStripe
) -> None:
    connect_stripe(client, shop, fake, shop.orchard.id)
    settled_order(client, shop, (shop.oranges, 2000), fake=fake)  # 18.98 to the farm
    second = settled_order(client, shop, (shop.pomelos, 1500), fake=fake)  # 11.40 to the farm
    run(client, shop)
    payout = only_payout()
    payouts.transfer(payout.id)
    refund(second["id"], line_of(second, shop.pomelos.id), 1500)  # all of it: 12.00 less 0.60

    assert run(client, shop).json["reversals_count"] == 1
    reversal = db.session.scalars(select(TransferReversal)).one()
    paid_second = next(t for t in only_payout().transfers if t.order_id == second["id"])
    assert (reversal.amount, reversal.transfer_id) == (1140, paid_second.id)
    payouts.reverse(reversal.id)
    by_charge = {t["source_transaction"]: t for t in fake.transfers.values()}
    assert by_charge[payment_of(second["id"]).stripe_charge_id]["amount_reversed"] == 1140
    assert sum(t["amount_reversed"] for t in fake.transfers.values()) == 1140
    assert ledger.balance(ledger.farm_payable(shop.orchard.id)) == 0
    assert checks.check_ledger() == []


def test_a_take_back_netted_in_a_payout_comes_off_its_charge_transfers_and_is_not_reversed_twice(
    client: FlaskClient, shop: Shop, fake: FakeStripe
) -> None:
    """A refund whose reversal Stripe refused is netted from the next
    payout: its one order's transfer is cut by it. A later refund of that
    order, more than is left of its transfer, is netted in turn; the
    transfer of another order is never reversed for it."""
    connect_stripe(client, shop, fake, shop.orchard.id)
    first = settled_order(client, shop, (shop.oranges, 2000), fake=fake)
    run(client, shop)
    payouts.transfer(only_payout().id)
    refund(first["id"], line_of(first, shop.oranges.id), 1000)  # 9.49 to take back
    run(client, shop)
    fake.refuse_next.append(("/v1/transfers/", "The connected account's balance is too low to reverse this."))
    payouts.reverse(db.session.scalars(select(TransferReversal)).one().id)

    second = settled_order(client, shop, (shop.pomelos, 2000), fake=fake)  # 16.00, commission 0.80
    run(client, shop)
    netted = only_payout()
    assert (netted.adjustments, netted.amount) == (949, 1520 - 949)
    (cut,) = netted.transfers  # the take-back comes off the order's charge transfer: no balance one
    assert (cut.order_id, cut.amount) == (second["id"], 571)
    fake.available_balance = 0
    payouts.transfer(netted.id)
    assert only_payout().status == PayoutStatus.PAID

    refund(second["id"], line_of(second, shop.pomelos.id), 2000)  # 15.20: only 5.71 went out for it
    assert run(client, shop).json["reversals_count"] == 0
    assert sum(t["amount_reversed"] for t in fake.transfers.values()) == 0
    assert ledger.balance(ledger.farm_payable(shop.orchard.id)) == 1520  # owed by the farm, to net
    assert checks.check_ledger() == []


def reversal_to_make(client: FlaskClient, shop: Shop, fake: FakeStripe) -> TransferReversal:
    """2 kg paid out by transfer, then 1 kg refunded: a reversal for the worker."""
    connect_stripe(client, shop, fake, shop.orchard.id)
    order = settled_order(client, shop, (shop.oranges, 2000), fake=fake)
    run(client, shop)
    payouts.transfer(only_payout().id)
    refund(order["id"], line_of(order, shop.oranges.id), 1000)
    run(client, shop)
    return db.session.scalars(select(TransferReversal)).one()


def test_a_refund_not_recovered_by_reversal_is_netted_from_the_next_payout(
    client: FlaskClient, shop: Shop, fake: FakeStripe
) -> None:
    reversal = reversal_to_make(client, shop, fake)
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


def test_a_transfer_made_though_stripe_answered_500_is_found_not_made_twice(
    client: FlaskClient, shop: Shop, fake: FakeStripe
) -> None:
    connect_stripe(client, shop, fake, shop.orchard.id)
    settled_order(client, shop, (shop.oranges, 1000), fake=fake)
    run(client, shop)
    payout = only_payout()
    fake.fail_after.append("/v1/transfers")  # made, but the answer is a 500 (replayed to its key)
    assert payouts.transfer(payout.id).status == PayoutStatus.PAID
    assert len(fake.transfers) == 1
    assert checks.check_ledger() == []


def test_a_reversal_made_though_stripe_answered_500_is_found_and_recorded(
    client: FlaskClient, shop: Shop, fake: FakeStripe
) -> None:
    reversal = reversal_to_make(client, shop, fake)
    fake.fail_after.append("/v1/transfers/")
    assert payouts.reverse(reversal.id).status == ReversalStatus.SUCCEEDED
    assert len(fake.reversals) == 1
    assert checks.check_ledger() == []


def test_a_reversal_stripe_failed_on_is_netted_from_the_next_payout(
    client: FlaskClient, shop: Shop, fake: FakeStripe
) -> None:
    reversal = reversal_to_make(client, shop, fake)
    fake.fail_next.append(("/v1/transfers/", 500))  # the key is spent: Stripe would replay the 500
    failed = payouts.reverse(reversal.id)
    assert failed.status == ReversalStatus.FAILED
    assert fake.reversals == {}
    settled_order(client, shop, (shop.oranges, 3000), fake=fake)
    run(client, shop)
    assert only_payout().amount == 2997 - 150 - (999 - 50)  # the next order, less the take-back
    assert checks.check_ledger() == []


def test_an_account_stripe_failed_to_make_is_looked_up_then_made_under_a_new_key(
    client: FlaskClient, shop: Shop, fake: FakeStripe
) -> None:
    response = client.post(
        f"/api/v1/farms/{shop.orchard.id}/payout-account", json={"method": "stripe"}, headers=shop.orchard_h
    )
    assert response.status_code == 200, response.json
    fake.fail_next.append(("/v1/accounts", 500))
    with pytest.raises(TransientError):
        payouts.connect_account(shop.orchard.id)
    account = payouts.connect_account(shop.orchard.id)
    assert account is not None and account.stripe_account_id in fake.accounts
    assert len(fake.accounts) == 1 and account.onboarding_url


def test_an_account_made_though_stripe_answered_500_is_found(client: FlaskClient, shop: Shop, fake: FakeStripe) -> None:
    response = client.post(
        f"/api/v1/farms/{shop.orchard.id}/payout-account", json={"method": "stripe"}, headers=shop.orchard_h
    )
    assert response.status_code == 200, response.json
    fake.fail_after.append("/v1/accounts")
    account = payouts.connect_account(shop.orchard.id)
    assert account is not None and account.stripe_account_id in fake.accounts
    assert len(fake.accounts) == 1


def test_an_account_update_from_after_2038_is_kept(client: FlaskClient, shop: Shop, fake: FakeStripe) -> None:
    account = connect_stripe(client, shop, fake, shop.orchard.id)
    later = 2**31 + 86400  # 2038-01-20: past what a 32-bit column holds
    payouts.account_updated(
        account.stripe_account_id or "", payouts_enabled=True, details_submitted=True, transfers_active=False,
        created=later,
    )  # fmt: skip
    db.session.commit()
    db.session.expire_all()
    kept = db.session.get(PayoutAccount, account.id)
    assert kept is not None and (kept.stripe_state_at, kept.transfers_active) == (later, False)
