"""Reading a sales channel's stock feed: a size-limited fetch with
conditional-request headers, and a strict parse of JSON or CSV."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from typing import Any

import requests
from flask import current_app

from market.inventory.models import FeedFormat
from market.money import MAX_STOCK_G
from market.notifications import outbound

# The columns that keep a feed's ETag and Last-Modified.
VALIDATOR_LENGTH = 100


class FeedError(Exception):
    """The feed could not be read or is not a valid feed; nothing was applied."""


@dataclass(frozen=True)
class Fetched:
    body: bytes | None  # None: not modified since the last read
    etag: str | None
    last_modified: str | None


def fetch(url: str, *, etag: str | None, last_modified: str | None) -> Fetched:
    """GET the feed, sending the validators from the last read. Raises
    `FeedError` for an answer we cannot use, `UnsafeUrl` when the URL leads
    where we do not call and `TransientError` when the channel cannot be
    reached."""
    limit: int = current_app.config["INVENTORY_FEED_MAX_BYTES"]
    headers = {"Accept": "application/json, text/csv"}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    with outbound.request("GET", url, headers=headers) as response:
        if response.status_code == 304:
            return Fetched(None, etag, last_modified)
        if response.status_code != 200:
            raise FeedError(f"The feed answered HTTP {response.status_code}.")
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise FeedError(f"The feed is {declared} bytes; the limit is {limit}.")
        body = bytearray()
        for chunk in response.iter_content(chunk_size=65536):
            body.extend(chunk)
            if len(body) > limit:
                raise FeedError(f"The feed is larger than the limit of {limit} bytes.")
        return Fetched(bytes(body), _validator(response, "ETag"), _validator(response, "Last-Modified"))


def _validator(response: requests.Response, name: str) -> str | None:
    """A conditional-request validator to send back next time, if it is one
    (short, printable); it is stored, and sent, never shown."""
    value = response.headers.get(name)
    if value is None or len(value) > VALIDATOR_LENGTH or not value.isprintable():
        return None
    return value


def _quantity(value: Any, where: str) -> int:
    if isinstance(value, bool):
        raise FeedError(f"{where}: quantity_g must be a whole number of grams.")
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if not isinstance(value, int) or value < 0:
        raise FeedError(f"{where}: quantity_g must be a whole number of grams, 0 or more.")
    if value > MAX_STOCK_G:
        raise FeedError(f"{where}: quantity_g must be at most {MAX_STOCK_G} g, the most a listing may hold.")
    return value


def _rows_json(body: bytes) -> list[Any]:
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        raise FeedError(f"The feed is not valid JSON (line {exc.lineno}, column {exc.colno}).") from None
    except ValueError:
        raise FeedError("The feed is not valid JSON: its text is not UTF-8.") from None
    items = data.get("items") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise FeedError('A JSON feed is a list of items or {"items": [...]}.')
    return items


def _rows_csv(body: bytes) -> list[Any]:
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise FeedError("A CSV feed must be UTF-8.") from None
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or not {"sku", "quantity_g"} <= set(reader.fieldnames):
        raise FeedError("A CSV feed needs the columns sku and quantity_g.")
    return list(reader)


@dataclass(frozen=True)
class Feed:
    """What a feed says: SKU -> grams the channel has, and where in the
    feed each SKU is (item 0 is the first), to name an item in an error
    without repeating what the feed wrote."""

    quantities: dict[str, int]
    positions: dict[str, int]


def parse(body: bytes, feed_format: FeedFormat) -> Feed:
    """The whole feed is refused if any row is malformed, so a half-read
    feed never moves stock. Errors name items by position and say what is
    wrong, never quoting the feed."""
    rows = _rows_json(body) if feed_format == FeedFormat.JSON else _rows_csv(body)
    quantities: dict[str, int] = {}
    positions: dict[str, int] = {}
    for index, row in enumerate(rows):
        where = f"item {index}"
        if not isinstance(row, dict):
            raise FeedError(f"{where}: each item is an object with sku and quantity_g.")
        sku = row.get("sku")
        if not isinstance(sku, str) or not sku.strip():
            raise FeedError(f"{where}: sku is missing.")
        sku = sku.strip()
        if sku in quantities:
            raise FeedError(f"{where}: the same SKU as item {positions[sku]}; each SKU appears once.")
        quantities[sku] = _quantity(row.get("quantity_g"), where)
        positions[sku] = index
    return Feed(quantities, positions)
