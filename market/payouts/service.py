"""Payout rules: connecting a farm for payouts, payout runs (runs.py) with
their statements, Stripe transfers and reversals, bank-file payouts, and
reading. Every amount a payout pays or takes back is a farm entry
(market/settlement/models.py) that names the payout or reversal settling it.

Ledger conventions (debits positive):
- "payout" `payout:<id>`: Dr farm_payable:<farm> / Cr payouts_in_transit
- "payout_paid" `payout:<id>:paid`: Dr payouts_in_transit / Cr gateway_cash:stripe
  (a transfer) or gateway_cash:offline (a confirmed bank transfer)
- "transfer_reversal" `reversal:<id>`: Dr gateway_cash:stripe / Cr farm_payable:<farm>

Provider calls run outside open transactions, keyed by our ids
(`farm-<id>-account`, `farm-<id>-link-<n>`, `payout-<id>`, `reversal-<id>`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import Select, func, select, true, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased

from market.accounts.models import Role
from market.auth import Actor
from market.catalog.models import Farm, PayoutMethod
from market.db import utcnow
from market.errors import Conflict, Invalid, NotFound
from market.events import publish
from market.extensions import db
from market.ledger import service as ledger
from market.money import format_minor
from market.orders.models import OrderLine
from market.outbox import enqueue
from market.pagination import Page, SortKey, keyset_page
from market.payments.gateway import GatewayError, gateway
from market.payments.models import Provider
from market.payouts import runs
from market.payouts.models import (
    Payout,
    PayoutAccount,
    PayoutRun,
    PayoutStatus,
    ReversalStatus,
    TransferReversal,
)
from market.premiums.models import PremiumProgramme
from market.settlement.models import PREMIUM_KINDS, EntryKind, FarmEntry

# Stripe forgets idempotency keys after about a day; a transfer retried
# later than this first asks Stripe whether it was made.
KEY_LIFETIME = timedelta(hours=23)
# An onboarding link about to expire is not handed out; a new one is made.
LINK_MARGIN = timedelta(minutes=1)


class PayoutNotFound(NotFound):
    pass


# --- payout accounts --------------------------------------------------------


def _owned_farm(actor: Actor, farm_id: int) -> Farm:
    farm = db.session.get(Farm, farm_id)
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
    method: PayoutMethod,
    account_holder: str | None = None,
    bank_name: str | None = None,
    account_number: str | None = None,
) -> PayoutAccount:
    """The farmer chooses how the farm is paid. Stripe: a worker makes the
    connected account and an onboarding link (answered once there); bank
    transfer: the details are stored for the operators' bank file."""
    actor.require(Role.FARMER)
    farm = _owned_farm(actor, farm_id)
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
            details_submitted=False,
            link_requests=0,
            link_requested_for=0,
        )
        db.session.add(account)
    account.method = method
    farm.payout_method = method
    if method == PayoutMethod.BANK_TRANSFER:
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
    if account.payouts_enabled or fresh or outstanding:
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
    try:
        if account.stripe_account_id is None:
            key = f"farm-{farm_id}-account"
            country = current_app.config["STRIPE_CONNECT_COUNTRY"]
            db.session.commit()  # no transaction stays open across the provider call
            created = gateway().create_connected_account(farm_id=farm_id, country=country, key=key)
            account = _account_of(farm_id, lock=True)
            assert account is not None
            if account.stripe_account_id is None:
                account.stripe_account_id = created.id
                account.payouts_enabled = created.payouts_enabled
                account.details_submitted = created.details_submitted
            db.session.commit()
        if account.payouts_enabled or account.link_requests == account.link_requested_for:
            return account
        number, stripe_id = account.link_requests, account.stripe_account_id
        assert stripe_id is not None
        db.session.commit()
        link = gateway().create_account_link(
            stripe_id,
            refresh_url=current_app.config["PAYOUT_ONBOARDING_REFRESH_URL"],
            return_url=current_app.config["PAYOUT_ONBOARDING_RETURN_URL"],
            key=f"farm-{farm_id}-link-{number}",
        )
    except GatewayError as error:
        account = _account_of(farm_id, lock=True)
        assert account is not None
        account.attention = str(error)[:2000]
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


def flag_account(farm_id: int, problem: str) -> None:
    account = _account_of(farm_id)
    if account is not None:
        account.attention = problem[:2000]
        db.session.commit()


def account_updated(account_id: str, *, payouts_enabled: bool, details_submitted: bool, created: int) -> None:
    """Stripe's account.updated: keep payouts_enabled current. An event
    older than the one last applied is ignored (events come in any order).
    The webhook receiver commits."""
    account = db.session.scalars(
        select(PayoutAccount).where(PayoutAccount.stripe_account_id == account_id).with_for_update()
    ).one_or_none()
    if account is None or (account.stripe_state_at is not None and created < account.stripe_state_at):
        return
    account.payouts_enabled = payouts_enabled
    account.details_submitted = details_submitted
    account.stripe_state_at = created


create_run = runs.create_run
run_cutoff = runs.run_cutoff


# --- paying -----------------------------------------------------------------


def dispatch_run(run_id: int) -> int:
    """Worker: queue a transfer for each of the run's Stripe payouts still
    to pay (a repeat queues them again, harmlessly)."""
    ids = db.session.scalars(
        select(Payout.id).where(Payout.run_id == run_id, Payout.status == PayoutStatus.PENDING).order_by(Payout.id)
    ).all()
    for payout_id in ids:
        enqueue("payouts.transfer", payout_id=payout_id)
    db.session.commit()
    return len(ids)


def _payout(payout_id: int, *, lock: bool = False) -> Payout:
    stmt = select(Payout).where(Payout.id == payout_id)
    if lock:
        stmt = stmt.with_for_update()
    payout = db.session.scalars(stmt).one_or_none()
    if payout is None:
        raise PayoutNotFound(f"Payout {payout_id} not found.")
    return payout


def _paid(payout: Payout, provider: Provider) -> None:
    ledger.post(
        "payout_paid",
        f"payout:{payout.id}:paid",
        {ledger.PAYOUTS_IN_TRANSIT: payout.amount, ledger.gateway_cash(provider): -payout.amount},
        memo=payout.bank_reference or payout.stripe_transfer_id or "",
    )
    publish("payout.paid", payout_id=payout.id)


def transfer(payout_id: int) -> Payout:
    """Worker: pay a Stripe payout by Transfer to the farm's connected
    account. Repeating it, even after the worker died mid-call, makes one
    transfer: the key is the payout's, and after Stripe has forgotten the
    key, the transfer group is searched first."""
    payout = _payout(payout_id)
    if payout.status != PayoutStatus.PENDING or payout.method != PayoutMethod.STRIPE:
        return payout
    found = None
    if payout.transfer_requested_at is None:
        payout.transfer_requested_at = utcnow()
        db.session.commit()
    elif utcnow() - payout.transfer_requested_at > KEY_LIFETIME:
        group = payout.transfer_group
        db.session.commit()
        found = gateway().find_transfer(transfer_group=group, payout_id=payout_id)
    if found is None:
        payout = _payout(payout_id)
        amount, currency, key = payout.amount, payout.currency, payout.transfer_key
        destination, group = payout.stripe_account_id or "", payout.transfer_group
        db.session.commit()  # no transaction stays open across the provider call
        try:
            found = gateway().create_transfer(
                amount=amount,
                currency=currency,
                destination=destination,
                transfer_group=group,
                payout_id=payout_id,
                key=key,
            )
        except GatewayError as error:
            payout = _payout(payout_id, lock=True)
            if payout.status == PayoutStatus.PENDING:
                payout.mark_failed(str(error))
                publish("payout.failed", payout_id=payout.id)
            db.session.commit()
            return payout
    payout = _payout(payout_id, lock=True)
    if payout.status == PayoutStatus.PENDING:
        payout.mark_transferred(found.id)
        _paid(payout, Provider.STRIPE)
    db.session.commit()
    return payout


def flag(payout_id: int, problem: str) -> None:
    """Surface a payout a worker could not pay after all its retries."""
    payout = db.session.get(Payout, payout_id)
    if payout is not None:
        payout.attention = problem[:2000]
        db.session.commit()


def retry_payout(actor: Actor, payout_id: int) -> Payout:
    """An operator sends a failed Stripe payout again (after the farm fixed
    its account, say)."""
    actor.require(Role.OPERATOR)
    payout = _payout(payout_id, lock=True)
    payout.retry()
    enqueue("payouts.transfer", payout_id=payout.id)
    db.session.commit()
    return payout


def confirm_bank_transfer(actor: Actor, payout_id: int, *, bank_reference: str) -> Payout:
    """An operator confirms a bank-file payout was executed."""
    actor.require(Role.OPERATOR)
    payout = _payout(payout_id, lock=True)
    payout.confirm(bank_reference)
    _paid(payout, Provider.OFFLINE)
    db.session.commit()
    return payout


def reverse(reversal_id: int) -> TransferReversal:
    """Worker: take a reversal's amount back from the farm's transfer. If
    Stripe refuses, the refunds it was for are netted from the next payout."""
    reversal = db.session.get(TransferReversal, reversal_id)
    if reversal is None:
        raise NotFound(f"Reversal {reversal_id} not found.")
    if reversal.status != ReversalStatus.PENDING:
        return reversal
    transfer_id, amount = reversal.payout.stripe_transfer_id or "", reversal.amount
    db.session.commit()
    try:
        result = gateway().reverse_transfer(transfer_id, amount=amount, key=f"reversal-{reversal_id}")
    except GatewayError as error:
        reversal = db.session.scalars(
            select(TransferReversal).where(TransferReversal.id == reversal_id).with_for_update()
        ).one()
        if reversal.status == ReversalStatus.PENDING:
            reversal.mark_failed(str(error))
            # Its take-backs are netted from the farm's next payout instead.
            db.session.execute(
                update(FarmEntry)
                .where(FarmEntry.reversal_id == reversal_id, FarmEntry.kind != EntryKind.TRANSFER_REVERSAL)
                .values(reversal_id=None)
                .execution_options(synchronize_session=False)
            )
        db.session.commit()
        return reversal
    reversal = db.session.scalars(
        select(TransferReversal).where(TransferReversal.id == reversal_id).with_for_update()
    ).one()
    if reversal.status == ReversalStatus.PENDING:
        reversal.mark_succeeded(result.id)
        db.session.add(
            FarmEntry(
                kind=EntryKind.TRANSFER_REVERSAL,
                reference=f"reversal:{reversal.id}",
                farm_id=reversal.farm_id,
                net=amount,
                reversal_id=reversal.id,
            )
        )
        ledger.post(
            "transfer_reversal",
            f"reversal:{reversal.id}",
            {ledger.gateway_cash(Provider.STRIPE): amount, ledger.farm_payable(reversal.farm_id): -amount},
            memo=f"reverses part of payout {reversal.payout_id}",
        )
    db.session.commit()
    return reversal


# --- reading ----------------------------------------------------------------


def _visible_payouts(actor: Actor) -> Any:
    if actor.has(Role.OPERATOR):
        return true()
    actor.require(Role.FARMER)
    return Payout.farm_id.in_(select(Farm.id).where(Farm.owner_id == actor.user_id))


def list_payouts(
    actor: Actor,
    *,
    farm_id: int | None = None,
    run_id: int | None = None,
    status: PayoutStatus | None = None,
    limit: int,
    cursor: str | None = None,
) -> Page[Payout]:
    """Payouts, newest first: a farmer's own farms', or all for operators."""
    stmt = select(Payout).where(_visible_payouts(actor))
    if farm_id is not None:
        stmt = stmt.where(Payout.farm_id == farm_id)
    if run_id is not None:
        stmt = stmt.where(Payout.run_id == run_id)
    if status is not None:
        stmt = stmt.where(Payout.status == status)
    return keyset_page(stmt, [SortKey(Payout.id, "id", descending=True)], limit=limit, cursor=cursor)


def get_payout(actor: Actor, payout_id: int) -> Payout:
    payout = db.session.scalars(select(Payout).where(Payout.id == payout_id, _visible_payouts(actor))).one_or_none()
    if payout is None:
        raise PayoutNotFound(f"Payout {payout_id} not found.")
    return payout


def statement(actor: Actor, payout_id: int) -> dict[str, Any]:
    """The payout with its detail, all read from the farm entries it paid:
    orders and lines, refunds (of this payout's lines, and of earlier
    payouts' lines netted here as adjustments), premiums by programme, and
    reversals taken back from this payout's transfer."""
    payout = get_payout(actor, payout_id)
    lines = db.session.execute(
        select(
            FarmEntry.order_id,
            FarmEntry.order_line_id,
            OrderLine.product_name,
            FarmEntry.grams,
            OrderLine.price_per_kg,
            FarmEntry.produce,
            FarmEntry.premium,
            FarmEntry.commission,
            FarmEntry.net,
        )
        .join(OrderLine, OrderLine.id == FarmEntry.order_line_id)
        .where(FarmEntry.payout_id == payout.id, FarmEntry.kind == EntryKind.SALE)
        .order_by(FarmEntry.order_id, FarmEntry.order_line_id)
    ).all()
    orders: dict[int, list[dict[str, Any]]] = {}
    for row in lines:
        orders.setdefault(row.order_id, []).append(
            {
                "order_line_id": row.order_line_id,
                "product_name": row.product_name,
                "grams": row.grams,
                "price_per_kg": row.price_per_kg,
                "amount": row.produce,
                "buyer_premium": row.premium,
                "commission": row.commission,
                "net": row.net,
            }
        )
    refund_rows = db.session.execute(_refund_detail(payout.id).where(FarmEntry.payout_id == payout.id)).all()
    premiums = db.session.execute(
        select(PremiumProgramme.name, func.sum(FarmEntry.net).label("amount"))
        .join(PremiumProgramme, PremiumProgramme.id == FarmEntry.programme_id)
        .where(FarmEntry.payout_id == payout.id, FarmEntry.kind.in_(PREMIUM_KINDS))
        .group_by(PremiumProgramme.id, PremiumProgramme.name)
        .order_by(PremiumProgramme.id)
    ).all()
    reversals = db.session.scalars(
        select(TransferReversal).where(TransferReversal.payout_id == payout.id).order_by(TransferReversal.id)
    ).all()
    reversal_lines = db.session.execute(
        _refund_detail(payout.id).where(FarmEntry.reversal_id.in_([r.id for r in reversals]))
    ).all()
    return {
        "payout": payout,
        "orders": [{"order_id": order_id, "lines": order_lines} for order_id, order_lines in orders.items()],
        "refunds": [row._asdict() for row in refund_rows if not row.adjustment],
        "adjustments": [row._asdict() for row in refund_rows if row.adjustment],
        "premiums": [{"programme": row.name, "amount": int(row.amount)} for row in premiums],
        "reversals": [
            {
                "id": reversal.id,
                "run_id": reversal.run_id,
                "amount": reversal.amount,
                "status": reversal.status,
                "failure_reason": reversal.failure_reason,
                "created_at": reversal.created_at,
                "refunds": [row._asdict() for row in reversal_lines if row.reversal_id == reversal.id],
            }
            for reversal in reversals
        ],
    }


def _refund_detail(payout_id: int) -> Select[Any]:
    """Refunded parts of lines, as the farm sees them; an adjustment is one
    whose line another payout paid."""
    sale = aliased(FarmEntry)
    paid_by = (
        select(sale.payout_id)
        .where(sale.order_line_id == FarmEntry.order_line_id, sale.kind == EntryKind.SALE)
        .scalar_subquery()
    )
    return (
        select(
            FarmEntry.refund_id,
            FarmEntry.order_id,
            FarmEntry.order_line_id,
            (-FarmEntry.grams).label("grams"),
            (-FarmEntry.produce).label("amount"),
            (-FarmEntry.commission).label("commission"),
            (-FarmEntry.net).label("net"),
            (func.coalesce(paid_by, 0) != payout_id).label("adjustment"),
            FarmEntry.reversal_id,
        )
        .where(FarmEntry.kind == EntryKind.REFUND)
        .order_by(FarmEntry.id)
    )


def list_runs(actor: Actor, *, limit: int, cursor: str | None = None) -> Page[PayoutRun]:
    actor.require(Role.OPERATOR)
    return keyset_page(select(PayoutRun), [SortKey(PayoutRun.id, "id", descending=True)], limit=limit, cursor=cursor)


def get_run(actor: Actor, run_id: int) -> PayoutRun:
    actor.require(Role.OPERATOR)
    run = db.session.get(PayoutRun, run_id)
    if run is None:
        raise NotFound(f"Payout run {run_id} not found.")
    return run


def bank_file(actor: Actor, run_id: int) -> list[dict[str, Any]]:
    """The run's bank-transfer payouts still to execute, one row each, with
    the full account number (this file is for the operators' bank only)."""
    run = get_run(actor, run_id)
    rows = db.session.execute(
        select(
            Payout.id,
            Payout.amount,
            Payout.currency,
            Farm.name,
            PayoutAccount.bank_account_holder,
            PayoutAccount.bank_name,
            PayoutAccount.bank_account_number,
        )
        .join(Farm, Farm.id == Payout.farm_id)
        .join(PayoutAccount, PayoutAccount.farm_id == Payout.farm_id)
        .where(
            Payout.run_id == run.id,
            Payout.method == PayoutMethod.BANK_TRANSFER,
            Payout.status == PayoutStatus.AWAITING_CONFIRMATION,
        )
        .order_by(Payout.id)
    ).all()
    return [
        {
            "payout_id": row.id,
            "reference": f"payout-{row.id}",
            "farm": row.name,
            "account_holder": row.bank_account_holder,
            "bank_name": row.bank_name,
            "account_number": row.bank_account_number,
            "amount": row.amount,
            "currency": row.currency,
        }
        for row in rows
    ]


STATEMENT_COLUMNS = (
    "section", "order_id", "order_line_id", "item", "kg", "price_per_kg",
    "amount", "buyer_premium", "commission", "net",
)  # fmt: skip


def statement_rows(detail: dict[str, Any]) -> list[dict[str, Any]]:
    """A statement as spreadsheet rows: sales, refunds, adjustments,
    premiums, reversals, then the totals; amounts as decimals of the currency."""
    payout: Payout = detail["payout"]

    def money(amount: int | None) -> str:
        return "" if amount is None else format_minor(amount)

    rows: list[dict[str, Any]] = []
    for order in detail["orders"]:
        for line in order["lines"]:
            rows.append(
                {
                    "section": "sale",
                    "order_id": order["order_id"],
                    "order_line_id": line["order_line_id"],
                    "item": line["product_name"],
                    "kg": format_minor(line["grams"], 3),
                    "price_per_kg": money(line["price_per_kg"]),
                    "amount": money(line["amount"]),
                    "buyer_premium": money(line["buyer_premium"]),
                    "commission": money(line["commission"]),
                    "net": money(line["net"]),
                }
            )
    for section in ("refunds", "adjustments"):
        for refund in detail[section]:
            rows.append(
                {
                    "section": "refund" if section == "refunds" else "adjustment",
                    "order_id": refund["order_id"],
                    "order_line_id": refund["order_line_id"],
                    "item": f"refund {refund['refund_id']}",
                    "kg": format_minor(refund["grams"], 3),
                    "amount": money(-refund["amount"]),
                    "commission": money(-refund["commission"]),
                    "net": money(-refund["net"]),
                }
            )
    for premium in detail["premiums"]:
        rows.append({"section": "premium", "item": premium["programme"], "net": money(premium["amount"])})
    for reversal in detail["reversals"]:
        rows.append(
            {
                "section": "reversal",
                "item": f"reversal {reversal['id']} ({reversal['status']})",
                "net": money(-reversal["amount"]),
            }
        )
    rows.append(
        {
            "section": "total",
            "item": f"payout {payout.id} ({payout.status})",
            "kg": format_minor(payout.grams, 3),
            "amount": money(payout.sales),
            "commission": money(payout.commission),
            "net": money(payout.amount),
        }
    )
    return rows


def flag_reversal(reversal_id: int, problem: str) -> None:
    reversal = db.session.get(TransferReversal, reversal_id)
    if reversal is not None:
        reversal.failure_reason = problem[:2000]
        db.session.commit()
