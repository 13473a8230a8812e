"""API conventions shared by every blueprint: problem documents and bearer
auth in the OpenAPI document."""

from __future__ import annotations

import csv
import http
import io
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import marshmallow as ma
from flask import Response
from flask_smorest import Api, Blueprint
from flask_smorest.utils import prepare_response
from werkzeug.exceptions import HTTPException

from market import errors

F = TypeVar("F", bound=Callable[..., Any])
BEARER: list[dict[str, list[str]]] = [{"bearerAuth": []}]


class StrictSchema(ma.Schema):
    """Every request schema rejects unknown fields by name."""

    class Meta:
        unknown = ma.RAISE


class ProblemSchema(ma.Schema):
    type = ma.fields.String(required=True)
    title = ma.fields.String(required=True)
    status = ma.fields.Integer(required=True)
    detail = ma.fields.String()
    instance = ma.fields.String()
    errors = ma.fields.Dict(metadata={"description": "Messages by field name."})


class MarketApi(Api):
    """flask-smorest's Api, answering every error with a problem document."""

    ERROR_SCHEMA = ProblemSchema

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
    """Rows as a CSV download (UTF-8 with a BOM, so spreadsheet programs
    read Chinese names right)."""
    buffer = io.StringIO()
    buffer.write("\ufeff")
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore", lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    response = Response(buffer.getvalue(), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
