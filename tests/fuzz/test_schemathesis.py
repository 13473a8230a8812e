"""Fuzz every operation of the OpenAPI document with schemathesis, once per
role (anonymous, buyer, farmer, operator), through the in-process WSGI app.

Each response must be no 5xx, a status the operation documents explicitly
(not only through the catch-all `default`), a documented content type, and a
body that matches the documented schema. The data is the demo catalogue plus
a few orders, so small ids in paths reach real rows.

The run is derandomised and bounded so it stays fast and repeatable; set
FUZZ_EXAMPLES to a larger number for a deeper local run.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import select

from market import create_app, demo
from market.accounts.models import Role, User
from market.auth import Actor
from market.catalog.models import FulfilmentPoint, Listing, ListingStatus
from market.extensions import db, limiter
from market.orders import service as orders
from market.orders.service import LineRequest
from tests.conftest import empty_tables, settings_for

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "6"))
ROLES = {
    "anonymous": None,
    "buyer": "buyer@farm-market.test",
    "farmer": "liu.orchard@farm-market.test",
    "operator": "operator@farm-market.test",
}
# Answers any route may give before it runs, for reasons that are about the
# request as a whole rather than the operation; the catch-all `default`
# response documents them once for every operation.
GENERIC_STATUSES = frozenset({405, 406, 413, 415})


def _orders_for_demo_buyer() -> None:
    """A few orders in different states, so order and part ids exist."""
    buyer = db.session.scalars(select(User).where(User.email == ROLES["buyer"])).one()
    actor = Actor(user_id=buyer.id, roles=frozenset({Role.BUYER}))
    point = db.session.scalars(select(FulfilmentPoint).order_by(FulfilmentPoint.id.desc())).first()
    assert point is not None
    listings = db.session.scalars(
        select(Listing).where(Listing.status == ListingStatus.ACTIVE).order_by(Listing.id)
    ).all()
    for first, second in itertools.pairwise(listings):
        order = orders.place_order(
            actor,
            lines=[LineRequest(first.id, first.min_order_g), LineRequest(second.id, second.min_order_g)],
            fulfilment_point_id=point.id,
        )
        if order.id % 2 == 0:
            orders.mark_paid(order.id)
            db.session.commit()


@pytest.fixture(scope="module")
def seeded(database_url: str) -> Iterator[tuple[Flask, dict[str, str]]]:
    app = create_app(settings_for(database_url))
    with app.app_context():
        limiter.reset()
        tokens = demo.seed()
        _orders_for_demo_buyer()
        db.session.remove()
    yield app, tokens
    with app.app_context():
        db.session.remove()
        empty_tables()
        db.engine.dispose()


@pytest.fixture(scope="module")
def api_schema(seeded: tuple[Flask, dict[str, str]]) -> schemathesis.BaseSchema:
    app, _ = seeded
    return schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)


@schemathesis.check
def status_code_documented(ctx: Any, response: Any, case: Any) -> bool | None:
    """Fail on a status the operation does not list by number: `default`
    would otherwise let any undocumented 4xx through."""
    documented = {str(code) for code in case.operation.definition.raw["responses"]}
    status = response.status_code
    if str(status) not in documented and status not in GENERIC_STATUSES:
        raise AssertionError(f"{case.operation.label} answered {status}, documented: {', '.join(sorted(documented))}")
    return None


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    status_code_documented,
    content_type_conformance,
    response_schema_conformance,
]
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def _fuzz(operation: Any, mode: GenerationMode, headers: dict[str, str]) -> None:
    @FUZZ_SETTINGS
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS)

    check()


@pytest.mark.parametrize("role", sorted(ROLES))
def test_every_operation_answers_as_documented(
    role: str, api_schema: schemathesis.BaseSchema, seeded: tuple[Flask, dict[str, str]]
) -> None:
    """Valid and invalid requests to every operation; all failures are
    reported together, each with the smallest request that shows it."""
    _, tokens = seeded
    email = ROLES[role]
    headers = {} if email is None else {"Authorization": f"Bearer {tokens[email]}"}
    failures: list[str] = []
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) > 40
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                _fuzz(operation, mode, headers)
            except Unsatisfiable:
                continue  # nothing to make invalid: the operation takes no input
            except (Exception, BaseExceptionGroup) as exc:  # schemathesis groups what each check found
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    assert not failures, f"{len(failures)} failing operation(s) as {role}:\n\n" + "\n\n".join(failures)
