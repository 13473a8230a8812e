"""The reconciliation API: who may use it, what a period must be, and
repeated requests."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

from flask.testing import FlaskClient
from sqlalchemy import func, select

from market.db import utcnow
from market.extensions import db
from market.reconciliation.models import Outcome, ReconciliationItem, ReconciliationRun, RunStatus
from tests.shop import Shop


def period(days_ago: int = 2, length: int = 1) -> dict[str, str]:
    start = utcnow() - timedelta(days=days_ago)
    return {"period_start": start.isoformat(), "period_end": (start + timedelta(days=length)).isoformat()}


def test_only_operators_reconcile(client: FlaskClient, shop: Shop) -> None:
    for headers in (shop.buyer_h, shop.orchard_h):
        assert client.post("/api/v1/reconciliations", json=period(), headers=headers).status_code == 403
        assert client.get("/api/v1/reconciliations", headers=headers).status_code == 403
    assert client.get("/api/v1/reconciliations").status_code == 401


def test_a_period_must_have_ended_and_end_after_it_starts(client: FlaskClient, shop: Shop) -> None:
    future = client.post("/api/v1/reconciliations", json=period(days_ago=0), headers=shop.operator_h)
    assert future.status_code == 422
    assert "period_end" in future.json["errors"]
    backwards = period()
    backwards["period_start"], backwards["period_end"] = backwards["period_end"], backwards["period_start"]
    reversed_ = client.post("/api/v1/reconciliations", json=backwards, headers=shop.operator_h)
    assert reversed_.status_code == 422
    assert "period_end" in reversed_.json["errors"]
    ancient = client.post(
        "/api/v1/reconciliations",
        json={"period_start": "0001-01-01T00:00:00Z", "period_end": "1980-01-01T00:00:00Z"},
        headers=shop.operator_h,
    )
    assert ancient.status_code == 422
    assert db.session.scalar(select(func.count(ReconciliationRun.id))) == 0


def test_a_repeated_key_starts_one_run(client: FlaskClient, shop: Shop) -> None:
    headers = shop.operator_h | {"Idempotency-Key": "recon-1"}
    body = period()
    first = client.post("/api/v1/reconciliations", json=body, headers=headers)
    again = client.post("/api/v1/reconciliations", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json == first.json
    assert first.json["status"] == "pending"
    listed = client.get("/api/v1/reconciliations", headers=shop.operator_h).json
    assert [run["id"] for run in listed["items"]] == [first.json["id"]]


def test_unknown_runs_and_items_are_404(client: FlaskClient, shop: Shop) -> None:
    run_id = client.post("/api/v1/reconciliations", json=period(), headers=shop.operator_h).json["id"]
    assert client.get(f"/api/v1/reconciliations/{run_id + 1}", headers=shop.operator_h).status_code == 404
    assert client.get(f"/api/v1/reconciliations/{run_id + 1}/items", headers=shop.operator_h).status_code == 404
    assert client.get(f"/api/v1/reconciliations/{run_id + 1}/items.csv", headers=shop.operator_h).status_code == 404
    missing = client.post(
        f"/api/v1/reconciliations/{run_id}/items/1/resolve", json={"note": "x"}, headers=shop.operator_h
    )
    assert missing.status_code == 404


def test_items_csv_gives_each_amount_in_major_units_of_the_currency_beside_it(client: FlaskClient, shop: Shop) -> None:
    now = utcnow()
    run = ReconciliationRun(
        period_start=now - timedelta(days=2), period_end=now - timedelta(days=1), status=RunStatus.COMPLETED,
        settlement_currency="JPY",
    )  # fmt: skip
    db.session.add(run)
    db.session.flush()
    common = {"run_id": run.id, "provider": "stripe", "occurred_at": now}
    db.session.add_all(
        [
            # Charged in yuan, settled in yen (zero decimals), with Stripe's fee in yen.
            ReconciliationItem(
                **common, key="charge:pi_1", object_type="charge", object_id="ch_1", balance_transaction_id="txn_1",
                gateway_amount=123456, gateway_currency="CNY", ledger_amount=123456, ledger_currency="CNY",
                settlement_amount=26789, settlement_currency="JPY", fee=805, outcome=Outcome.MATCHED,
            ),
            # A balance transaction in dinar (three decimals): nothing in the ledger to compare.
            ReconciliationItem(
                **common, key="charge:pi_2", object_type="charge", gateway_amount=-1234, gateway_currency="KWD",
                settlement_amount=-1234, settlement_currency="KWD", outcome=Outcome.CURRENCY_DIFFERS,
                reason="KWD is neither currency.",
            ),
            # Recorded before items kept their currencies: the marketplace's.
            ReconciliationItem(
                run_id=run.id, provider="offline", occurred_at=now, key="receipt:payment-9",
                object_type="offline_receipt", object_id="00123", ledger_reference="payment:9:receipt",
                gateway_amount=5, ledger_amount=-7, outcome=Outcome.AMOUNT_DIFFERS,
            ),
        ]
    )  # fmt: skip
    db.session.commit()

    response = client.get(f"/api/v1/reconciliations/{run.id}/items.csv", headers=shop.operator_h)
    assert response.status_code == 200
    text = response.get_data(as_text=True).lstrip("\ufeff")
    header = text.split("\r\n", 1)[0].split(",")
    money = [name for name in header if "amount" in name or name.startswith("fee")]
    assert money == [
        "gateway_amount_major", "ledger_amount_major", "settlement_amount_major", "fee_major", "fee_currency",
        "fee_booked",
    ]  # fmt: skip
    for name in ("gateway", "ledger", "settlement", "fee"):
        assert f"{name}_currency" in header  # every amount names its currency beside it
    converted, dinar, legacy = csv.DictReader(io.StringIO(text))
    assert (converted["gateway_amount_major"], converted["gateway_currency"]) == ("1234.56", "CNY")
    assert (converted["ledger_amount_major"], converted["ledger_currency"]) == ("1234.56", "CNY")
    assert (converted["settlement_amount_major"], converted["settlement_currency"]) == ("26789", "JPY")
    assert (converted["fee_major"], converted["fee_currency"]) == ("805", "JPY")
    assert (dinar["gateway_amount_major"], dinar["gateway_currency"]) == ("-1.234", "KWD")
    assert (dinar["ledger_amount_major"], dinar["ledger_currency"]) == ("", "")
    assert (dinar["fee_major"], dinar["fee_currency"]) == ("0.000", "KWD")
    assert (legacy["gateway_amount_major"], legacy["gateway_currency"]) == ("0.05", "CNY")
    assert (legacy["ledger_amount_major"], legacy["ledger_currency"]) == ("-0.07", "CNY")
    assert (legacy["settlement_amount_major"], legacy["settlement_currency"]) == ("", "")
    # Numbers are bare; an offline reference of digits stays text, leading zero and all.
    assert ',1234.56,"CNY",1234.56,' in text
    assert ',"00123",' in text
