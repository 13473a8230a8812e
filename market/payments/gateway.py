"""The payment provider behind one small interface.

`StripeGateway` speaks to Stripe (or a local fake / stripe-mock at
STRIPE_API_BASE) through stripe-python's `StripeClient`, with our own
idempotency key on every POST. `OfflineGateway` stands for cash and bank
transfers that an operator confirms; it is chosen when no Stripe key is set.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

import stripe
from flask import Flask, current_app

from market.extensions import TransientError
from market.payments.models import Provider


class GatewayError(Exception):
    """The provider refused the request for good (retrying will not help)."""


class CardDeclined(GatewayError):
    """The buyer's card was declined; `str(error)` is the provider's reason."""


class AmbiguousAnswer(TransientError):
    """The provider's answer does not say whether the request took effect (a
    request with the same key still in flight, a timeout): look the object
    up before anything else; failing that, retry with the same key."""


class KeySpent(TransientError):
    """The provider will answer this idempotency key the same way again: it
    failed on its side (a 5xx, which Stripe keeps for the key and replays),
    or the key was first used with other parameters. Look the object up,
    and when it was not made, try again with a new key."""


@dataclass(frozen=True)
class Intent:
    id: str
    status: str
    amount: int
    amount_capturable: int
    amount_received: int
    client_secret: str | None
    latest_charge: str | None = None  # the charge a capture made (ch_...)
    # When the card hold lapses (Unix seconds), where the provider said so:
    # the latest charge's `payment_method_details.card.capture_before`.
    capture_before: int | None = None


@dataclass(frozen=True)
class RefundResult:
    id: str
    status: str  # pending, requires_action, succeeded, failed, canceled
    amount: int
    failure_reason: str | None = None


@dataclass(frozen=True)
class ConnectedAccount:
    id: str
    payouts_enabled: bool
    transfers_active: bool  # the transfers capability: whether transfers to it are accepted
    details_submitted: bool


@dataclass(frozen=True)
class AccountLink:
    url: str
    expires_at: int


@dataclass(frozen=True)
class Transfer:
    id: str
    amount: int
    amount_reversed: int


@dataclass(frozen=True)
class TransferReversal:
    id: str
    amount: int


@dataclass(frozen=True)
class BalanceTransaction:
    """One movement of the platform's balance at the provider, in the
    platform's settlement currency. `amount` is gross and signed as the
    provider signs it (a charge adds, a refund or transfer takes away);
    `fee` is what the provider kept on top. The source (the charge, refund,
    transfer or reversal) keeps its own amount and currency, the presentment
    side: when the provider converted, `exchange_rate` says at what rate
    (settlement units per presentment unit), else it is None."""

    id: str
    type: str  # charge, payment, refund, transfer, transfer_refund (a reversal), ...
    amount: int
    fee: int
    currency: str  # ISO 4217, upper case
    created: int  # Unix seconds
    source_id: str | None  # ch_..., re_..., tr_..., trr_...
    payment_intent_id: str | None  # for charges and refunds
    exchange_rate: Decimal | None = None
    source_amount: int | None = None  # signed like `amount`; None when the source was not given
    source_currency: str | None = None


class PaymentGateway(Protocol):
    provider: Provider

    def create_intent(self, *, order_id: int, amount: int, currency: str, key: str) -> Intent | None:
        """Ask the provider to hold `amount` for the order (None: nothing to hold online)."""

    def get_intent(self, intent_id: str) -> Intent:
        """The intent as the provider has it now, with when its hold lapses."""

    def capture(self, intent_id: str, *, amount: int, key: str) -> Intent:
        """Take `amount` (at most what is held) and release the rest."""

    def cancel(self, intent_id: str, *, key: str) -> Intent: ...

    def refund(self, intent_id: str, *, amount: int, key: str, reason: str, reference: str) -> RefundResult:
        """Return `amount` of the intent's capture; `reference` names our
        refund in the provider's record (the key may be a retry's)."""

    def find_refund(self, intent_id: str, *, reference: str) -> RefundResult | None:
        """The refund made for `reference` on the intent, if any (after an
        answer that does not say whether it was made)."""

    def create_connected_account(self, *, farm_id: int, country: str, key: str) -> ConnectedAccount:
        """An Express connected account for the farm, to receive transfers."""

    def create_account_link(self, account_id: str, *, refresh_url: str, return_url: str, key: str) -> AccountLink:
        """A one-time onboarding link the farmer follows to finish the account."""

    def create_transfer(
        self, *, amount: int, currency: str, destination: str, transfer_group: str, payout_id: int, key: str,
        order_id: int | None = None, source_transaction: str | None = None,
    ) -> Transfer:  # fmt: skip
        """Move `amount` to a connected account: drawn on the charge
        `source_transaction` (of order `order_id`), or from the platform's
        available balance."""

    def find_transfer(self, *, transfer_group: str, payout_id: int, order_id: int | None = None) -> Transfer | None:
        """The transfer made for `payout_id` (and `order_id`), if any (for a
        retry after the provider forgot the idempotency key)."""

    def reverse_transfer(self, transfer_id: str, *, amount: int, key: str) -> TransferReversal:
        """Take `amount` of a transfer back from the connected account; the
        key names the reversal in the provider's record too."""

    def find_reversal(self, transfer_id: str, *, key: str) -> TransferReversal | None:
        """The reversal of the transfer made under `key`, if any."""

    def find_connected_account(self, *, farm_id: int) -> ConnectedAccount | None:
        """The connected account made for the farm, if any."""

    def balance_transactions(self, *, created_gte: int, created_lt: int, page_size: int) -> list[BalanceTransaction]:
        """Every balance transaction created in [created_gte, created_lt)
        (Unix seconds), fetched `page_size` at a time."""


NO_CONNECT = "Stripe Connect is not configured; pay this farm by bank transfer."


class OfflineGateway:
    """Cash or bank transfer: the money moves by hand and an operator records
    it, so there is no provider to call and each step succeeds as recorded."""

    provider = Provider.OFFLINE

    def create_intent(self, *, order_id: int, amount: int, currency: str, key: str) -> Intent | None:
        return None

    def get_intent(self, intent_id: str) -> Intent:
        raise GatewayError("Offline payments have no provider intent.")

    def capture(self, intent_id: str, *, amount: int, key: str) -> Intent:
        raise GatewayError("Offline payments have no provider intent.")

    def cancel(self, intent_id: str, *, key: str) -> Intent:
        raise GatewayError("Offline payments have no provider intent.")

    def refund(self, intent_id: str, *, amount: int, key: str, reason: str, reference: str) -> RefundResult:
        return RefundResult(id=key, status="succeeded", amount=amount)

    def find_refund(self, intent_id: str, *, reference: str) -> RefundResult | None:
        return None

    def create_connected_account(self, *, farm_id: int, country: str, key: str) -> ConnectedAccount:
        raise GatewayError(NO_CONNECT)

    def create_account_link(self, account_id: str, *, refresh_url: str, return_url: str, key: str) -> AccountLink:
        raise GatewayError(NO_CONNECT)

    def create_transfer(
        self, *, amount: int, currency: str, destination: str, transfer_group: str, payout_id: int, key: str,
        order_id: int | None = None, source_transaction: str | None = None,
    ) -> Transfer:  # fmt: skip
        raise GatewayError(NO_CONNECT)

    def find_transfer(self, *, transfer_group: str, payout_id: int, order_id: int | None = None) -> Transfer | None:
        return None

    def reverse_transfer(self, transfer_id: str, *, amount: int, key: str) -> TransferReversal:
        raise GatewayError(NO_CONNECT)

    def find_reversal(self, transfer_id: str, *, key: str) -> TransferReversal | None:
        return None

    def find_connected_account(self, *, farm_id: int) -> ConnectedAccount | None:
        return None

    def balance_transactions(self, *, created_gte: int, created_lt: int, page_size: int) -> list[BalanceTransaction]:
        # Offline money is reconciled against the operators' confirmations.
        return []


def _mapped(error: stripe.StripeError) -> Exception:
    """What a Stripe error means for the call that met it."""
    if isinstance(error, stripe.CardError):
        return CardDeclined(error.user_message or str(error))
    if error.http_status == 409 or isinstance(error, stripe.APIConnectionError):
        # A request with this key still in flight (a 409, which stripe-python
        # raises as an APIError once its own retries met it too: Stripe kept
        # nothing for the key), or a timeout: it may have arrived, or yet succeed.
        return AmbiguousAnswer(str(error))
    if isinstance(error, stripe.IdempotencyError):  # the key was first used with other parameters
        return KeySpent(str(error))
    if isinstance(error, stripe.RateLimitError):  # refused before it ran: the same key again
        return TransientError(str(error))
    if isinstance(error, stripe.APIError):  # Stripe's own 5xx
        return KeySpent(str(error))
    return GatewayError(error.user_message or str(error))


def _intent(resource: Any) -> Intent:
    obj = resource.to_dict()
    charge = obj.get("latest_charge")
    card = ((charge.get("payment_method_details") or {}).get("card") or {}) if isinstance(charge, dict) else {}
    return Intent(
        id=obj["id"],
        status=obj["status"],
        amount=obj["amount"],
        amount_capturable=obj.get("amount_capturable") or 0,
        amount_received=obj.get("amount_received") or 0,
        client_secret=obj.get("client_secret"),
        latest_charge=id_of(obj.get("latest_charge")),
        capture_before=card.get("capture_before"),
    )


def id_of(value: Any) -> str | None:
    """An expandable field's id, whether it came expanded or not."""
    return value.get("id") if isinstance(value, dict) else value


class StripeGateway:
    provider = Provider.STRIPE

    def __init__(
        self, secret_key: str, *, api_base: str | None = None, key_prefix: str = "", timeout: float = 20.0
    ) -> None:
        # Every idempotency key starts with the deployment's prefix, so two
        # environments (or a database started afresh) sharing one Stripe
        # account never replay each other's answers.
        self.key_prefix = key_prefix
        base_addresses: dict[str, str | None] = {"api": api_base} if api_base else {}
        self.client = stripe.StripeClient(
            secret_key,
            base_addresses=base_addresses,  # type: ignore[arg-type]
            max_network_retries=2,
            http_client=stripe.RequestsClient(timeout=timeout),
        )

    def _key(self, key: str) -> dict[str, str]:
        return {"idempotency_key": f"{self.key_prefix}{key}"}

    def _call(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except stripe.StripeError as error:
            raise _mapped(error) from error

    def create_intent(self, *, order_id: int, amount: int, currency: str, key: str) -> Intent:
        params = {
            "amount": amount,
            "currency": currency.lower(),
            "capture_method": "manual",
            "transfer_group": f"order-{order_id}",
            "metadata": {"order_id": str(order_id)},
            "automatic_payment_methods": {"enabled": True},
        }
        return _intent(self._call(self.client.v1.payment_intents.create, params, self._key(key)))

    def get_intent(self, intent_id: str) -> Intent:
        params = {"expand": ["latest_charge"]}  # for when its hold lapses
        return _intent(self._call(self.client.v1.payment_intents.retrieve, intent_id, params))

    def capture(self, intent_id: str, *, amount: int, key: str) -> Intent:
        return _intent(
            self._call(
                self.client.v1.payment_intents.capture,
                intent_id,
                {"amount_to_capture": amount},
                self._key(key),
            )
        )

    def cancel(self, intent_id: str, *, key: str) -> Intent:
        return _intent(self._call(self.client.v1.payment_intents.cancel, intent_id, None, self._key(key)))

    def refund(self, intent_id: str, *, amount: int, key: str, reason: str, reference: str) -> RefundResult:
        # The reference names our refund, so a refund.updated that overtakes
        # our own record of the answer still finds it.
        params = {"payment_intent": intent_id, "amount": amount, "metadata": {"reason": reason[:500], "key": reference}}
        return _refund(self._call(self.client.v1.refunds.create, params, self._key(key)).to_dict())

    def find_refund(self, intent_id: str, *, reference: str) -> RefundResult | None:
        found = self._find(
            self.client.v1.refunds.list,
            {"payment_intent": intent_id},
            lambda obj: (obj.get("metadata") or {}).get("key") == reference,
        )
        return None if found is None else _refund(found)

    def create_connected_account(self, *, farm_id: int, country: str, key: str) -> ConnectedAccount:
        params = {
            "type": "express",
            "country": country,
            "capabilities": {"transfers": {"requested": True}},
            "metadata": {"farm_id": str(farm_id)},
        }
        return _account(self._call(self.client.v1.accounts.create, params, self._key(key)).to_dict())

    def create_account_link(self, account_id: str, *, refresh_url: str, return_url: str, key: str) -> AccountLink:
        params = {
            "account": account_id,
            "refresh_url": refresh_url,
            "return_url": return_url,
            "type": "account_onboarding",
        }
        obj = self._call(self.client.v1.account_links.create, params, self._key(key)).to_dict()
        return AccountLink(url=obj["url"], expires_at=int(obj["expires_at"]))

    def create_transfer(
        self, *, amount: int, currency: str, destination: str, transfer_group: str, payout_id: int, key: str,
        order_id: int | None = None, source_transaction: str | None = None,
    ) -> Transfer:  # fmt: skip
        params: dict[str, Any] = {
            "amount": amount,
            "currency": currency.lower(),
            "destination": destination,
            "transfer_group": transfer_group,
            "metadata": _transfer_metadata(payout_id, order_id),
        }
        if source_transaction is not None:
            params["source_transaction"] = source_transaction
        return _transfer(self._call(self.client.v1.transfers.create, params, self._key(key)))

    def find_transfer(self, *, transfer_group: str, payout_id: int, order_id: int | None = None) -> Transfer | None:
        wanted = _transfer_metadata(payout_id, order_id)

        def named(obj: dict[str, Any]) -> bool:
            metadata = obj.get("metadata") or {}
            return {name: metadata.get(name) for name in ("payout_id", "order_id") if name in metadata} == wanted

        found = self._find(self.client.v1.transfers.list, {"transfer_group": transfer_group}, named)
        return None if found is None else _transfer(found)

    def reverse_transfer(self, transfer_id: str, *, amount: int, key: str) -> TransferReversal:
        params = {"amount": amount, "metadata": {"key": key}}
        obj = self._call(self.client.v1.transfers.reversals.create, transfer_id, params, self._key(key)).to_dict()
        return TransferReversal(id=obj["id"], amount=obj["amount"])

    def find_reversal(self, transfer_id: str, *, key: str) -> TransferReversal | None:
        found = self._find(
            lambda params: self.client.v1.transfers.reversals.list(transfer_id, params),
            {},
            lambda obj: (obj.get("metadata") or {}).get("key") == key,
        )
        return None if found is None else TransferReversal(id=found["id"], amount=found["amount"])

    def find_connected_account(self, *, farm_id: int) -> ConnectedAccount | None:
        found = self._find(
            self.client.v1.accounts.list, {}, lambda obj: (obj.get("metadata") or {}).get("farm_id") == str(farm_id)
        )
        return None if found is None else _account(found)

    def _find(self, list_page: Any, params: dict[str, Any], wanted: Any) -> dict[str, Any] | None:
        """The first object of a Stripe list that is `wanted`, page by page."""
        params = {**params, "limit": 100}
        while True:
            page = self._call(list_page, params).to_dict()
            for obj in page["data"]:
                if wanted(obj):
                    return dict(obj)
            if not page["has_more"] or not page["data"]:
                return None
            params["starting_after"] = page["data"][-1]["id"]

    def balance_transactions(self, *, created_gte: int, created_lt: int, page_size: int) -> list[BalanceTransaction]:
        params = {
            "created": {"gte": created_gte, "lt": created_lt},
            "limit": page_size,
            "expand": ["data.source"],
        }

        def fetch() -> list[BalanceTransaction]:
            # Pages are fetched lazily as the iterator advances, so the whole
            # walk sits inside one `_call` to map every page's errors.
            pages = self.client.v1.balance_transactions.list(params)  # type: ignore[arg-type]
            return [_balance_transaction(obj.to_dict()) for obj in pages.auto_paging_iter()]

        result: list[BalanceTransaction] = self._call(fetch)
        return result


def _balance_transaction(obj: dict[str, Any]) -> BalanceTransaction:
    source = obj.get("source")
    details = source if isinstance(source, dict) else {"id": source}
    intent = details.get("payment_intent")
    rate = obj.get("exchange_rate")
    # A charge's `amount` is what was authorised; its balance transaction
    # moved what was captured.
    own = details.get("amount_captured") if details.get("object") == "charge" else None
    own = details.get("amount") if own is None else own
    currency = details.get("currency")
    return BalanceTransaction(
        id=obj["id"],
        type=obj["type"],
        amount=obj["amount"],
        fee=obj.get("fee") or 0,
        currency=obj["currency"].upper(),
        created=obj["created"],
        source_id=details.get("id"),
        payment_intent_id=id_of(intent),
        # Stripe sends the rate as a JSON number; its shortest repr is the number sent.
        exchange_rate=None if rate is None else Decimal(str(rate)),
        source_amount=None if own is None else (-abs(own) if obj["amount"] < 0 else abs(own)),
        source_currency=currency.upper() if isinstance(currency, str) else None,
    )


def transfers_active(account: dict[str, Any]) -> bool:
    """Whether Stripe accepts transfers to a connected account: its
    `transfers` capability is active (`payouts_enabled` is about the
    account's own payouts to its bank, not about receiving transfers)."""
    return (account.get("capabilities") or {}).get("transfers") == "active"


def _account(obj: dict[str, Any]) -> ConnectedAccount:
    return ConnectedAccount(
        id=obj["id"],
        payouts_enabled=bool(obj.get("payouts_enabled")),
        details_submitted=bool(obj.get("details_submitted")),
        transfers_active=transfers_active(obj),
    )


def _refund(obj: dict[str, Any]) -> RefundResult:
    return RefundResult(
        id=obj["id"], status=obj["status"], amount=obj["amount"], failure_reason=obj.get("failure_reason")
    )


def _transfer_metadata(payout_id: int, order_id: int | None) -> dict[str, str]:
    """What names a payout's transfer at Stripe: the payout, and the order
    whose charge it draws on (none for the one from the balance)."""
    return {"payout_id": str(payout_id)} | ({} if order_id is None else {"order_id": str(order_id)})


def _transfer(resource: Any) -> Transfer:
    obj = resource if isinstance(resource, dict) else resource.to_dict()
    return Transfer(id=obj["id"], amount=obj["amount"], amount_reversed=obj.get("amount_reversed") or 0)


def init_app(app: Flask) -> None:
    key = app.config["STRIPE_SECRET_KEY"]
    gateway: PaymentGateway = (
        StripeGateway(
            key, api_base=app.config["STRIPE_API_BASE"] or None, key_prefix=app.config["STRIPE_IDEMPOTENCY_PREFIX"]
        )
        if key
        else OfflineGateway()
    )
    app.extensions["payment_gateway"] = gateway


def gateway() -> PaymentGateway:
    chosen: PaymentGateway = current_app.extensions["payment_gateway"]
    return chosen
