from __future__ import annotations

from flask import Flask
from sqlalchemy import select

from market import demo
from market.accounts.models import Role, User
from market.extensions import db


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
    assert db.session.scalars(select(User)).all().__len__() == len(demo.ACCOUNTS)
    token = next(line.split()[1] for line in second.output.splitlines() if "buyer@" in line)
    me = app.test_client().get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    assert me.json["roles"] == ["buyer"]
