"""Money and weight arithmetic. Pure: no Flask, no database.

Money is integer minor units (fen, cents) of one currency; weight is integer
grams; prices are minor units per kilogram. A line's amount is
price_per_kg x grams / 1000, rounded half-up to a minor unit, once per line;
totals are sums of rounded lines. Nothing else in the code rounds money.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

GRAMS_PER_KG = 1000
BASIS_POINTS = 10_000


class CurrencyMismatch(ValueError):
    """Two amounts in different currencies were combined."""


def _half_up_div(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded half away from zero, in integers."""
    if denominator <= 0:
        raise ValueError("denominator must be positive")
    sign = -1 if numerator < 0 else 1
    return sign * ((abs(numerator) * 2 + denominator) // (2 * denominator))


def line_amount(price_per_kg: int, grams: int) -> int:
    """The amount for `grams` at `price_per_kg` minor units, half-up."""
    return _half_up_div(price_per_kg * grams, GRAMS_PER_KG)


def smallest_grams_worth_a_unit(price_per_kg: int) -> int:
    """The fewest grams whose `line_amount` at `price_per_kg` is at least one
    minor unit: half-up rounding makes it price x grams >= half a kilogram's unit."""
    return max(1, -(-GRAMS_PER_KG // 2 // price_per_kg)) if price_per_kg > 0 else 0


def share(amount: int, basis_points: int) -> int:
    """`basis_points` / 10,000 of `amount` (a commission), half-up."""
    return _half_up_div(amount * basis_points, BASIS_POINTS)


def prorate(value: int, part: int, whole: int) -> int:
    """`value` x part / whole, half-up: the share of `value` that `part` of
    `whole` carries (the commission on a partly refunded line)."""
    return _half_up_div(value * part, whole) if whole else 0


def tolerance_bounds(ordered_g: int, tolerance_bp: int) -> tuple[int, int]:
    """The least and most grams a weighing may give for `ordered_g` within
    `tolerance_bp` basis points either way (both inclusive, whole grams)."""
    low = -((-ordered_g * (BASIS_POINTS - tolerance_bp)) // BASIS_POINTS)  # ceiling
    high = ordered_g * (BASIS_POINTS + tolerance_bp) // BASIS_POINTS  # floor
    return low, high


@dataclass(frozen=True)
class Money:
    amount: int
    currency: str

    def __add__(self, other: Money) -> Money:
        if other.currency != self.currency:
            raise CurrencyMismatch(f"cannot add {other.currency} to {self.currency}")
        return Money(self.amount + other.amount, self.currency)

    def __str__(self) -> str:
        return f"{format_minor(self.amount)} {self.currency}"


def total(amounts: Iterable[Money], currency: str) -> Money:
    result = Money(0, currency)
    for amount in amounts:
        result = result + amount
    return result


def format_minor(amount: int, exponent: int = 2) -> str:
    """Minor units as a decimal string for people: 123456 -> "1234.56"."""
    sign = "-" if amount < 0 else ""
    whole, fraction = divmod(abs(amount), 10**exponent)
    return f"{sign}{whole}.{fraction:0{exponent}d}" if exponent else f"{sign}{whole}"
