"""Every catalog endpoint for every kind of caller.

Each role gets a fresh set of farms and listings, so one caller's successful
change never decides the next caller's answer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from flask.testing import FlaskClient

from market.accounts.models import Role
from market.catalog.models import FarmStatus, ListingStatus
from tests.factories import (
    BrandFactory,
    CategoryFactory,
    FarmFactory,
    FulfilmentPointFactory,
    ListingFactory,
    user_with_token,
)

ROLES = ("anonymous", "buyer", "owner", "other_farmer", "operator")


@dataclass(frozen=True)
class World:
    farm: int
    pending_farm: int
    listing: int
    draft: int
    point: int
    category: int
    category_code: str
    brand: int


def build_world() -> tuple[World, dict[str, dict[str, str]]]:
    owner, owner_headers = user_with_token(Role.FARMER)
    farm = FarmFactory(owner=owner)
    category = CategoryFactory()
    world = World(
        farm=farm.id,
        pending_farm=FarmFactory(owner=owner, status=FarmStatus.PENDING).id,
        listing=ListingFactory(farm=farm, category=category).id,
        draft=ListingFactory(farm=farm, category=category, status=ListingStatus.DRAFT).id,
        point=FulfilmentPointFactory().id,
        category=category.id,
        category_code=category.code,
        brand=BrandFactory().id,
    )
    headers = {
        "anonymous": {},
        "buyer": user_with_token(Role.BUYER)[1],
        "owner": owner_headers,
        "other_farmer": user_with_token(Role.FARMER)[1],
        "operator": user_with_token(Role.OPERATOR)[1],
    }
    return world, headers


Body = Callable[[World], dict[str, Any]] | None


def farm_body(_: World) -> dict[str, Any]:
    return {"name": "Peng family tea garden", "village": "双凤村", "county": "永顺县", "province": "湖南省"}


def listing_body(w: World) -> dict[str, Any]:
    return {
        "farm_id": w.farm,
        "product_name": "莓茶",
        "category": w.category_code,
        "price_per_kg": 16000,
        "min_order_g": 250,
        "step_g": 250,
    }


def point_body(_: World) -> dict[str, Any]:
    return {
        "kind": "county_centre",
        "name": "永顺县电商中心",
        "county": "永顺县",
        "province": "湖南省",
        "address": "灵溪镇",
    }


def vocabulary_body(_: World) -> dict[str, Any]:
    return {"code": "tea", "name_zh": "茶叶", "name_en": "Tea"}


def stock_body(w: World) -> dict[str, Any]:
    return {"items": [{"listing_id": w.listing, "stock_g": 4000}]}


def lot_body(_: World) -> dict[str, Any]:
    return {"code": "YS-2026-05", "harvest_date": "2026-05-10", "grams": 20000}


OWNER_ONLY = {"anonymous": 401, "buyer": 403, "owner": 200, "other_farmer": 404, "operator": 200}
OPERATOR_ONLY = {"anonymous": 401, "buyer": 403, "owner": 403, "other_farmer": 403, "operator": 200}
PUBLIC = dict.fromkeys(ROLES, 200)
OWNER_AND_OPERATOR_READ = {"anonymous": 404, "buyer": 404, "owner": 200, "other_farmer": 404, "operator": 200}


def created(expected: dict[str, int]) -> dict[str, int]:
    return {role: 201 if status == 200 else status for role, status in expected.items()}


# (method, path, body, expected status by role)
ENDPOINTS: list[tuple[str, str, Body, dict[str, int]]] = [
    ("POST", "/farms", farm_body, {"anonymous": 401, "buyer": 403, "owner": 201, "other_farmer": 201, "operator": 403}),
    ("GET", "/farms", None, PUBLIC),
    ("GET", "/farms/{farm}", None, PUBLIC),
    ("GET", "/farms/{pending_farm}", None, OWNER_AND_OPERATOR_READ),
    ("PATCH", "/farms/{farm}", lambda w: {"description": "Terraced hillside"}, OWNER_ONLY),
    ("POST", "/farms/{pending_farm}/verify", None, OPERATOR_ONLY),
    ("POST", "/farms/{farm}/suspend", None, OPERATOR_ONLY),
    ("POST", "/fulfilment-points", point_body, created(OPERATOR_ONLY)),
    ("GET", "/fulfilment-points", None, PUBLIC),
    ("GET", "/fulfilment-points/{point}", None, PUBLIC),
    ("PATCH", "/fulfilment-points/{point}", lambda w: {"opening_hours": "08:00-20:00"}, OPERATOR_ONLY),
    ("GET", "/categories", None, PUBLIC),
    ("POST", "/categories", vocabulary_body, created(OPERATOR_ONLY)),
    ("PATCH", "/categories/{category}", lambda w: {"name_en": "Fresh fruit"}, OPERATOR_ONLY),
    ("GET", "/brands", None, PUBLIC),
    ("POST", "/brands", lambda w: vocabulary_body(w) | {"counties": ["永顺县"]}, created(OPERATOR_ONLY)),
    ("PATCH", "/brands/{brand}", lambda w: {"counties": ["寻乌县", "安远县"]}, OPERATOR_ONLY),
    ("POST", "/listings", listing_body, created(OWNER_ONLY)),
    ("GET", "/listings", None, PUBLIC),
    ("GET", "/listings/{listing}", None, PUBLIC),
    ("GET", "/listings/{draft}", None, OWNER_AND_OPERATOR_READ),
    ("PATCH", "/listings/{listing}", lambda w: {"price_per_kg": 1100}, OWNER_ONLY),
    ("POST", "/listings/{draft}/activate", None, OWNER_ONLY),
    ("POST", "/listings/{listing}/pause", None, OWNER_ONLY),
    ("POST", "/listings/{listing}/archive", None, OWNER_ONLY),
    ("POST", "/listings/{listing}/lots", lot_body, created(OWNER_ONLY)),
    ("GET", "/listings/{listing}/lots", None, PUBLIC),
    ("GET", "/listings/{draft}/lots", None, OWNER_AND_OPERATOR_READ),
    # Another farmer's listing is "no such listing of yours", named by item.
    ("POST", "/listings/stock", stock_body, OWNER_ONLY | {"other_farmer": 422}),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "expected"), ENDPOINTS, ids=[f"{m} {p}" for m, p, _, _ in ENDPOINTS]
)
def test_endpoint_answers_each_role(
    client: FlaskClient, method: str, path: str, body: Body, expected: dict[str, int]
) -> None:
    answers = {}
    for role in ROLES:
        world, headers = build_world()
        url = "/api/v1" + path.format(**vars(world))
        response = client.open(url, method=method, json=body(world) if body else None, headers=headers[role])
        answers[role] = response.status_code
        if response.status_code >= 400:
            assert response.content_type == "application/problem+json"
    assert answers == expected
