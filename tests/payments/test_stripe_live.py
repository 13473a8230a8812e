"""The Stripe gateway against a real Stripe API: stripe-mock (set
STRIPE_API_BASE, e.g. http://127.0.0.1:12111) or Stripe's test mode (set
STRIPE_SECRET_KEY to an sk_test_ key). Every call the project makes is
sent once, in the marketplace currency: stripe-mock checks each request
against Stripe's OpenAPI description (its answers are fixtures), test mode
answers as Stripe does. Without either there is nothing to talk to, and
these tests are skipped; the local fake covers the behaviour."""

from __future__ import annotations

import os
import time
import uuid

import pytest

import config
from market.payments.gateway import GatewayError, Intent, StripeGateway

API_BASE = os.environ.get("STRIPE_API_BASE", "")
SECRET_KEY = os.environ.get("STRIPE_SECRET_KEY", "")
LIVE = bool(API_BASE) or SECRET_KEY.startswith("sk_test_")
MOCK = bool(API_BASE)
SETTINGS = config.load()
CURRENCY = SETTINGS["MARKET_CURRENCY"].lower()

pytestmark = pytest.mark.skipif(not LIVE, reason="set STRIPE_API_BASE (stripe-mock) or an sk_test_ STRIPE_SECRET_KEY")


def key() -> str:
    return f"live-test-{uuid.uuid4()}"


@pytest.fixture
def gateway() -> StripeGateway:
    return StripeGateway(SECRET_KEY or "sk_test_123", api_base=API_BASE or None)


def held(gateway: StripeGateway, amount: int) -> Intent:
    """An intent whose card is authorised, as Stripe.js leaves it (test
    mode confirms it with Stripe's test card; stripe-mock needs nothing)."""
    intent = gateway.create_intent(order_id=1, amount=amount, currency=CURRENCY, key=key())
    if not MOCK:
        gateway.client.v1.payment_intents.confirm(
            intent.id, {"payment_method": "pm_card_visa", "return_url": "https://example.org/paid"}
        )
    return gateway.get_intent(intent.id)


def test_intent_round_trip(gateway: StripeGateway) -> None:
    first = key()
    intent = gateway.create_intent(order_id=1, amount=1234, currency=CURRENCY, key=first)
    assert intent.id.startswith("pi_")
    assert intent.client_secret
    again = gateway.create_intent(order_id=1, amount=1234, currency=CURRENCY, key=first)
    if not MOCK:  # stripe-mock does not keep idempotency keys; Stripe does
        assert again.id == intent.id
    assert gateway.get_intent(intent.id).id == intent.id
    cancelled = gateway.cancel(intent.id, key=key())
    assert cancelled.id == intent.id


def test_an_authorised_intent_says_when_its_hold_lapses_and_is_captured(gateway: StripeGateway) -> None:
    intent = held(gateway, 2000)
    if not MOCK:
        assert intent.status == "requires_capture"
        assert intent.capture_before is not None and intent.capture_before > time.time()
    captured = gateway.capture(intent.id, amount=1500, key=key())
    assert captured.id == intent.id
    if not MOCK:
        assert (captured.status, captured.amount_received) == ("succeeded", 1500)


def test_capture_of_an_unconfirmed_intent_is_refused(gateway: StripeGateway) -> None:
    if MOCK:
        pytest.skip("stripe-mock answers every capture with a fixture")
    intent = gateway.create_intent(order_id=2, amount=500, currency=CURRENCY, key=key())
    with pytest.raises(GatewayError):
        gateway.capture(intent.id, amount=500, key=key())


def test_a_refund_is_made_and_found_again_by_its_reference(gateway: StripeGateway) -> None:
    intent = held(gateway, 2000)
    gateway.capture(intent.id, amount=2000, key=key())
    reference = f"refund-{uuid.uuid4()}"
    made = gateway.refund(intent.id, amount=500, key=key(), reason="mouldy", reference=reference)
    assert made.id.startswith("re_")
    found = gateway.find_refund(intent.id, reference=reference)
    if not MOCK:  # stripe-mock lists fixtures, not what was made
        assert found is not None and (found.id, found.amount) == (made.id, 500)


def test_a_connected_account_and_its_onboarding_link(gateway: StripeGateway) -> None:
    account = gateway.create_connected_account(farm_id=1, country=SETTINGS["STRIPE_CONNECT_COUNTRY"], key=key())
    assert account.id.startswith("acct_")
    assert not account.transfers_active or MOCK  # a new account is not onboarded yet
    link = gateway.create_account_link(
        account.id,
        refresh_url="https://example.org/connect",
        return_url="https://example.org/connected",
        key=key(),
    )
    assert link.url.startswith("https://")
    assert link.expires_at > 0
    found = gateway.find_connected_account(farm_id=1)
    if not MOCK:  # stripe-mock lists fixtures, not what was made
        assert found is not None


def test_transfers_and_reversals(gateway: StripeGateway) -> None:
    account = gateway.create_connected_account(farm_id=2, country=SETTINGS["STRIPE_CONNECT_COUNTRY"], key=key())
    group = f"payout-run-{uuid.uuid4()}"
    try:
        transfer = gateway.create_transfer(
            amount=1000, currency=CURRENCY, destination=account.id, transfer_group=group, payout_id=1, key=key()
        )
    except GatewayError:
        # Test mode refuses a transfer to an account whose transfers
        # capability is not active yet (it is gated on exactly that).
        assert not MOCK
        return
    assert transfer.id.startswith("tr_")
    found = gateway.find_transfer(transfer_group=group, payout_id=1)
    if not MOCK:
        assert found is not None and found.id == transfer.id
    reversal_key = key()
    reversal = gateway.reverse_transfer(transfer.id, amount=300, key=reversal_key)
    assert reversal.id.startswith("trr_")
    again = gateway.find_reversal(transfer.id, key=reversal_key)
    if not MOCK:
        assert again is not None and again.id == reversal.id


def test_a_transfer_drawn_on_a_charge(gateway: StripeGateway) -> None:
    intent = held(gateway, 2000)
    captured = gateway.capture(intent.id, amount=2000, key=key())
    account = gateway.create_connected_account(farm_id=3, country=SETTINGS["STRIPE_CONNECT_COUNTRY"], key=key())
    try:
        transfer = gateway.create_transfer(
            amount=1500,
            currency=CURRENCY,
            destination=account.id,
            transfer_group=f"order-{uuid.uuid4()}",
            payout_id=2,
            key=key(),
            order_id=1,
            source_transaction=captured.latest_charge or "ch_123",
        )
    except GatewayError:
        assert not MOCK  # test mode: the account's transfers capability is not active yet
        return
    assert transfer.id.startswith("tr_")


def test_balance_transactions_of_a_period(gateway: StripeGateway) -> None:
    now = int(time.time())
    records = gateway.balance_transactions(created_gte=now - 86400, created_lt=now + 60, page_size=10)
    for record in records:
        assert record.id.startswith("txn_")
        assert record.currency


def test_an_unknown_intent_is_a_refusal_not_a_crash(gateway: StripeGateway) -> None:
    if MOCK:
        pytest.skip("stripe-mock answers any id with a fixture")
    with pytest.raises(GatewayError):
        gateway.get_intent("pi_does_not_exist_anywhere")
