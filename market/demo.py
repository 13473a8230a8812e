"""Demo data for the embedded run: accounts now, the catalogue as it grows.

`seed()` is safe to run on every start: what exists is left alone, and each
demo account gets a fresh token (tokens are shown only once).
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from market.accounts import service as accounts
from market.accounts.models import Language, Role, User
from market.extensions import db

PASSWORD = "harvest-demo-2026"  # noqa: S105 (printed for the demo accounts)
TOKEN_TTL = timedelta(days=7)

ACCOUNTS: list[tuple[str, str, list[Role], Language]] = [
    ("operator@farm-market.test", "Market operations", [Role.OPERATOR], Language.EN),
    ("buyer@farm-market.test", "Ganzhou Fresh Grocers", [Role.BUYER], Language.ZH),
    ("liu.orchard@farm-market.test", "Liu Jianguo", [Role.FARMER], Language.ZH),
    ("zhao.chestnut@farm-market.test", "Zhao Shuhua", [Role.FARMER], Language.ZH),
    ("peng.tea@farm-market.test", "Peng Xiaomei", [Role.FARMER], Language.ZH),
]


def _account(email: str, name: str, roles: list[Role], language: Language) -> User:
    user = db.session.scalar(select(User).where(User.email == email))
    if user is not None:
        return user
    if roles == [Role.OPERATOR]:
        return accounts.create_operator(email=email, password=PASSWORD, name=name)
    return accounts.register(email=email, password=PASSWORD, name=name, roles=roles, language=language)


def seed() -> dict[str, str]:
    """Create the demo accounts if missing; return a new token per account."""
    tokens: dict[str, str] = {}
    for email, name, roles, language in ACCOUNTS:
        user = _account(email, name, roles, language)
        tokens[email] = accounts.issue_token(user.id, name="demo", ttl=TOKEN_TTL).secret
    return tokens
