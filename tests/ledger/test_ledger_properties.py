"""Property-based: whatever sequence of orders, payments, weighings,
cancellations, refunds and payout runs happens, the ledger balances, no
premium budget is exceeded, and every farm's payouts plus what it is still
owed equal what it earned."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from market.accounts.models import Role
from market.auth import Actor
from market.catalog.models import PayoutMethod
from market.db import utcnow
from market.errors import DomainError
from market.extensions import db
from market.ledger import service as ledger
from market.orders import service as orders
from market.orders.models import Order
from market.orders.service import LineRequest, Weighing
from market.payments import service as payments
from market.payments.models import CapturedLine, Refund, RefundLine, RefundStatus
from market.payouts import service as payouts
from market.payouts.models import Payout
from market.premiums.models import FundedBy, LinePremium, PremiumProgramme
from market.settlement.checks import check_ledger
from tests.conftest import _empty_tables
from tests.factories import UserFactory
from tests.shop import Shop, make_shop

ORDER_IDS = st.integers(min_value=0, max_value=7)
ACTIONS = st.lists(
    st.one_of(
        st.tuples(st.just("order"), st.integers(0, 2), st.integers(1, 4), st.booleans()),
        st.tuples(st.just("pay"), ORDER_IDS),
        st.tuples(st.just("pack"), ORDER_IDS, st.integers(-10, 10), st.booleans()),
        st.tuples(st.just("hand_over"), ORDER_IDS),
        st.tuples(st.just("cancel"), ORDER_IDS, st.booleans()),
        st.tuples(st.just("refund"), ORDER_IDS, st.integers(1, 100)),
        st.tuples(st.just("payout_run")),
    ),
    min_size=1,
    max_size=30,
)


def actor(user_id: int, *roles: Role) -> Actor:
    return Actor(user_id=user_id, roles=frozenset(roles))


class Market:
    """Drives the services the way routes and workers do."""

    def __init__(self, shop: Shop) -> None:
        self.shop = shop
        self.buyer = actor(shop.buyer.id, Role.BUYER)
        self.operator = actor(UserFactory(roles=[Role.OPERATOR]).id, Role.OPERATOR)
        self.order_ids: list[int] = []
        self.listings = [shop.oranges, shop.pomelos, shop.nuts]
        for farm in (shop.orchard, shop.chestnuts):
            payouts.connect_payout_account(
                actor(farm.owner_id, Role.FARMER),
                farm.id,
                method=PayoutMethod.BANK_TRANSFER,
                account_holder=farm.name,
                bank_name="Rural Credit Cooperative",
                account_number="6217000012345678",
            )
        start = utcnow() - timedelta(days=1)
        self.sponsored = PremiumProgramme(
            name="Harvest bonus", sponsor="County co-op", funded_by=FundedBy.SPONSOR, rate_per_kg=100,
            valid_from=start, budget_cap=700, farm_cap=500,
        )  # fmt: skip
        db.session.add(self.sponsored)
        db.session.add(
            PremiumProgramme(
                name="Retail plus", sponsor="Fresh Mart", funded_by=FundedBy.BUYER, rate_per_kg=50,
                valid_from=start, product_name="Navel orange",
            )
        )  # fmt: skip
        db.session.commit()

    def order(self, index: int) -> Order | None:
        if not self.order_ids:
            return None
        return db.session.get(Order, self.order_ids[index % len(self.order_ids)])

    def run(self, action: tuple[Any, ...]) -> None:
        kind = action[0]
        try:
            getattr(self, f"do_{kind}")(*action[1:])
        except DomainError:
            db.session.rollback()  # refused: and a refusal writes nothing

    def do_order(self, listing: int, steps: int, second: bool) -> None:
        first = self.listings[listing]
        lines = [LineRequest(first.id, first.min_order_g + (steps - 1) * first.step_g)]
        if second:
            other = self.listings[(listing + 1) % 3]
            lines.append(LineRequest(other.id, other.min_order_g))
        placed = orders.place_order(self.buyer, lines=lines, delivery_address="No. 8 Changning Road, Xunwu")
        self.order_ids.append(placed.id)
        payments.open_payment(placed.id)

    def do_pay(self, index: int) -> None:
        order = self.order(index)
        if order is not None:
            payments.confirm_offline(self.operator, order.id, amount=order.max_total, reference="cash")

    def do_pack(self, index: int, deviation: int, short: bool) -> None:
        order = self.order(index)
        if order is None:
            return
        for part in list(order.parts):
            weighings = [
                Weighing(line.id, 0, "frost damage")
                if short and i == 0
                else Weighing(line.id, line.ordered_g * (100 + deviation) // 100)
                for i, line in enumerate(part.lines)
            ]
            orders.pack_part(self.operator, order.id, part.id, weighings)
        payments.capture(order.id)

    def do_hand_over(self, index: int) -> None:
        order = self.order(index)
        if order is None:
            return
        for part in list(order.parts):
            orders.ship_part(self.operator, order.id, part.id)
            orders.deliver_part(self.operator, order.id, part.id)
        payments.capture(order.id)

    def do_cancel(self, index: int, by_operator: bool) -> None:
        order = self.order(index)
        if order is None:
            return
        orders.cancel_order(self.operator if by_operator else self.buyer, order.id, "changed plans")
        payments.settle_closed_order(order.id)
        self.settle_refunds()

    def do_refund(self, index: int, percent: int) -> None:
        order = self.order(index)
        if order is None:
            return
        payment = payments.get_payment(self.operator, order.id)
        left = payments._left_to_refund(payment.captured_lines)
        if left:
            wanted = [payments.LineRefund(line.line_id, max(1, line.grams * percent // 100)) for line in left[:1]]
            payments.request_refund(self.operator, order.id, lines=wanted, reason="bruised")
        self.settle_refunds()

    def do_payout_run(self) -> None:
        payouts.create_run(self.operator, period_end=utcnow().date())

    def settle_refunds(self) -> None:
        for refund_id in db.session.scalars(select(Refund.id).where(Refund.status == RefundStatus.PENDING)).all():
            payments.process_refund(refund_id)


def earned(farm_id: int) -> int:
    """What the farm earned, from the domain records rather than the ledger:
    its share of captured lines, less what refunds took back, plus the
    sponsor premiums it kept."""
    captured = db.session.scalar(
        select(func.coalesce(func.sum(CapturedLine.amount - CapturedLine.commission + CapturedLine.premium), 0)).where(
            CapturedLine.farm_id == farm_id
        )
    )
    refunded = db.session.scalar(
        select(func.coalesce(func.sum(RefundLine.amount - RefundLine.commission + RefundLine.premium), 0))
        .join(Refund, Refund.id == RefundLine.refund_id)
        .where(RefundLine.farm_id == farm_id, Refund.status == RefundStatus.SUCCEEDED)
    )
    sponsored = db.session.scalar(
        select(func.coalesce(func.sum(LinePremium.amount), 0))
        .join(CapturedLine, CapturedLine.order_line_id == LinePremium.order_line_id)
        .where(LinePremium.farm_id == farm_id, LinePremium.funded_by == FundedBy.SPONSOR)
    )
    return int(captured or 0) - int(refunded or 0) + int(sponsored or 0)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(actions=ACTIONS)
def test_money_is_conserved_whatever_happens(app: Flask, actions: list[tuple[Any, ...]]) -> None:
    # The last example's session must let go of its rows before the tables
    # are emptied, or PostgreSQL's TRUNCATE waits on it for ever.
    db.session.remove()
    _empty_tables()
    app.config["PAYOUT_HOLD_DAYS"] = 0
    market = Market(make_shop())
    for action in actions:
        market.run(action)

    assert check_ledger() == []
    db.session.expire_all()
    programme = db.session.get(PremiumProgramme, market.sponsored.id)
    assert programme is not None
    assert 0 <= programme.budget_used <= 700
    reserved = db.session.scalar(
        select(func.coalesce(func.sum(LinePremium.amount), 0)).where(LinePremium.programme_id == programme.id)
    )
    assert programme.budget_used == reserved
    for farm in (market.shop.orchard, market.shop.chestnuts):
        owed = -ledger.balance(ledger.farm_payable(farm.id))
        paid = db.session.scalar(select(func.coalesce(func.sum(Payout.amount), 0)).where(Payout.farm_id == farm.id))
        assert paid + owed == earned(farm.id)
