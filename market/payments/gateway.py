"""The payment provider behind one small interface.

`StripeGateway` speaks to Stripe (or a local fake / stripe-mock at
STRIPE_API_BASE) through stripe-python's `StripeClient`, with our own
idempotency key on every POST. `OfflineGateway` stands for cash and bank
transfers that an operator confirms; it is chosen when no Stripe key is set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import stripe
from flask import Flask, current_app

from market.extensions import TransientError
from market.payments.models import Provider


class GatewayError(Exception):
    """The provider refused the request for good (retrying will not help)."""


class CardDeclined(GatewayError):
    """The buyer's card was declined; `str(error)` is the provider's reason."""


@dataclass(frozen=True)
class Intent:
    id: str
    status: str
    amount: int
    amount_capturable: int
    amount_received: int
    client_secret: str | None


@dataclass(frozen=True)
class RefundResult:
    id: str
    status: str
    amount: int


class PaymentGateway(Protocol):
    provider: Provider

    def create_intent(self, *, order_id: int, amount: int, currency: str, key: str) -> Intent | None:
        """Ask the provider to hold `amount` for the order (None: nothing to hold online)."""

    def get_intent(self, intent_id: str) -> Intent: ...

    def capture(self, intent_id: str, *, amount: int, key: str) -> Intent:
        """Take `amount` (at most what is held) and release the rest."""

    def cancel(self, intent_id: str, *, key: str) -> Intent: ...

    def refund(self, intent_id: str, *, amount: int, key: str, reason: str) -> RefundResult: ...


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

    def refund(self, intent_id: str, *, amount: int, key: str, reason: str) -> RefundResult:
        return RefundResult(id=key, status="succeeded", amount=amount)


def _intent(resource: Any) -> Intent:
    obj = resource.to_dict()
    return Intent(
        id=obj["id"],
        status=obj["status"],
        amount=obj["amount"],
        amount_capturable=obj.get("amount_capturable") or 0,
        amount_received=obj.get("amount_received") or 0,
        client_secret=obj.get("client_secret"),
    )


class StripeGateway:
    provider = Provider.STRIPE

    def __init__(self, secret_key: str, *, api_base: str | None = None, timeout: float = 20.0) -> None:
        base_addresses: dict[str, str | None] = {"api": api_base} if api_base else {}
        self.client = stripe.StripeClient(
            secret_key,
            base_addresses=base_addresses,  # type: ignore[arg-type]
            max_network_retries=2,
            http_client=stripe.RequestsClient(timeout=timeout),
        )

    def _call(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except stripe.CardError as error:
            raise CardDeclined(error.user_message or str(error)) from error
        except (stripe.APIConnectionError, stripe.RateLimitError) as error:
            raise TransientError(str(error)) from error
        except stripe.APIError as error:  # Stripe's own 5xx
            raise TransientError(str(error)) from error
        except stripe.StripeError as error:
            raise GatewayError(error.user_message or str(error)) from error

    def create_intent(self, *, order_id: int, amount: int, currency: str, key: str) -> Intent:
        params = {
            "amount": amount,
            "currency": currency.lower(),
            "capture_method": "manual",
            "transfer_group": f"order-{order_id}",
            "metadata": {"order_id": str(order_id)},
            "automatic_payment_methods": {"enabled": True},
        }
        return _intent(self._call(self.client.v1.payment_intents.create, params, {"idempotency_key": key}))

    def get_intent(self, intent_id: str) -> Intent:
        return _intent(self._call(self.client.v1.payment_intents.retrieve, intent_id))

    def capture(self, intent_id: str, *, amount: int, key: str) -> Intent:
        return _intent(
            self._call(
                self.client.v1.payment_intents.capture,
                intent_id,
                {"amount_to_capture": amount},
                {"idempotency_key": key},
            )
        )

    def cancel(self, intent_id: str, *, key: str) -> Intent:
        return _intent(self._call(self.client.v1.payment_intents.cancel, intent_id, None, {"idempotency_key": key}))

    def refund(self, intent_id: str, *, amount: int, key: str, reason: str) -> RefundResult:
        params = {"payment_intent": intent_id, "amount": amount, "metadata": {"reason": reason[:500]}}
        obj = self._call(self.client.v1.refunds.create, params, {"idempotency_key": key})
        return RefundResult(id=obj["id"], status=obj["status"], amount=obj["amount"])


def init_app(app: Flask) -> None:
    key = app.config["STRIPE_SECRET_KEY"]
    gateway: PaymentGateway = (
        StripeGateway(key, api_base=app.config["STRIPE_API_BASE"] or None) if key else OfflineGateway()
    )
    app.extensions["payment_gateway"] = gateway


def gateway() -> PaymentGateway:
    chosen: PaymentGateway = current_app.extensions["payment_gateway"]
    return chosen
