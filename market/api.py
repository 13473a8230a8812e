"""API conventions shared by every blueprint: problem documents, bearer
auth in the OpenAPI document, and what a request may hold (read once, where
it comes in: bodies, query strings, path ids)."""

from __future__ import annotations

import functools
import http
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any, TypeVar, cast

import marshmallow as ma
from flask import Flask, Request, Response, request
from flask.json.provider import DefaultJSONProvider
from flask_smorest import Api, Blueprint
from flask_smorest.spec.plugins import integerconverter2paramschema
from flask_smorest.utils import prepare_response
from webargs import core as webargs_core
from webargs.flaskparser import FlaskParser
from werkzeug.exceptions import BadRequest, HTTPException
from werkzeug.routing import IntegerConverter, Map

from market import errors
from market.conditional import refuse_if_match
from market.csv_export import csv_text
from market.money import MAX_BIGINT
from market.text import NO_CONTROL, ONE_LINE, breaks_a_line, has_control_characters

F = TypeVar("F", bound=Callable[..., Any])
BEARER: list[dict[str, list[str]]] = [{"bearerAuth": []}]
# Row ids are PostgreSQL `integer`s. A larger number names no row, and the
# database refuses it as a parameter (an error, not an empty result), so ids
# in paths and request fields are bounded before any query runs.
MAX_ID = 2**31 - 1
# The deepest JSON a request body may nest (arrays and objects in each
# other). The deepest the API takes is four; Stripe's events about ten.
# Parsing, validating and storing JSON all recurse, so a body nested
# thousands deep would end in a RecursionError (a 500) somewhere.
MAX_JSON_DEPTH = 32
# Every date and time the API accepts lies between these days, in UTC.
# Python's calendar ends with 9999; a time near its edge with an offset
# (`0001-01-01T00:00:00+01:00`) leaves it on the way to UTC, and a day near
# its end leaves it when a service takes the next day (or a period) after.
EARLIEST_DAY = date.min
LATEST_DAY = date(9998, 12, 31)
OUTSIDE_CALENDAR = f"Must be between {EARLIEST_DAY} and {LATEST_DAY} (UTC)."
# Days of the marketplace's own business (a cash-up, a deposit, a harvest, a
# programme's statement): none of it happened before 2000.
DAYS = ma.validate.Range(min=date(2000, 1, 1), error="Not before 2000-01-01.")
# Numbers, dates and times in a query string are written in ASCII digits:
# int() also reads other scripts' digits (Arabic-Indic U+0661 is 1), "_" and spaces.
ASCII_INTEGER = re.compile(r"[+-]?[0-9]+")
NOT_ASCII_INTEGER = "Not a valid integer: use ASCII digits only."
NOT_ASCII = "Use ASCII digits and characters only."


UNSTORABLE_TEXT = "Must not contain NUL characters or unpaired surrogates."


def has_unstorable_text(value: Any) -> bool:
    if isinstance(value, str):
        if "\x00" in value:
            return True
        try:
            value.encode()
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, Mapping):
        return any(has_unstorable_text(v) for v in value.values())
    if isinstance(value, list):
        return any(has_unstorable_text(v) for v in value)
    return False


def deeper_than(value: Any, depth: int) -> bool:
    """Whether the parsed JSON `value` nests arrays and objects more than
    `depth` deep (walked without recursion)."""
    level = [value]
    for _ in range(depth):
        level = [
            child
            for container in level
            if isinstance(container, (dict, list))
            for child in (container.values() if isinstance(container, dict) else container)
        ]
        if not level:
            return False
    return any(isinstance(node, (dict, list)) for node in level)


class MarketJSONProvider(DefaultJSONProvider):
    """Flask's JSON, refusing documents nested deeper than MAX_JSON_DEPTH as
    invalid (a ValueError: a request body that does so is a 400). Responses
    keep the schemas' order of fields."""

    sort_keys = False

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        too_deep = ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels.")
        try:
            value = super().loads(s, **kwargs)
        except RecursionError:
            raise too_deep from None
        if deeper_than(value, MAX_JSON_DEPTH):
            raise too_deep
        return value


class MarketRequest(Request):
    """Flask's request, saying why a JSON body could not be read (Flask
    hides the reason outside debug mode)."""

    def on_json_loading_failed(self, e: ValueError | None) -> Any:
        if e is None:
            return super().on_json_loading_failed(e)
        raise BadRequest(f"The body is not valid JSON: {e}")


def as_utc(moment: datetime) -> datetime | None:
    """`moment` in UTC (naive is taken as UTC already), or None when that
    leaves Python's calendar (`0001-01-01T00:00:00+01:00` is in year 0)."""
    try:
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
    except OverflowError:
        return None


def within_calendar(value: date) -> bool:
    """Whether a date, or a time once in UTC, lies between EARLIEST_DAY and
    LATEST_DAY."""
    if isinstance(value, datetime):
        moment = as_utc(value)
        if moment is None:
            return False
        value = moment.date()
    return EARLIEST_DAY <= value <= LATEST_DAY


def _within_calendar(value: date) -> None:
    if not within_calendar(value):
        raise ma.ValidationError(OUTSIDE_CALENDAR)


def _one_line(value: str) -> None:
    if breaks_a_line(value):
        raise ma.ValidationError(ONE_LINE)


def _free_text(value: str) -> None:
    if has_control_characters(value):
        raise ma.ValidationError(NO_CONTROL)


def _text_rule(field: ma.fields.Field[Any]) -> Callable[[str], None] | None:
    """What a text field refuses: every control character, or in free text
    (`free_text`) all but line breaks and tabs. Write-only text (a
    password) is hashed and never shown: it may hold any character."""
    if field.load_only:
        return None
    return _free_text if field.metadata.get("multiline") else _one_line


def _needs_text(field: ma.fields.Field[Any]) -> bool:
    """A text field that must hold at least one character (Length min 1)."""
    return any(isinstance(rule, ma.validate.Length) and (rule.min or 0) >= 1 for rule in field.validators)


def _not_blank(value: str) -> None:
    """Text that must say something says more than spaces (a reason, a
    reference, an address)."""
    if not value.strip():
        raise ma.ValidationError("Must not be blank.")


def free_text(**kwargs: Any) -> ma.fields.String:
    """A text field for prose (a description, a reason, an address): it may
    hold line breaks and tabs, where every other text is one line."""
    kwargs["metadata"] = {**kwargs.get("metadata", {}), "multiline": True}
    return ma.fields.String(**kwargs)


class IdConverter(IntegerConverter):
    """`<int:...>` in a route: a row id, 0 to MAX_ID, in ASCII digits
    (werkzeug's `\\d` and int() also take other scripts' digits: U+0661 is 1);
    anything else is a 404."""

    regex = f"[0-9]{{1,{len(str(MAX_ID))}}}"

    def __init__(self, url_map: Map, fixed_digits: int = 0, min: int | None = None, max: int | None = MAX_ID) -> None:
        super().__init__(url_map, fixed_digits=fixed_digits, min=min, max=max)


class BigInteger(ma.fields.Integer):
    """An integer kept in a `bigint` column: money and grams (their bounds
    are in `market.money`). The document shows it as an int64."""


class StrictSchema(ma.Schema):
    """Every request schema (body and query string) rejects unknown fields by
    name, takes a field named `id` or `..._id` as a row id (1 to MAX_ID),
    keeps every other integer within the database's integer and every date
    and time within EARLIEST_DAY to LATEST_DAY, reads numbers and dates in
    ASCII digits only, and refuses control characters in text (line breaks
    and tabs too, except in `free_text`)."""

    class Meta:
        unknown = ma.RAISE

    @ma.pre_load
    def _ascii_numbers_and_dates(self, data: Any, **kwargs: Any) -> Any:
        # A query string's numbers and dates arrive as text; marshmallow
        # reads them with int() and \\d, which take any script's digits.
        if not isinstance(data, Mapping):
            return data
        bad: dict[str, list[str]] = {}
        for name, field in self.load_fields.items():
            key = field.data_key or name
            value = data.get(key)
            if not isinstance(value, str):
                continue
            if isinstance(field, ma.fields.Integer) and not ASCII_INTEGER.fullmatch(value):
                bad[key] = [NOT_ASCII_INTEGER]
            elif isinstance(field, (ma.fields.Date, ma.fields.DateTime, ma.fields.Number)) and not value.isascii():
                bad[key] = [NOT_ASCII]
        if bad:
            raise ma.ValidationError(bad)
        return data

    @ma.pre_load
    def _text_the_database_can_store(self, data: Any, **kwargs: Any) -> Any:
        # PostgreSQL text holds neither NUL nor unpaired UTF-16 surrogates
        # (both can arrive as JSON escapes); refuse them by field here rather
        # than as a database error.
        if isinstance(data, Mapping):
            bad = {name: [UNSTORABLE_TEXT] for name, value in data.items() if has_unstorable_text(value)}
            if bad:
                raise ma.ValidationError(bad)
        return data

    def require_in_order(self, data: Mapping[str, Any], first: str, last: str) -> None:
        """A period given by the fields `first` and `last` (either may be
        left out): its end not before its start, the error naming both as
        the client sent them. Called from a schema's `validates_schema`."""
        if data.get(first) and data.get(last) and data[first] > data[last]:
            sent = {name: self.fields[name].data_key or name for name in (first, last)}
            raise ma.ValidationError(f"Must not be before {sent[first]}.", sent[last])

    def on_bind_field(self, field_name: str, field_obj: ma.fields.Field[Any]) -> None:
        if isinstance(field_obj, ma.fields.List) and isinstance(field_obj.inner, ma.fields.String):
            field_obj = field_obj.inner
        if isinstance(field_obj, ma.fields.String):
            rule = _text_rule(field_obj)
            if rule is not None:
                field_obj.validators = [*field_obj.validators, rule]
            if rule is not None and _needs_text(field_obj):
                field_obj.validators = [*field_obj.validators, _not_blank]
            return
        if isinstance(field_obj, (ma.fields.Date, ma.fields.DateTime)):
            field_obj.validators = [*field_obj.validators, _within_calendar]
            return
        if not isinstance(field_obj, ma.fields.Integer):
            return
        if field_name == "id" or field_name.endswith("_id"):
            _narrowed(field_obj, 1, MAX_ID)
        else:
            # Every integer is compared with or stored in an integer (or
            # bigint) column.
            limit = MAX_BIGINT if isinstance(field_obj, BigInteger) else MAX_ID
            _narrowed(field_obj, -limit - 1, limit)


def _narrowed(field: ma.fields.Integer, low: int, high: int) -> None:
    """Keep `field` within `low` to `high` as well as its own range: one
    range, the narrowest, so a value outside is told one bound, the one
    that holds (and the document shows it)."""
    own = [rule for rule in field.validators if isinstance(rule, ma.validate.Range)]
    low = max([low, *(rule.min for rule in own if rule.min is not None)])
    high = min([high, *(rule.max for rule in own if rule.max is not None)])
    others = [rule for rule in field.validators if not isinstance(rule, ma.validate.Range)]
    field.validators = [*others, ma.validate.Range(min=low, max=high)]


class NoQuerySchema(StrictSchema):
    """The query string of an operation that takes none: every parameter is unknown."""


class MarketParser(FlaskParser):
    """webargs' parser for Flask, refusing unknown query parameters as it
    refuses unknown body fields (webargs drops them unless told: the
    schema's `unknown`, RAISE for every StrictSchema, decides), and reading
    a JSON body with Flask's `request.get_json`: parsed once, by the app's
    MarketJSONProvider, and kept."""

    DEFAULT_UNKNOWN_BY_LOCATION: dict[str, str | None] = {
        **FlaskParser.DEFAULT_UNKNOWN_BY_LOCATION,
        "query": None,
        "querystring": None,
    }

    def _raw_load_json(self, req: Request) -> Any:
        if not req.is_json or not req.get_data(cache=True):
            return webargs_core.missing
        return req.get_json()


def _takes_query(func: Callable[..., Any]) -> bool:
    parameters = getattr(func, "_apidoc", {}).get("arguments", {}).get("parameters", [])
    return any(parameter.get("in") in ("query", "querystring") for parameter in parameters)


class ProblemSchema(ma.Schema):
    """RFC 9457 problem details. A problem may carry extension members
    (`short_lines` when out of stock, `current_status` on a refused
    change), so the document allows more members than those below."""

    class Meta:
        unknown = ma.INCLUDE

    type = ma.fields.String(required=True)
    title = ma.fields.String(required=True)
    status = ma.fields.Integer(required=True)
    detail = ma.fields.String()
    instance = ma.fields.String()
    errors = ma.fields.Dict(metadata={"description": "Messages by field name."})


NULLABLE_OBJECT = {"type": "object", "nullable": True}
# OpenAPI 3.0 has no null type: this is the schema of null alone.
NULL = {**NULLABLE_OBJECT, "enum": [None]}


def nullable_reference(
    converter: Any, field: ma.fields.Field[Any], ret: dict[str, Any], **kwargs: Any
) -> dict[str, Any]:
    """A nested schema that may be null, as "null or that schema". apispec
    writes `anyOf: [{type: object, nullable: true}, $ref]`, whose first
    branch admits any object, so a generated client reads the value as an
    untyped object instead of the schema's model; the first branch is made
    to admit null alone. (An attribute function of apispec's field
    converter, run after its own.)"""
    branches = ret.get("anyOf", [])
    if not branches or branches[0] != NULLABLE_OBJECT:
        return {}
    return {"anyOf": [NULL, *branches[1:]]}


class MarketApi(Api):
    """flask-smorest's Api, answering every error with a problem document."""

    ERROR_SCHEMA = ProblemSchema

    def init_app(self, app: Flask, *, spec_kwargs: dict[str, Any] | None = None) -> None:
        app.url_map.converters["int"] = IdConverter
        self.register_converter(IdConverter, integerconverter2paramschema)
        self.register_field(BigInteger, "integer", "int64")
        super().init_app(app, spec_kwargs=spec_kwargs)
        self.ma_plugin.converter.add_attribute_function(nullable_reference)

    def handle_http_exception(self, error: HTTPException) -> Response:
        return errors.handle_http_exception(error)

    def _register_responses(self) -> None:
        for status in http.HTTPStatus:
            response: dict[str, Any] = {"description": status.phrase}
            if status >= 400:
                response["schema"] = self.ERROR_SCHEMA
                prepare_response(response, self.spec, errors.PROBLEM_JSON)
            self.spec.components.response(status.name, response, lazy=True)
        default = {"description": "Default error response", "schema": self.ERROR_SCHEMA}
        prepare_response(default, self.spec, errors.PROBLEM_JSON)
        self.spec.components.response("DEFAULT_ERROR", default, lazy=True)


# What an Idempotency-Key's repeat is told while the first request runs
# (market.idempotency); every operation taking the key documents it.
IN_FLIGHT = "A request with this Idempotency-Key is still being processed"

IF_MATCH = {
    "name": "If-Match",
    "in": "header",
    "required": False,
    "description": "The ETag you read; if the resource changed since, the write is refused (412) and changes "
    "nothing. Without it the write goes ahead.",
    "schema": {"type": "string"},
}


class MarketBlueprint(Blueprint):
    ARGUMENTS_PARSER = MarketParser()
    # flask-smorest would require If-Match on these (428) and compare it
    # before the view runs, with data read before the write. Here it is
    # optional, and the service compares it with the row it locked for
    # the write (market.conditional).
    METHODS_NEEDING_CHECK_ETAG: list[str] = []

    def route(self, rule: str, **kwargs: Any) -> Callable[[F], F]:
        """flask-smorest's `route`. An operation without query parameters
        refuses any (422), as the others refuse unknown ones. A path with an
        id in it can name nothing (or nothing the caller may see), so its 404
        is documented unless the view already describes its own.

        Each route is one operation, and its `operationId` in the document
        is the view's name (its endpoint): what a generated client calls
        the function, so a view is named for what it does (`place_order`,
        `list_listings`), once across the whole API."""
        methods = kwargs.get("methods", ["GET"])
        if len(methods) != 1:
            raise TypeError(f"{rule}: one view per method, so that each operation has its own operationId.")
        register: Callable[[F], F] = super().route(rule, **kwargs)

        def decorator(func: F) -> F:
            func = self.doc(operationId=kwargs.get("endpoint") or func.__name__)(func)
            if not _takes_query(func):
                func = self.arguments(NoQuerySchema, location="query", as_kwargs=True)(func)
            documented = getattr(func, "_apidoc", {}).get("response", {}).get("responses", {})
            if "<" in rule and 404 not in documented:
                func = self.alt_response(404, description="Nothing with this id, or not visible to you")(func)
            if func._apidoc.get("idempotent"):  # type: ignore[attr-defined]
                func = self._in_flight_documented(func)
            if methods[0] in UNSAFE_METHODS and not func._apidoc.get("if_match"):  # type: ignore[attr-defined]
                func = _without_if_match(func)
            if func._apidoc.get("authenticated"):  # type: ignore[attr-defined]
                func = _signed_in_first(func)
            return register(func)

        return decorator

    def _in_flight_documented(self, func: F) -> F:
        """An Idempotency-Key's repeat that finds the first request still
        running is a 409 (not-ready-yet, with Retry-After): added to the
        view's own 409, or the view's only one."""
        in_flight = f"{IN_FLIGHT} (not-ready-yet: retry after Retry-After seconds)"
        conflicts = func._apidoc.get("response", {}).get("responses", {}).get(409)  # type: ignore[attr-defined]
        if conflicts:
            conflicts[0]["description"] += f"; or {in_flight[0].lower()}{in_flight[1:]}"
            return func
        documented: F = self.alt_response(409, description=in_flight)(func)
        return documented

    def response(
        self, status_code: int, schema: Any = None, *, location: str | None = None, **kwargs: Any
    ) -> Callable[[F], F]:
        """flask-smorest's `response`. A 201 says where the new thing is:
        `location` is its path under the blueprint's prefix, each `{name}`
        filled from the created body or the request's path (`/farms/{id}`),
        sent as the `Location` header and documented. A body of another
        type than JSON (a CSV download, which the view makes itself) is
        documented as text of that type."""
        if schema is None and kwargs.get("content_type") not in (None, "application/json"):
            schema = {"type": "string"}
        if status_code != 201:
            if location is not None:
                raise TypeError("Only a 201 response has a location.")
            plain: Callable[[F], F] = super().response(status_code, schema, **kwargs)
            return plain
        if location is None:
            raise TypeError("A 201 response needs a location: the path of what it created.")
        header = {"description": "Where the new resource is.", "schema": {"type": "string", "format": "uri-reference"}}
        kwargs["headers"] = {**kwargs.get("headers", {}), "Location": header}
        respond: Callable[[F], F] = super().response(status_code, schema, **kwargs)
        template = f"{self.url_prefix or ''}{location}"

        def decorator(func: F) -> F:
            view = respond(func)

            @functools.wraps(view)
            def with_location(*args: Any, **kw: Any) -> Any:
                response = view(*args, **kw)
                if isinstance(response, Response) and response.status_code == 201:
                    response.headers["Location"] = template.format_map(
                        {**(request.view_args or {}), **response.get_json()}
                    )
                return response

            return cast(F, with_location)

        return decorator

    def arguments(self, schema: Any, *, location: str = "json", **kwargs: Any) -> Callable[[F], F]:
        """flask-smorest's `arguments`; a JSON body may also be refused as
        unreadable (400) before its schema is applied, so say so."""
        parse: Callable[[F], F] = super().arguments(schema, location=location, **kwargs)
        if location != "json":
            return parse

        def decorator(func: F) -> F:
            documented: F = self.alt_response(400, description="The body is not valid JSON")(parse(func))
            return documented

        return decorator

    def alt_response(
        self,
        status_code: int,
        response: Any = None,
        *,
        schema: Any = None,
        content_type: str | None = None,
        **kwargs: Any,
    ) -> Callable[[F], F]:
        """flask-smorest's `alt_response`. An error answers a problem
        document whatever its status, so an error described only in words
        documents that body too: a generated client then reads the problem
        instead of dropping it."""
        if response is None and schema is None and int(status_code) >= 400:
            schema, content_type = ProblemSchema, errors.PROBLEM_JSON
        documented: Callable[[F], F] = super().alt_response(
            status_code, response, schema=schema, content_type=content_type, **kwargs
        )
        return documented

    def conditional(self, func: F) -> F:
        """A write that honours If-Match (market.conditional): documents the
        optional header and the 412, and answers the resource's new ETag."""
        answering: F = self.etag(func)
        return self.takes_if_match(answering)

    def takes_if_match(self, func: F) -> F:
        """Document the optional If-Match and its 412 on a write that
        compares it with the resource it changes (market.conditional)."""
        func = self.alt_response(412, description="The resource changed since the ETag in If-Match; re-read it")(func)
        func._apidoc["if_match"] = True  # type: ignore[attr-defined]
        return func

    def _prepare_etag_doc(self, doc: dict[str, Any], doc_info: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        prepared: dict[str, Any] = super()._prepare_etag_doc(doc, doc_info, **kwargs)
        if doc_info.get("if_match"):
            prepared.setdefault("parameters", []).append(IF_MATCH)
        return prepared

    def authenticated(self, func: F) -> F:
        """An endpoint that needs a bearer token: a request without a valid
        one is a 401 before anything else about it is read (`route` checks
        it first), documented as such with the 403 a role may get."""
        func = self.alt_response(401, description="Missing, expired or revoked token")(func)
        func = self.alt_response(403, description="The caller's role does not allow this")(func)
        result: F = self.doc(security=BEARER)(func)
        result._apidoc["authenticated"] = True  # type: ignore[attr-defined]
        return result


UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _without_if_match(view: F) -> F:
    """`view`, a write with no ETag of its own: sent with If-Match, a 412
    before its body is read."""

    @functools.wraps(view)
    def unconditional(*args: Any, **kwargs: Any) -> Any:
        refuse_if_match()
        return view(*args, **kwargs)

    return cast(F, unconditional)


def _signed_in_first(view: F) -> F:
    """`view`, answering a 401 to a request without a valid bearer token
    before its query and body are read: a caller who may not use an
    endpoint is not told what it takes."""
    from market.auth import current_actor  # noqa: PLC0415 (market.auth imports market.extensions, which imports this module)

    @functools.wraps(view)
    def signed_in(*args: Any, **kwargs: Any) -> Any:
        current_actor()
        return view(*args, **kwargs)

    return cast(F, signed_in)


def json_or_csv(schema: Any, description: str) -> dict[str, Any]:
    """The manual document (`blp.doc(**...)`) of a 200 that answers JSON, or
    with `format=csv` the same as a CSV download: flask-smorest documents
    the JSON body alone, and a manual document replaces a response's
    content rather than adding to it."""
    csv = {"schema": {"type": "string", "description": "With format=csv."}}
    content = {"application/json": {"schema": schema}, "text/csv": csv}
    return {"responses": {"200": {"description": description, "content": content}}}


def csv_response(rows: Iterable[Mapping[str, Any]], columns: Sequence[str], filename: str) -> Response:
    """Rows as a CSV download, written as `market.csv_export` says."""
    response = Response(csv_text(rows, columns), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
