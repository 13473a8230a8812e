"""Conditional writes: `If-Match` on the resources several clients edit.

A client reads a resource and its ETag (GET answers one; so does every
write), and sends the ETag back in `If-Match` with its change. The service
compares it with the resource as it is once its row is locked for the
write, so two clients that read the same version cannot both write: the
second finds the row changed and is refused with a 412, having changed
nothing. Without If-Match a write goes ahead as before; `If-Match: *`
matches any version.

The ETag is the hash of the resource's whole representation, computed as
flask-smorest computes a GET's (`@blp.etag`): it changes whenever
anything shown changes (stock and status included), and only then.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import marshmallow as ma
from flask import request
from flask_smorest import Blueprint
from werkzeug.datastructures import ETags

from market.errors import DomainError


class PreconditionFailed(DomainError):
    status = 412
    slug = "precondition-failed"
    title = "Precondition failed"


def etag_of(document: Any) -> str:
    """The ETag of a dumped representation, as a GET with `@blp.etag` sends it."""
    tag: str = Blueprint._generate_etag(document)
    return tag


@dataclass(frozen=True)
class Expected:
    """What a write expects to find: the ETags of an If-Match header, and
    the schema that shows the resource (whose dump the ETag hashes)."""

    tags: ETags
    schema: ma.Schema

    def check(self, row: Any, name: str) -> None:
        """Refuse the write unless `row` (locked for it) still shows as one
        of the expected ETags."""
        if self.tags.star_tag:
            return
        current = etag_of(self.schema.dump(row))
        if not self.tags:
            raise PreconditionFailed(
                f"The If-Match header holds no entity tag, so {name} cannot match it; nothing was changed. Send "
                'the ETag its GET answers, quotes included ("..."), or leave If-Match out.',
                current_etag=f'"{current}"',
            )
        if not self.tags.contains(current):
            raise PreconditionFailed(
                f"{name} changed since you read it: the If-Match ETag is not its current one. Nothing was "
                "changed; read it again (GET), re-apply your change and send it with the new ETag.",
                current_etag=f'"{current}"',
            )


def if_match(schema: ma.Schema) -> Expected | None:
    """The request's If-Match, to be checked against resources shown by
    `schema`; None without the header. A header that parses to no tag at
    all is kept: it matches nothing."""
    if "If-Match" not in request.headers:
        return None
    return Expected(request.if_match, schema)


def refuse_if_match() -> None:
    """A write with no ETag to compare (anything but the writes `@blp.
    conditional` and `@blp.takes_if_match` mark) is refused when sent with
    If-Match, rather than the header ignored: the client asked for a
    condition nothing here can check. `If-Match: *` asks for none."""
    if "If-Match" in request.headers and not request.if_match.star_tag:
        raise PreconditionFailed(
            f"{request.method} {request.path} has no ETag to compare with If-Match, so the condition cannot "
            "hold; nothing was changed. Send If-Match only to the writes the API documents it on, with the "
            "ETag their resource's GET answers."
        )
