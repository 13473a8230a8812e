"""The pricing step of placing an order: what each line costs.

This is the one place where an order line's money is worked out. Per-kg
premiums (buyer-funded ones added to the price, sponsor-funded ones reserved
against a budget) belong here too, next to the base price.
"""

from __future__ import annotations

from dataclasses import dataclass

from market.catalog.models import Listing
from market.money import line_amount, tolerance_bounds


@dataclass(frozen=True)
class PricedLine:
    listing: Listing
    grams: int
    price_per_kg: int
    amount: int
    max_amount: int


def price_line(listing: Listing, grams: int, *, tolerance_bp: int) -> PricedLine:
    """Price `grams` of `listing`; `max_amount` is what the line can reach
    if the weighing comes out at the top of the tolerance."""
    _, most = tolerance_bounds(grams, tolerance_bp)
    return PricedLine(
        listing=listing,
        grams=grams,
        price_per_kg=listing.price_per_kg,
        amount=line_amount(listing.price_per_kg, grams),
        max_amount=line_amount(listing.price_per_kg, most),
    )
