"""A local stand-in for Stripe's API, run as an HTTP server on 127.0.0.1.

It behaves like Stripe where our code depends on it: form-encoded requests,
idempotency keys (a repeat replays the first answer, the same key with other
parameters is refused, a rate-limited 429 is not kept for its key, and a
repeat that arrives while the first is still being handled is a 409, also
not kept),
manual-capture PaymentIntents (capture at most what is capturable, the rest
released), refunds of at least 1 and at most what was captured and not
refunded or being refunded, card
errors (402) and injected server errors (500); for Connect, Express
accounts, onboarding links, transfers (at most the platform balance, or,
drawn on a charge by `source_transaction`, at most what is left of it; listed
by transfer group) and their reversals; no accounts in mainland China.
Every capture, refund, transfer and reversal leaves a balance transaction
(charges with Stripe's fee, 2.9% + 30), listed newest first by `created`
range with `starting_after` pages and an expandable `source`. A balance
transaction is in the account's settlement currency: given one other than
a movement's own, the amount is converted at the rate the test set and the
rate reported as `exchange_rate`, while the source keeps its own amount and
currency. Tests can drop, alter or add balance transactions to stand for a
gateway that disagrees with the ledger, and lose a request or its answer on
the network (`lose_next`: the connection is cut, as by a timeout or a
reset, for the client's own retries too). Webhook payloads are
signed with Stripe's scheme (`t=<ts>,v1=<HMAC-SHA256 of "<ts>.<payload>">`).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

Response = tuple[int, dict[str, Any]]


def _nest(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Stripe's form encoding: `metadata[order_id]=1` -> {"metadata": {"order_id": "1"}}."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        parts = re.findall(r"[^\[\]]+", key)
        target = result
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = value
    return result


def sign(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """A Stripe-Signature header for `payload`."""
    ts = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{ts}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={ts},v1={digest}"


def stripe_fee(amount: int) -> int:
    """Stripe's card fee on a charge: 2.9% + 30 minor units, half-up."""
    return (amount * 29 + 500) // 1000 + 30


def _error(status: int, kind: str, message: str, code: str | None = None) -> Response:
    body: dict[str, Any] = {"type": kind, "message": message}
    if code:
        body["code"] = code
    return status, {"error": body}


@dataclass
class FakeStripe:
    """The state of the fake account; tests drive it and read it."""

    intents: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    transfers: dict[str, dict[str, Any]] = field(default_factory=dict)
    reversals: dict[str, dict[str, Any]] = field(default_factory=dict)
    charges: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Intent id -> when its card hold lapses (Unix seconds), once authorised.
    holds_until: dict[str, int] = field(default_factory=dict)
    # Oldest first; the list endpoint serves them newest first, like Stripe.
    balance_transactions: list[dict[str, Any]] = field(default_factory=list)
    # What the platform can transfer from its balance (a transfer drawn on a charge needs none); None: unlimited.
    available_balance: int | None = None
    # The platform's settlement currency (lower case, as Stripe writes it;
    # None: each movement settles in its own currency) and, by presentment
    # currency, what one unit is worth in it (currencies of the same minor unit).
    settlement_currency: str | None = None
    exchange_rates: dict[str, float] = field(default_factory=dict)
    calls: Counter[str] = field(default_factory=Counter)
    fail_next: list[tuple[str, int]] = field(default_factory=list)  # (path prefix, HTTP status): not done
    fail_after: list[str] = field(default_factory=list)  # path prefixes: done, but answered with a 500
    decline_next: list[str] = field(default_factory=list)  # path prefixes
    # Path prefix (or "<METHOD> <path prefix>") -> seconds to sit on a request.
    hold: dict[str, float] = field(default_factory=dict)
    refuse_next: list[tuple[str, str]] = field(default_factory=list)  # (path prefix, message): a 400
    # ("<METHOD> <path>", exactly; whether Stripe gets it): the next such
    # request is lost on the network, after Stripe acted on it (its answer
    # lost) or before it arrived. The connection is cut without an answer,
    # and so is every repeat under its idempotency key (the client's own
    # retries) until `reconnect`.
    lose_next: list[tuple[str, bool]] = field(default_factory=list)
    # How the next refunds come out when created ("pending" ones end by `finish_refund`).
    refund_outcomes: list[str] = field(default_factory=list)
    _keys: dict[str, tuple[str, dict[str, Any], Response]] = field(default_factory=dict)
    _in_flight: set[str] = field(default_factory=set)  # keys of POSTs being handled
    _cut_off: set[str] = field(default_factory=set)  # keys of POSTs lost on the way, until `reconnect`
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    lock: threading.RLock = field(default_factory=threading.RLock)
    received: threading.Event = field(default_factory=threading.Event)

    def _id(self, prefix: str) -> str:
        return f"{prefix}_{next(self._ids):08d}"

    # What a buyer does in Stripe.js: confirm the card, so the money is held
    # (seven days for an online card payment, less on some networks).
    def authorise(self, intent_id: str, *, hold_seconds: int = 7 * 86400) -> dict[str, Any]:
        with self.lock:
            intent = self.intents[intent_id]
            intent.update(status="requires_capture", amount_capturable=intent["amount"])
            self.holds_until[intent_id] = int(time.time()) + hold_seconds
            return dict(intent)

    # What the card network does when a hold is not captured in time.
    def lapse(self, intent_id: str) -> dict[str, Any]:
        with self.lock:
            intent = self.intents[intent_id]
            intent.update(status="canceled", amount_capturable=0, cancellation_reason="automatic")
            return dict(intent)

    # What a farmer does on Stripe's onboarding pages.
    def finish_onboarding(self, account_id: str) -> dict[str, Any]:
        with self.lock:
            account = self.accounts[account_id]
            account.update(
                details_submitted=True, payouts_enabled=True, charges_enabled=True, capabilities={"transfers": "active"}
            )
            return dict(account)

    def transferred_to(self, account_id: str) -> int:
        """What the connected account holds from transfers, less reversals."""
        with self.lock:
            return sum(
                t["amount"] - t["amount_reversed"] for t in self.transfers.values() if t["destination"] == account_id
            )

    # Balance transactions, and hooks that make the gateway disagree with the ledger.
    def _record(self, kind: str, amount: int, currency: str, source: dict[str, Any], *, card_fee: bool = False) -> None:
        settled, rate = amount, None
        if self.settlement_currency is not None and self.settlement_currency != currency:
            rate = self.exchange_rates[currency]
            settled = int((Decimal(str(rate)) * amount).quantize(Decimal(1), ROUND_HALF_UP))
        fee = stripe_fee(settled) if card_fee else 0
        self.balance_transactions.append(
            {
                "id": self._id("txn"),
                "object": "balance_transaction",
                "type": kind,
                "amount": settled,
                "fee": fee,
                "net": settled - fee,
                "currency": self.settlement_currency or currency,
                "exchange_rate": rate,
                "created": int(time.time()),
                "status": "available",
                "source": source["id"],
            }
        )

    def balance_transaction_of(self, source_id: str) -> dict[str, Any]:
        with self.lock:
            return next(t for t in self.balance_transactions if t["source"] == source_id)

    def drop_balance_transaction(self, source_id: str) -> None:
        """The gateway has no record of `source_id` (a charge, refund, transfer or reversal)."""
        with self.lock:
            self.balance_transactions.remove(self.balance_transaction_of(source_id))

    def change_amount(self, source_id: str, amount: int) -> None:
        """The gateway records another gross amount for `source_id` (signed like Stripe's)."""
        with self.lock:
            record = self.balance_transaction_of(source_id)
            record.update(amount=amount, net=amount - record["fee"])

    def add_unknown_charge(self, amount: int, currency: str = "cny") -> str:
        """A charge the platform never asked for (made in the dashboard, say)."""
        with self.lock:
            return self._charge({"id": self._id("pi"), "currency": currency}, amount)["id"]

    def _charge(self, intent: dict[str, Any], amount: int) -> dict[str, Any]:
        charge = {
            "id": self._id("ch"),
            "object": "charge",
            "amount": intent.get("amount", amount),  # what was authorised
            "amount_captured": amount,
            "currency": intent["currency"],
            "payment_intent": intent["id"],
            "status": "succeeded",
        }
        self.charges[charge["id"]] = charge
        self._record("charge", amount, intent["currency"], charge, card_fee=True)
        return charge

    def _list_balance_transactions(self, params: dict[str, Any]) -> Response:
        created = params.get("created") or {}
        limit = int(params.get("limit", 10))
        if not 1 <= limit <= 100:
            return _error(400, "invalid_request_error", "limit must be between 1 and 100.")
        found = [
            t
            for t in reversed(self.balance_transactions)
            if ("gte" not in created or t["created"] >= int(created["gte"]))
            and ("lt" not in created or t["created"] < int(created["lt"]))
        ]
        after = params.get("starting_after")
        if after is not None:
            ids = [t["id"] for t in found]
            if after not in ids:
                return _error(400, "invalid_request_error", f"No such balance_transaction: '{after}'")
            found = found[ids.index(after) + 1 :]
        expand = "data.source" in set((params.get("expand") or {}).values())
        sources = {**self.charges, **self.refunds, **self.transfers, **self.reversals}
        page = [
            dict(t, source=dict(sources[t["source"]])) if expand and t["source"] in sources else dict(t)
            for t in found[:limit]
        ]
        return 200, {"object": "list", "url": "/v1/balance_transactions", "has_more": len(found) > limit, "data": page}

    def event(self, kind: str, obj: dict[str, Any], *, event_id: str | None = None) -> bytes:
        body = {
            "id": event_id or self._id("evt"),
            "object": "event",
            "type": kind,
            "created": int(time.time()),
            "data": {"object": obj},
            "livemode": False,
            "api_version": "2025-01-01",
        }
        return json.dumps(body).encode()

    # The network between the platform and Stripe.
    def lost(self, method: str, path: str, key: str | None) -> str | None:
        """How a request arriving now is lost, if it is: "request" (Stripe
        never gets it: a repeat of a lost one, or one lost on its way) or
        "answer" (Stripe acts on it; its answer never arrives)."""
        with self.lock:
            if key is not None and key in self._cut_off:
                return "request"
            index = next((i for i, (where, _) in enumerate(self.lose_next) if where == f"{method} {path}"), None)
            if index is None:
                return None
            _, arrives = self.lose_next.pop(index)
            if key is not None:
                self._cut_off.add(key)
            return "answer" if arrives else "request"

    def reconnect(self) -> None:
        """The network is back: requests under keys lost before get through."""
        with self.lock:
            self._cut_off.clear()

    # Request handling.
    def begin(self, method: str, key: str | None) -> Response | None:
        """A POST with `key` arrives: while another with that key is still
        being handled (and none has been answered yet), Stripe answers 409
        and keeps nothing for the key; else it is noted as in flight until
        `end`."""
        with self.lock:
            if key is None or method != "POST" or key in self._keys:
                return None
            if key in self._in_flight:
                return _error(
                    409,
                    "idempotency_error",
                    "There is currently another in-progress request using this Stripe API key and idempotency "
                    "key. Please try again later.",
                )
            self._in_flight.add(key)
            return None

    def end(self, key: str | None) -> None:
        with self.lock:
            self._in_flight.discard(key or "")

    def handle(self, method: str, path: str, params: dict[str, Any], key: str | None) -> Response:
        with self.lock:
            if key is not None and method == "POST":
                earlier = self._keys.get(key)
                if earlier is not None:
                    if earlier[0] != path or earlier[1] != params:
                        return _error(
                            400,
                            "idempotency_error",
                            "Keys for idempotent requests can only be used with the same parameters they were "
                            "first used with.",
                        )
                    return earlier[2]
            refusal = next(
                (i for i, (prefix, _) in enumerate(self.refuse_next) if path.startswith(prefix) and method == "POST"),
                None,
            )
            failure = next((i for i, (prefix, _) in enumerate(self.fail_next) if path.startswith(prefix)), None)
            if failure is not None:
                response = _error(self.fail_next.pop(failure)[1], "api_error", "An error occurred on Stripe's servers.")
            elif refusal is not None:
                response = _error(400, "invalid_request_error", self.refuse_next.pop(refusal)[1])
            else:
                response = self._route(method, path, params)
                lost = next((i for i, prefix in enumerate(self.fail_after) if path.startswith(prefix)), None)
                if lost is not None:  # done, but the answer is an error
                    del self.fail_after[lost]
                    response = _error(500, "api_error", "An error occurred on Stripe's servers.")
            # Every answer is kept for its key and replayed to a repeat, a
            # refusal or a 5xx included (Stripe keeps a 5xx for a while too),
            # but a 429: Stripe refused the request before running it, so
            # the same key runs it when asked again.
            if key is not None and method == "POST" and response[0] != 429:
                self._keys[key] = (path, params, response)
            return response

    def _route(self, method: str, path: str, params: dict[str, Any]) -> Response:  # noqa: PLR0911, PLR0912 (one per endpoint)
        if method == "POST" and path == "/v1/payment_intents":
            return self._create_intent(params)
        match = re.fullmatch(r"/v1/payment_intents/(pi_\w+)(/capture|/cancel)?", path)
        if match:
            intent = self.intents.get(match.group(1))
            if intent is None:
                return _error(404, "invalid_request_error", f"No such payment_intent: '{match.group(1)}'")
            action = match.group(2)
            if method == "GET" and action is None:
                return 200, self._with_charge(intent, params)
            if method == "POST" and action == "/capture":
                return self._capture(intent, params)
            if method == "POST" and action == "/cancel":
                return self._cancel(intent)
        if path == "/v1/refunds":
            return self._refund(params) if method == "POST" else self._list_refunds(params)
        if path == "/v1/accounts":
            return self._create_account(params) if method == "POST" else self._list(self.accounts.values(), path)
        if method == "POST" and path == "/v1/account_links":
            return self._create_account_link(params)
        if path == "/v1/transfers":
            return self._create_transfer(params) if method == "POST" else self._list_transfers(params)
        match = re.fullmatch(r"/v1/transfers/(tr_\w+)/reversals", path)
        if match and method == "POST":
            return self._reverse(match.group(1), params)
        if match:
            return self._list((r for r in self.reversals.values() if r["transfer"] == match.group(1)), path)
        if method == "GET" and path == "/v1/balance_transactions":
            return self._list_balance_transactions(params)
        return _error(404, "invalid_request_error", f"Unrecognized request URL ({method}: {path}).")

    def _create_intent(self, params: dict[str, Any]) -> Response:
        amount = int(params["amount"])
        if amount < 1 or amount > 99_999_999:
            return _error(400, "invalid_request_error", "Amount must be between 1 and 99999999.", "amount_too_large")
        if any(p.startswith("/v1/payment_intents") for p in self.decline_next):
            self.decline_next.remove(next(p for p in self.decline_next if p.startswith("/v1/payment_intents")))
            return _error(402, "card_error", "Your card was declined.", "card_declined")
        intent_id = self._id("pi")
        intent = {
            "id": intent_id,
            "object": "payment_intent",
            "amount": amount,
            "amount_capturable": 0,
            "amount_received": 0,
            "currency": params["currency"],
            "capture_method": params.get("capture_method", "automatic"),
            "transfer_group": params.get("transfer_group"),
            "metadata": params.get("metadata", {}),
            "client_secret": f"{intent_id}_secret_{next(self._ids)}",
            "status": "requires_payment_method",
        }
        self.intents[intent_id] = intent
        return 200, dict(intent)

    def _with_charge(self, intent: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        """The intent, its latest charge expanded when asked (with the card's
        `capture_before` while the money is held)."""
        shown = dict(intent)
        if "latest_charge" not in set((params.get("expand") or {}).values()):
            return shown
        charge = self.charges.get(intent.get("latest_charge") or "")
        if charge is not None:
            shown["latest_charge"] = dict(charge)
        elif intent["id"] in self.holds_until:
            shown["latest_charge"] = {
                "id": f"ch_auth_{intent['id']}",
                "object": "charge",
                "captured": False,
                "payment_intent": intent["id"],
                "payment_method_details": {"type": "card", "card": {"capture_before": self.holds_until[intent["id"]]}},
            }
        return shown

    def _capture(self, intent: dict[str, Any], params: dict[str, Any]) -> Response:
        if intent["status"] != "requires_capture":
            return _error(
                400,
                "invalid_request_error",
                f"This PaymentIntent could not be captured because it has a status of {intent['status']}.",
                "payment_intent_unexpected_state",
            )
        amount = int(params.get("amount_to_capture", intent["amount_capturable"]))
        if amount > intent["amount_capturable"]:
            return _error(
                400, "invalid_request_error", "amount_to_capture exceeds amount_capturable.", "amount_too_large"
            )
        intent.update(status="succeeded", amount_received=amount, amount_capturable=0)
        intent["latest_charge"] = self._charge(intent, amount)["id"]
        return 200, dict(intent)

    def _cancel(self, intent: dict[str, Any]) -> Response:
        if intent["status"] in ("succeeded", "canceled"):
            return _error(
                400,
                "invalid_request_error",
                f"You cannot cancel this PaymentIntent because it has a status of {intent['status']}.",
                "payment_intent_unexpected_state",
            )
        intent.update(status="canceled", amount_capturable=0)
        return 200, dict(intent)

    def _refund(self, params: dict[str, Any]) -> Response:
        intent = self.intents.get(params.get("payment_intent", ""))
        if intent is None or intent["status"] != "succeeded":
            return _error(400, "invalid_request_error", "This PaymentIntent has no successful charge to refund.")
        amount = int(params.get("amount", intent["amount_received"]))
        if amount < 1:
            return _error(400, "invalid_request_error", "Invalid positive integer", "parameter_invalid_integer")
        # Every refund not failed or cancelled holds its amount, one waiting
        # for the buyer (requires_action) too.
        refunded = sum(
            r["amount"]
            for r in self.refunds.values()
            if r["payment_intent"] == intent["id"] and r["status"] in ("pending", "requires_action", "succeeded")
        )
        if amount > intent["amount_received"] - refunded:
            return _error(
                400,
                "invalid_request_error",
                f"Refund amount ({amount}) is greater than unrefunded amount on charge "
                f"({intent['amount_received'] - refunded})",
                "charge_already_refunded" if refunded else "amount_too_large",
            )
        refund = {
            "id": self._id("re"),
            "object": "refund",
            "amount": amount,
            "currency": intent["currency"],
            "payment_intent": intent["id"],
            "status": self.refund_outcomes.pop(0) if self.refund_outcomes else "succeeded",
            "metadata": params.get("metadata", {}),
        }
        self.refunds[refund["id"]] = refund
        self._record("refund", -amount, intent["currency"], refund)
        return 200, dict(refund)

    def _list_refunds(self, params: dict[str, Any]) -> Response:
        intent = params.get("payment_intent")
        return self._list((r for r in self.refunds.values() if r["payment_intent"] == intent), "/v1/refunds")

    @staticmethod
    def _list(found: Iterable[dict[str, Any]], url: str) -> Response:
        """One page of every object found, newest first, like Stripe's lists."""
        return 200, {"object": "list", "url": url, "has_more": False, "data": [dict(o) for o in found][::-1]}

    def _create_account(self, params: dict[str, Any]) -> Response:
        if params.get("type") != "express":
            return _error(400, "invalid_request_error", "Only express accounts are supported here.")
        if str(params.get("country", "")).upper() == "CN":
            return _error(400, "invalid_request_error", "Connected accounts cannot be created in CN.")
        account = {
            "id": self._id("acct"),
            "object": "account",
            "type": "express",
            "country": params.get("country"),
            "metadata": params.get("metadata", {}),
            "details_submitted": False,
            "payouts_enabled": False,
            "charges_enabled": False,
            "capabilities": {"transfers": "inactive"},
        }
        self.accounts[account["id"]] = account
        return 200, dict(account)

    def _create_account_link(self, params: dict[str, Any]) -> Response:
        if params.get("account") not in self.accounts:
            return _error(400, "invalid_request_error", f"No such account: '{params.get('account')}'")
        link_id = self._id("link")
        return 200, {
            "object": "account_link",
            "url": f"https://connect.stripe.test/setup/e/{params['account']}/{link_id}",
            "created": int(time.time()),
            "expires_at": int(time.time()) + 300,
        }

    def _create_transfer(self, params: dict[str, Any]) -> Response:
        amount = int(params["amount"])
        account = self.accounts.get(params.get("destination", ""))
        if account is None:
            return _error(400, "invalid_request_error", f"No such destination: '{params.get('destination')}'")
        if account["capabilities"].get("transfers") != "active":
            return _error(400, "invalid_request_error", "The destination account cannot receive transfers yet.")
        source = params.get("source_transaction")
        if source is not None:  # drawn on the charge: the available balance is not needed
            refused = self._refuse_source(source, amount, params["currency"])
            if refused is not None:
                return refused
        elif self.available_balance is not None:
            if amount > self.available_balance:
                return _error(
                    400,
                    "invalid_request_error",
                    "You have insufficient available funds in your Stripe account.",
                    "balance_insufficient",
                )
            self.available_balance -= amount
        transfer = {
            "id": self._id("tr"),
            "object": "transfer",
            "amount": amount,
            "amount_reversed": 0,
            "currency": params["currency"],
            "destination": account["id"],
            "transfer_group": params.get("transfer_group"),
            "source_transaction": source,
            "metadata": params.get("metadata", {}),
            "reversed": False,
        }
        self.transfers[transfer["id"]] = transfer
        self._record("transfer", -amount, transfer["currency"], transfer)
        return 200, dict(transfer)

    def _refuse_source(self, charge_id: str, amount: int, currency: str) -> Response | None:
        """Stripe's checks of a transfer's `source_transaction`: a charge of
        this account, in the transfer's currency, with enough of it left
        (its amount less the transfers already drawn on it)."""
        charge = self.charges.get(charge_id)
        if charge is None:
            return _error(400, "invalid_request_error", f"No such charge: '{charge_id}'", "resource_missing")
        if charge["currency"] != currency:
            return _error(
                400, "invalid_request_error", "The currency of source_transaction's balance transaction must match."
            )
        left = charge["amount"] - self.drawn_on(charge_id)
        if amount > left:
            return _error(
                400,
                "invalid_request_error",
                f"Transfer amount ({amount}) exceeds what is left of the source transaction ({left}).",
            )
        return None

    def drawn_on(self, charge_id: str) -> int:
        """What transfers have drawn on a charge (`source_transaction`)."""
        with self.lock:
            return sum(t["amount"] for t in self.transfers.values() if t.get("source_transaction") == charge_id)

    def _list_transfers(self, params: dict[str, Any]) -> Response:
        found = [dict(t) for t in self.transfers.values() if t["transfer_group"] == params.get("transfer_group")]
        return 200, {"object": "list", "url": "/v1/transfers", "has_more": False, "data": found}

    def _reverse(self, transfer_id: str, params: dict[str, Any]) -> Response:
        transfer = self.transfers.get(transfer_id)
        if transfer is None:
            return _error(404, "invalid_request_error", f"No such transfer: '{transfer_id}'")
        amount = int(params.get("amount", transfer["amount"] - transfer["amount_reversed"]))
        if amount > transfer["amount"] - transfer["amount_reversed"]:
            return _error(400, "invalid_request_error", "The reversal amount exceeds what is left of the transfer.")
        transfer["amount_reversed"] += amount
        transfer["reversed"] = transfer["amount_reversed"] == transfer["amount"]
        reversal = {
            "id": self._id("trr"),
            "object": "transfer_reversal",
            "amount": amount,
            "currency": transfer["currency"],
            "transfer": transfer_id,
            "metadata": params.get("metadata", {}),
        }
        self.reversals[reversal["id"]] = reversal
        self._record("transfer_refund", amount, transfer["currency"], reversal)
        return 200, dict(reversal)

    def finish_refund(self, refund_id: str, status: str, failure_reason: str | None = None) -> dict[str, Any]:
        """What the buyer's bank does to a pending refund; returns the refund for a refund.updated event."""
        with self.lock:
            refund = self.refunds[refund_id]
            refund.update(status=status, failure_reason=failure_reason)
            if status in ("failed", "canceled"):
                intent = self.intents[refund["payment_intent"]]
                self._record("refund_failure", refund["amount"], intent["currency"], refund)
            return dict(refund)

    def total_refunded(self, intent_id: str) -> int:
        """What went back to the buyer: refunds that succeeded."""
        with self.lock:
            return sum(
                r["amount"]
                for r in self.refunds.values()
                if r["payment_intent"] == intent_id and r["status"] == "succeeded"
            )


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _serve(self, method: str) -> None:
        fake = self.server.fake
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode() if length else url.query
        if not (self.headers.get("Authorization") or "").startswith("Bearer sk_"):
            status, body = _error(401, "invalid_request_error", "Invalid API Key provided.")
        else:
            key = self.headers.get("Idempotency-Key")
            lost = fake.lost(method, url.path, key)
            if lost == "request":
                self.close_connection = True  # cut without an answer
                return
            with fake.lock:  # counted as it arrives, before any hold
                fake.calls[f"{method} {url.path}"] += 1
            fake.received.set()
            conflict = fake.begin(method, key)
            if conflict is not None:
                status, body = conflict
            else:
                try:
                    for prefix, seconds in list(fake.hold.items()):
                        if url.path.startswith(prefix) or f"{method} {url.path}".startswith(prefix):
                            time.sleep(seconds)
                    status, body = fake.handle(method, url.path, _nest(parse_qsl(raw)), key)
                finally:
                    fake.end(key if method == "POST" else None)
            if lost == "answer":
                self.close_connection = True  # done at Stripe, the answer never sent
                return
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Request-Id", f"req_{time.monotonic_ns()}")
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: FakeStripe) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fake = fake


class FakeStripeServer:
    def __init__(self) -> None:
        self.fake = FakeStripe()
        self._server = _Server(self.fake)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakeStripeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
