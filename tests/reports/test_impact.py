"""The impact report on a small scenario, checked to the fen by hand: two
farms in two counties, a sponsor's premium on oranges and a buyer-funded one
on pomelos, a refund, an order not yet paid and bank payouts."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import delete, func, select, update

from market.db import business_day, business_day_range, business_today, utcnow
from market.errors import Invalid
from market.extensions import db
from market.ledger.models import LedgerTransaction
from market.orders.models import Order
from market.payments.models import Refund
from market.payouts.models import Payout
from market.premiums import service as premiums
from market.premiums.models import FundedBy
from market.reports import service as reports
from market.reports.models import ImpactDay, ImpactDayFigure
from market.settlement.models import FarmEntry
from tests.payouts.conftest import bank_details, operator, refund, run, settled_order
from tests.shop import Shop, place

ORCHARD_COUNTY = ("江西省", "寻乌县")
CHESTNUT_COUNTY = ("河北省", "青龙满族自治县")


@pytest.fixture
def app_overrides() -> dict[str, Any]:
    return {"PAYOUT_HOLD_DAYS": 0}


def scenario(client: FlaskClient, shop: Shop) -> dict[str, int]:
    actor = operator()
    start = utcnow() - timedelta(days=1)
    sponsor = premiums.create_programme(
        actor, name="Navel bonus", sponsor="Fresh Mart", funded_by=FundedBy.SPONSOR, rate_per_kg=100,
        product_name=shop.oranges.product_name, valid_from=start, budget_cap=100_000,
    )  # fmt: skip
    buyer = premiums.create_programme(
        actor, name="Pomelo fair price", sponsor="Buyers", funded_by=FundedBy.BUYER, rate_per_kg=50,
        product_name=shop.pomelos.product_name, valid_from=start,
    )  # fmt: skip
    bank_details(client, shop, shop.orchard.id)
    bank_details(client, shop, shop.chestnuts.id)
    # Oranges 2 kg at 9.99 (+1.00/kg sponsor), pomelos 1 kg at 8.00 (+0.50/kg buyer).
    first = settled_order(client, shop, (shop.oranges, 2000), (shop.pomelos, 1000))
    settled_order(client, shop, (shop.nuts, 1000))  # 1 kg at 24.00
    line = next(ln["id"] for p in first["parts"] for ln in p["lines"] if ln["listing_id"] == shop.oranges.id)
    refund(first["id"], line, 500)  # 5.00 back; 0.50 of the sponsor's premium goes back to the budget
    place(client, shop, (shop.oranges, 1000))  # not paid: 1.00 of the sponsor's budget held
    assert run(client, shop).status_code == 201
    for payout in db.session.scalars(select(Payout)).all():
        response = client.post(
            f"/api/v1/payouts/{payout.id}/confirm", json={"bank_reference": f"B{payout.id}"}, headers=shop.operator_h
        )
        assert response.status_code == 200
    return {"sponsor": sponsor.id, "buyer": buyer.id}


def report(client: FlaskClient, shop: Shop, **query: str) -> Any:
    today = business_today().isoformat()
    response = client.get(
        "/api/v1/reports/impact", query_string={"from": today, "to": today} | query, headers=shop.operator_h
    )
    assert response.status_code == 200, response.json
    return response


def test_impact_by_county_to_the_fen(client: FlaskClient, shop: Shop) -> None:
    scenario(client, shop)
    body = report(client, shop).json
    rows = {(row["province"], row["county"]): row for row in body["rows"]}
    # Orchard: 2 kg oranges 19.98 + 1 kg pomelos 8.00, less 0.5 kg oranges 5.00.
    # Premiums: pomelos 0.50 (buyer) + oranges 2.00 - 0.50 (sponsor).
    # Payout: 19.98 + 8.50 - commission (1.00 + 0.40) + premiums 1.50 - refund (5.00 - 0.25) = 23.83.
    assert {k: v for k, v in rows[ORCHARD_COUNTY].items() if k not in ("province", "county")} == {
        "grams_sold": 2500,
        "sales": 2298,
        "premiums_paid": 200,
        "premiums_reserved": 100,
        "payouts_made": 2383,
        "farms_paid": 1,
        "farmers_paid": 1,
    }
    # Chestnuts: 1 kg at 24.00, less 1.20 commission.
    assert {k: v for k, v in rows[CHESTNUT_COUNTY].items() if k not in ("province", "county")} == {
        "grams_sold": 1000,
        "sales": 2400,
        "premiums_paid": 0,
        "premiums_reserved": 0,
        "payouts_made": 2280,
        "farms_paid": 1,
        "farmers_paid": 1,
    }
    assert body["totals"] == {
        "grams_sold": 3500,
        "sales": 4698,
        "premiums_paid": 200,
        "premiums_reserved": 100,
        "payouts_made": 4663,
        "farms_paid": 2,
        "farmers_paid": 2,
    }
    assert sum(p.amount for p in db.session.scalars(select(Payout))) == 4663


def test_impact_by_programme_to_the_fen(client: FlaskClient, shop: Shop) -> None:
    ids = scenario(client, shop)
    body = report(client, shop, group_by="programme").json
    rows = {row["programme_id"]: row for row in body["rows"]}
    assert rows[ids["sponsor"]] == {
        "programme_id": ids["sponsor"],
        "programme": "Navel bonus",
        "sponsor": "Fresh Mart",
        "funded_by": "sponsor",
        "grams_sold": 1500,
        "sales": 1498,
        "premiums_paid": 150,
        "premiums_reserved": 100,
        "payouts_made": 150,
        "farms_paid": 1,
        "farmers_paid": 1,
    }
    assert rows[ids["buyer"]] | {"programme": ""} == {
        "programme_id": ids["buyer"],
        "programme": "",
        "sponsor": "Buyers",
        "funded_by": "buyer",
        "grams_sold": 1000,
        "sales": 800,
        "premiums_paid": 50,
        "premiums_reserved": 0,
        "payouts_made": 0,
        "farms_paid": 0,
        "farmers_paid": 0,
    }


def test_a_period_without_activity_is_empty_and_the_csv_matches(client: FlaskClient, shop: Shop) -> None:
    scenario(client, shop)
    yesterday = (business_today() - timedelta(days=1)).isoformat()
    empty = report(client, shop, **{"from": yesterday, "to": yesterday}).json
    assert empty["rows"] == []
    assert set(empty["totals"].values()) == {0}

    response = report(client, shop, format="csv")
    assert response.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff"))))
    orchard = next(row for row in rows if row["county"] == ORCHARD_COUNTY[1])
    assert (orchard["sold_kg"], orchard["sales_yuan"], orchard["payouts_made_yuan"]) == ("2.500", "22.98", "23.83")
    assert rows[-1]["province"] == "total"
    assert rows[-1]["payouts_made_yuan"] == "46.63"


def test_only_operators_see_the_report_and_the_period_must_be_in_order(client: FlaskClient, shop: Shop) -> None:
    today = business_today()
    query = {"from": today.isoformat(), "to": today.isoformat()}
    assert client.get("/api/v1/reports/impact", query_string=query, headers=shop.orchard_h).status_code == 403
    backwards = {"from": today.isoformat(), "to": (today - timedelta(days=1)).isoformat()}
    refused = client.get("/api/v1/reports/impact", query_string=backwards, headers=shop.operator_h)
    assert refused.status_code == 422
    assert "to" in refused.json["errors"]
    bad_group = client.get(
        "/api/v1/reports/impact", query_string=query | {"group_by": "village"}, headers=shop.operator_h
    )
    assert bad_group.status_code == 422


def moved_across(monday: date) -> tuple[datetime, datetime]:
    """Every fact of the scenario moved to half an hour before or after the
    marketplace's midnight starting `monday`, alternately by id, and those
    two moments: the last half hour of one week and the first of the next
    there, on the same day in UTC."""
    midnight = business_day_range(monday)[0]
    before, after = midnight - timedelta(minutes=30), midnight + timedelta(minutes=30)
    moments = {"created_at": (LedgerTransaction, FarmEntry, Order), "settled_at": (Refund,), "paid_at": (Payout,)}
    for column, models in moments.items():
        for model in models:
            for parity, moment in ((0, before), (1, after)):
                db.session.execute(
                    update(model)
                    .where(model.id % 2 == parity, getattr(model, column).isnot(None))
                    .values({column: moment})
                )
    db.session.commit()
    return before, after


@pytest.mark.parametrize("group_by", ["county", "programme"])
def test_totals_of_weeks_grouped_in_one_statement_are_each_weeks_report(
    client: FlaskClient, shop: Shop, group_by: str
) -> None:
    scenario(client, shop)
    monday = business_today() - timedelta(days=business_today().weekday() + 7)
    before, after = moved_across(monday)
    assert before.date() == after.date()  # one day in UTC, two weeks where the marketplace is
    assert (business_day(before), business_day(after)) == (monday - timedelta(days=1), monday)
    weeks = [(monday - timedelta(weeks=n), monday - timedelta(weeks=n) + timedelta(days=6)) for n in (2, 1, 0)]

    grouped = reports.impact_totals(operator(), periods=weeks, group_by=group_by)

    each = [reports.impact(operator(), start=start, end=end, group_by=group_by)["totals"] for start, end in weeks]
    assert grouped == each
    empty, last_week, this_week = grouped
    assert set(empty.values()) == {0}
    assert last_week["grams_sold"] and this_week["grams_sold"]  # the boundary split the facts
    # A period after a gap holds only its own days.
    gapped = [(monday - timedelta(days=3), monday - timedelta(days=2)), (monday, monday)]
    assert reports.impact_totals(operator(), periods=gapped, group_by=group_by) == [
        reports.impact(operator(), start=start, end=end, group_by=group_by)["totals"] for start, end in gapped
    ]


def test_totals_of_no_periods_are_none_and_periods_must_be_in_order(client: FlaskClient, shop: Shop) -> None:
    today = business_today()
    assert reports.impact_totals(operator(), periods=[], group_by="county") == []
    with pytest.raises(Invalid):
        reports.impact_totals(operator(), periods=[(today, today - timedelta(days=1))], group_by="county")
    week = (today - timedelta(days=6), today)
    with pytest.raises(ValueError, match="overlap"):
        reports.impact_totals(operator(), periods=[week, (today, today)], group_by="county")


def every_figure(group_by: str, days: list[date]) -> list[Any]:
    """Each day's report, a report of all the days, and their totals by week."""
    first, last = days[0], days[-1]
    weeks = [(day, min(day + timedelta(days=6), last)) for day in days[::7]]
    return [
        *(reports.impact(operator(), start=day, end=day, group_by=group_by) for day in days),
        reports.impact(operator(), start=first, end=last, group_by=group_by),
        reports.impact_totals(operator(), periods=weeks, group_by=group_by),
    ]


def forget_rolled_days() -> None:
    db.session.execute(delete(ImpactDayFigure))
    db.session.execute(delete(ImpactDay))
    db.session.commit()


@pytest.mark.parametrize("group_by", ["county", "programme"])
def test_closed_days_summed_once_give_the_reports_they_gave_live(
    app: Flask, client: FlaskClient, shop: Shop, group_by: str
) -> None:
    scenario(client, shop)
    today = business_today()
    monday = today - timedelta(days=today.weekday() + 7)
    moved_across(monday)  # half the facts on the Sunday before, half on the Monday
    settled_order(client, shop, (shop.oranges, 1500))  # and a sale today, not closed yet
    days = [monday - timedelta(days=2) + timedelta(days=n) for n in range((today - monday).days + 3)]
    live = every_figure(group_by, days)
    assert live[-2]["totals"]["grams_sold"] and live[-3]["totals"]["grams_sold"]  # the days, and today alone

    # As of 02:00 today, days closed an hour ago or more: the Sunday to yesterday.
    as_of = business_day_range(today)[0] + timedelta(hours=2)
    assert reports.roll_up_days(now=as_of) == (today - (monday - timedelta(days=1))).days
    assert db.session.scalar(select(func.max(ImpactDay.business_day))) == today - timedelta(days=1)
    assert db.session.scalars(select(ImpactDayFigure.group_by).distinct()).all()
    assert every_figure(group_by, days) == live
    assert reports.roll_up_days(now=as_of) == 0  # each day once

    # A sale after the rolled days is read live, beside them.
    settled_order(client, shop, (shop.oranges, 1000))
    rolled = every_figure(group_by, days)
    forget_rolled_days()
    assert rolled == every_figure(group_by, days) != live

    # Days rolled up under another time zone are not used, then rolled again.
    reports.roll_up_days(now=as_of)
    app.config["MARKET_TIMEZONE"] = "America/New_York"
    elsewhere = every_figure(group_by, days)
    assert reports.roll_up_days(now=as_of + timedelta(days=1)) > 0
    assert set(db.session.scalars(select(ImpactDay.timezone))) == {"America/New_York"}
    assert every_figure(group_by, days) == elsewhere
    forget_rolled_days()
    assert every_figure(group_by, days) == elsewhere


@pytest.mark.parametrize("rolled_up", [False, True])
def test_a_programme_counts_only_the_produce_of_lines_it_paid_a_premium_on(
    client: FlaskClient, shop: Shop, rolled_up: bool
) -> None:
    actor = operator()
    capped = premiums.create_programme(
        actor, name="Navel bonus", sponsor="Fresh Mart", funded_by=FundedBy.SPONSOR, rate_per_kg=100,
        product_name=shop.oranges.product_name, valid_from=utcnow() - timedelta(days=1), budget_cap=100_000,
        farm_cap=150,
    )  # fmt: skip
    # 1.00 of the farm's 1.50, then the 0.50 left, then nothing: the farm's cap is reached.
    *_, third = (settled_order(client, shop, (shop.oranges, 1000)) for _ in range(3))
    line = next(ln["id"] for p in third["parts"] for ln in p["lines"])
    refund(third["id"], line, 400)  # a refund of produce the programme paid nothing on
    if rolled_up:
        moved_across(business_today() - timedelta(days=1))  # all of it before today
        reports.roll_up_days()
    days = {"from": (business_today() - timedelta(days=2)).isoformat(), "to": business_today().isoformat()}
    body = report(client, shop, group_by="programme", **days).json
    row = next(row for row in body["rows"] if row["programme_id"] == capped.id)
    assert (row["grams_sold"], row["sales"], row["premiums_paid"]) == (2000, 1998, 150)
    county = report(client, shop, **days).json["totals"]
    assert (county["grams_sold"], county["sales"]) == (2600, 2597)  # the county counts every line
