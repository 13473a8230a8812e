"""Every CSV file we write (manifests, bank files, statements, the impact
report, reconciliation items), written so a spreadsheet shows what is in it
and runs nothing.

Cells hold text that others typed (farm, buyer and product names, bank
account holders, notes). A spreadsheet takes a cell that starts with `=`,
`+`, `-` or `@` for a formula, some also after a tab, carriage return or
line feed (and the full-width forms Chinese input methods type), and a
formula can run commands or send the sheet's data away. So:

- **Numbers stay numbers.** A cell that is a number (an int, a Decimal, or
  text that is a plain decimal such as `-12.50` or `1.500`) is written
  bare, so a negative amount is still a number to add up.
- **Text is neutralised.** Any other cell that starts with one of those
  characters, after spaces if any, gets a `'` in front: spreadsheets show
  `'=1+1` as text and compute nothing.
- **Text is quoted, numbers are not.** Account numbers and other long
  digit strings (12 digits or more, or with a leading zero) count as text:
  a spreadsheet reading them as numbers would round them (past 15 digits)
  or drop their leading zeros. Spreadsheets that import quoted fields as
  text (LibreOffice's "Format quoted field as text", Excel's import with
  the column as Text) keep them whole; opening the file straight in Excel
  may still show them as numbers.

Files are UTF-8 with a byte-order mark, so spreadsheets read Chinese names
right, and have CRLF line ends; the header row is our own column names.

**Every column names its unit.** Money of the marketplace is in yuan in
every file, whatever the API says in fen: exactly, two decimals (`yuan(1234)` is "12.34"), in a
column whose name ends in `_yuan`. Weight is in kilograms, exactly, three
decimals (`kg(1500)` is "1.500"), in a column ending in `_kg`. Account
numbers, bank references and other identifiers are `Text`: always quoted,
however short, never read as a number.

A file whose rows hold money in several currencies (reconciliation items:
Stripe settles in its own currency) cannot say yuan. Each amount there is in
**major units** of the currency named in its own column beside it,
exactly, with as many decimals as the currency's minor units
(`major(1234, "CNY")` is "12.34", `major(1234, "JPY")` "1234",
`major(1234, "KWD")` "1.234"), in a column whose name ends in `_major`.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from market.money import format_minor, minor_unit_exponent

# What makes a spreadsheet read a cell as a formula, or strip its way to one.
FORMULA_STARTS = frozenset("=+-@\t\r\n\uff1d\uff0b\uff0d\uff20")
PLAIN_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?")
# Digit strings spreadsheets would mangle as numbers: 12 digits or more
# (shown in exponent form, rounded past 15) or a leading zero.
DIGITS_KEPT_AS_TEXT = re.compile(r"[0-9]{12,}|0[0-9]+")


class Text(str):
    """A cell that is text even when it is all digits: an account number,
    a bank reference."""


def yuan(amount: int | None) -> str | None:
    """Fen as yuan, exactly: 1234 -> "12.34" (None stays empty)."""
    return None if amount is None else format_minor(amount)


def major(amount: int | None, currency: str) -> str | None:
    """Minor units of `currency` in its major units, exactly: 1234 CNY -> "12.34",
    1234 JPY -> "1234", 1234 KWD -> "1.234" (None stays empty)."""
    return None if amount is None else format_minor(amount, minor_unit_exponent(currency))


def kg(grams: int | None) -> str | None:
    """Grams as kilograms, exactly: 1500 -> "1.500" (None stays empty)."""
    return None if grams is None else format_minor(grams, 3)


def cell(value: Any) -> Any:
    """One value as written: None as empty text, a number (or text that is
    a plain number) as a Decimal or int the writer leaves unquoted, any
    other text (and `Text` always) quoted and neutralised."""
    if value is None:
        return ""
    if isinstance(value, int | Decimal):
        return value
    text = str(value)
    if (
        not isinstance(value, Text)
        and PLAIN_NUMBER.fullmatch(text)
        and not DIGITS_KEPT_AS_TEXT.fullmatch(text.lstrip("-"))
    ):
        return Decimal(text)
    if text.lstrip(" ")[:1] in FORMULA_STARTS:
        return "'" + text
    return text


def csv_text(rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """`rows` as CSV, the cells of `columns` only, in that order."""
    buffer = io.StringIO()
    buffer.write("\ufeff")
    csv.writer(buffer, lineterminator="\r\n").writerow(columns)
    # QUOTE_NONNUMERIC quotes every cell but ints and Decimals.
    writer = csv.writer(buffer, lineterminator="\r\n", quoting=csv.QUOTE_NONNUMERIC)
    for row in rows:
        writer.writerow([cell(row.get(column)) for column in columns])
    return buffer.getvalue()
