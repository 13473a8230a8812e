"""Settings read from the environment, refused at startup when wrong: shares
in basis points stay within what the API's bounds on money and grams were
worked out for, currencies and the Connect country are codes Stripe takes,
and a live Stripe key sends farmers back from onboarding over https."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import config
from market import create_app


@pytest.mark.parametrize("name", ["COMMISSION_BP", "WEIGHT_TOLERANCE_BP"])
@pytest.mark.parametrize("value", ["-1", "10001", "ten"])
def test_a_share_outside_0_to_10000_basis_points_is_refused_at_startup(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=name):
        config.load({name: value})


def test_shares_up_to_the_whole_are_taken() -> None:
    settings = config.load({"COMMISSION_BP": "0", "WEIGHT_TOLERANCE_BP": "10000"})
    assert (settings["COMMISSION_BP"], settings["WEIGHT_TOLERANCE_BP"]) == (0, 10_000)


@pytest.mark.parametrize(
    ("name", "value"),
    [("OUTBOX_RELAY", "workers"), ("OUTBOX_POLL_SECONDS", "0"), ("OUTBOX_POLL_SECONDS", "soon")],
)
def test_an_outbox_relay_that_is_not_one_of_its_kinds_is_refused_at_startup(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=name):
        config.load({name: value})


def test_the_committer_publishes_unless_told_otherwise_and_listener_is_taken_in_any_case() -> None:
    assert config.load({"OUTBOX_RELAY": ""})["OUTBOX_RELAY"] == "committer"
    settings = config.load({"OUTBOX_RELAY": " Listener ", "OUTBOX_POLL_SECONDS": "2"})
    assert (settings["OUTBOX_RELAY"], settings["OUTBOX_POLL_SECONDS"]) == ("listener", 2)


@pytest.mark.parametrize("name", ["MARKET_CURRENCY", "STRIPE_SETTLEMENT_CURRENCY"])
@pytest.mark.parametrize("value", ["US", "USDT", "12$"])
def test_a_currency_that_is_not_a_three_letter_code_is_refused_at_startup(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=name):
        config.load({name: value})


def test_stripe_settles_in_the_marketplace_currency_unless_told_otherwise() -> None:
    assert config.load({"MARKET_CURRENCY": "cny"})["STRIPE_SETTLEMENT_CURRENCY"] == "CNY"
    settings = config.load({"MARKET_CURRENCY": "CNY", "STRIPE_SETTLEMENT_CURRENCY": "usd"})
    assert (settings["MARKET_CURRENCY"], settings["STRIPE_SETTLEMENT_CURRENCY"]) == ("CNY", "USD")


@pytest.mark.parametrize("value", ["CN", "cn", "SGP", "1"])
def test_a_connect_country_stripe_cannot_make_accounts_in_is_refused_at_startup(value: str) -> None:
    with pytest.raises(ValueError, match="STRIPE_CONNECT_COUNTRY"):
        config.load({"STRIPE_CONNECT_COUNTRY": value})


LIVE_HTTPS = {
    "PAYOUT_ONBOARDING_RETURN_URL": "https://market.example/connected",
    "PAYOUT_ONBOARDING_REFRESH_URL": "https://market.example/connect",
}


@pytest.mark.parametrize("key", ["sk_live_123", "rk_live_123"])
@pytest.mark.parametrize("name", sorted(LIVE_HTTPS))
def test_a_live_key_with_an_onboarding_url_not_on_https_refuses_to_start(key: str, name: str) -> None:
    settings = config.load({"STRIPE_SECRET_KEY": key, **LIVE_HTTPS, name: "http://market.example/connect"})
    with pytest.raises(ValueError, match=name):
        config.check(settings)
    with pytest.raises(ValueError, match="https"):
        create_app(settings)


def test_the_default_onboarding_urls_serve_a_test_key_but_not_a_live_one() -> None:
    config.check(config.load({"STRIPE_SECRET_KEY": "sk_test_123"}))
    config.check(config.load({"STRIPE_SECRET_KEY": "sk_live_123", **LIVE_HTTPS}))
    with pytest.raises(ValueError, match="PAYOUT_ONBOARDING_RETURN_URL"):
        config.check(config.load({"STRIPE_SECRET_KEY": "sk_live_123"}))


def _settings_read(source: str) -> set[str]:
    """Every variable name `config` reads: `env.get("NAME")`, and the typed
    readers' `_int(env, "NAME", ...)`, `_bool(env, "NAME", ...)` and the like."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        function, args = node.func, node.args
        if isinstance(function, ast.Attribute) and function.attr == "get" and _is_env(function.value):
            name = args[0]
        elif len(args) >= 2 and _is_env(args[0]):
            name = args[1]
        else:
            continue
        if isinstance(name, ast.Constant) and isinstance(name.value, str):  # not the readers' own `name`
            names.add(name.value)
    return names


def _is_env(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and node.id == "env"


def _readme_settings() -> set[str]:
    """The names in the first column of the README's settings table."""
    names = set()
    for line in (config.ROOT / "README.md").read_text().splitlines():
        cells = line.split("|")
        if line.startswith("| `") and len(cells) > 2:
            names |= set(re.findall(r"`([A-Z][A-Z0-9_]*)`", cells[1]))
    return names


def test_every_setting_the_code_reads_is_in_the_readme_table() -> None:
    read = _settings_read(Path(config.__file__).read_text())
    assert {"DATABASE_URL", "PAYOUT_HOLD_DAYS", "CELERY_VISIBILITY_TIMEOUT"} <= read  # the reader finds them
    assert sorted(read - _readme_settings()) == []
