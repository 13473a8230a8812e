"""Accounts: registration, passwords and API tokens."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerifyMismatchError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from market.accounts.models import ApiToken, Language, Role, User, UserRole
from market.auth import Actor, hash_token
from market.db import unit_of_work, utcnow
from market.errors import Conflict, Invalid, NotFound, Unauthenticated
from market.extensions import db
from market.pagination import Page, SortKey, keyset_page

SELF_SERVICE_ROLES = frozenset({Role.FARMER, Role.BUYER})
TOKEN_PREFIX = "fm_"  # noqa: S105 (a visible marker, not a secret)

_hasher = PasswordHasher()
# Verified against when the email is unknown, so a login takes as long
# whether or not the account exists.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    secret: str


def _normalise_email(email: str) -> str:
    return email.strip().lower()


def _create_user(
    *, email: str, password: str, name: str, roles: frozenset[Role], phone: str | None, language: Language
) -> User:
    user = User(
        email=_normalise_email(email),
        name=name.strip(),
        phone=phone,
        language=language,
        password_hash=_hasher.hash(password),
        roles=[UserRole(role=role) for role in sorted(roles)],
    )
    try:
        with unit_of_work():
            db.session.add(user)
    except IntegrityError:
        raise Conflict(
            "An account with this email already exists.", errors={"email": ["Already registered."]}
        ) from None
    return user


def register(
    *,
    email: str,
    password: str,
    name: str,
    roles: list[Role],
    phone: str | None = None,
    language: Language = Language.ZH,
) -> User:
    """Self-service sign-up as a farmer and/or buyer; operators come from the CLI."""
    wanted = frozenset(roles)
    if not wanted or not wanted <= SELF_SERVICE_ROLES:
        raise Invalid("Accounts can be registered as farmer or buyer.", {"roles": ["Choose farmer and/or buyer."]})
    return _create_user(email=email, password=password, name=name, roles=wanted, phone=phone, language=language)


def create_operator(*, email: str, password: str, name: str) -> User:
    return _create_user(
        email=email, password=password, name=name, roles=frozenset({Role.OPERATOR}), phone=None, language=Language.ZH
    )


def issue_token(user_id: int, *, name: str, ttl: timedelta) -> IssuedToken:
    with unit_of_work():
        return _issue_token(user_id, name=name, ttl=ttl)


def _issue_token(user_id: int, *, name: str, ttl: timedelta) -> IssuedToken:
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        user_id=user_id,
        name=name,
        token_hash=hash_token(secret),
        prefix=secret[: len(TOKEN_PREFIX) + 6],
        expires_at=utcnow() + ttl,
    )
    db.session.add(token)
    return IssuedToken(token=token, secret=secret)


def login(*, email: str, password: str, token_name: str, ttl: timedelta) -> IssuedToken:
    """Check the password and issue a new bearer token."""
    with unit_of_work():
        user = db.session.scalar(select(User).where(User.email == _normalise_email(email)))
        try:
            _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
        except (VerifyMismatchError, InvalidHashError):
            user = None
        if user is None:
            raise Unauthenticated("The email or password is wrong.")
        if _hasher.check_needs_rehash(user.password_hash):
            user.password_hash = _hasher.hash(password)
        return _issue_token(user.id, name=token_name, ttl=ttl)


def get_user(actor: Actor) -> User:
    user = db.session.get(User, actor.user_id)
    if user is None:
        raise Unauthenticated("The account no longer exists.")
    return user


def list_tokens(actor: Actor, *, limit: int, cursor: str | None = None) -> Page[ApiToken]:
    """The caller's tokens, newest first."""
    stmt = select(ApiToken).where(ApiToken.user_id == actor.user_id)
    return keyset_page(stmt, [SortKey(ApiToken.id, "id", descending=True)], limit=limit, cursor=cursor)


def revoke_token(actor: Actor, token_id: int) -> ApiToken:
    """Revoke one of the caller's own tokens; another user's is not found."""
    with unit_of_work():
        token = db.session.get(ApiToken, token_id)
        if token is None or token.user_id != actor.user_id:
            raise NotFound(f"Token {token_id} not found.")
        if token.revoked_at is None:
            token.revoked_at = utcnow()
    return token
