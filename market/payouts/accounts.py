"""How farms are paid: a Stripe Express account onboarded by link, or bank
details for the operators' bank file; Stripe's account.updated keeps it
current. Provider calls run outside open transactions, keyed by our ids
(`farm-<id>-account`, `farm-<id>-link-<n>`). Stripe pays only farms in
STRIPE_CONNECT_COUNTRY, never in mainland China (`Farm.stripe_refusal`),
and only when STRIPE_SECRET_KEY is set: the others are paid by the bank
file, chosen for them; Stripe asked for them is refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from market.accounts.models import Role
from market.auth import Actor
from market.catalog import service as catalog
from market.catalog.models import Farm, PayoutMethod
from market.db import utcnow
from market.errors import Conflict, Invalid, NotFound
from market.extensions import db
from market.outbox import enqueue
from market.payments.gateway import ConnectedAccount, GatewayError, KeySpent, gateway
from market.payments.models import Provider
from market.payouts.models import (
    PayoutAccount,
)

# An onboarding link about to expire is not handed out; a new one is made.
LINK_MARGIN = timedelta(minutes=1)


# --- payout accounts --------------------------------------------------------


def _owned_farm(actor: Actor, farm_id: int) -> Farm:
    """The caller's farm, locked and read afresh: a change of its payout
    method waits for this one, then sees the account it makes."""
    farm = db.session.get(Farm, farm_id, with_for_update=True, populate_existing=True)
    if farm is None or farm.owner_id != actor.user_id:
        raise NotFound(f"Farm {farm_id} not found.")
    return farm


def _account_of(farm_id: int, *, lock: bool = False) -> PayoutAccount | None:
    stmt = select(PayoutAccount).where(PayoutAccount.farm_id == farm_id)
    if lock:
        stmt = stmt.with_for_update()
    return db.session.scalars(stmt).one_or_none()


def get_payout_account(actor: Actor, farm_id: int) -> PayoutAccount:
    """The farm's payout account (its owner; operators)."""
    farm = db.session.get(Farm, farm_id)
    if farm is None or (farm.owner_id != actor.user_id and not actor.has(Role.OPERATOR)):
        raise NotFound(f"Farm {farm_id} not found.")
    account = _account_of(farm_id)
    if account is None:
        raise NotFound(f"Farm {farm_id} has not set up payouts yet.")
    return account


def mask_account_number(number: str) -> str:
    digits = number.replace(" ", "")
    return "*" * max(len(digits) - 4, 0) + digits[-4:]


def connect_payout_account(
    actor: Actor,
    farm_id: int,
    *,
    method: PayoutMethod | None = None,
    account_holder: str | None = None,
    bank_name: str | None = None,
    account_number: str | None = None,
) -> PayoutAccount:
    """The farmer chooses how the farm is paid. Stripe: a worker makes the
    connected account and an onboarding link (answered once there); bank
    transfer: the details are stored for the operators' bank file. Without
    a choice, the farm keeps its `payout_method` (the account's, or the one
    the farmer gave before there was an account), or else gets Stripe where
    Stripe can pay it and the bank file elsewhere; Stripe asked for a farm
    it cannot pay is refused. The farm's `payout_method` is the account's
    from then on."""
    actor.require(Role.FARMER)
    farm = _owned_farm(actor, farm_id)
    connect_country = current_app.config["STRIPE_CONNECT_COUNTRY"]
    method = method or farm.payout_method
    if method is None:
        stripe = gateway().provider == Provider.STRIPE and farm.stripe_refusal(connect_country) is None
        method = PayoutMethod.STRIPE if stripe else PayoutMethod.BANK_TRANSFER
    elif method == PayoutMethod.STRIPE:
        catalog.require_stripe_payable(farm, "method")
    if method == PayoutMethod.BANK_TRANSFER:
        missing = {
            name: ["Required for bank transfer payouts."]
            for name, value in (
                ("account_holder", account_holder),
                ("bank_name", bank_name),
                ("account_number", account_number),
            )
            if not value
        }
        if missing:
            raise Invalid("Bank transfer payouts need the bank details.", missing)
    account = _account_of(farm_id, lock=True)
    if account is None:
        account = PayoutAccount(
            farm_id=farm_id,
            method=method,
            payouts_enabled=False,
            transfers_active=False,
            details_submitted=False,
            link_requests=0,
            link_requested_for=0,
        )
        db.session.add(account)
    account.method = method
    farm.payout_method = method
    if method == PayoutMethod.BANK_TRANSFER:
        # Every warning on a payout account says what stops Stripe paying
        # the farm; the bank file pays it now, so none of them applies.
        account.attention = None
        assert account_number is not None  # checked above
        account.bank_account_holder = account_holder
        account.bank_name = bank_name
        account.bank_account_number = account_number.replace(" ", "")
        account.bank_account_masked = mask_account_number(account_number)
    else:
        _request_onboarding_link(account)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise Conflict("The payout account changed at the same time; try again.") from None
    return account


def _request_onboarding_link(account: PayoutAccount) -> None:
    now = utcnow()
    fresh = account.onboarding_url is not None and (
        account.onboarding_expires_at is not None and account.onboarding_expires_at > now + LINK_MARGIN
    )
    outstanding = account.link_requests > account.link_requested_for
    if account.transfers_active or fresh or outstanding:
        return
    account.link_requests += 1
    account.onboarding_url = None
    account.onboarding_expires_at = None
    db.session.flush()
    enqueue("payouts.connect_account", farm_id=account.farm_id)


def connect_account(farm_id: int) -> PayoutAccount | None:
    """Worker: make the farm's Express account (once) and the onboarding
    link last asked for. Repeating it changes nothing."""
    account = _account_of(farm_id)
    if account is None or account.method != PayoutMethod.STRIPE:
        return account
    farm = db.session.get(Farm, farm_id)
    assert farm is not None  # a payout account belongs to a farm
    refusal = farm.stripe_refusal(current_app.config["STRIPE_CONNECT_COUNTRY"])
    if refusal is not None:  # the farm moved after choosing Stripe: no account Stripe would refuse
        account.attention = f"Stripe cannot pay farm {farm_id}: {refusal}"
        db.session.commit()
        return account
    try:
        if account.stripe_account_id is None:
            attempts = account.account_attempts
            key = f"farm-{farm_id}-account" + (f"-retry-{attempts}" if attempts else "")
            country = current_app.config["STRIPE_CONNECT_COUNTRY"]
            db.session.commit()  # no transaction stays open across the provider call
            created = _create_account(farm_id, country, key, looked_up=attempts > 0)
            account = _account_of(farm_id, lock=True)
            assert account is not None
            if account.stripe_account_id is None:
                account.stripe_account_id = created.id
                account.payouts_enabled = created.payouts_enabled
                account.transfers_active = created.transfers_active
                account.details_submitted = created.details_submitted
            db.session.commit()
        if account.transfers_active or account.link_requests == account.link_requested_for:
            return account
        number, stripe_id = account.link_requests, account.stripe_account_id
        assert stripe_id is not None
        db.session.commit()
        try:
            link = gateway().create_account_link(
                stripe_id,
                refresh_url=current_app.config["PAYOUT_ONBOARDING_REFRESH_URL"],
                return_url=current_app.config["PAYOUT_ONBOARDING_RETURN_URL"],
                key=f"farm-{farm_id}-link-{number}",
            )
        except KeySpent:
            # A link made or not changes nothing; the retry asks for a new
            # one under the next number (Stripe replays the failure).
            account = _account_of(farm_id, lock=True)
            assert account is not None
            if account.link_requests == number:
                account.link_requests += 1
            db.session.commit()
            raise
    except GatewayError as error:
        account = _account_of(farm_id, lock=True)
        assert account is not None
        _warn_of_stripe(account, str(error))
        db.session.commit()
        return account
    account = _account_of(farm_id, lock=True)
    assert account is not None
    if account.link_requests == number:  # else a newer request's own task fetches its link
        account.onboarding_url = link.url
        account.onboarding_expires_at = datetime.fromtimestamp(link.expires_at, UTC)
        account.link_requested_for = number
        account.attention = None
    db.session.commit()
    return account


def _create_account(farm_id: int, country: str, key: str, *, looked_up: bool) -> ConnectedAccount:
    """The farm's Express account, made under `key`. After a failure Stripe
    keeps for a key, the account is looked up (it may have been made) before
    the next try, which uses a new key."""
    found = gateway().find_connected_account(farm_id=farm_id) if looked_up else None
    if found is not None:
        return found
    try:
        return gateway().create_connected_account(farm_id=farm_id, country=country, key=key)
    except KeySpent:
        found = gateway().find_connected_account(farm_id=farm_id)
        if found is not None:
            return found
        account = _account_of(farm_id, lock=True)
        assert account is not None
        account.account_attempts += 1
        db.session.commit()
        raise


def _warn_of_stripe(account: PayoutAccount, problem: str) -> None:
    """Show why Stripe cannot pay the farm yet, unless the farm chose the
    bank file meanwhile (the worker's call to Stripe ran unlocked)."""
    if account.method == PayoutMethod.STRIPE:
        account.attention = problem[:2000]


def flag_account(farm_id: int, problem: str) -> None:
    account = _account_of(farm_id, lock=True)
    if account is not None:
        _warn_of_stripe(account, problem)
    db.session.commit()


def account_updated(
    account_id: str, *, payouts_enabled: bool, details_submitted: bool, transfers_active: bool, created: int
) -> None:
    """Stripe's account.updated: keep the account's state current; transfers
    go only to an account whose transfers capability is active. An event
    older than the one last applied is ignored (events come in any order).
    The webhook receiver commits."""
    account = db.session.scalars(
        select(PayoutAccount).where(PayoutAccount.stripe_account_id == account_id).with_for_update()
    ).one_or_none()
    if account is None or (account.stripe_state_at is not None and created < account.stripe_state_at):
        return
    account.payouts_enabled = payouts_enabled
    account.transfers_active = transfers_active
    account.details_submitted = details_submitted
    account.stripe_state_at = created
