"""API conventions shared by every blueprint: problem documents and bearer
auth in the OpenAPI document."""

from __future__ import annotations

import http
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import marshmallow as ma
from flask import Flask, Response
from flask_smorest import Api, Blueprint
from flask_smorest.spec.plugins import integerconverter2paramschema
from flask_smorest.utils import prepare_response
from werkzeug.exceptions import HTTPException
from werkzeug.routing import IntegerConverter, Map

from market import errors
from market.csv_export import csv_text
from market.money import MAX_BIGINT

F = TypeVar("F", bound=Callable[..., Any])
BEARER: list[dict[str, list[str]]] = [{"bearerAuth": []}]
# Row ids are PostgreSQL `integer`s. A larger number names no row, and the
# database refuses it as a parameter (an error, not an empty result), so ids
# in paths and request fields are bounded before any query runs.
MAX_ID = 2**31 - 1


UNSTORABLE_TEXT = "Must not contain NUL characters or unpaired surrogates."


def _has_unstorable_text(value: Any) -> bool:
    if isinstance(value, str):
        if "\x00" in value:
            return True
        try:
            value.encode()
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, Mapping):
        return any(_has_unstorable_text(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_unstorable_text(v) for v in value)
    return False


class IdConverter(IntegerConverter):
    """`<int:...>` in a route: a row id, 0 to MAX_ID; anything else is a 404."""

    def __init__(self, url_map: Map, fixed_digits: int = 0, min: int | None = None, max: int | None = MAX_ID) -> None:
        super().__init__(url_map, fixed_digits=fixed_digits, min=min, max=max)


class BigInteger(ma.fields.Integer):
    """An integer kept in a `bigint` column: money and grams (their bounds
    are in `market.money`). The document shows it as an int64."""


class StrictSchema(ma.Schema):
    """Every request schema rejects unknown fields by name, takes a field
    named `id` or `..._id` as a row id (1 to MAX_ID), and keeps every other
    integer within the database's integer."""

    class Meta:
        unknown = ma.RAISE

    @ma.pre_load
    def _text_the_database_can_store(self, data: Any, **kwargs: Any) -> Any:
        # PostgreSQL text holds neither NUL nor unpaired UTF-16 surrogates
        # (both can arrive as JSON escapes); refuse them by field here rather
        # than as a database error.
        if isinstance(data, Mapping):
            bad = {name: [UNSTORABLE_TEXT] for name, value in data.items() if _has_unstorable_text(value)}
            if bad:
                raise ma.ValidationError(bad)
        return data

    def on_bind_field(self, field_name: str, field_obj: ma.fields.Field[Any]) -> None:
        if not isinstance(field_obj, ma.fields.Integer):
            return
        if field_name == "id" or field_name.endswith("_id"):
            field_obj.validators = [*field_obj.validators, ma.validate.Range(min=1, max=MAX_ID)]
        else:
            # Every integer is compared with or stored in an integer (or
            # bigint) column; a field's own, narrower range still applies
            # (the document shows the narrowest).
            limit = MAX_BIGINT if isinstance(field_obj, BigInteger) else MAX_ID
            field_obj.validators = [*field_obj.validators, ma.validate.Range(min=-limit - 1, max=limit)]


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


class MarketApi(Api):
    """flask-smorest's Api, answering every error with a problem document."""

    ERROR_SCHEMA = ProblemSchema

    def init_app(self, app: Flask, *, spec_kwargs: dict[str, Any] | None = None) -> None:
        app.url_map.converters["int"] = IdConverter
        self.register_converter(IdConverter, integerconverter2paramschema)
        self.register_field(BigInteger, "integer", "int64")
        super().init_app(app, spec_kwargs=spec_kwargs)

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


class MarketBlueprint(Blueprint):
    def route(self, rule: str, **kwargs: Any) -> Callable[[F], F]:
        """flask-smorest's `route`; a path with an id in it can name nothing
        (or nothing the caller may see), so its 404 is documented unless the
        view already describes its own."""
        register: Callable[[F], F] = super().route(rule, **kwargs)
        if "<" not in rule:
            return register

        def decorator(func: F) -> F:
            documented = getattr(func, "_apidoc", {}).get("response", {}).get("responses", {})
            if 404 not in documented:
                func = self.alt_response(404, description="Nothing with this id, or not visible to you")(func)
            return register(func)

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

    def authenticated(self, func: F) -> F:
        """Document that an endpoint needs a bearer token (and may refuse it)."""
        func = self.alt_response(401, description="Missing, expired or revoked token")(func)
        func = self.alt_response(403, description="The caller's role does not allow this")(func)
        result: F = self.doc(security=BEARER)(func)
        return result


def csv_response(rows: Iterable[Mapping[str, Any]], columns: Sequence[str], filename: str) -> Response:
    """Rows as a CSV download, written as `market.csv_export` says."""
    response = Response(csv_text(rows, columns), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
