"""Accounts: registration and its confirmation, passwords and API tokens.

Registration answers the same whatever the address: whether it has an
account shows only in the email sent to it (a confirmation link for a new
or unconfirmed address, a notice for one with an account), so nobody can
learn from the API which addresses are registered. Login answers the same
401 for an unknown address, a wrong password and an unconfirmed account,
and is limited per address as well as per client (`throttle`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerifyMismatchError
from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.exc import IntegrityError

from market.accounts import throttle
from market.accounts.models import ApiToken, Language, Role, User, UserRole
from market.auth import Actor, hash_token, token_cache
from market.db import hold_until_commit, holds_text, locked, unit_of_work, utcnow
from market.errors import Conflict, Invalid, NotFound, Unauthenticated
from market.events import publish
from market.extensions import db
from market.pagination import Page, SortKey, keyset_page

SELF_SERVICE_ROLES = frozenset({Role.FARMER, Role.BUYER})
TOKEN_PREFIX = "fm_"  # noqa: S105 (a visible marker, not a secret)
CONFIRMATION_SALT = "account-confirmation"
WRONG_LOGIN = "The email or password is wrong, or the email address is not confirmed yet."
REGISTRATION_ACCEPTED = (
    "Check this address's inbox: it gets a link to confirm the account, which can log in once confirmed "
    "(or, if the address has an account already, a note saying so)."
)

_hasher = PasswordHasher()
# Verified against when the email is unknown, so a login takes as long
# whether or not the account exists.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    secret: str


def normalise_email(email: str) -> str:
    return email.strip().lower()


def _create_user(
    *, email: str, password: str, name: str, roles: frozenset[Role], phone: str | None, language: Language
) -> User:
    """A confirmed account, for callers that vouch for the address (the CLI, the demo data)."""
    user = User(
        email=normalise_email(email),
        name=name.strip(),
        phone=phone,
        language=language,
        password_hash=_hasher.hash(password),
        roles=[UserRole(role=role) for role in sorted(roles)],
        confirmed_at=utcnow(),
    )
    try:
        with unit_of_work():
            db.session.add(user)
    except IntegrityError:
        raise Conflict(
            "An account with this email already exists.", errors={"email": ["Already registered."]}
        ) from None
    return user


def self_service_roles(roles: list[Role]) -> frozenset[Role]:
    """The roles one may register with: farmer and/or buyer."""
    wanted = frozenset(roles)
    if not wanted or not wanted <= SELF_SERVICE_ROLES:
        raise Invalid("Accounts can be registered as farmer or buyer.", {"roles": ["Choose farmer and/or buyer."]})
    return wanted


def register(
    *,
    email: str,
    password: str,
    name: str,
    roles: list[Role],
    phone: str | None = None,
    language: Language = Language.ZH,
) -> str:
    """Self-service sign-up as a farmer and/or buyer; operators come from the CLI.

    Returns the normalised address, whatever happened: a new address gets an
    unconfirmed account and a confirmation link by email; an unconfirmed one
    takes this registration's details (earlier links stop working) and a new
    link; a confirmed one is left alone and told someone tried. An address
    gets at most REGISTRATION_EMAILS_PER_ADDRESS such emails; past that,
    nothing changes and the answer is still the same."""
    wanted = self_service_roles(roles)
    email = normalise_email(email)
    # Hashed whatever the address, so the answer takes as long for a known one.
    details: dict[str, Any] = {
        "name": name.strip(),
        "phone": phone,
        "language": language,
        "password_hash": _hasher.hash(password),
    }
    try:
        with unit_of_work():
            _register(email, wanted, details)
    except IntegrityError:
        pass  # a concurrent registration of the same new address made the account and sends its link
    return email


def _register(email: str, roles: frozenset[Role], details: dict[str, Any]) -> None:
    user = db.session.scalars(locked(select(User).where(User.email == email))).one_or_none()
    if not throttle.registration_email_allowed(email):
        return
    if user is not None and user.confirmed_at is not None:
        publish("account.registration_attempted", user_id=user.id)
        return
    if user is not None and user.phone_verified:
        # A villager's account claimed with this address, not confirmed:
        # the address is its owner's, the account (and its orders) the
        # villager's, to claim again with an address of their own.
        user.email = None
        user.password_hash = None
        db.session.flush()
        user = None
    if user is None:
        user = User(email=email, roles=[], **details)
        db.session.add(user)
    else:
        user.change_phone(details.pop("phone"))
        for name, value in details.items():
            setattr(user, name, value)
    user.roles = [r for r in user.roles if r.role in roles] + [
        UserRole(role=role) for role in sorted(roles - user.role_names)
    ]
    db.session.flush()
    publish("account.confirmation", user_id=user.id)


def _confirmation_serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=CONFIRMATION_SALT)


def _confirmation_check(user: User) -> str:
    """Ties a link to the account as it was registered: registering the
    address again (another password) voids the links sent before."""
    return hashlib.sha256(f"{user.id}:{user.email}:{user.password_hash}".encode()).hexdigest()[:32]


def confirmation_token(user: User) -> str:
    """The signed token of the link that confirms `user`'s address; it
    expires after ACCOUNT_CONFIRM_HOURS."""
    return _confirmation_serializer().dumps({"user": user.id, "check": _confirmation_check(user)})


def confirm(token: str) -> User:
    """Confirm the account a confirmation token names; confirming twice is harmless."""
    invalid = Invalid(
        "The confirmation token is not valid (or a later registration of the address replaced it).",
        {"token": ["Not a valid confirmation token."]},
    )
    max_age = current_app.config["ACCOUNT_CONFIRM_HOURS"] * 3600
    try:
        data = _confirmation_serializer().loads(token, max_age=max_age)
    except SignatureExpired:
        raise Invalid(
            "The confirmation link has expired; register again to get a new one.", {"token": ["Expired."]}
        ) from None
    except BadSignature:
        raise invalid from None
    if not isinstance(data, dict) or not isinstance(data.get("user"), int) or not isinstance(data.get("check"), str):
        raise invalid
    with unit_of_work():
        user = db.session.scalars(locked(select(User).where(User.id == data["user"]))).one_or_none()
        if user is None or not hmac.compare_digest(_confirmation_check(user), data["check"]):
            raise invalid
        if user.confirmed_at is None:
            user.confirmed_at = utcnow()
    return user


def create_account(
    *, email: str, password: str, name: str, roles: list[Role], language: Language, phone: str | None = None
) -> User:
    """A confirmed account with any roles (the demo data)."""
    return _create_user(
        email=email, password=password, name=name, roles=frozenset(roles), phone=phone, language=language
    )


def create_operator(*, email: str, password: str, name: str) -> User:
    return create_account(email=email, password=password, name=name, roles=[Role.OPERATOR], language=Language.ZH)


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
    """Check the password and issue a new bearer token. An unknown address,
    a wrong password and an unconfirmed account are the same 401 and count
    alike against the address (`throttle`)."""
    with unit_of_work():
        user = _check_password(email, password)
        return _issue_token(user.id, name=token_name, ttl=ttl)


def sign_in(*, email: str, password: str) -> User:
    """Check the password for a browser session (the operator console): the
    same checks and the same per-address throttle as `login`, no token."""
    with unit_of_work():
        return _check_password(email, password)


def _check_password(email: str, password: str) -> User:
    email = normalise_email(email)
    throttle.check(email)
    user = db.session.scalar(select(User).where(User.email == email))
    try:
        _hasher.verify(user.password_hash if user and user.password_hash else _DUMMY_HASH, password)
    except (VerifyMismatchError, InvalidHashError):
        user = None
    if user is None or user.confirmed_at is None or user.password_hash is None:
        throttle.failed(email)
        raise Unauthenticated(WRONG_LOGIN)
    throttle.succeeded(email)
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    return user


def get_user(actor: Actor) -> User:
    user = db.session.get(User, actor.user_id)
    if user is None:
        raise Unauthenticated("The account no longer exists.")
    return user


def update_profile(actor: Actor, **changes: Any) -> User:
    """Change the caller's name, phone number (None removes it) or
    language; the fields not given stay. A new number is unproven: it gets
    SMS but is never taken for a villager's (`villager`). Notifications
    already written keep the number and language they were written with."""
    if "name" in changes:
        changes["name"] = changes["name"].strip()
    with unit_of_work():
        user = db.session.scalars(locked(select(User).where(User.id == actor.user_id))).one_or_none()
        if user is None:
            raise Unauthenticated("The account no longer exists.")
        if "phone" in changes:
            user.change_phone(changes.pop("phone"))
        for name, value in changes.items():
            setattr(user, name, value)
    return user


def user_matching(text: str) -> ColumnElement[bool]:
    """Accounts whose name, email or phone number holds `text`, case aside."""
    return or_(holds_text(User.name, text), holds_text(User.email, text), holds_text(User.phone, text))


def find_users(actor: Actor, text: str, *, limit: int) -> list[User]:
    """Accounts whose name, email or phone number holds `text` (operators), by email."""
    actor.require(Role.OPERATOR)
    text = text.strip()
    if not text:
        return []
    return list(db.session.scalars(select(User).where(user_matching(text)).order_by(User.email).limit(limit)))


def list_tokens(actor: Actor, *, limit: int, cursor: str | None = None) -> Page[ApiToken]:
    """The caller's tokens, newest first."""
    stmt = select(ApiToken).where(ApiToken.user_id == actor.user_id)
    return keyset_page(stmt, [SortKey(ApiToken.id, "id", descending=True)], limit=limit, cursor=cursor)


def get_token(actor: Actor, token_id: int) -> ApiToken:
    """One of the caller's own tokens (never its secret); another user's is not found."""
    token = db.session.get(ApiToken, token_id)
    if token is None or token.user_id != actor.user_id:
        raise NotFound(f"Token {token_id} not found.")
    return token


def revoke_token(actor: Actor, token_id: int) -> ApiToken:
    """Revoke one of the caller's own tokens; another user's is not found."""
    with unit_of_work():
        token = get_token(actor, token_id)
        if token.revoked_at is None:
            token.revoked_at = utcnow()
    token_cache().forget(token.token_hash)
    return token


def villager(phone: str, name: str) -> User:
    """The buyer account of the villager with mobile number `phone`, for an
    order station staff place for them: the oldest account whose number it
    is proven to be (`_by_phone`; given the buyer role if it lacked it), or
    a new one opened on the spot with no email and no password, its number
    proven (staff typed the number the villager gave them in person), named
    `name` or else by the number's last digits (`masked_phone`: the name is
    shown to the farms they buy from, the number never). An account that
    holds the number unproven is not the villager's: the number opens a new
    account as if it had none. A new account cannot log in; it is the
    villager's to claim (docs/stations.md). Locks the account, like any
    buyer's while an order is placed for them; flushes only. Two stations
    placing a first order for the same number at once open one account:
    the second waits for the first's commit, then finds it."""
    hold_until_commit("villager", phone)
    user = _by_phone(phone)
    if user is None:
        user = User(
            email=None,
            password_hash=None,
            phone=phone,
            name=name.strip() or masked_phone(phone),
            roles=[UserRole(role=Role.BUYER)],
        )
        user.prove_phone()
        db.session.add(user)
    elif Role.BUYER not in user.role_names:
        user.roles.append(UserRole(role=Role.BUYER))
    db.session.flush()
    return user


def masked_phone(phone: str) -> str:
    """A mobile number (E.164) with all but its last four digits hidden,
    and the country code's first two of a number long enough to hide seven
    more (`+8613900000077` -> `+86*******0077`, `+4479460001` -> `+******0001`)."""
    head = phone[:3] if len(phone) >= 14 else phone[:1]
    return head + "*" * (len(phone) - len(head) - 4) + phone[-4:]


def _by_phone(phone: str) -> User | None:
    """The oldest account with mobile number `phone` proven, locked: the
    villager's. An account that only set the number itself is not: anyone
    may type any number into their profile."""
    stmt = select(User).where(User.phone == phone, User.phone_verified_at.is_not(None)).order_by(User.id).limit(1)
    return db.session.scalars(locked(stmt)).first()


def unclaimed(phone: str) -> User | None:
    """The account opened for the villager with mobile number `phone` (the
    oldest with the number proven), locked, while it is not confirmed: it
    has neither email nor password, or was claimed with an address not
    confirmed yet (docs/stations.md, "Claiming")."""
    user = _by_phone(phone)
    return user if user is not None and user.confirmed_at is None else None


def claimed(user: User, *, email: str, password: str, name: str | None) -> None:
    """The villager who proved the number makes the account theirs: its
    email, password and, if given, name; the code texted to the number
    proved the number, not the address. The address is emailed a link, as
    at registration, and the account logs in once it is followed (until
    then a claim again, or the address's owner registering it, replaces
    it). Flushes only; an address another account has is the caller's
    IntegrityError."""
    user.prove_phone()
    user.email = normalise_email(email)
    user.password_hash = _hasher.hash(password)
    if name and name.strip():
        user.name = name.strip()
    db.session.flush()
    publish("account.confirmation", user_id=user.id)
