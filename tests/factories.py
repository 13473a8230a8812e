"""factory_boy factories, one section per domain."""

from __future__ import annotations

from datetime import timedelta

import factory
from argon2 import PasswordHasher

from market.accounts import service as accounts
from market.accounts.models import Language, Role, User, UserRole
from market.extensions import db

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
