"""The pricing step of placing an order: what each line costs.

This is the one place where an order line's money is worked out. Per-kg
premiums (buyer-funded ones added to the price, sponsor-funded ones reserved
against a budget) belong here too, next to the base price.
"""

from __future__ import annotations

from dataclasses import dataclass

from market.catalog.models import Listing
from market.money import line_amount, tolerance_bounds
from market.premiums.models import FundedBy
from market.premiums.service import Quote


@dataclass(frozen=True)
class PricedLine:
    listing: Listing
    grams: int
    price_per_kg: int
    amount: int
    premium_amount: int
    max_amount: int
    premiums: list[Quote]


def price_line(listing: Listing, grams: int, *, tolerance_bp: int, premiums: list[Quote]) -> PricedLine:
    """Price `grams` of `listing` with the premiums that apply to it.

    Buyer-funded premiums are added to what the buyer pays; sponsor-funded
    ones are carried along to be reserved. `max_amount` is what the line can
    reach if the weighing comes out at the top of the tolerance.
    """
    _, most = tolerance_bounds(grams, tolerance_bp)
    buyer = [q.programme.rate_per_kg for q in premiums if q.programme.funded_by == FundedBy.BUYER]
    return PricedLine(
        listing=listing,
        grams=grams,
        price_per_kg=listing.price_per_kg,
        amount=line_amount(listing.price_per_kg, grams),
        premium_amount=sum(line_amount(rate, grams) for rate in buyer),
        max_amount=line_amount(listing.price_per_kg, most) + sum(line_amount(rate, most) for rate in buyer),
        premiums=premiums,
    )
