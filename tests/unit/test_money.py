from __future__ import annotations

import pytest

from market.csv_export import major
from market.money import (
    BASIS_POINTS,
    MAX_BIGINT,
    MAX_BUDGET,
    MAX_LINE_G,
    MAX_ORDER_LINES,
    MAX_PRICE_PER_KG,
    MAX_RATE_PER_KG,
    MAX_WEIGHED_G,
    CurrencyMismatch,
    Money,
    format_kg,
    format_minor,
    line_amount,
    minor_unit_exponent,
    prorate,
    share,
    spread,
    tolerance_bounds,
    total,
)


@pytest.mark.parametrize(
    ("price", "grams", "expected"),
    [
        (1200, 1000, 1200),  # 12.00 per kg, 1 kg
        (1200, 2500, 3000),
        (999, 1500, 1499),  # 1498.5 rounds half-up
        (333, 1, 0),  # 0.333 rounds down
        (500, 1, 1),  # 0.5 rounds up
        (1, 499, 0),
        (1, 500, 1),
        (0, 5000, 0),
    ],
)
def test_line_amount_rounds_half_up_once(price: int, grams: int, expected: int) -> None:
    assert line_amount(price, grams) == expected


def test_negative_amounts_round_away_from_zero() -> None:
    assert line_amount(-500, 1) == -1
    assert line_amount(500, -1) == -1


def test_share_in_basis_points() -> None:
    assert share(10_000, 500) == 500  # 5 %
    assert share(1999, 250) == 50  # 49.975 -> 50
    assert share(0, 800) == 0


def test_tolerance_bounds_are_whole_grams_inside_the_band() -> None:
    assert tolerance_bounds(1000, 1000) == (900, 1100)
    assert tolerance_bounds(1005, 1000) == (905, 1105)  # 904.5 -> 905, 1105.5 -> 1105
    assert tolerance_bounds(500, 0) == (500, 500)


def test_money_refuses_to_mix_currencies() -> None:
    with pytest.raises(CurrencyMismatch):
        Money(100, "CNY") + Money(100, "USD")
    assert total([Money(100, "CNY"), Money(250, "CNY")], "CNY") == Money(350, "CNY")


def test_format_minor() -> None:
    assert format_minor(123456) == "1234.56"
    assert format_minor(5) == "0.05"
    assert format_minor(-1205) == "-12.05"
    assert str(Money(1200, "CNY")) == "12.00 CNY"


def test_prorate_half_up() -> None:
    assert prorate(100, 500, 1998) == 25  # 25.025 -> 25
    assert prorate(101, 1, 2) == 51  # 50.5 -> 51
    assert prorate(7, 3, 0) == 0


def test_spread_adds_up_to_the_value_whatever_the_roundings() -> None:
    # 16.61 fen on each of three lines rounds up three times: shares
    # rounded one by one would come to 51.
    assert spread(50, [1000, 1000, 1000, 10]) == [17, 16, 17, 0]
    assert spread(2, [1, 1, 1, 1]) == [1, 0, 1, 0]
    assert spread(100, [1998]) == [100]
    assert spread(5, [0, 0]) == [0, 0]
    assert spread(0, [3, 4]) == [0, 0]
    for weights in ([7, 3, 11, 1, 1], [1] * 9, [999, 1, 0, 2500]):
        for value in range(0, 120):
            shares = spread(value, weights)
            assert sum(shares) == value and min(shares) >= 0


def test_the_worst_case_arithmetic_on_the_api_bounds_fits_a_bigint() -> None:
    """The products and sums the services make from accepted input, each at
    its bound, with commission and tolerance at 10,000 basis points."""
    assert MAX_LINE_G * (BASIS_POINTS + BASIS_POINTS) < MAX_BIGINT  # tolerance_bounds
    assert tolerance_bounds(MAX_LINE_G, BASIS_POINTS) == (0, MAX_WEIGHED_G)
    assert MAX_PRICE_PER_KG * MAX_WEIGHED_G < MAX_BIGINT  # line_amount
    assert MAX_RATE_PER_KG * MAX_WEIGHED_G < MAX_BIGINT
    line = line_amount(MAX_PRICE_PER_KG, MAX_WEIGHED_G)
    premium = line_amount(MAX_RATE_PER_KG, MAX_WEIGHED_G)
    assert line * BASIS_POINTS < MAX_BIGINT  # share: the commission on a line
    assert MAX_ORDER_LINES * (line + 900 * premium) < MAX_BIGINT  # an order's most, 900 premiums a line
    assert MAX_BUDGET + premium < MAX_BIGINT  # reserving against a cap


@pytest.mark.parametrize(
    ("currency", "exponent"), [("CNY", 2), ("usd", 2), ("JPY", 0), ("krw", 0), ("KWD", 3), ("TND", 3), ("ISK", 2)]
)
def test_minor_unit_exponent_counts_as_the_provider_does(currency: str, exponent: int) -> None:
    assert minor_unit_exponent(currency) == exponent


def test_major_units_are_exact_in_each_currency() -> None:
    assert (major(1234, "CNY"), major(1234, "JPY"), major(-1234, "KWD"), major(None, "CNY")) == (
        "12.34",
        "1234",
        "-1.234",
        None,
    )


def test_money_is_shown_in_its_currencys_own_decimals() -> None:
    assert str(Money(123456, "CNY")) == "1234.56 CNY"
    assert str(Money(1234, "JPY")) == "1234 JPY"
    assert str(Money(-1234, "KWD")) == "-1.234 KWD"


def test_format_kg_is_exact_and_never_scientific() -> None:
    assert format_kg(5000) == "5"
    assert format_kg(7500) == "7.5"
    assert format_kg(250) == "0.25"
    assert format_kg(12_000_250) == "12000.25"
    assert format_kg(1_234_567) == "1234.567"
    assert format_kg(1_000_000_000) == "1000000"
