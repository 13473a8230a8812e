"""Listing search: the words a listing is found by, and the SQL that finds them.

Every listing keeps two token strings, written when it or what it names
changes (docs/search.md has the rules):

- `search_own`, its own words: product name, English name, variety, SKU,
  origin county;
- `search_text`, those and the words of what it is filed under: its
  category, its brand, its farm's name, village, county and province.

A token is a run of letters or digits, case-folded (NFKC: full-width letters and digits
are plain ones). Chinese is written without spaces, so a run of Han characters
gives every suffix of itself as well ("赣南脐橙" gives "南脐橙", "脐橙",
"橙"), and the same in pinyin ("gannanqicheng", "nanqicheng"...), plus its
initials ("gnqc"). A query's terms then match the start of a token: "寻乌"
finds "寻乌县", "脐橙" finds "赣南脐橙", "pom" finds "pomelo", "xunwu"
finds "寻乌县". Every term of a query must match.

Stored as " token token ...", each token after a space, so concatenating
two of them is again one; PostgreSQL reads them as a tsvector (a GIN index
serves prefix queries), SQLite matches `LIKE '% term%'` (embedded mode).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from functools import cache, lru_cache
from typing import Any

from sqlalchemy import ColumnElement, Text, and_, bindparam, cast, func, text
from sqlalchemy.dialects.postgresql import TSQUERY

from market.pagination import Sparse

# Longer tokens and query terms are cut to this many characters: a Han run
# gives as many suffixes as it has characters, each at most this long.
MAX_TOKEN = 32


def _is_han(char: str) -> bool:
    code = ord(char)
    return (
        0x3400 <= code <= 0x4DBF  # extension A
        or 0x4E00 <= code <= 0x9FFF  # unified ideographs
        or 0xF900 <= code <= 0xFAFF  # compatibility ideographs
        or 0x20000 <= code <= 0x3134F  # extensions B to G
    )


def terms(text: str) -> list[str]:
    """The words of `text`: runs of letters or digits, case-folded, a run
    of Han characters apart from the letters or digits around it, each cut
    to MAX_TOKEN. A query is split the same way as the names it searches."""
    words: list[str] = []
    current = ""
    for char in unicodedata.normalize("NFKC", text).casefold():
        if not char.isalnum():
            words.append(current)
            current = ""
        elif current and _is_han(char) != _is_han(current[-1]):
            words.append(current)
            current = char
        else:
            current += char
    words.append(current)
    return [word[:MAX_TOKEN] for word in words if word]


@cache
def _pinyin() -> Any:
    # Loaded on the first name written, not at import: its dictionaries take
    # most of a second and some 50 MB, which a process that only browses
    # never needs.
    from pypinyin import Style, lazy_pinyin  # noqa: PLC0415

    return lambda han: lazy_pinyin(han, style=Style.NORMAL, errors="ignore")


def _han_tokens(run: str) -> Iterable[str]:
    for start in range(len(run)):
        yield run[start : start + MAX_TOKEN]
    syllables = [s for s in _pinyin()(run) if s.isascii() and s.isalpha()]
    for start in range(len(syllables)):
        yield "".join(syllables[start:])[:MAX_TOKEN]
    if len(syllables) > 1:
        yield "".join(s[0] for s in syllables)[:MAX_TOKEN]


@lru_cache(maxsize=4096)  # listings repeat names and places
def _text_tokens(text: str) -> str:
    found: list[str] = []
    for word in terms(text):
        found.extend(_han_tokens(word) if _is_han(word[0]) else (word,))
    return joined(found)


def joined(parts: Iterable[str]) -> str:
    """Tokens or token strings as one token string, each token once."""
    found = dict.fromkeys(token for part in parts for token in part.split())
    return "".join(f" {token}" for token in found)


def tokens(*texts: str | None) -> str:
    """The token string of `texts`: each token once, each after a space."""
    return joined(_text_tokens(text or "") for text in texts)


def tsvector(column: Any) -> ColumnElement[Any]:
    """The token string as a tsvector, each token a lexeme as it is (no
    parser, no stemming). The spaces are written into the SQL so the
    expression is the very one the GIN indexes are built on."""
    words = func.array_remove(func.string_to_array(column, text("' '")), text("''"))
    return func.array_to_tsvector(words)


def matches(column: Any, query: list[str], dialect: str) -> Sparse:
    """Every term of `query` starts some token of `column`: on a row already
    read, a term after a space in its token string (`LIKE '% term%'`, a
    scan of the string); on PostgreSQL, looked up through the GIN index as
    a prefix tsquery on the tsvector the index is built on. The two hold
    for the same rows."""
    each_row = and_(*(column.contains(f" {term}", autoescape=True) for term in query))
    if dialect != "postgresql":
        return Sparse(each_row, each_row)
    # Terms hold only letters and digits, so quoting them is safe. The
    # query goes into the SQL as a literal: a plan made for a bound value
    # (a prepared statement's generic plan) cannot tell a rare word, best
    # found through the index, from a common one, best found walking the
    # listings in the order asked for.
    tsquery = " & ".join(f"'{term}':*" for term in query)
    literal = cast(bindparam("tsquery", tsquery, Text, literal_execute=True), TSQUERY)
    return Sparse(each_row, tsvector(column).op("@@")(literal))
