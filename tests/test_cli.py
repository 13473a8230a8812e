from __future__ import annotations

from flask import Flask
from sqlalchemy import select

from market import demo
from market.accounts.models import Role, User
from market.extensions import db
from market.orders.models import Order
from market.payments.models import Payment
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
    (cash,) = db.session.scalars(select(Payment.amount).where(Payment.cash_up_id == cash_up.id)).all()
    assert (cash_up.status, cash_up.expected, cash_up.counted) == ("submitted", cash, cash)
    token = next(line.split()[1] for line in second.output.splitlines() if "buyer@" in line)
    me = app.test_client().get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    assert me.json["roles"] == ["buyer"]
