"""factory_boy factories, one section per domain."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import unquote

import factory
from argon2 import PasswordHasher
from flask.testing import FlaskClient
from sqlalchemy import select

from market.accounts import service as accounts
from market.accounts.models import Language, Role, User, UserRole
from market.catalog.models import (
    Brand,
    BrandCounty,
    Category,
    Farm,
    FarmStatus,
    FulfilmentPoint,
    FulfilmentPointKind,
    Listing,
    ListingStatus,
)
from market.db import utcnow
from market.events import NOTIFY
from market.extensions import db
from market.notifications import service as notifications
from market.notifications.models import Notification
from market.outbox import OutboxMessage

PASSWORD = "correct horse battery"
# Hashing once keeps factories fast; the hash is as real as any other.
PASSWORD_HASH = PasswordHasher().hash(PASSWORD)


class Factory(factory.alchemy.SQLAlchemyModelFactory):
    class Meta:
        abstract = True
        sqlalchemy_session_factory = lambda: db.session  # noqa: E731
        sqlalchemy_session_persistence = "commit"


class UserFactory(Factory):
    class Meta:
        model = User

    email = factory.Sequence(lambda n: f"user{n}@example.test")
    name = factory.Faker("name")
    language = Language.EN
    password_hash = PASSWORD_HASH
    confirmed_at = factory.LazyFunction(utcnow)

    @factory.post_generation
    def roles(self, create: bool, extracted: list[Role] | None, **kwargs: object) -> None:
        for role in extracted or [Role.BUYER]:
            self.roles.append(UserRole(role=role))  # type: ignore[attr-defined]
        if create:
            db.session.commit()


def token_for(user: User, *, ttl: timedelta = timedelta(days=1)) -> str:
    return accounts.issue_token(user.id, name="test", ttl=ttl).secret


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def user_with_token(*roles: Role) -> tuple[User, dict[str, str]]:
    user = UserFactory(roles=list(roles) or [Role.BUYER])
    return user, bearer(token_for(user))


def emails_to(address: str) -> list[Notification]:
    """Handle the events queued so far as the notification worker would
    (each outbox row once), then the emails written to `address`, oldest first."""
    for message in db.session.scalars(select(OutboxMessage).where(OutboxMessage.task == NOTIFY)).all():
        notifications.handle_event(f"outbox-{message.id}", **message.kwargs)
    return list(
        db.session.scalars(select(Notification).where(Notification.recipient == address).order_by(Notification.id))
    )


def confirmation_token(address: str) -> str:
    """The token of the latest confirmation link emailed to `address`."""
    links = [e.body for e in emails_to(address) if e.event == "account.confirmation"]
    assert links, f"no confirmation email to {address}"
    found = re.search(r"[?&]token=([^&\s]+)", links[-1])
    assert found, links[-1]
    return unquote(found.group(1))


def register_confirmed(client: FlaskClient, registration: dict[str, object]) -> dict[str, object]:
    """Register through the API and follow the emailed link: the confirmed account, as the API shows it."""
    registered = client.post("/api/v1/accounts", json=registration)
    assert registered.status_code == 202, registered.json
    token = confirmation_token(registered.json["email"])
    confirmed = client.post("/api/v1/accounts/confirmation", json={"token": token})
    assert confirmed.status_code == 200, confirmed.json
    return confirmed.json  # type: ignore[no-any-return]


# Catalog


class FarmFactory(Factory):
    class Meta:
        model = Farm

    owner = factory.SubFactory(UserFactory, roles=[Role.FARMER])
    name = factory.Sequence(lambda n: f"Orchard {n}")
    village = "下廖村"
    county = "寻乌县"
    province = "江西省"
    # STRIPE_CONNECT_COUNTRY's default, so a test farm can be paid by Stripe
    # as well as by the bank file; a test about mainland China says country="CN".
    country = "SG"
    contact_name = factory.Faker("name")
    status = FarmStatus.VERIFIED
    # A farm made suspended here was verified before; say verified_at=None for one that never was.
    verified_at = factory.LazyAttribute(lambda farm: None if farm.status == FarmStatus.PENDING else utcnow())


class CategoryFactory(Factory):
    class Meta:
        model = Category

    code = factory.Sequence(lambda n: f"fruit-{n}")
    name_zh = "水果"
    name_en = "Fruit"


class BrandFactory(Factory):
    class Meta:
        model = Brand

    code = factory.Sequence(lambda n: f"brand-{n}")
    name_zh = "赣南脐橙"
    name_en = "Gannan Navel Orange"
    allowed = factory.LazyFunction(lambda: [BrandCounty(county="寻乌县")])


class ListingFactory(Factory):
    class Meta:
        model = Listing

    farm = factory.SubFactory(FarmFactory)
    category = factory.SubFactory(CategoryFactory)
    sku = factory.Sequence(lambda n: f"SKU-{n}")
    product_name = "Navel orange"
    variety = "Newhall"
    grade = "A"
    origin_county = factory.LazyAttribute(lambda o: o.farm.county)
    price_per_kg = 1200
    stock_g = 100_000
    min_order_g = 1000
    step_g = 500
    status = ListingStatus.ACTIVE


class FulfilmentPointFactory(Factory):
    class Meta:
        model = FulfilmentPoint

    kind = FulfilmentPointKind.COUNTY_CENTRE
    name = factory.Sequence(lambda n: f"Xunwu county centre {n}")
    county = "寻乌县"
    province = "江西省"
    address = "长宁镇"
    opening_hours = "08:00-18:00"
