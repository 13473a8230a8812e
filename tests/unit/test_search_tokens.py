"""The words a listing is found by: letters and digits, case-folded, Han runs
with every suffix and their pinyin; a query split the same way."""

from __future__ import annotations

from market.catalog.search import MAX_TOKEN, terms, tokens


def test_a_query_is_split_into_letters_and_digits_with_han_runs_apart() -> None:
    assert terms("SKU-123 寻乌县2025年, 100%_Wild") == ["sku", "123", "寻乌县", "2025", "年", "100", "wild"]
    assert terms("%_ -!") == []
    assert terms("x" * 50) == ["x" * MAX_TOKEN]


def test_a_han_run_gives_its_suffixes_pinyin_and_initials() -> None:
    assert tokens("寻乌县").split() == ["寻乌县", "乌县", "县", "xunwuxian", "wuxian", "xian", "xwx"]


def test_tokens_are_each_once_after_a_space() -> None:
    assert tokens("Navel orange", None, "navel") == " navel orange"
    assert tokens("") == ""
