"""Hypothesis strategies for hostile input, aimed at the edges: numbers
beyond every column and every product of them, negative numbers, JSON nested
past any parser's recursion, dates at the ends of the calendar with offsets,
other scripts' digits and text with control characters.

`request_for` turns one operation of the OpenAPI document into such a
request: each path, query and body parameter is either a plausible value
(so a request can get past the first check and reach the arithmetic) or a
hostile one, with now and then a parameter the operation does not take or a
body nested thousands deep. Choices are listed most hostile first:
hypothesis starts from the simplest example, which is then the nastiest.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from hypothesis import strategies as st

from market.api import MAX_ID, MAX_JSON_DEPTH
from market.money import MAX_BIGINT, MAX_BUDGET, MAX_LINE_G, MAX_PRICE_PER_KG, MAX_STOCK_G

# Numbers at and just past every bound the API knows, and far beyond.
EDGE_INTEGERS = sorted(
    {
        0,
        -1,
        MAX_ID,
        MAX_ID + 1,
        -MAX_ID - 2,
        MAX_BIGINT,
        MAX_BIGINT + 1,
        -MAX_BIGINT - 2,
        2**64,
        10**30,
        MAX_LINE_G,
        MAX_LINE_G + 1,
        2 * MAX_LINE_G + 1,
        MAX_PRICE_PER_KG,
        MAX_PRICE_PER_KG + 1,
        MAX_STOCK_G + 1,
        MAX_BUDGET + 1,
    }
)
huge_integers = st.sampled_from(EDGE_INTEGERS) | st.integers(min_value=-(2**80), max_value=2**80)

# The same digits in other scripts: int() reads every one of them.
FOREIGN_DIGITS = [
    "\u0661",  # Arabic-Indic 1
    "\u0662\u0660",  # Arabic-Indic 20
    "\u06f1\u06f2",  # Persian 12
    "\u0967\u0968",  # Devanagari 12
    "\u09e7",  # Bengali 1
    "\u0e51\u0e52",  # Thai 12
    "\uff11\uff12",  # fullwidth 12
    "\U0001d7d9\U0001d7da",  # mathematical double-struck 12
    "1\u0661",  # ASCII and Arabic-Indic: 11
    "\u1811",  # Mongolian 1
    "\u07c1",  # N'Ko 1
    "\u00b2",  # superscript 2 (not a decimal digit; int() refuses it)
]
MIXED_PARTS = ["1", "\u0663", "\u096d", "\uff13", "_", " ", "+", "-", "\u066b"]  # and Arabic decimal separator
mixed_script_numbers = st.sampled_from(FOREIGN_DIGITS) | st.builds(
    "".join, st.lists(st.sampled_from(MIXED_PARTS), min_size=1, max_size=6)
)

FAR_DATES = [
    "0001-01-01",
    "0001-01-01T00:00:00+01:00",
    "0001-01-01T00:59:59+01:00",
    "9999-12-31",
    "9999-12-31T23:59:59-01:00",
    "9999-12-31T23:59:59-14:00",
    "9998-12-31",
    "9999-12-30T23:00:00Z",
    "0000-01-01",
    "10000-01-01",
    "2026-02-30",
    "2026-13-01T00:00:00Z",
    "\u0662\u0660\u0662\u0666-\u0660\u0661-\u0660\u0661",
    "\uff12\uff10\uff12\uff16-\uff10\uff11-\uff10\uff11",
    "2026-01-01T00:00:00+24:00",
]
far_dates = st.sampled_from(FAR_DATES) | st.datetimes().map(lambda moment: moment.isoformat() + "+14:00")

CONTROL_TEXT = [
    "Navel\r\nBcc: evil@example.test",
    "Navel\n",
    "\rNavel",
    "Nav\tel",
    "Navel\x00",
    "Navel\x1b[31m",
    "Navel\x85",
    "Navel\u2028orange",
    "\ud800",
    "\u202eegnaro",
    "x" * 10_000,
]
hostile_text = (
    st.sampled_from(CONTROL_TEXT)
    | mixed_script_numbers
    | st.text(st.characters(codec="utf-8", categories=["Cc", "Zl", "Zp", "Nd", "Lo", "Mn"]), max_size=20)
)


def nested_json(depth: int, *, kind: str = "list") -> str:
    """JSON `depth` arrays (or objects) deep, written out without recursion."""
    if kind == "list":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "0" + "}" * depth


deep_json_text = st.builds(
    nested_json,
    st.sampled_from([50_000, 5_000, 1_000, 200, MAX_JSON_DEPTH + 1]),
    kind=st.sampled_from(["list", "object"]),
)
# Nested values a JSON encoder can still write (Python's stops near 1,000).
deep_values = st.integers(min_value=MAX_JSON_DEPTH - 1, max_value=400).map(lambda depth: json.loads(nested_json(depth)))


def cursor_of(plain: Any) -> str:
    """A cursor as the lists make them (base64 of JSON) holding `plain`."""
    raw = plain if isinstance(plain, str) else json.dumps(plain)
    return base64.urlsafe_b64encode(raw.encode("utf-8", "surrogatepass")).decode().rstrip("=")


# Cursors as the lists make them (a JSON list of sort values, base64), but
# holding what no list sorts on.
cursors = st.one_of(
    st.lists(huge_integers, min_size=1, max_size=3).map(cursor_of),
    st.sampled_from([[True], [None], [1.5], ["1"], [{}], [[1]], {"id": 1}, "null", [], ["\u0000", 1]]).map(cursor_of),
    st.lists(far_dates, min_size=1, max_size=2).map(lambda dates: cursor_of([*dates, 1])),
    deep_json_text.map(cursor_of),
    st.text(max_size=300),
)

hostile_scalars = st.one_of(
    huge_integers,
    far_dates,
    hostile_text,
    st.booleans(),
    st.none(),
    st.floats(allow_nan=False, allow_infinity=False),
)
hostile_values = hostile_scalars | deep_values | st.lists(hostile_scalars, max_size=3)


def _query_text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return value if isinstance(value, str) else json.dumps(value)


@dataclass
class Operation:
    """One operation of the OpenAPI document, with what it takes."""

    method: str
    path: str
    path_params: list[str]
    query_params: dict[str, dict[str, Any]]
    body: dict[str, Any] | None
    document: dict[str, Any] = field(repr=False)

    @property
    def label(self) -> str:
        return f"{self.method.upper()} {self.path}"


def operations(document: dict[str, Any]) -> list[Operation]:
    """Every operation of the OpenAPI document."""
    found = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            parameters = [_resolve(p, document) for p in operation.get("parameters", []) + item.get("parameters", [])]
            content = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
            found.append(
                Operation(
                    method=method,
                    path=path,
                    path_params=[p["name"] for p in parameters if p["in"] == "path"],
                    query_params={p["name"]: p.get("schema", {}) for p in parameters if p["in"] == "query"},
                    body=content.get("schema"),
                    document=document,
                )
            )
    return found


def _resolve(node: dict[str, Any], document: dict[str, Any]) -> dict[str, Any]:
    """`node`, or what its `$ref` ("#/components/schemas/X") points at."""
    while "$ref" in node:
        target: Any = document
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


PLAUSIBLE_TEXT = {
    "date": st.sampled_from(["2026-11-01", "2026-11-20", "2026-12-31"]),
    "date-time": st.sampled_from(["2026-11-01T00:00:00+08:00", "2026-11-20T12:00:00Z"]),
    None: st.sampled_from(["navel", "gannan", "寻乌县", "a@example.test", "https://example.test/x"]),
}


def plausible(schema: dict[str, Any], document: dict[str, Any], depth: int = 0) -> st.SearchStrategy[Any]:
    """A value of the documented type, within its documented range: small
    ids that exist in the seeded data, an enum's members, recent dates."""
    schema = _resolve(schema, document)
    kind = schema.get("type")
    if "enum" in schema:
        strategy: st.SearchStrategy[Any] = st.sampled_from(schema["enum"])
    elif kind == "integer":
        low = schema.get("minimum", 0)
        strategy = st.integers(min_value=low, max_value=min(schema.get("maximum", 10_000), low + 10_000))
    elif kind == "boolean":
        strategy = st.booleans()
    elif kind == "array" and depth < 3:
        items = hostile_or_plausible(schema.get("items", {}), document, depth + 1)
        strategy = st.lists(items, min_size=1, max_size=3)
    elif kind == "object" and depth < 3:
        strategy = body_for(schema, document, depth + 1)
    else:
        strategy = PLAUSIBLE_TEXT.get(schema.get("format"), PLAUSIBLE_TEXT[None])
    return strategy


def hostile_for(schema: dict[str, Any], document: dict[str, Any]) -> st.SearchStrategy[Any]:
    """A value aimed at the edge of what `schema` documents."""
    schema = _resolve(schema, document)
    kind = schema.get("type")
    if kind == "integer":
        return huge_integers | mixed_script_numbers
    if schema.get("format") in ("date", "date-time"):
        return far_dates
    if kind == "string":
        return hostile_text | far_dates
    return hostile_values


def hostile_or_plausible(schema: dict[str, Any], document: dict[str, Any], depth: int = 0) -> st.SearchStrategy[Any]:
    return plausible(schema, document, depth) | hostile_for(schema, document)


def body_for(schema: dict[str, Any], document: dict[str, Any], depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    """An object with each documented property plausible or hostile (or
    left out), and now and then one the schema does not have."""
    schema = _resolve(schema, document)
    properties = {
        name: hostile_for(prop, document) | plausible(prop, document, depth) | st.just(...)
        for name, prop in schema.get("properties", {}).items()
        if not prop.get("readOnly")
    }
    extra = st.dictionaries(st.sampled_from(["extra", "colour", "__proto__", "id\u0661"]), hostile_scalars, max_size=1)
    return st.builds(
        lambda values, more: {k: v for k, v in values.items() if v is not ...} | more,
        st.fixed_dictionaries(properties),
        extra,
    )


@dataclass
class HostileRequest:
    method: str
    url: str
    query: list[tuple[str, str]]
    body: bytes | None


def _path_segment(value: Any) -> str:
    return quote(value if isinstance(value, str) else str(value), safe="")


path_ids = st.one_of(
    st.integers(min_value=1, max_value=8),
    huge_integers,
    mixed_script_numbers,
    st.sampled_from(["0", "-1", "+1", "1e3", "0x1", "1" * 5_000, " 1", "1%00"]),
)


@st.composite
def request_for(draw: st.DrawFn, operation: Operation) -> HostileRequest:
    """One request to `operation`, hostile somewhere."""
    url = "/api/v1" + operation.path.removeprefix("/api/v1")
    for name in operation.path_params:
        url = url.replace("{" + name + "}", _path_segment(draw(path_ids)))
    query: list[tuple[str, str]] = []
    for name, schema in operation.query_params.items():
        choice = draw(st.sampled_from(["hostile", "plausible", "leave"]))
        if choice == "leave":
            continue
        if name == "cursor":
            value = draw(cursors)
        else:
            strategy = plausible if choice == "plausible" else hostile_for
            value = draw(strategy(schema, operation.document))
        query.append((name, _query_text(value)))
    if draw(st.integers(min_value=0, max_value=4)) == 4:
        query.append((draw(st.sampled_from(["expand", "dry_run", "limit\u0661", "sort"])), draw(hostile_text)))
    body = None
    if operation.body is not None:
        if draw(st.integers(min_value=0, max_value=5)) == 0:
            body = draw(deep_json_text).encode()
        else:
            body = json.dumps(draw(body_for(operation.body, operation.document))).encode()
    return HostileRequest(operation.method, url, query, body)
