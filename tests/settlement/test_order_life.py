"""Model-based: the whole life of orders, interleaved at random, with the
settlement invariants checked after every step.

A hypothesis state machine drives the real services, the very functions the
routes, the Stripe webhook receiver and the Celery tasks call: placing an
order over two farms (a sponsor programme with a small budget and a
buyer-funded one running), paying offline or by card against the local fake
Stripe (authorisation webhooks late, twice or after the order closed; the
request for an intent, first or renewed after a lapsed hold, or its answer
lost on the network, and the opening retried by the worker after a part was
cancelled, the order closed or the intent cancelled in Stripe's dashboard),
packing by weight (over, under, exact, short), shipping, parts from another
county scanned in and out at the county centre (some left there a while),
harvest lots added to stock (some by a client holding a stale ETag of the
listing, refused), station receipt (a part at a time, or all in one scan), pickup and
delivery, capture (also with a cancel landing between the provider's answer
and our record of it), cancelling parts and orders, expiry, refunds by line
and grams (tiny ones too, some refused by the provider), the sponsor's
deposits (a bank reference recorded twice refused), orders placed for
villagers and paid in cash at the station, the station's cash-ups (counted
short, over or right; a stale preview refused) and their deposits (the
bank receiving less than was counted; a bank reference confirmed twice
refused), orders sold by a livestream host (placed with its code) and by
the station (collected there), whose commissions are earned, given back
with refunds and paid, while an operator changes the sellers' rates (and
the host rate a programme sets for its lines) or stops them between any
two steps, payout runs with
bank transfers and a Stripe Connect farm (its transfers drawn on the
orders' charges, or from a platform balance that may run dry; refused
payouts retried by an operator). Worker steps are the outbox rows the
services write, run by calling the task's service function, in any order,
some twice.

The invariants live in `tests/settlement/checks.py`, one function each.

CI profile (10 examples of up to 25 steps, the same ones every run, no
shrinking: a failing sequence is printed as generated):

    DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test REDIS_URL=redis://127.0.0.1:6379/0 \\
      .venv/bin/python -m pytest tests/settlement -n 0

Other examples of the same length: `SETTLEMENT_PROFILE=explore` (15 of
them), with `--hypothesis-seed=N` to choose them.

Long profile (400 examples of up to 60 steps, or SETTLEMENT_EXAMPLES of
them; failures shrunk to a short sequence):

    SETTLEMENT_PROFILE=long DATABASE_URL=... REDIS_URL=... .venv/bin/python -m pytest tests/settlement -n 0
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import select
from werkzeug.datastructures import ETags

from market.accounts.models import Role
from market.auth import Actor
from market.catalog import service as catalog
from market.catalog.models import PayoutMethod
from market.catalog.schemas import ListingSchema
from market.commissions import service as commissions
from market.commissions.models import SellerKind, SellerPayout, SellerPayoutStatus
from market.conditional import Expected, etag_of
from market.db import business_today, utcnow
from market.errors import DomainError
from market.extensions import TransientError, db
from market.ledger import service as ledger
from market.money import tolerance_bounds
from market.notifications.models import Notification
from market.orders import routing
from market.orders import service as orders
from market.orders.models import Fulfilment, Order, OrderStatus, PartHop, PartStatus, StationStaff
from market.orders.service import LineRequest, Weighing
from market.outbox import OutboxMessage
from market.payments import service as payments
from market.payments.gateway import AmbiguousAnswer, GatewayError, Intent, OfflineGateway, RefundResult
from market.payments.models import Payment, PaymentAttempt, PaymentStatus, Provider, Refund, RefundStatus
from market.payouts import service as payouts
from market.payouts.models import Payout, PayoutStatus
from market.premiums import deposits
from market.premiums import service as premiums
from market.premiums.models import FundedBy, PremiumProgramme
from market.premiums.service import sponsor_liability
from market.stations import cashups
from market.stations import service as stations
from tests.conftest import empty_tables, settings_for
from tests.factories import UserFactory, token_for
from tests.fakes.stripe_server import FakeStripe, FakeStripeServer
from tests.payments.conftest import stripe_settings
from tests.settlement import checks
from tests.shop import make_shop

PROFILES = {
    # Bounded for CI: no shrinking (it can take minutes); the failing
    # sequence is printed as generated and replayed from .hypothesis/. The
    # same examples every run, so a green commit stays green; the long
    # profile (and --hypothesis-seed) explores.
    "ci": settings(
        max_examples=10,
        derandomize=True,
        phases=[Phase.explicit, Phase.reuse, Phase.generate],
        stateful_step_count=25,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    ),
    # The CI profile's length, random: `--hypothesis-seed=N` picks which examples.
    "explore": settings(
        max_examples=15,
        phases=[Phase.explicit, Phase.generate],
        stateful_step_count=25,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    ),
    "long": settings(
        max_examples=int(os.environ.get("SETTLEMENT_EXAMPLES", "400")),
        stateful_step_count=60,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    ),
}
PROFILE = PROFILES[os.environ.get("SETTLEMENT_PROFILE", "ci")]
# How much a run did, shown in pytest's summary ("counts"): examples run to
# the end and the states the invariants checked.
RUN: Counter[str] = Counter()

HOST_CODE = "LIVE-1"
SPONSOR_RATE = 1000  # per kg: a sponsor premium in whole fen per gram, so rounding never blurs a check
SPONSOR_CAP = 4000
BUYER_RATE = 50
WEIGHINGS = st.sampled_from(["exact", "over", "under", "most", "least", "short"])
LISTINGS = st.lists(st.integers(0, 2), min_size=1, max_size=3, unique=True)
STEPS = st.integers(0, 3)
REFUND_SIZES = st.sampled_from(["1g", "2g", "tenth", "half", "rest"])
# Worker steps the end of an example runs at most before it calls those left a problem.
DRAIN_STEPS = 1000
# Cash-ups of past days come before today's, from this many days back.
PAST_CASH_UPS = 20
# Steps that end an order's life act on one draw in four, so that lives
# also run their whole course (paid, packed, captured, refunded, paid out).
WHIM = st.integers(0, 3)
# Requests for an intent lost on the network at most at once (each costs
# the Stripe client's own retries, about a second).
MAX_LOST = 2
# Worker steps that move money or stock, by outbox task name (the rest send notifications).
TASKS: dict[str, Callable[..., Any]] = {
    "payments.open": lambda order_id, **_: payments.open_payment(order_id),
    "payments.capture": lambda order_id, **_: payments.capture(order_id),
    "payments.settle_closed_order": lambda order_id, **_: payments.settle_closed_order(order_id),
    "payments.part_cancelled": lambda order_id, part_id, **_: payments.refund_cancelled_part(order_id, part_id),
    "payments.refund": lambda refund_id, **_: payments.process_refund(refund_id),
    "payments.read_hold": lambda order_id, **_: payments.read_hold(order_id),
    "payouts.dispatch_run": lambda run_id, **_: payouts.dispatch_run(run_id),
    "payouts.transfer": lambda payout_id, **_: payouts.transfer(payout_id),
    "payouts.reverse": lambda reversal_id, **_: payouts.reverse(reversal_id),
}


def forget_everything(fake: FakeStripe) -> None:
    """A fresh Stripe account for a fresh database: ids there restart at 1,
    so our idempotency keys (`order-1-intent`) would replay the last example's."""
    fresh = FakeStripe()
    for name in (
        "intents", "refunds", "accounts", "transfers", "reversals", "charges", "balance_transactions",
        "available_balance", "calls", "fail_next", "decline_next", "hold", "refuse_next", "_keys", "holds_until",
        "lose_next", "_cut_off",
    ):  # fmt: skip
        setattr(fake, name, getattr(fresh, name))


def actor(user_id: int, *roles: Role) -> Actor:
    return Actor(user_id=user_id, roles=frozenset(roles))


class SettlementGateway:
    """The app's payment gateway for this test: the real Stripe gateway
    (pointed at the fake), or the offline one while an offline payment is
    being opened and for refunds of offline payments. Armed by a rule, it
    runs another service call right after the provider answered a capture
    and before `capture()` records it: a cancel racing the capture. A
    request for an intent lost on the network (with the client's own
    retries) is lost for that call only: the next call gets through."""

    def __init__(self, stripe_gateway: Any, app: Flask, fake: FakeStripe) -> None:
        self.stripe = stripe_gateway
        self.offline = OfflineGateway()
        self.app = app
        self.fake = fake
        self.opening_offline = False
        self.refuse_offline_refund = False
        self.after_capture: Callable[[], None] | None = None
        self.race_errors: list[str] = []

    @property
    def provider(self) -> Provider:
        return Provider.OFFLINE if self.opening_offline else Provider.STRIPE

    def create_intent(self, **kwargs: Any) -> Intent | None:
        if self.opening_offline:
            return self.offline.create_intent(**kwargs)
        if "-renewal-" in kwargs["key"]:
            RUN["renewal intents asked for"] += 1
        try:
            result: Intent | None = self.stripe.create_intent(**kwargs)
        except AmbiguousAnswer:
            which = "renewal intents" if "-renewal-" in kwargs["key"] else "intents"
            RUN[f"{which} asked for without an answer"] += 1
            raise
        finally:
            self.fake.reconnect()
        return result

    def capture(self, intent_id: str, *, amount: int, key: str) -> Intent:
        intent: Intent = self.stripe.capture(intent_id, amount=amount, key=key)
        race, self.after_capture = self.after_capture, None
        if race is not None:
            with self.app.app_context():  # its own session, as another request or worker would have
                try:
                    race()
                except DomainError:
                    db.session.rollback()
                except Exception as error:
                    db.session.rollback()
                    self.race_errors.append(f"{type(error).__name__}: {error}")
        return intent

    def refund(self, intent_id: str, **kwargs: Any) -> RefundResult:
        if intent_id:
            result: RefundResult = self.stripe.refund(intent_id, **kwargs)
            return result
        if self.refuse_offline_refund:
            self.refuse_offline_refund = False
            raise GatewayError("The bank returned the transfer: account closed.")
        return self.offline.refund(intent_id, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stripe, name)


@dataclass
class Task:
    outbox_id: int
    name: str
    kwargs: dict[str, Any]


class OrderLife(RuleBasedStateMachine):
    orders = Bundle("orders")

    def __init__(self, app: Flask, fake: FakeStripe) -> None:
        super().__init__()
        self.app = app
        self.fake = fake
        self.books = checks.Books()
        self.errors: list[str] = []
        self.later: list[str] = []  # violations found once the workers were done
        self.pending: list[Task] = []
        self.done: list[Task] = []
        self.outbox_seen = 0
        self.lots = 0
        self.listing_tags: dict[int, str] = {}  # the ETag a farmer's client last read, by listing
        self.keys = 0  # Idempotency-Keys the buyer's app has used

    # --- running steps ----------------------------------------------------

    def attempt(self, what: str, step: Callable[[], Any]) -> Any:
        """Run one service call as a request or task would: a domain refusal
        is rolled back and fine; anything else is a 500 and a failure."""
        try:
            return step()
        except DomainError:
            db.session.rollback()
        except Exception as error:
            db.session.rollback()
            self.errors.append(f"{what}: {type(error).__name__}: {error}")
        finally:
            self.errors.extend(f"{what}, racing cancel: {e}" for e in self.gateway.race_errors)
            self.gateway.race_errors.clear()
        return None

    def collect_tasks(self) -> None:
        db.session.rollback()
        for message in db.session.scalars(
            select(OutboxMessage).where(OutboxMessage.id > self.outbox_seen).order_by(OutboxMessage.id)
        ):
            self.outbox_seen = message.id
            if message.task in TASKS:
                self.pending.append(Task(message.id, message.task, dict(message.kwargs)))
        db.session.rollback()

    def run_task(self, task: Task) -> bool:
        """Run a worker step; False when it hit a transient error (retried later)."""
        try:
            TASKS[task.name](**task.kwargs)
        except TransientError:
            db.session.rollback()
            return False
        except DomainError:
            db.session.rollback()
        except Exception as error:
            db.session.rollback()
            self.errors.append(f"worker {task.name}({task.kwargs}): {type(error).__name__}: {error}")
        finally:
            self.errors.extend(f"worker {task.name}, racing cancel: {e}" for e in self.gateway.race_errors)
            self.gateway.race_errors.clear()
        return True

    def drain(self) -> None:
        """Run every pending worker step, and those they add, until none is
        left; a step that keeps failing transiently is a problem, not a
        reason to stop early and blame what it would have done."""
        for _ in range(DRAIN_STEPS):
            self.collect_tasks()
            if not self.pending:
                return
            task = self.pending.pop(0)
            if self.run_task(task):
                self.done.append(task)
            else:
                self.pending.append(task)
        self.later.append(f"worker steps still failing after {DRAIN_STEPS} runs: {self.pending}")

    def banks_answer(self) -> None:
        """Every worker step runs, and every refund Stripe has pending is
        answered (succeeded), until neither is left: an answer's webhook may
        add steps, and a step may make a refund the bank has not answered."""
        for _ in range(10):
            self.drain()
            waiting = [r["id"] for r in self.fake.refunds.values() if r["status"] == "pending"]
            if not waiting:
                return
            for stripe_refund_id in waiting:
                self.finish_refund(stripe_refund_id, "succeeded")

    # --- the market ---------------------------------------------------------

    @initialize(
        target=orders,
        listings=LISTINGS,
        steps=STEPS,
        pickup=st.booleans(),
        card=st.booleans(),
        station_fixed=st.booleans(),
    )
    def open_market(self, listings: list[int], steps: int, pickup: bool, card: bool, station_fixed: bool) -> int:
        """Two farms (one paid by bank transfer, one by Stripe Connect), three
        listings, the two programmes, a livestream host with bank details
        and the station as sellers (the station at a fixed amount per order
        or basis points, without bank details: payout runs skip it), and a
        first order."""
        # The previous example's session must let go of its rows before the
        # tables are emptied, or emptying them waits on its locks for ever.
        db.session.remove()
        empty_tables()
        self.gateway: SettlementGateway = self.app.extensions["payment_gateway"]
        self.gateway.after_capture = None
        self.gateway.refuse_offline_refund = False
        forget_everything(self.fake)
        shop = make_shop()
        self.shop = shop
        shop.pomelos.price_per_kg = 400  # a gram of pomelo is worth less than half a fen
        db.session.commit()
        self.buyer = actor(shop.buyer.id, Role.BUYER)
        self.buyer_token = token_for(shop.buyer)
        self.operator = actor(UserFactory(roles=[Role.OPERATOR]).id, Role.OPERATOR)
        self.staff = actor(self.staff_of(shop.station.id), Role.BUYER)
        self.centre_staff = actor(self.staff_of(shop.centre.id), Role.BUYER)
        self.farmers = {farm.id: actor(farm.owner_id, Role.FARMER) for farm in (shop.orchard, shop.chestnuts)}
        self.listings = [shop.oranges.id, shop.pomelos.id, shop.nuts.id]
        self.books.initial_stock = {listing_id: 100_000 for listing_id in self.listings}
        start = utcnow() - timedelta(days=1)
        db.session.add_all(
            [
                PremiumProgramme(
                    name="Harvest bonus", sponsor="County co-op", funded_by=FundedBy.SPONSOR,
                    rate_per_kg=SPONSOR_RATE, valid_from=start, budget_cap=SPONSOR_CAP,
                ),
                PremiumProgramme(
                    name="Retail plus", sponsor="Fresh Mart", funded_by=FundedBy.BUYER, rate_per_kg=BUYER_RATE,
                    valid_from=start, product_name="Navel orange", host_commission_bp=400,
                ),
            ]
        )  # fmt: skip
        db.session.commit()
        self.sponsored = db.session.scalars(
            select(PremiumProgramme.id).where(PremiumProgramme.funded_by == FundedBy.SPONSOR)
        ).one()
        self.deposit_references: list[str] = []
        self.past_cash_ups = 0
        orchard = shop.orchard
        payouts.connect_payout_account(
            self.farmers[orchard.id],
            orchard.id,
            method=PayoutMethod.BANK_TRANSFER,
            account_holder=orchard.name,
            bank_name="Rural Credit Cooperative",
            account_number="6217000012345678",
        )
        chestnuts_id = shop.chestnuts.id
        payouts.connect_payout_account(self.farmers[chestnuts_id], chestnuts_id, method=PayoutMethod.STRIPE)
        account = payouts.connect_account(chestnuts_id)
        assert account is not None and account.stripe_account_id is not None
        self.fake.finish_onboarding(account.stripe_account_id)
        payouts.account_updated(
            account.stripe_account_id,
            payouts_enabled=True,
            details_submitted=True,
            transfers_active=True,
            created=int(utcnow().timestamp()),
        )
        db.session.commit()
        self.ready_farms = [orchard.id, chestnuts_id]
        # Each farmer's client read its listings once, at the start.
        for listing_id, farm_id in zip(self.listings, (orchard.id, orchard.id, chestnuts_id), strict=True):
            self.listing_tags[listing_id] = self.listing_etag(self.farmers[farm_id], listing_id)
        host = commissions.create_seller(
            self.operator, kind=SellerKind.HOST, name="Xiao Hong live", user_id=UserFactory().id, code=HOST_CODE,
            rate_bp=300, account_holder="王小红", bank_name="Rural Credit Cooperative",
            account_number="6217000099990000",
        )  # fmt: skip
        rate = {"per_order": 40} if station_fixed else {"rate_bp": 150}
        station = commissions.create_seller(
            self.operator, kind=SellerKind.STATION, name="Xialiao station", fulfilment_point_id=shop.station.id, **rate
        )
        self.sellers = [host["id"], station["id"]]
        self.collect_tasks()
        self.pending.clear()
        self.outbox_seen = db.session.scalar(select(OutboxMessage.id).order_by(OutboxMessage.id.desc())) or 0
        return self.place_order(listings, steps, pickup, card, hosted=station_fixed)

    def staff_of(self, point_id: int) -> int:
        return db.session.scalars(
            select(StationStaff.user_id).where(StationStaff.fulfilment_point_id == point_id)
        ).one()

    def order(self, order_id: int) -> Order:
        db.session.rollback()
        order = db.session.get(Order, order_id)
        assert order is not None
        return order

    def payment(self, order_id: int) -> Payment | None:
        return db.session.scalars(select(Payment).where(Payment.order_id == order_id)).one_or_none()

    def intent_of(self, order_id: int) -> str | None:
        payment = self.payment(order_id)
        return payment.stripe_payment_intent_id if payment else None

    # --- buyers -----------------------------------------------------------

    @rule(target=orders, listings=LISTINGS, steps=STEPS, pickup=st.booleans(), card=st.booleans(), hosted=st.booleans())
    def place_order(self, listings: list[int], steps: int, pickup: bool, card: bool, hosted: bool = False) -> int:
        """A buyer's order, picked up at the station or delivered, paid by
        card or offline, placed with the host's code or not."""
        lines = []
        for index in listings:
            listing = {0: self.shop.oranges, 1: self.shop.pomelos, 2: self.shop.nuts}[index]
            lines.append(LineRequest(self.listings[index], listing.min_order_g + steps * listing.step_g))
        where: dict[str, Any] = (
            {"fulfilment_point_id": self.shop.station.id} if pickup else {"delivery_address": "寻乌县 长宁镇 12号"}
        )
        code = {"attribution_code": HOST_CODE} if hosted else {}
        placed = self.attempt("place_order", lambda: orders.place_order(self.buyer, lines=lines, **where, **code))
        if placed is None:
            return 0
        order_id: int = placed.id
        # The "payments.open" task, with the gateway the buyer chose.
        self.gateway.opening_offline = not card
        try:
            self.open_payment(order_id)
        finally:
            self.gateway.opening_offline = False
        return order_id

    def open_payment(self, order_id: int) -> None:
        """The order's "payments.open" task, run at once. A transient error
        (Stripe's answer lost) leaves the payment being opened: the task the
        order queued opens it when the worker runs it (again)."""

        def open_now() -> None:
            try:
                payments.open_payment(order_id)
            except TransientError:
                db.session.rollback()

        self.attempt("open_payment", open_now)

    @rule(target=orders, listings=LISTINGS, steps=STEPS, repeats=st.integers(1, 2), other_body=st.booleans())
    def buyer_app_places_and_retries(self, listings: list[int], steps: int, repeats: int, other_body: bool) -> int:
        """The buyer's app places an order over the API with an
        Idempotency-Key, then sends it again (a timeout, a retry): a repeat
        runs the order's work and rolls it back, answers the first order and
        takes nothing more; the same key on another body is a 422."""
        shop = self.shop
        grams = {0: shop.oranges, 1: shop.pomelos, 2: shop.nuts}
        lines = [
            {"listing_id": self.listings[i], "grams": grams[i].min_order_g + steps * grams[i].step_g} for i in listings
        ]
        body = {"lines": lines, "fulfilment_point_id": shop.station.id}
        self.keys += 1
        headers = {"Authorization": f"Bearer {self.buyer_token}", "Idempotency-Key": f"app-{self.keys}"}
        db.session.rollback()  # the request's own session must not wait on this one's locks
        client = self.app.test_client()
        first = client.post("/api/v1/orders", json=body, headers=headers)
        if first.status_code != 201:  # refused (stock, the buyer's caps): nothing written
            assert first.status_code in (409, 422), first.json
            return 0
        for _ in range(repeats):
            again = client.post("/api/v1/orders", json=body, headers=headers)
            assert (again.status_code, again.headers.get("Idempotent-Replayed")) == (201, "true"), again.json
            assert again.json == first.json
        if other_body:
            other = client.post("/api/v1/orders", json={**body, "notes": "and a bag"}, headers=headers)
            assert other.status_code == 422, other.json
        order_id: int = first.json["id"]
        self.open_payment(order_id)
        return order_id

    @rule(
        target=orders,
        listings=LISTINGS,
        steps=STEPS,
        pickup=st.booleans(),
        arrives=st.booleans(),
        cancel=st.sampled_from([None, 0, 1]),
    )
    def card_order_opened_without_an_answer(
        self, listings: list[int], steps: int, pickup: bool, arrives: bool, cancel: int | None
    ) -> int:
        """A card order whose request for its intent is lost on the network
        (Stripe made the intent, or never got the request); then, before the
        worker retries the opening, a farmer may cancel a part, so the order
        asks for less than the lost request did."""
        if len(self.fake.lose_next) < MAX_LOST:
            self.fake.lose_next.append(("POST /v1/payment_intents", arrives))
        order = self.place_order(listings, steps, pickup, card=True)
        if order and cancel is not None:
            self.farmer_cancels_part(order, cancel, whim=0)
        return order

    @rule(
        target=orders,
        listings=LISTINGS,
        steps=STEPS,
        pickup=st.booleans(),
        arrives=st.booleans(),
        packed=st.booleans(),
        cancel=st.sampled_from([None, "before the lapse", "after the lapse"]),
    )
    def card_hold_lapses_and_its_renewal_goes_unanswered(
        self, *, listings: list[int], steps: int, pickup: bool, arrives: bool, packed: bool, cancel: str | None
    ) -> int:
        """A card order paid (and perhaps a part packed, or the other part
        cancelled, before the lapse or after it) whose hold lapses (Stripe
        says so), and whose request for the new intent, made by the worker
        at once, is lost on the network: Stripe made it and its answer
        never came, or Stripe never got it."""
        order = self.place_order(listings, steps, pickup, card=True)
        if not order:
            return 0
        self.buyer_confirms_card(order, "now")
        if packed:
            self.farmer_packs(order, 0, ["exact"])
        if cancel == "before the lapse":
            self.farmer_cancels_part(order, 1, whim=0)
        self.stripe_authorisation_lapses(order, webhook=True, whim=0, renewal="made" if arrives else "lost")
        if cancel == "after the lapse":
            self.farmer_cancels_part(order, 1, whim=0)
        self.collect_tasks()
        for task in [t for t in self.pending if t.name == "payments.open" and t.kwargs["order_id"] == order]:
            self.pending.remove(task)
            (self.done if self.run_task(task) else self.pending).append(task)
        return order

    @rule(target=orders, listings=LISTINGS, steps=STEPS, at_once=st.booleans(), then=st.integers(2, 8))
    def staff_place_for_villager(self, listings: list[int], steps: int, at_once: bool, then: int) -> int:
        """Station staff place an order for a villager, paid in cash on
        collection; the villager, at the counter, often confirms at once,
        and the order may then go `then` ordinary steps (to the cash)."""
        lines = []
        for index in listings:
            listing = {0: self.shop.oranges, 1: self.shop.pomelos, 2: self.shop.nuts}[index]
            lines.append(LineRequest(self.listings[index], listing.min_order_g + steps * listing.step_g))
        placed = self.attempt(
            "place_for_villager",
            lambda: stations.place_for_villager(
                self.staff, self.shop.station.id, phone="+8613900000077", name="Aunt Li", lines=lines
            ),
        )
        if placed is None:
            return 0
        if at_once:
            self.villager_confirms(placed.id, right=True)
            for _ in range(then):
                self.order_moves_on(placed.id, ["exact", "under"])
        return int(placed.id)

    @rule(
        target=orders,
        listings=LISTINGS,
        steps=STEPS,
        count=st.sampled_from([None, 0, -37, 120]),
        bank_off=st.sampled_from([None, 0, -3]),
    )
    def villager_order_to_the_cash(
        self, listings: list[int], steps: int, count: int | None, bank_off: int | None
    ) -> int:
        """A villager's order its whole way, so stations hold cash to count:
        placed, confirmed at once, packed, shipped, and collected in cash;
        then, unless `count` is None, the day's cash-up (counted off by
        `count`), and unless `bank_off` is None, its deposit."""
        placed = self.staff_place_for_villager(listings, steps, at_once=True, then=8)
        if count is not None:
            self.station_cashes_up(today=True, off=count, stale=False)
        if bank_off is not None:
            self.operator_confirms_station_deposit(which=-1, bank_off=bank_off, again=False)
        return placed

    @rule(
        target=orders,
        listings=LISTINGS,
        steps=STEPS,
        card=st.booleans(),
        refunds=st.lists(st.tuples(st.integers(0, 2), REFUND_SIZES), max_size=2),
    )
    def hosted_order_its_whole_way(
        self, listings: list[int], steps: int, card: bool, refunds: list[tuple[int, str]]
    ) -> int:
        """An order placed with the host's code and picked up at the station
        (both sellers earn on it), taken its whole way, then refunded in
        part or whole, so that commissions are earned, given back and paid."""
        placed = self.place_order(listings, steps, pickup=True, card=card, hosted=True)
        if placed:
            self.order_goes_a_long_way(placed, ["exact", "under"], 8)
            for line, size in refunds:
                self.operator_refunds(placed, line, size)
        return placed

    @rule(order=orders, right=st.booleans())
    def villager_confirms(self, order: int, right: bool) -> None:
        """The villager tells the staff the texted code (or a wrong one)."""
        if not order:
            return
        db.session.rollback()
        texts = db.session.scalars(
            select(Notification.body)
            .where(Notification.occurrence.like(f"order-{order}-code-%"))
            .order_by(Notification.id)
        ).all()
        if not texts:
            return
        code = re.findall(r"\b\d{6}\b", texts[-1])[0]
        if not right:
            code = "000000" if code != "000000" else "111111"
        self.attempt("confirm_for_villager", lambda: stations.confirm_for_villager(self.staff, order, code))

    def villager_pays_cash(self, order: int) -> None:
        """The villager collects with the pickup code and pays the weighed total."""
        current = self.order(order)
        code, total = current.pickup_code or "", current.total
        paid = self.attempt(
            "collect_with_cash", lambda: stations.collect_with_cash(self.staff, order, code=code, amount=total)
        )
        if paid is not None:
            self.books.cash_taken += total

    # --- stations: the cash-up and its deposit ----------------------------------

    @rule(today=st.booleans(), off=st.sampled_from([0, 0, -37, 120]), stale=st.booleans())
    def station_cashes_up(self, today: bool, off: int, stale: bool) -> None:
        """Staff count the cash of today (or of a past day, whose drawer
        holds no cash taken here) against the preview, now and then off by
        some fen; a preview gone stale (cash taken since) is refused."""
        if today:
            day = business_today()
        else:
            self.past_cash_ups += 1
            day = business_today() - timedelta(days=PAST_CASH_UPS - self.past_cash_ups)
        point = self.shop.station.id
        shown = self.attempt("cash_up_preview", lambda: cashups.preview(self.staff, point, day))
        if shown is None:
            return
        expected = shown["expected"] + (1 if stale else 0)
        counted = max(0, shown["expected"] + off)
        made = self.attempt(
            "record_cash_up",
            lambda: cashups.record(self.staff, point, business_day=day, expected=expected, counted=counted),
        )
        if made is None:
            return
        if stale:
            self.errors.append(f"record_cash_up: cash-up {made.id} was taken against a stale preview")
        self.books.cash_ups[made.id] = (made.expected, made.counted)

    @rule(which=st.integers(0, 3), bank_off=st.sampled_from([0, 0, -3]), again=st.booleans())
    def operator_confirms_station_deposit(self, which: int, bank_off: int, again: bool) -> None:
        """The bank received a cash-up's cash (now and then a little less
        than counted); confirming a bank reference again is refused."""
        deposited = {cash_up_id for cash_up_id, _ in self.books.station_deposits.values()}
        waiting = sorted(i for i, (_, counted) in self.books.cash_ups.items() if counted and i not in deposited)
        if not waiting:
            return
        cash_up_id = waiting[which % len(waiting)]
        repeat = again and bool(self.books.station_deposits)
        reference = (
            list(self.books.station_deposits)[-1] if repeat else f"STATION-{len(self.books.station_deposits) + 1}"
        )
        amount = max(1, self.books.cash_ups[cash_up_id][1] + bank_off)
        made = self.attempt(
            "confirm_deposit",
            lambda: cashups.confirm_deposit(self.operator, cash_up_id, bank_reference=reference, amount=amount),
        )
        if made is None:
            return
        if repeat:
            self.errors.append(f"confirm_deposit: bank reference {reference} was confirmed twice")
        self.books.station_deposits[reference] = (cash_up_id, amount)

    @rule(order=orders, webhook=st.sampled_from(["now", "twice", "later"]))
    def buyer_confirms_card(self, order: int, webhook: str) -> None:
        """Stripe.js confirms the card; Stripe then sends amount_capturable_updated."""
        intent_id = self.intent_of(order) if order else None
        db.session.rollback()
        if intent_id is None or self.fake.intents[intent_id]["status"] != "requires_payment_method":
            return
        self.fake.authorise(intent_id)
        for _ in range({"now": 1, "twice": 2, "later": 0}[webhook]):
            self.stripe_sends_authorised(order)

    @rule(order=orders)
    def stripe_sends_authorised(self, order: int) -> None:
        """The webhook, possibly late, repeated, or after the order closed."""
        intent_id = self.intent_of(order) if order else None
        db.session.rollback()
        if intent_id is None or self.fake.intents[intent_id]["status"] == "requires_payment_method":
            return

        def receive() -> None:
            payments.intent_authorised(intent_id)
            db.session.commit()

        self.attempt("webhook amount_capturable_updated", receive)

    @rule(order=orders)
    def stripe_sends_succeeded(self, order: int) -> None:
        intent_id = self.intent_of(order) if order else None
        db.session.rollback()
        if intent_id is None or self.fake.intents[intent_id]["status"] != "succeeded":
            return
        received = self.fake.intents[intent_id]["amount_received"]

        def receive() -> None:
            payments.intent_captured(intent_id, received)
            db.session.commit()

        self.attempt("webhook payment_intent.succeeded", receive)

    @rule(order=orders)
    def operator_confirms_offline_payment(self, order: int) -> None:
        payment = self.payment(order) if order else None
        if payment is None or payment.provider != Provider.OFFLINE:
            return
        amount = payment.amount
        self.attempt(
            "confirm_offline",
            lambda: payments.confirm_offline(self.operator, order, amount=amount, reference="cash at the station"),
        )

    @rule(order=orders, whim=WHIM)
    def buyer_cancels(self, order: int, whim: int) -> None:
        if order and not whim:
            self.attempt("buyer cancel_order", lambda: orders.cancel_order(self.buyer, order, "changed my mind"))

    @rule(order=orders, whim=WHIM)
    def operator_cancels(self, order: int, whim: int) -> None:
        if order and not whim:
            self.attempt("operator cancel_order", lambda: orders.cancel_order(self.operator, order, "farm flooded"))

    @rule(order=orders, part=st.integers(0, 1), whim=WHIM)
    def farmer_cancels_part(self, order: int, part: int, whim: int) -> None:
        if not order or whim:
            return
        parts = self.order(order).parts
        chosen = parts[part % len(parts)]
        farmer, part_id = self.farmers[chosen.farm_id], chosen.id
        self.attempt("cancel_part", lambda: orders.cancel_part(farmer, order, part_id, "hail damage"))

    @rule(minutes=st.sampled_from([60, 8 * 24 * 60]), whim=WHIM)
    def orders_expire(self, minutes: int, whim: int) -> None:
        if whim:
            return
        self.attempt("expire_unpaid", lambda: orders.expire_unpaid(now=utcnow() + timedelta(minutes=minutes)))

    @rule(
        listing=st.integers(0, 2),
        grams=st.sampled_from([500, 2500]),
        if_match=st.sampled_from(["none", "read now", "read before"]),
    )
    def farmer_adds_lot(self, listing: int, grams: int, if_match: str) -> None:
        """A farmer's client adds a harvest lot, with no If-Match, with the
        listing's ETag read just now, or with the one it read at an earlier
        step (stale when a sale, a lot or a cancel changed the listing)."""
        listing_id = self.listings[listing]
        farmer = self.farmers[self.shop.nuts.farm_id if listing == 2 else self.shop.orchard.id]
        if if_match == "read now":
            self.listing_tags[listing_id] = self.listing_etag(farmer, listing_id)
        tag = None if if_match == "none" else self.listing_tags[listing_id]
        current = self.listing_etag(farmer, listing_id)
        expected = Expected(ETags([tag]), ListingSchema()) if tag else None
        self.lots += 1
        lot = self.attempt(
            "add_lot",
            lambda: catalog.add_lot(
                farmer, listing_id, expected, code=f"LOT-{self.lots}", grams=grams, harvest_date=business_today()
            ),
        )
        if lot is not None:
            assert tag in (None, current), f"a lot was added to listing {listing_id} against a stale ETag"
            self.books.lots_added[listing_id] += grams
        elif tag not in (None, current):
            RUN["lots refused as stale"] += 1

    def listing_etag(self, farmer: Actor, listing_id: int) -> str:
        """The ETag a GET of the listing answers now."""
        db.session.expire_all()
        tag = etag_of(ListingSchema().dump(catalog.get_listing(farmer, listing_id)))
        db.session.rollback()
        return tag

    # --- farms and stations -----------------------------------------------

    @rule(order=orders, part=st.integers(0, 1), weighings=st.lists(WEIGHINGS, min_size=1, max_size=3))
    def farmer_packs(self, order: int, part: int, weighings: list[str]) -> None:
        if not order:
            return
        parts = self.order(order).parts
        chosen = parts[part % len(parts)]
        tolerance = self.app.config["WEIGHT_TOLERANCE_BP"]
        weights = []
        for index, line in enumerate(chosen.lines):
            how = weighings[index % len(weighings)]
            low, high = tolerance_bounds(line.ordered_g, tolerance)
            grams = {
                "exact": line.ordered_g,
                "over": line.ordered_g + line.ordered_g // 20,
                "under": line.ordered_g - line.ordered_g // 20,
                "most": high,
                "least": low,
                "short": 0,
            }[how]
            weights.append(Weighing(line.id, grams, "frost damage" if how == "short" else None))
        farmer, part_id = self.farmers[chosen.farm_id], chosen.id
        self.attempt("pack_part", lambda: orders.pack_part(farmer, order, part_id, weights))

    def ship(self, order: int) -> tuple[dict[int, Actor], bool]:
        """Every packed part of the order ships; its live parts with their
        farmers, and whether they are picked up (at the station, some
        through the county centre)."""
        current = self.order(order)
        plan = {p.id: self.farmers[p.farm_id] for p in current.active_parts}
        pickup = current.fulfilment == Fulfilment.PICKUP
        for part_id, farmer in plan.items():
            self.attempt("ship_part", lambda f=farmer, p=part_id: orders.ship_part(f, order, p))
        return plan, pickup

    @rule(order=orders, dispatch=st.booleans())
    def parts_reach_the_centre(self, order: int, dispatch: bool) -> None:
        """Every packed part ships; those from another county than the
        station are scanned in at the county centre (all at once), and stay
        there or are dispatched on to the station."""
        if not order:
            return
        plan, pickup = self.ship(order)
        routed = [part_id for part_id in plan if pickup and self.routed_through_centre(part_id)]
        if routed:
            centre = self.shop.centre.id
            self.attempt("receive_parts", lambda: routing.receive_parts(self.centre_staff, centre, routed))
            if dispatch:
                self.attempt("dispatch_parts", lambda: routing.dispatch_parts(self.centre_staff, centre, routed))

    @rule(order=orders, bulk=st.booleans())
    def parts_ship_and_arrive(self, order: int, bulk: bool = False) -> None:
        """Every packed part ships; the station takes it in (one by one, or
        all in one scan), after the county centre took in and dispatched
        those from another county; or the farmer delivers it."""
        if not order:
            return
        plan, pickup = self.ship(order)
        if not pickup:
            for part_id, farmer in plan.items():
                self.attempt("deliver_part", lambda f=farmer, p=part_id: orders.deliver_part(f, order, p))
            return
        parts = list(plan)
        routed = [part_id for part_id in parts if self.routed_through_centre(part_id)]
        if routed:
            centre = self.shop.centre.id
            self.attempt("receive_parts", lambda: routing.receive_parts(self.centre_staff, centre, routed))
            self.attempt("dispatch_parts", lambda: routing.dispatch_parts(self.centre_staff, centre, routed))
        if bulk:
            self.attempt("receive_parts", lambda: routing.receive_parts(self.staff, self.shop.station.id, parts))
        for part_id in parts:
            self.attempt("receive_part", lambda p=part_id: orders.receive_part(self.staff, order, p))

    def routed_through_centre(self, part_id: int) -> bool:
        db.session.rollback()
        hop = select(PartHop.id).where(PartHop.part_id == part_id, PartHop.point_id == self.shop.centre.id)
        return db.session.scalar(hop) is not None

    @rule(order=orders, complete=st.booleans())
    def buyer_collects(self, order: int, complete: bool) -> None:
        if not order:
            return
        current = self.order(order)
        code = current.pickup_code
        if current.uncollected_unpaid:
            self.villager_pays_cash(order)
        elif code is not None:
            self.attempt("collect_order", lambda: orders.collect_order(self.staff, order, code))
        if complete:
            self.attempt("complete_order", lambda: orders.complete_order(self.buyer, order))

    @rule(order=orders, weighings=st.lists(WEIGHINGS, min_size=1, max_size=3), steps=st.integers(2, 6))
    def order_goes_a_long_way(self, order: int, weighings: list[str], steps: int) -> None:
        """Several ordinary steps of one order in a row: lives that run their
        whole course, to capture, refunds and payouts."""
        for _ in range(steps):
            self.order_moves_on(order, weighings)

    @rule(order=orders, weighings=st.lists(WEIGHINGS, min_size=1, max_size=3))
    def order_moves_on(self, order: int, weighings: list[str]) -> None:
        """The order's next ordinary step, whatever its state: paid, the
        next part packed, captured, shipped and handed over, collected."""
        if not order:
            return
        current = self.order(order)
        status, payment = current.status, self.payment(order)
        unpacked = [i for i, p in enumerate(current.parts) if p.status == PartStatus.TO_PACK]
        if status == OrderStatus.PENDING_PAYMENT and payment is not None:
            if payment.cash_point_id is not None:
                self.villager_confirms(order, right=True)
            elif payment.provider == Provider.OFFLINE:
                self.operator_confirms_offline_payment(order)
            else:
                self.buyer_confirms_card(order, "now")
        elif unpacked:
            self.farmer_packs(order, unpacked[0], weighings)
        elif (
            status == OrderStatus.PACKED
            and payment is not None
            and payment.cash_point_id is None
            and payment.status != PaymentStatus.CAPTURED
        ):
            self.capture(order)
        elif status in (OrderStatus.PACKED, OrderStatus.SHIPPED):
            self.parts_ship_and_arrive(order)
        elif status in (OrderStatus.READY_FOR_PICKUP, OrderStatus.DELIVERED, OrderStatus.COLLECTED):
            self.buyer_collects(order, complete=True)

    # --- money: capture, refunds ------------------------------------------

    @rule(order=orders)
    def capture(self, order: int) -> None:
        """The capture task (after packing, or its retry)."""
        if order:
            self.attempt("capture", lambda: payments.capture(order))

    @rule(order=orders, race=st.sampled_from(["cancel_order", "cancel_part"]), part=st.integers(0, 1))
    def capture_racing_a_cancel(self, order: int, race: str, part: int) -> None:
        """A cancel lands after Stripe captured and before we record it."""
        if not order:
            return
        parts = self.order(order).parts
        chosen = parts[part % len(parts)]
        farmer, part_id = self.farmers[chosen.farm_id], chosen.id
        if race == "cancel_order":
            self.gateway.after_capture = lambda: orders.cancel_order(self.operator, order, "recalled lot")
        else:
            self.gateway.after_capture = lambda: orders.cancel_part(farmer, order, part_id, "recalled lot")
        try:
            self.attempt("capture", lambda: payments.capture(order))
        finally:
            self.gateway.after_capture = None

    @rule(order=orders)
    def stripe_refuses_next_capture(self, order: int) -> None:
        intent_id = self.intent_of(order) if order else None
        db.session.rollback()
        if intent_id is not None:
            self.fake.refuse_next.append((f"/v1/payment_intents/{intent_id}/capture", "The charge expired."))

    @rule(order=orders, webhook=st.booleans(), whim=WHIM, renewal=st.sampled_from(["answered", "made", "lost"]))
    def stripe_authorisation_lapses(self, order: int, webhook: bool, whim: int, renewal: str) -> None:
        """Stripe cancels an authorisation left uncaptured for seven days
        (every capture from now on is refused) and says so by webhook,
        which may be lost. The next request for an intent, likely the one
        the lapse asks for anew, may be lost on the network: Stripe made
        the intent and its answer never came, or Stripe never got it."""
        intent_id = self.intent_of(order) if order and not whim else None
        db.session.rollback()
        if intent_id is None or self.fake.intents[intent_id]["status"] != "requires_capture":
            return
        self.fake.lapse(intent_id)
        if renewal != "answered" and len(self.fake.lose_next) < MAX_LOST:
            self.fake.lose_next.append(("POST /v1/payment_intents", renewal == "made"))
        if webhook:

            def receive() -> None:
                payments.intent_cancelled(intent_id)
                db.session.commit()

            self.attempt("webhook payment_intent.canceled", receive)

    @rule(order=orders, webhook=st.booleans(), whim=WHIM, unknown=st.booleans())
    def operator_cancels_unpaid_intent_at_stripe(self, order: int, webhook: bool, whim: int, unknown: bool) -> None:
        """Someone cancels, in Stripe's dashboard, an intent the buyer has
        not paid: the first one, or the one a lapsed hold asked for anew; or
        (`unknown`) one of the order's that the market has not heard of, made
        under a request whose answer was lost. Stripe says so by webhook,
        which may be lost."""
        recorded = self.intent_of(order) if order and not whim else None
        db.session.rollback()
        intent_id = self.unknown_intent_of(order, recorded) if unknown and order and not whim else recorded
        if intent_id is None or self.fake.intents[intent_id]["status"] != "requires_payment_method":
            return
        status, _ = self.fake.handle("POST", f"/v1/payment_intents/{intent_id}/cancel", {}, None)
        assert status == 200
        if webhook:

            def receive() -> None:
                payments.intent_cancelled(intent_id)
                db.session.commit()

            self.attempt("webhook payment_intent.canceled", receive)

    def unknown_intent_of(self, order: int, recorded: str | None) -> str | None:
        """An intent Stripe made for the order, unpaid, that the payment does not record."""
        with self.fake.lock:
            return next(
                (
                    intent["id"]
                    for intent in self.fake.intents.values()
                    if intent["metadata"].get("order_id") == str(order)
                    and intent["id"] != recorded
                    and intent["status"] == "requires_payment_method"
                ),
                None,
            )

    @rule(arrives=st.booleans())
    def stripe_answer_to_next_intent_is_lost(self, arrives: bool) -> None:
        """The next request for an intent (an order's first, or the one a
        lapsed hold asks for anew), whichever step makes it, is lost on the
        network with the client's own retries: Stripe makes the intent and
        its answer never comes (`arrives`), or the request never reaches
        Stripe. The market hears a connection error; the payment is still
        being opened, and its "payments.open" task is retried by a later
        worker step, after whatever other steps came between (a part
        cancelled, so the order asks for less; the order cancelled or
        expired; the intent cancelled in Stripe's dashboard)."""
        if len(self.fake.lose_next) < MAX_LOST:
            self.fake.lose_next.append(("POST /v1/payment_intents", arrives))

    @rule(hours=st.sampled_from([0, 24 * 6, 24 * 8]))
    def hold_watcher_runs(self, hours: int) -> None:
        """The beat task that watches card holds, run as if `hours` had
        passed: it warns of holds about to lapse, asks Stripe about holds past
        their time, and cancels orders whose buyer did not pay again."""
        self.attempt("watch_holds", lambda: payments.watch_holds(utcnow() + timedelta(hours=hours)))

    @rule(order=orders, line=st.integers(0, 2), size=REFUND_SIZES)
    def operator_refunds(self, order: int, line: int, size: str) -> None:
        payment = self.payment(order) if order else None
        if payment is None or not payment.captured_lines:
            return
        captured = payment.captured_lines[line % len(payment.captured_lines)]
        grams = {
            "1g": 1,
            "2g": 2,
            "tenth": max(1, captured.grams // 10),
            "half": max(1, captured.grams // 2),
            "rest": captured.grams,
        }[size]
        request = [payments.LineRefund(captured.order_line_id, grams)]
        self.attempt(
            "request_refund",
            lambda: payments.request_refund(self.operator, order, lines=request, reason="bruised"),
        )

    @rule(which=st.integers(0, 3), outcome=st.sampled_from(["succeeded", "refused", "pending"]))
    def refund_worker(self, which: int, outcome: str) -> None:
        """The refund task for one pending refund; the provider may refuse it,
        or (Stripe) answer that it is pending until the buyer's bank says."""
        refused = outcome == "refused"
        db.session.rollback()
        pending = db.session.scalars(
            select(Refund).where(Refund.status == RefundStatus.PENDING).order_by(Refund.id)
        ).all()
        if not pending:
            return
        refund = pending[which % len(pending)]
        refund_id = refund.id
        if refused and refund.payment.provider == Provider.STRIPE:
            self.fake.refuse_next.append(("/v1/refunds", "The card's account is closed."))
        elif refused:
            self.gateway.refuse_offline_refund = True
        elif outcome == "pending" and refund.payment.provider == Provider.STRIPE:
            self.fake.refund_outcomes.append("pending")
        db.session.rollback()
        self.attempt("process_refund", lambda: payments.process_refund(refund_id))
        self.gateway.refuse_offline_refund = False
        self.fake.refuse_next[:] = [r for r in self.fake.refuse_next if r[0] != "/v1/refunds"]

    @rule()
    def stripe_will_leave_the_next_refund_pending(self) -> None:
        """Whichever step asks Stripe for the next refund (a worker's task,
        say) hears it is pending, until the buyer's bank answers."""
        self.fake.refund_outcomes.append("pending")

    @rule(which=st.integers(0, 3), outcome=st.sampled_from(["succeeded", "failed", "canceled"]), twice=st.booleans())
    def stripe_finishes_a_refund(self, which: int, outcome: str, twice: bool) -> None:
        """The buyer's bank answers a refund Stripe had pending; its
        refund.updated webhook comes once or twice."""
        waiting = [r["id"] for r in self.fake.refunds.values() if r["status"] == "pending"]
        if waiting:
            self.finish_refund(waiting[which % len(waiting)], outcome, twice=twice)

    def finish_refund(self, stripe_refund_id: str, outcome: str, *, twice: bool = False) -> None:
        event = self.fake.finish_refund(
            stripe_refund_id, outcome, None if outcome == "succeeded" else "lost_or_stolen_card"
        )

        def receive() -> None:
            payments.refund_updated(event)
            db.session.commit()

        for _ in range(2 if twice else 1):
            db.session.rollback()
            self.attempt("webhook refund.updated", receive)

    # --- operators: the sponsor's money ---------------------------------------

    @rule(amount=st.sampled_from([1, 700, 4000]), again=st.booleans())
    def sponsor_pays_in(self, amount: int, again: bool) -> None:
        """The sponsor's transfer is recorded; recording a bank reference
        again (a second operator, a retry) is refused and adds nothing."""
        repeat = again and bool(self.deposit_references)
        reference = self.deposit_references[-1] if repeat else f"SPONSOR-{len(self.deposit_references) + 1}"
        made = self.attempt(
            "record_deposit",
            lambda: deposits.record_deposit(
                self.operator, self.sponsored, amount=amount, bank_reference=reference, received_on=business_today()
            ),
        )
        if repeat and made is not None:
            self.errors.append(f"record_deposit: bank reference {reference} was recorded twice")
        if made is not None:
            self.deposit_references.append(reference)
            self.books.deposited[self.sponsored] += amount

    # --- operators: payouts ---------------------------------------------------

    @rule()
    def payout_run(self) -> None:
        self.attempt("create_run", lambda: payouts.create_run(self.operator, period_end=business_today()))

    @rule()
    def operator_confirms_bank_transfers(self) -> None:
        db.session.rollback()
        for payout_id in db.session.scalars(
            select(Payout.id).where(Payout.status == PayoutStatus.AWAITING_CONFIRMATION).order_by(Payout.id)
        ).all():
            self.attempt(
                "confirm_bank_transfer",
                lambda p=payout_id: payouts.confirm_bank_transfer(self.operator, p, bank_reference=f"BANK-{p}"),
            )

    @rule(dry=st.booleans())
    def platform_balance_runs_dry(self, dry: bool) -> None:
        """The platform's available balance at Stripe is empty (the charges'
        money not yet available) or plentiful: transfers drawn on a charge
        are made either way, those from the balance are refused when dry."""
        self.fake.available_balance = 0 if dry else None

    @rule()
    def operator_confirms_seller_payouts(self) -> None:
        db.session.rollback()
        for payout_id in db.session.scalars(
            select(SellerPayout.id)
            .where(SellerPayout.status == SellerPayoutStatus.AWAITING_CONFIRMATION)
            .order_by(SellerPayout.id)
        ).all():
            self.attempt(
                "confirm_seller_payout",
                lambda p=payout_id: commissions.confirm_seller_payout(self.operator, p, bank_reference=f"SELLER-{p}"),
            )

    @rule(which=st.integers(0, 1), change=st.sampled_from(["off", "on", "rate", "per_order", "programme"]))
    def operator_changes_a_seller(self, which: int, change: str) -> None:
        """A seller stops or starts earning, or its rate changes, between any
        two steps (a capture decided under one rate is recorded under the
        next); or the sponsor's programme, which lines placed while its budget lasts are sold under,
        starts or stops setting what hosts earn of its lines."""
        if change == "programme":
            programme = db.session.get(PremiumProgramme, self.sponsored)
            assert programme is not None
            rate = None if programme.host_commission_bp is not None else 450
            self.attempt(
                "programme_host_rate", lambda: premiums.set_host_commission(self.operator, self.sponsored, rate)
            )
            return
        changes: dict[str, Any] = {
            "off": {"active": False},
            "on": {"active": True},
            "rate": {"rate_bp": 500},  # all of the platform's commission
            "per_order": {"per_order": 1},
        }[change]
        self.attempt("update_seller", lambda: commissions.update_seller(self.operator, self.sellers[which], changes))

    @rule()
    def operator_retries_failed_payouts(self) -> None:
        db.session.rollback()
        for payout_id in db.session.scalars(
            select(Payout.id).where(Payout.status == PayoutStatus.FAILED).order_by(Payout.id)
        ).all():
            self.attempt("retry_payout", lambda p=payout_id: payouts.retry_payout(self.operator, p))

    # --- workers --------------------------------------------------------------

    @rule(which=st.integers(0, 7))
    def worker_runs_a_task(self, which: int) -> None:
        """One queued worker step, not necessarily the oldest."""
        self.collect_tasks()
        if not self.pending:
            return
        task = self.pending.pop(which % len(self.pending))
        if self.run_task(task):
            self.done.append(task)
        else:
            self.pending.append(task)

    @precondition(lambda self: bool(self.done))
    @rule(which=st.integers(0, 7))
    def worker_redelivers_a_task(self, which: int) -> None:
        """A task delivered again (acks_late after a worker died)."""
        if self.done:
            self.run_task(self.done[which % len(self.done)])

    @rule()
    def quiesce(self) -> None:
        """Every pending worker step runs, then a payout run is made and paid
        (failed payouts retried once the balance is there); the checks that
        hold only once all is settled are made here."""
        self.fake.available_balance = None
        self.operator_retries_failed_payouts()
        self.banks_answer()  # in the end
        self.hold_watcher_runs(24 * 8)  # every hold has lapsed or been taken, every deadline passed
        self.banks_answer()
        db.session.rollback()
        self.later.extend(checks.after_quiesce(self.fake))
        db.session.rollback()
        run = self.attempt("create_run", lambda: payouts.create_run(self.operator, period_end=business_today()))
        if run is None:
            return
        run_id = run.id
        self.drain()
        self.operator_confirms_bank_transfers()
        self.operator_confirms_seller_payouts()
        db.session.rollback()
        self.later.extend(checks.after_payout_run(run_id, self.ready_farms))
        db.session.rollback()

    def teardown(self) -> None:
        if not hasattr(self, "gateway"):
            return
        RUN["examples"] += 1
        self.gateway.after_capture = None
        try:
            self.quiesce()
            self.assert_clean("after every worker step ran", list(self.errors) + list(self.later))
            known = set(db.session.scalars(select(PaymentAttempt.provider_object_id)))
            RUN["intents made that the market never heard of"] += len(set(self.fake.intents) - known)
        finally:
            db.session.remove()

    # --- invariants -------------------------------------------------------------

    def assert_clean(self, what: str, problems: list[str]) -> None:
        db.session.rollback()
        assert not problems, f"{what}:\n  " + "\n  ".join(problems)

    @invariant()
    def no_step_failed_with_a_500(self) -> None:
        RUN["steps checked"] += 1  # invariants run after the first order and after every step
        self.assert_clean("steps failed with more than a refusal", self.errors)

    @invariant()
    def stock_is_conserved(self) -> None:
        db.session.rollback()
        self.assert_clean("stock not conserved", checks.stock(self.books))

    @invariant()
    def each_orders_money_adds_up(self) -> None:
        db.session.rollback()
        self.assert_clean("order money", checks.order_money(self.fake))

    @invariant()
    def sponsor_budgets_add_up(self) -> None:
        db.session.rollback()
        self.assert_clean("sponsor budget", checks.sponsor_budgets())

    @invariant()
    def kept_premiums_follow_kept_grams(self) -> None:
        db.session.rollback()
        self.assert_clean("kept sponsor premium", checks.kept_premiums())

    @invariant()
    def sponsors_owe_what_their_farms_earned_less_their_deposits(self) -> None:
        db.session.rollback()
        problems = checks.sponsor_accounts(self.books)
        statement = deposits.statement(self.operator, self.sponsored)
        owed = ledger.balance(sponsor_liability(self.sponsored))
        if statement["closing_owed"] != owed:
            problems.append(f"the sponsor's statement closes at {statement['closing_owed']}, its account at {owed}")
        self.assert_clean("sponsor account", problems)

    @invariant()
    def every_fen_of_station_cash_is_accounted_for(self) -> None:
        db.session.rollback()
        self.assert_clean("station cash", checks.station_cash(self.books, self.shop.station.id))

    @invariant()
    def farms_earned_what_they_are_paid_and_owed(self) -> None:
        db.session.rollback()
        self.assert_clean("farm money", checks.farm_earnings())

    @invariant()
    def sellers_keep_their_share_and_are_paid_what_they_earned(self) -> None:
        db.session.rollback()
        self.assert_clean("seller commissions", checks.seller_commissions())

    @invariant()
    def each_entry_is_paid_at_most_once(self) -> None:
        db.session.rollback()
        self.assert_clean("entries paid", checks.entries_paid_once())

    @invariant()
    def transfers_are_what_stripe_made(self) -> None:
        db.session.rollback()
        self.assert_clean("Stripe transfers", checks.stripe_transfers(self.fake))

    @invariant()
    def intents_at_stripe_are_what_the_market_records(self) -> None:
        db.session.rollback()
        self.assert_clean("Stripe intents", checks.stripe_intents(self.fake, self.books))

    @invariant()
    def ledger_balances(self) -> None:
        db.session.rollback()
        self.assert_clean("ledger", checks.ledger_balances())

    @invariant()
    def parts_follow_their_routes(self) -> None:
        db.session.rollback()
        self.assert_clean("routes", checks.routes())

    @invariant()
    def settled_once_the_workers_are_done(self) -> None:
        self.assert_clean("once the workers were done", self.later)


@pytest.fixture
def stripe_server() -> Iterator[FakeStripeServer]:
    with FakeStripeServer() as server:
        yield server


@pytest.fixture
def app_overrides(database_url: str, stripe_server: FakeStripeServer) -> dict[str, Any]:
    celery = settings_for(database_url)["CELERY"] | {"broker_url": "memory://"}  # tasks are run by the machine
    # The buyer's app places orders over the API faster than the per-account
    # order limit lets a person (tests/adversarial/test_hoarding.py covers
    # it), and the limit's counters would outlive one example into the next.
    unlimited = {"RATELIMIT_ORDERS": "1000000000 per minute"}
    return {"PAYOUT_HOLD_DAYS": 0, "CELERY": celery, **unlimited, **stripe_settings(stripe_server)}


def test_order_life_keeps_settlement_whole(
    app: Flask, stripe_server: FakeStripeServer, record_property: Callable[[str, object], None]
) -> None:
    app.extensions["payment_gateway"] = SettlementGateway(app.extensions["payment_gateway"], app, stripe_server.fake)
    RUN.clear()
    run_state_machine_as_test(lambda: OrderLife(app, stripe_server.fake), settings=PROFILE)
    record_property("counts", dict(RUN))
