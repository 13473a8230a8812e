from __future__ import annotations

from flask import Flask
from sqlalchemy import select

from market import demo
from market.accounts.models import Role, User
from market.commissions.models import CommissionEntry, CommissionKind, Seller, SellerKind
from market.extensions import db
from market.orders.models import Order
from market.payments.models import Payment
from market.settlement.checks import check_ledger
from market.stations.models import CashUp


def test_create_operator(app: Flask) -> None:
    runner = app.test_cli_runner()
    result = runner.invoke(
        args=["create-operator", "--email", "Ops@Example.test", "--name", "Ops"], input="a long secret\na long secret\n"
    )
    assert result.exit_code == 0, result.output
    user = db.session.scalars(select(User).where(User.email == "ops@example.test")).one()
    assert user.role_names == {Role.OPERATOR}


def test_seed_demo_is_repeatable_and_prints_working_tokens(app: Flask) -> None:
    runner = app.test_cli_runner()
    first = runner.invoke(args=["seed-demo"])
    second = runner.invoke(args=["seed-demo"])
    assert first.exit_code == 0, first.output
    assert second.exit_code == 0, second.output
    assert len(db.session.scalars(select(User).where(User.email.isnot(None))).all()) == len(demo.ACCOUNTS)
    # The station's assisted orders, its cash order collected and the day's cash-up, made once.
    assert len(db.session.scalars(select(User).where(User.email.is_(None))).all()) == len(demo.VILLAGERS)
    assert len(db.session.scalars(select(Order).where(Order.placed_by_id.isnot(None))).all()) == len(demo.VILLAGERS)
    (cash_up,) = db.session.scalars(select(CashUp)).all()
    ((cash, cash_up_order),) = db.session.execute(
        select(Payment.amount, Payment.order_id).where(Payment.cash_up_id == cash_up.id)
    ).all()
    assert (cash_up.status, cash_up.expected, cash_up.counted) == ("submitted", cash, cash)
    # The host and the station, made once, have earned on the host's order
    # and the station's cash order; the ledger agrees.
    (hosted,) = db.session.scalars(select(Order).where(Order.notes == demo.HOSTED_ORDER_NOTE)).all()
    assert hosted.attribution_code == demo.HOST_CODE
    sellers = {seller.kind: seller for seller in db.session.scalars(select(Seller))}
    assert set(sellers) == {SellerKind.HOST, SellerKind.STATION}
    earned = {
        (entry.seller_id, entry.order_id)
        for entry in db.session.scalars(select(CommissionEntry).where(CommissionEntry.kind == CommissionKind.EARNED))
    }
    assert (sellers[SellerKind.HOST].id, hosted.id) in earned
    assert (sellers[SellerKind.STATION].id, hosted.id) in earned
    assert (sellers[SellerKind.STATION].id, cash_up_order) in earned
    assert check_ledger() == []
    host_token = next(line.split()[1] for line in second.output.splitlines() if demo.HOST_EMAIL in line)
    mine = app.test_client().get("/api/v1/sellers", headers={"Authorization": f"Bearer {host_token}"})
    assert [(seller["code"], seller["payable"] > 0) for seller in mine.json["items"]] == [(demo.HOST_CODE, True)]
    token = next(line.split()[1] for line in second.output.splitlines() if "buyer@" in line)
    me = app.test_client().get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    assert me.json["roles"] == ["buyer"]
