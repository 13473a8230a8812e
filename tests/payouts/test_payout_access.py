"""Who may do what with payouts and the ledger: every endpoint, every role."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from market.accounts.models import Role
from market.extensions import db
from market.payouts.models import Payout
from tests.factories import user_with_token
from tests.payouts.conftest import bank_details, run, settled_order
from tests.shop import Shop


@pytest.fixture
def paid_out(client: FlaskClient, shop: Shop) -> dict[str, Any]:
    bank_details(client, shop, shop.orchard.id)
    order = settled_order(client, shop, (shop.oranges, 1000))
    run_id = run(client, shop).json["id"]
    payout = db.session.scalars(select(Payout)).one()
    return {"order": order["id"], "run": run_id, "payout": payout.id}


def callers(shop: Shop) -> dict[str, dict[str, str]]:
    _, buyer_h = user_with_token(Role.BUYER)
    return {
        "anonymous": {},
        "buyer": buyer_h,
        "other farmer": shop.chestnut_h,
        "owner": shop.orchard_h,
        "operator": shop.operator_h,
    }


# (method, path, body, expected status by caller)
def endpoints(ids: dict[str, Any], shop: Shop) -> list[tuple[str, str, Any, dict[str, int]]]:
    farm, payout, run_id = shop.orchard.id, ids["payout"], ids["run"]
    operators_only = {"anonymous": 401, "buyer": 403, "other farmer": 403, "owner": 403, "operator": 200}
    return [
        (
            "post",
            f"/api/v1/farms/{farm}/payout-account",
            {"method": "bank_transfer", "account_holder": "刘长生", "bank_name": "农行", "account_number": "62284800"},
            {"anonymous": 401, "buyer": 403, "other farmer": 404, "owner": 200, "operator": 403},
        ),
        (
            "get",
            f"/api/v1/farms/{farm}/payout-account",
            None,
            {"anonymous": 401, "buyer": 404, "other farmer": 404, "owner": 200, "operator": 200},
        ),
        ("get", "/api/v1/payout-runs", None, operators_only),
        ("get", f"/api/v1/payout-runs/{run_id}", None, operators_only),
        ("get", f"/api/v1/payout-runs/{run_id}/bank-file.csv", None, operators_only),
        (
            "get",
            "/api/v1/payouts",
            None,
            {"anonymous": 401, "buyer": 403, "other farmer": 200, "owner": 200, "operator": 200},
        ),
        (
            "get",
            f"/api/v1/payouts/{payout}",
            None,
            {"anonymous": 401, "buyer": 403, "other farmer": 404, "owner": 200, "operator": 200},
        ),
        (
            "get",
            f"/api/v1/payouts/{payout}/statement.csv",
            None,
            {"anonymous": 401, "buyer": 403, "other farmer": 404, "owner": 200, "operator": 200},
        ),
        ("post", f"/api/v1/payouts/{payout}/retry", None, operators_only | {"operator": 409}),
        ("get", "/api/v1/ledger/balances", None, operators_only),
        ("get", "/api/v1/ledger/entries", None, operators_only),
        ("post", "/api/v1/payout-runs", {"period_end": "2026-01-01"}, operators_only | {"operator": 201}),
        ("post", f"/api/v1/payouts/{payout}/confirm", {"bank_reference": "ABC-1"}, operators_only),
    ]


def test_every_role_on_every_endpoint(client: FlaskClient, shop: Shop, paid_out: dict[str, Any]) -> None:
    who = callers(shop)
    wrong = []
    for method, path, body, expected in endpoints(paid_out, shop):
        # The operator goes last: their call may change state (a confirmation).
        for caller in ("anonymous", "buyer", "other farmer", "owner", "operator"):
            kwargs: dict[str, Any] = {"headers": who[caller]}
            if body is not None:
                kwargs["json"] = body
            response = getattr(client, method)(path, **kwargs)
            if response.status_code != expected[caller]:
                wrong.append(f"{caller} {method.upper()} {path}: {response.status_code}, expected {expected[caller]}")
            if response.status_code >= 400:
                assert response.mimetype == "application/problem+json", path
    assert wrong == []


def test_farmers_see_only_their_own_payouts(client: FlaskClient, shop: Shop, paid_out: dict[str, Any]) -> None:
    own = client.get("/api/v1/payouts", headers=shop.orchard_h).json["items"]
    assert [p["id"] for p in own] == [paid_out["payout"]]
    assert client.get("/api/v1/payouts", headers=shop.chestnut_h).json["items"] == []
    filtered = client.get("/api/v1/payouts", query_string={"farm_id": shop.orchard.id}, headers=shop.chestnut_h).json
    assert filtered["items"] == []


def test_operators_filter_payouts(client: FlaskClient, shop: Shop, paid_out: dict[str, Any]) -> None:
    def ids(**query: Any) -> list[int]:
        response = client.get("/api/v1/payouts", query_string=query, headers=shop.operator_h)
        assert response.status_code == 200, response.json
        return [p["id"] for p in response.json["items"]]

    assert ids(run_id=paid_out["run"]) == [paid_out["payout"]]
    assert ids(run_id=paid_out["run"] + 1) == []
    assert ids(farm_id=shop.chestnuts.id) == []
    assert ids(status="awaiting_confirmation") == [paid_out["payout"]]
    assert ids(status="paid") == []
    assert client.get("/api/v1/payouts", query_string={"status": "lost"}, headers=shop.operator_h).status_code == 422


def test_ledger_entries_by_account_and_order_page_by_cursor(
    client: FlaskClient, shop: Shop, paid_out: dict[str, Any]
) -> None:
    balances = client.get("/api/v1/ledger/balances?limit=100", headers=shop.operator_h).json
    assert balances["next_cursor"] is None
    balances = balances["items"]
    by_account = {b["account"]: b["balance"] for b in balances}
    assert sum(by_account.values()) == 0
    assert by_account[f"farm_payable:{shop.orchard.id}"] == 0
    assert by_account["payouts_in_transit"] == -949

    seen: list[int] = []
    cursor = None
    while True:
        query: dict[str, Any] = {"order_id": paid_out["order"], "limit": 2}
        if cursor:
            query["cursor"] = cursor
        page = client.get("/api/v1/ledger/entries", query_string=query, headers=shop.operator_h).json
        assert all(entry["order_id"] == paid_out["order"] for entry in page["items"])
        seen += [entry["id"] for entry in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(seen, reverse=True)
    assert len(seen) == len(set(seen)) >= 5  # receipt (2), release (2), capture (3)

    transit = client.get(
        "/api/v1/ledger/entries", query_string={"account": "payouts_in_transit"}, headers=shop.operator_h
    ).json["items"]
    assert [(e["kind"], e["reference"], e["amount"]) for e in transit] == [
        ("payout", f"payout:{paid_out['payout']}", -949)
    ]
