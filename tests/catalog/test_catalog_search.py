"""Search: `q` finds listings by the start of any word of their names (in
Chinese, English and pinyin), SKU, category, brand, farm and places, best
match first; category and brand filters take names as well as codes."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sqlalchemy import Text, literal, select, update

from market import pagination
from market.accounts.models import Role
from market.catalog import search
from market.catalog.models import Listing, backfill_search
from market.extensions import db
from tests.factories import BrandFactory, CategoryFactory, FarmFactory, ListingFactory, user_with_token


def found(client: FlaskClient, **query: Any) -> list[str]:
    response = client.get("/api/v1/listings", query_string=query)
    assert response.status_code == 200, response.json
    return [item["sku"] for item in response.json["items"]]


def every_page(client: FlaskClient, **query: Any) -> list[str]:
    seen: list[str] = []
    cursor = None
    while True:
        page = client.get("/api/v1/listings", query_string=query | ({"cursor": cursor} if cursor else {})).json
        seen += [item["sku"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return seen


def problem(client: FlaskClient, status: int, **query: Any) -> dict[str, Any]:
    response = client.get("/api/v1/listings", query_string=query)
    assert response.status_code == status, response.json
    assert response.content_type == "application/problem+json"
    return response.json  # type: ignore[no-any-return]


def shop() -> None:
    citrus = CategoryFactory(code="citrus", name_zh="柑橘", name_en="Citrus")
    nuts = CategoryFactory(code="nuts", name_zh="坚果", name_en="Nuts")
    gannan = BrandFactory(code="gannan-navel", name_zh="赣南脐橙", name_en="Gannan Navel Orange")
    xunwu = FarmFactory(name="刘家果园", village="上车村", county="寻乌县", province="江西省")
    qinglong = FarmFactory(name="Zhao chestnut grove", village="五指山村", county="青龙满族自治县", province="河北省")
    ListingFactory(
        farm=xunwu, sku="XW-NAVEL-80", product_name="脐橙 精品果", name_en="Navel orange", variety="纽荷尔",
        category=citrus, brand=gannan,
    )  # fmt: skip
    ListingFactory(farm=xunwu, sku="XW-POMELO", product_name="蜜柚", name_en="Pomelo", variety="", category=citrus)
    ListingFactory(
        farm=qinglong, sku="QL-CHESTNUT", product_name="青龙板栗", name_en="", variety="燕山早丰", category=nuts,
    )  # fmt: skip


def test_search_finds_every_word_a_listing_is_known_by(client: FlaskClient) -> None:
    shop()
    wanted = {
        "寻乌": {"XW-NAVEL-80", "XW-POMELO"},  # a county by its start
        "寻乌县": {"XW-NAVEL-80", "XW-POMELO"},
        "上车": {"XW-NAVEL-80", "XW-POMELO"},  # the village
        "江西": {"XW-NAVEL-80", "XW-POMELO"},  # the province
        "刘家": {"XW-NAVEL-80", "XW-POMELO"},  # the farm's name
        "zhao grove": {"QL-CHESTNUT"},  # two words of it, in any order
        "脐橙": {"XW-NAVEL-80"},  # product name, and brand
        "精品": {"XW-NAVEL-80"},
        "板栗": {"QL-CHESTNUT"},  # inside a word: 青龙板栗
        "navel or": {"XW-NAVEL-80"},  # the English name, words by their start
        "POMELO": {"XW-POMELO"},
        "xw-navel-80": {"XW-NAVEL-80"},  # the SKU
        "gannan": {"XW-NAVEL-80"},  # the brand, in English
        "柑橘": {"XW-NAVEL-80", "XW-POMELO"},  # the category, in Chinese
        "nuts": {"QL-CHESTNUT"},  # and in English
        "燕山": {"QL-CHESTNUT"},  # the variety
        "xunwu": {"XW-NAVEL-80", "XW-POMELO"},  # pinyin
        "qicheng": {"XW-NAVEL-80"},
        "qinglong": {"QL-CHESTNUT"},
        "\uff4e\uff41\uff56\uff45\uff4c": {"XW-NAVEL-80"},  # navel in full-width letters
        "durian": set(),
        "寻乌 板栗": set(),  # every word must be found
        "寻乌 蜜柚": {"XW-POMELO"},
    }
    for query, skus in wanted.items():
        assert set(found(client, q=query)) == skus, query


def test_a_listing_has_an_english_name_it_is_found_by(client: FlaskClient) -> None:
    user, headers = user_with_token(Role.FARMER)
    farm = FarmFactory(owner=user)
    CategoryFactory(code="citrus")
    body = {
        "farm_id": farm.id, "sku": "XW-1", "product_name": "脐橙", "name_en": "Navel orange", "category": "citrus",
        "price_per_kg": 1200, "stock_g": 10_000, "min_order_g": 1000, "step_g": 500,
    }  # fmt: skip
    created = client.post("/api/v1/listings", json=body, headers=headers)
    assert created.status_code == 201, created.json
    assert created.json["name_en"] == "Navel orange"
    listing_id = created.json["id"]
    assert client.post(f"/api/v1/listings/{listing_id}/activate", headers=headers).status_code == 200
    assert found(client, q="navel") == ["XW-1"]

    edited = client.patch(f"/api/v1/listings/{listing_id}", json={"name_en": "Blood orange"}, headers=headers)
    assert edited.status_code == 200 and edited.json["name_en"] == "Blood orange"
    assert found(client, q="navel") == []
    assert found(client, q="blood") == ["XW-1"]


def test_own_words_rank_first_then_newest_and_other_sorts_stay(client: FlaskClient) -> None:
    citrus = CategoryFactory(code="citrus", name_zh="柑橘", name_en="Citrus")
    pomelo_farm = FarmFactory(name="Pomelo hill farm", county="平和县")
    other = FarmFactory(name="Riverside", county="寻乌县")
    ListingFactory(farm=other, sku="OWN-OLD", product_name="Pomelo", category=citrus, price_per_kg=900)
    ListingFactory(farm=pomelo_farm, sku="FARM-ONLY", product_name="Orange", category=citrus, price_per_kg=500)
    ListingFactory(farm=other, sku="OWN-NEW", product_name="Red pomelo", category=citrus, price_per_kg=1500)

    assert found(client, q="pomelo") == ["OWN-NEW", "OWN-OLD", "FARM-ONLY"]
    assert found(client, q="pomelo", sort="relevance") == ["OWN-NEW", "OWN-OLD", "FARM-ONLY"]
    assert found(client, q="pomelo", sort="price") == ["FARM-ONLY", "OWN-OLD", "OWN-NEW"]
    assert found(client, q="pomelo", sort="newest") == ["OWN-NEW", "FARM-ONLY", "OWN-OLD"]
    assert found(client, q="pomelo", county="寻乌县") == ["OWN-NEW", "OWN-OLD"]

    # Page by page, across the bands, nothing skipped or repeated.
    assert every_page(client, q="pomelo", limit=1) == ["OWN-NEW", "OWN-OLD", "FARM-ONLY"]


@pytest.mark.parametrize("walk", [1, 2, 5, 1000])
def test_a_rare_word_is_found_past_the_walk_in_the_same_order(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch, walk: int
) -> None:
    """A search reads so many rows in order, then finds the rest through the
    search index (market.pagination._read): whatever the walk's length, the
    pages hold the same listings in the same order as one sorted list."""
    monkeypatch.setattr(pagination, "SPARSE_WALK_ROWS", walk)
    farm = FarmFactory(name="Hill farm", county="平和县")
    names = ["Durian", "Pomelo", "Orange", "Pomelo", "Durian pomelo", "Orange", "Pomelo", "Orange", "Pomelo"]
    prices = [700, 1500, 900, 1100, 1300, 800, 1000, 1200, 600]
    for n, (name, price) in enumerate(zip(names, prices, strict=True)):
        ListingFactory(farm=farm, sku=f"L{n}", product_name=name, price_per_kg=price)
    hill = FarmFactory(name="Durian hill", county="平和县")  # found through its farm only: the second band
    ListingFactory(farm=hill, sku="FARM", product_name="Orange", price_per_kg=1400)

    newest = [f"L{n}" for n in reversed(range(len(names)))]
    price = {f"L{n}": p for n, p in enumerate(prices)} | {"FARM": 1400}
    durian = ["L4", "L0"]
    for limit in (1, 2, 3):
        assert every_page(client, q="durian", limit=limit) == [*durian, "FARM"]
        assert every_page(client, q="durian", sort="newest", limit=limit) == ["FARM", *durian]
        assert every_page(client, q="durian", sort="price", limit=limit) == ["L0", "L4", "FARM"]
        pomelo = [sku for sku in newest if "Pomelo" in names[int(sku[1:])] or "pomelo" in names[int(sku[1:])]]
        assert every_page(client, q="pomelo", limit=limit) == pomelo
        assert every_page(client, q="pomelo", sort="-price", limit=limit) == sorted(pomelo, key=lambda s: -price[s])
        assert every_page(client, q="mango", limit=limit) == []


NAMES = st.text(alphabet=st.sampled_from("ab1 Ａ赣南脐橙寻乌-%_'"), max_size=10)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.lists(NAMES, max_size=3), query=NAMES)
def test_a_row_checked_in_the_walk_and_the_index_look_up_agree_on_every_match(
    client: FlaskClient, names: list[str], query: str
) -> None:
    """A search checks the rows it walks one way (the token string holds
    ` term`) and looks the rest up another (on PostgreSQL, a prefix tsquery
    on the GIN index's tsvector): both must find exactly the listings whose
    every term starts one of their tokens."""
    terms = search.terms(query)
    assume(terms)
    stored = search.tokens(*names)
    sparse = search.matches(literal(stored, Text), terms, db.session.get_bind().dialect.name)
    each_row, indexed = db.session.execute(select(sparse.each_row, sparse.indexed)).one()
    expected = all(any(token.startswith(term) for token in stored.split()) for term in terms)
    assert (bool(each_row), bool(indexed)) == (expected, expected), (stored, terms)


def test_renaming_a_farm_category_or_brand_renames_what_its_listings_are_found_by(client: FlaskClient) -> None:
    _, operator = user_with_token(Role.OPERATOR)
    owner, farmer = user_with_token(Role.FARMER)
    farm = FarmFactory(owner=owner, name="Old orchard", village="下廖村")
    category = CategoryFactory(code="citrus", name_zh="柑橘", name_en="Citrus")
    brand = BrandFactory(code="gannan", name_zh="赣南脐橙", name_en="Gannan navel")
    for n in range(3):
        ListingFactory(farm=farm, sku=f"L{n}", product_name="Orange", category=category, brand=brand)
    everything = ["L2", "L1", "L0"]

    assert client.patch(f"/api/v1/farms/{farm.id}", json={"name": "Sunny slope", "village": "澄江村"}, headers=farmer)
    assert client.patch(
        f"/api/v1/categories/{category.id}", json={"name_zh": "桔子", "name_en": "Tangerines"}, headers=operator
    )
    assert client.patch(f"/api/v1/brands/{brand.id}", json={"name_zh": "寻乌蜜桔"}, headers=operator)
    for old in ("old orchard", "下廖", "柑橘", "赣南脐橙"):
        assert found(client, q=old) == [], old
    for new in ("sunny slope", "澄江", "tangerines", "桔子", "蜜桔", "miju"):
        assert found(client, q=new) == everything, new


def test_category_and_brand_filters_take_codes_and_names(client: FlaskClient) -> None:
    shop()
    for category in ("citrus", "柑橘", "Citrus", "citrus"):
        assert set(found(client, category=category)) == {"XW-NAVEL-80", "XW-POMELO"}, category
    for brand in ("gannan-navel", "赣南脐橙", "gannan navel orange"):
        assert found(client, brand=brand) == ["XW-NAVEL-80"], brand
    assert found(client, category="水果") == []
    assert found(client, brand="赣南") == []  # a name whole, not a search


def test_a_search_without_letters_or_digits_and_relevance_without_a_search_are_422(client: FlaskClient) -> None:
    shop()
    assert "q" in problem(client, 422, q="%_ -!")["errors"]
    assert "sort" in problem(client, 422, sort="relevance")["errors"]
    assert "sort" in problem(client, 422, q="navel", sort="best")["errors"]
    assert "category" in problem(client, 422, category="")["errors"]


def test_a_cursor_for_a_band_the_search_has_not_is_422(client: FlaskClient) -> None:
    shop()
    page = client.get("/api/v1/listings", query_string={"q": "寻乌", "limit": 1}).json
    assert page["next_cursor"]
    # [band, id]: band 2 does not exist, and a band is a whole number.
    for values in ([2, 5], [-1, 5], ["0", 5], [0]):
        forged = base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")
        assert "cursor" in problem(client, 422, q="寻乌", cursor=forged)["errors"], values


def test_backfill_works_out_the_search_text_of_rows_written_without_it(client: FlaskClient) -> None:
    shop()
    db.session.execute(update(Listing).values(search_own="", search_text=""))
    db.session.commit()
    updated = dict(db.session.execute(select(Listing.sku, Listing.updated_at)).tuples().all())
    assert found(client, q="寻乌") == []
    backfill_search(db.session.connection())
    db.session.commit()
    assert set(found(client, q="寻乌")) == {"XW-NAVEL-80", "XW-POMELO"}
    assert found(client, q="qinglong") == ["QL-CHESTNUT"]
    assert dict(db.session.execute(select(Listing.sku, Listing.updated_at)).tuples().all()) == updated


def test_search_text_is_the_listings_own_tokens_then_those_of_what_it_is_filed_under(client: FlaskClient) -> None:
    shop()
    stored = db.session.scalar(select(Listing.search_text).where(Listing.sku == "QL-CHESTNUT"))
    assert stored.startswith(" 青龙板栗 龙板栗 板栗 栗 qinglongbanli")
    assert stored.endswith(" 河北省 北省 省 hebeisheng beisheng sheng hbs")
