"""Settings read from the environment: shares in basis points stay within
what the API's bounds on money and grams were worked out for."""

from __future__ import annotations

import pytest

import config


@pytest.mark.parametrize("name", ["COMMISSION_BP", "WEIGHT_TOLERANCE_BP"])
@pytest.mark.parametrize("value", ["-1", "10001", "ten"])
def test_a_share_outside_0_to_10000_basis_points_is_refused_at_startup(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=name):
        config.load({name: value})


def test_shares_up_to_the_whole_are_taken() -> None:
    settings = config.load({"COMMISSION_BP": "0", "WEIGHT_TOLERANCE_BP": "10000"})
    assert (settings["COMMISSION_BP"], settings["WEIGHT_TOLERANCE_BP"]) == (0, 10_000)
