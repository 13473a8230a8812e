"""Paying payouts: Stripe transfers (one per order's charge drawn on, keyed
`payout-<id>-order-<order>`, and one from the balance, keyed `payout-<id>`),
bank-file transfers an operator confirms, and transfer reversals
(`reversal-<id>`) that take refunds of paid lines back.

Ledger conventions (debits positive):
- "payout_paid" `payout:<id>:paid`: Dr payouts_in_transit / Cr gateway_cash:stripe
  (a transfer) or gateway_cash:offline (a confirmed bank transfer)
- "transfer_reversal" `reversal:<id>`: Dr gateway_cash:stripe / Cr farm_payable:<farm>
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update

from market.accounts.models import Role
from market.auth import Actor
from market.catalog.models import PayoutMethod
from market.db import get_or_404, outside_transaction, unit_of_work, utcnow
from market.events import publish
from market.extensions import db
from market.ledger import service as ledger
from market.outbox import enqueue
from market.payments.gateway import AmbiguousAnswer, GatewayError, KeySpent, Transfer, gateway
from market.payments.models import Provider
from market.payouts.models import (
    Payout,
    PayoutNotFound,
    PayoutStatus,
    PayoutTransfer,
    ReversalStatus,
    TransferReversal,
)
from market.settlement.models import EntryKind, FarmEntry
from market.settlement.service import hold_payout_runs

# Stripe forgets idempotency keys after about a day; a transfer retried
# later than this first asks Stripe whether it was made.
KEY_LIFETIME = timedelta(hours=23)


# --- paying -----------------------------------------------------------------


def dispatch_run(run_id: int) -> int:
    """Worker: queue a transfer for each of the run's Stripe payouts still
    to pay (a repeat queues them again, harmlessly)."""
    with unit_of_work():
        ids = db.session.scalars(
            select(Payout.id).where(Payout.run_id == run_id, Payout.status == PayoutStatus.PENDING).order_by(Payout.id)
        ).all()
        for payout_id in ids:
            enqueue("payouts.transfer", payout_id=payout_id)
    return len(ids)


def _payout(payout_id: int, *, lock: bool = False) -> Payout:
    return get_or_404(Payout, payout_id, "Payout", lock=lock, missing=PayoutNotFound)


def _paid(payout: Payout, provider: Provider) -> None:
    ledger.post(
        "payout_paid",
        f"payout:{payout.id}:paid",
        {ledger.PAYOUTS_IN_TRANSIT: payout.amount, ledger.gateway_cash(provider): -payout.amount},
        memo=(payout.bank_reference or " ".join(t.stripe_transfer_id or "" for t in payout.transfers))[:500],
    )
    publish("payout.paid", payout_id=payout.id)


@dataclass(frozen=True)
class _ToMake:
    """A transfer of a payout still to make, as read under the payout's lock."""

    id: int
    payout_id: int
    order_id: int | None
    amount: int
    source_transaction: str | None
    key: str
    currency: str
    destination: str
    group: str


def transfer(payout_id: int) -> Payout:
    """Worker: pay a Stripe payout by its transfers to the farm's connected
    account, each drawn on its order's charge or (the one without an order)
    from the balance, each with its own key. Repeating it, even after the
    worker died mid-call, makes each transfer once: after Stripe has
    forgotten the keys, the transfer group is searched first. The payout is
    paid once all its transfers are made; a refusal fails it, keeping those
    made (a retry makes only the rest)."""
    with unit_of_work():
        payout = _payout(payout_id, lock=True)
        if payout.status != PayoutStatus.PENDING or payout.method != PayoutMethod.STRIPE:
            return payout
        # A transfer whose key may be forgotten, or under a key not its first
        # (one tried before may have been made), is looked up first.
        forgotten = payout.transfer_requested_at is not None and utcnow() - payout.transfer_requested_at > KEY_LIFETIME
        late = forgotten or payout.transfer_attempts > 0
        if payout.transfer_requested_at is None:
            payout.transfer_requested_at = utcnow()
        to_make = [
            _ToMake(
                t.id, payout.id, t.order_id, t.amount, t.stripe_charge_id, t.key(payout.transfer_attempts),
                payout.currency, payout.stripe_account_id or "", payout.transfer_group,
            )
            for t in payout.transfers
            if t.stripe_transfer_id is None
        ]  # fmt: skip
    for planned in to_make:
        try:
            made = _make(planned, late=late)
        except KeySpent:
            # Stripe keeps this failure for the key: unless the transfer was
            # made after all, every transfer not made yet is looked up and
            # asked for under a new key next time.
            found = _find(planned)
            if found is None:
                with unit_of_work():
                    payout = _payout(payout_id, lock=True)
                    if payout.status == PayoutStatus.PENDING:
                        payout.transfer_attempts += 1
                raise
            made = found
        except GatewayError as error:
            with unit_of_work():
                payout = _payout(payout_id, lock=True)
                if payout.status == PayoutStatus.PENDING:
                    payout.mark_failed(str(error))
                    publish("payout.failed", payout_id=payout.id)
            return payout
        with unit_of_work():
            _payout(payout_id, lock=True)
            row = db.session.get(PayoutTransfer, planned.id)
            assert row is not None
            row.mark_made(made.id)
    with unit_of_work():
        payout = _payout(payout_id, lock=True)
        made_ids = [t.stripe_transfer_id for t in payout.transfers]
        if payout.status == PayoutStatus.PENDING and all(made_ids):
            payout.mark_transferred([i for i in made_ids if i])
            _paid(payout, Provider.STRIPE)
    return payout


def _make(planned: _ToMake, *, late: bool) -> Transfer:
    """One transfer at Stripe, outside any transaction: found first when
    its key may be forgotten, else made with its key."""
    found = _find(planned) if late else None
    if found is not None:
        return found
    return outside_transaction(
        lambda: gateway().create_transfer(
            amount=planned.amount,
            currency=planned.currency,
            destination=planned.destination,
            transfer_group=planned.group,
            payout_id=planned.payout_id,
            key=planned.key,
            order_id=planned.order_id,
            source_transaction=planned.source_transaction,
        )
    )


def _find(planned: _ToMake) -> Transfer | None:
    return outside_transaction(
        lambda: gateway().find_transfer(
            transfer_group=planned.group, payout_id=planned.payout_id, order_id=planned.order_id
        )
    )


def flag(payout_id: int, problem: str) -> None:
    """Surface a payout a worker could not pay after all its retries."""
    with unit_of_work():
        payout = db.session.get(Payout, payout_id, with_for_update=True)
        if payout is not None:
            payout.attention = problem[:2000]


def retry_payout(actor: Actor, payout_id: int) -> Payout:
    """An operator sends a failed Stripe payout again (after the farm fixed
    its account, say)."""
    actor.require(Role.OPERATOR)
    with unit_of_work():
        payout = _payout(payout_id, lock=True)
        payout.retry()
        enqueue("payouts.transfer", payout_id=payout.id)
    return payout


def flag_for_follow_up(actor: Actor, payout_id: int, *, note: str) -> Payout:
    """An operator flags a failed transfer as needing investigation, with a
    note; it stays failed (and on the attention list) until sent again."""
    actor.require(Role.OPERATOR)
    with unit_of_work():
        payout = _payout(payout_id, lock=True)
        payout.flag_for_follow_up(note, actor.user_id)
    return payout


def confirm_bank_transfer(actor: Actor, payout_id: int, *, bank_reference: str) -> Payout:
    """An operator confirms a bank-file payout was executed."""
    actor.require(Role.OPERATOR)
    with unit_of_work():
        payout = _payout(payout_id, lock=True)
        payout.confirm(bank_reference)
        _paid(payout, Provider.OFFLINE)
    return payout


def _reversal(reversal_id: int) -> TransferReversal:
    return get_or_404(TransferReversal, reversal_id, "Reversal", lock=True)


def reverse(reversal_id: int) -> TransferReversal:
    """Worker: take a reversal's amount back from the farm's transfer. If
    Stripe refuses, the take-backs it was for are netted from the next payout."""
    with unit_of_work():
        reversal = _reversal(reversal_id)
        if reversal.status != ReversalStatus.PENDING:
            return reversal
        transfer_id, amount = reversal.transfer.stripe_transfer_id or "", reversal.amount
    key = f"reversal-{reversal_id}"
    try:
        result = outside_transaction(lambda: gateway().reverse_transfer(transfer_id, amount=amount, key=key))
    except (AmbiguousAnswer, KeySpent) as error:
        found = gateway().find_reversal(transfer_id, key=key)
        if found is None:
            if isinstance(error, AmbiguousAnswer):
                raise  # not made yet: the same key again
            # A failure Stripe keeps for the key: like a refusal, the
            # take-backs are netted from the next payout instead.
            return _not_reversed(reversal_id, error)
        result = found
    except GatewayError as error:
        return _not_reversed(reversal_id, error)
    with unit_of_work():
        reversal = _reversal(reversal_id)
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
    return reversal


def _not_reversed(reversal_id: int, error: Exception) -> TransferReversal:
    """Stripe did not reverse: the reversal failed, and the take-backs it
    was for are free to be netted from the farm's next payout."""
    with unit_of_work():
        reversal = _reversal(reversal_id)
        if reversal.status == ReversalStatus.PENDING:
            reversal.mark_failed(str(error))
            hold_payout_runs()
            db.session.execute(
                update(FarmEntry)
                .where(FarmEntry.reversal_id == reversal_id, FarmEntry.kind != EntryKind.TRANSFER_REVERSAL)
                .values(reversal_id=None)
                .execution_options(synchronize_session=False)
            )
    return reversal


def flag_reversal(reversal_id: int, problem: str) -> None:
    with unit_of_work():
        reversal = db.session.get(TransferReversal, reversal_id, with_for_update=True)
        if reversal is not None:
            reversal.failure_reason = problem[:2000]
