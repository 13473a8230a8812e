"""Money and weight arithmetic. Pure: no Flask, no database.

Money is integer minor units (fen, cents) of one currency; weight is integer
grams; prices are minor units per kilogram. A line's amount is
price_per_kg x grams / 1000, rounded half-up to a minor unit, once per line;
totals are sums of rounded lines. Nothing else in the code rounds money.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

GRAMS_PER_KG = 1000
BASIS_POINTS = 10_000

# Bounds on every amount and gram count the API accepts. Amounts and grams
# are stored in PostgreSQL `bigint` columns (and summed in SQL), so each bound
# is chosen, far beyond any real trade, to keep the products and sums made
# from them inside a signed 64-bit integer, MAX_BIGINT (about 9.22e18), with
# room to spare. They hold with a commission and a weighing tolerance of at
# most 10,000 basis points (100 %).
MAX_BIGINT = 2**63 - 1
# Grams on one order line, harvest lot or sales channel event: 1,000 t.
# The weighing tolerance's bounds multiply it by at most BASIS_POINTS +
# 10,000: 1e9 x 2e4 = 2e13.
MAX_LINE_G = 10**9
# The most a weighing may give: a line's grams plus at most 100 % tolerance;
# so also the most a refund line may give back.
MAX_WEIGHED_G = 2 * MAX_LINE_G
# A price: 1,000,000 yuan a kg, in fen. price x grams <= 1e8 x 2e9 = 2e17, so
# a line's amount is at most 2e14 and its commission's product (amount x
# basis points) at most 2e18.
MAX_PRICE_PER_KG = 10**8
# A premium's rate per kg is bounded like a price: rate x grams <= 2e17.
MAX_RATE_PER_KG = MAX_PRICE_PER_KG
# Lines in one order (and weighings in one packing, lines in one refund).
# Each line reaches at most 2e14 of produce plus 2e14 per buyer-funded
# premium, so an order's most is 50 x 2e14 = 1e16 plus as much again per
# premium on a line: inside a bigint for up to 900 premiums on each line.
MAX_ORDER_LINES = 50
# A listing's stock: 1,000,000 t, whether set directly, read from a channel's
# feed or reached by adding lots and channel returns (refused beyond it).
# Grams given back by cancelled or expired orders are never refused; they
# lift it past the bound only by what open orders took from it, so stock and
# stock + a line's grams stay near 1e12, far inside a bigint.
MAX_STOCK_G = 10**12
# A sponsor programme's budget cap or per-farm cap: ten trillion yuan, in
# fen. Reserving checks used + a line's premium <= cap in SQL:
# 1e15 + 2e14 at most.
MAX_BUDGET = 10**15
# (prorate's value x part can pass 64 bits within these bounds; it is only
# ever computed in Python, whose integers do not overflow.)


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


def spread(value: int, weights: Sequence[int]) -> list[int]:
    """`value` split over `weights` in proportion, half-up, adding up to
    exactly `value` (nothing when the weights are all zero): each share is
    what the running total of the weights carries less what the ones
    before it carried, so no share is negative and the roundings never add
    up to a unit more or less than `value`."""
    whole = sum(weights)
    if not whole:
        return [0 for _ in weights]
    shares, carried, running = [], 0, 0
    for weight in weights:
        running += weight
        upto = _half_up_div(value * running, whole)
        shares.append(upto - carried)
        carried = upto
    return shares


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
        """For people, in the currency's own decimals: "1234.56 CNY", "1234 JPY"."""
        return f"{format_minor(self.amount, minor_unit_exponent(self.currency))} {self.currency}"


def total(amounts: Iterable[Money], currency: str) -> Money:
    result = Money(0, currency)
    for amount in amounts:
        result = result + amount
    return result


# How many decimals a currency's minor units have, as the payment provider
# counts them in its amounts (Stripe, docs.stripe.com/currencies): two
# unless listed here. ISK, HUF and TWD are two-decimal in Stripe's amounts
# whatever ISO 4217 says, so they are not listed.
ZERO_DECIMAL_CURRENCIES = frozenset(
    {"BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF"}
)
THREE_DECIMAL_CURRENCIES = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})


def minor_unit_exponent(currency: str) -> int:
    """Decimals of `currency`'s minor units: 2 for CNY (fen), 0 for JPY, 3 for KWD."""
    code = currency.upper()
    if code in ZERO_DECIMAL_CURRENCIES:
        return 0
    return 3 if code in THREE_DECIMAL_CURRENCIES else 2


def format_kg(grams: int) -> str:
    """Grams as kilograms for people, exact and without trailing zeros:
    12000250 -> "12000.25" (a float's "%g" would round it to 12000.2)."""
    return format_minor(grams, 3).rstrip("0").rstrip(".")


def format_minor(amount: int, exponent: int = 2) -> str:
    """Minor units as a decimal string for people: 123456 -> "1234.56"."""
    sign = "-" if amount < 0 else ""
    whole, fraction = divmod(abs(amount), 10**exponent)
    return f"{sign}{whole}.{fraction:0{exponent}d}" if exponent else f"{sign}{whole}"
