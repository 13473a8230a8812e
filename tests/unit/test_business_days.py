"""Business days are the marketplace's calendar days (MARKET_TIMEZONE,
Asia/Shanghai by default), not UTC's: every day a rule derives (payout
cutoffs, manifests, shipped-on dates, report periods) comes from here."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from flask import Flask

from market.db import business_day, business_day_range
from market.payouts.runs import run_cutoff


def test_a_moment_falls_on_the_marketplaces_day(app: Flask) -> None:
    assert app.config["MARKET_TIMEZONE"] == "Asia/Shanghai"
    assert business_day(datetime(2026, 3, 1, 15, 59, tzinfo=UTC)) == date(2026, 3, 1)
    assert business_day(datetime(2026, 3, 1, 16, 0, tzinfo=UTC)) == date(2026, 3, 2)  # midnight in Shanghai


def test_a_business_day_is_a_range_of_utc_moments(app: Flask) -> None:
    start, end = business_day_range(date(2026, 3, 2))
    assert (start, end) == (datetime(2026, 3, 1, 16, tzinfo=UTC), datetime(2026, 3, 2, 16, tzinfo=UTC))
    assert business_day_range(date(2026, 3, 2), date(2026, 3, 4)) == (start, end + timedelta(days=2))


@pytest.mark.parametrize("zone", ["America/New_York", "UTC"])
def test_another_zone_and_its_daylight_saving_day(app: Flask, zone: str) -> None:
    app.config["MARKET_TIMEZONE"] = zone
    start, end = business_day_range(date(2026, 3, 8))  # clocks go forward in New York
    assert start == datetime(2026, 3, 8, tzinfo=ZoneInfo(zone))
    assert end - start == timedelta(hours=23 if zone == "America/New_York" else 24)


def test_a_payout_run_covers_its_period_to_the_end_of_its_last_business_day(app: Flask) -> None:
    now = datetime(2026, 3, 10, tzinfo=UTC)
    assert run_cutoff(date(2026, 3, 2), now, 0) == datetime(2026, 3, 2, 16, tzinfo=UTC)
    assert run_cutoff(date(2026, 3, 10), now, 3) == now - timedelta(days=3)


@pytest.mark.parametrize("zone", ["Asia/Shanghai", "America/New_York"])
def test_the_calendars_first_and_last_days_end_at_its_ends(app: Flask, zone: str) -> None:
    """0001-01-01 starts before UTC's calendar in Shanghai and 9999-12-31
    ends after it in New York: their ranges stop at the calendar's ends."""
    app.config["MARKET_TIMEZONE"] = zone
    start, _ = business_day_range(date.min)
    assert start <= datetime(1, 1, 1, 5, tzinfo=UTC)  # New York was 4:56 behind then
    _, end = business_day_range(date(9998, 12, 30), date.max)
    assert end >= datetime(9999, 12, 31, 12, tzinfo=UTC)
