"""Claiming the account station staff opened for a villager
(docs/stations.md, "Claiming").

An account opened for a villager by phone number has no email and no
password, so nobody can log in to it. The villager claims it by proving the
number: a code is texted to it (`request_claim`), and with that code they
set the account's email and password (`claim`); the account, with every
order placed for them, is theirs from then on, and logs in once the link
emailed to the address confirms it (the code proves the number, not the
address). Asking for a code answers
the same whatever the number, so nobody learns from the API which numbers
have accounts; codes are capped per number (CLAIM_CODES_PER_PHONE) as well
as per client address, and each takes VILLAGER_CODE_MAX_FAILURES wrong
tries. Claiming answers alike too: a wrong code, an expired one and a
number with no account waiting are the same 422, and the wrong tries are
counted per number (`throttle.claim_failed`) whether it has an account
or not, so past them every number is the same 429.

Registering with the number of an unclaimed account opens no second
account: the number is texted a claim code instead, and the answer is the
registration's usual one.
"""

from __future__ import annotations

from typing import Any

from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from market.accounts import service as accounts
from market.accounts import throttle
from market.accounts.models import Role, User
from market.db import locked, unit_of_work, utcnow
from market.errors import Conflict, Invalid
from market.extensions import db
from market.notifications import service as notifications
from market.orders.service import TooManyAttempts
from market.stations import codes
from market.stations.models import ClaimCode

CLAIM_ACCEPTED = (
    "If an account a village station opened for this number waits to be claimed, a code is texted to it: "
    "claim the account with it, an email and a password."
)
RENEWAL = "ask for a new one"


def _subject(user: User) -> str:
    return f"claim-{user.id}"


def _claim_code(user: User) -> ClaimCode | None:
    return db.session.scalars(locked(select(ClaimCode).where(ClaimCode.user_id == user.id))).one_or_none()


def _text_code(user: User, phone: str) -> None:
    """A new claim code for the account (the one before stops working),
    texted to its number; the caller counted it (`throttle.claim_code_allowed`).
    Flushes only."""
    claim = _claim_code(user)
    if claim is None:
        claim = ClaimCode(user_id=user.id, sent=0)
        db.session.add(claim)
    claim.sent += 1
    code = codes.renew(claim, _subject(user))
    db.session.flush()
    notifications.send_now(
        user,
        "account.claim_code",
        {"code": code, "minutes": current_app.config["VILLAGER_CODE_MINUTES"]},
        occurrence=f"account-{user.id}-claim-{claim.sent}",
    )


def request_claim(phone: str) -> None:
    """Text a claim code to `phone` if an unclaimed account has it; nothing
    otherwise, and the caller answers the same either way. Every number
    counts against its cap, with an account or not."""
    if not throttle.claim_code_allowed(phone):
        return
    with unit_of_work():  # the account's lock makes concurrent requests one after the other
        user = accounts.unclaimed(phone)
        if user is not None:
            _text_code(user, phone)


def claim(phone: str, code: str, *, email: str, password: str, name: str | None = None) -> User:
    """The villager claims the account of `phone` with the code texted to
    it: it takes `email` and `password`, and logs in once the link emailed
    to the address confirms it; its orders stay with it. A wrong code, an expired one
    and a number with no account waiting are the same 422, counted on the
    number; past the tries allowed, the same 429 for every number, and only
    a new code will do. An email another account has is a 409."""
    if throttle.claim_tries_spent(phone):
        raise TooManyAttempts(f"Too many wrong codes; {RENEWAL}.")
    wrong = Invalid(
        f"The code is wrong or has expired; {RENEWAL} if it is older than "
        f"{current_app.config['VILLAGER_CODE_MINUTES']} minutes.",
        {"code": ["Does not match the code texted to this number, or has expired."]},
    )
    address = accounts.normalise_email(email)
    right = False
    try:
        with unit_of_work():
            user = accounts.unclaimed(phone)
            claim_code = _claim_code(user) if user is not None else None
            if user is None or claim_code is None or claim_code.expires_at <= utcnow():
                throttle.claim_failed(phone)
                raise wrong
            right = codes.matches(claim_code, _subject(user), code, renewal=RENEWAL)
            if not right:
                throttle.claim_failed(phone)
                claim_code.failures += 1
            else:
                if db.session.scalar(select(User.id).where(User.email == address, User.id != user.id)) is not None:
                    raise _email_taken()
                accounts.claimed(user, email=address, password=password, name=name)
                db.session.delete(claim_code)
    except IntegrityError:  # the address registered meanwhile
        raise _email_taken() from None
    if not right:
        raise wrong
    return user


def _email_taken() -> Conflict:
    return Conflict("Another account has this email.", errors={"email": ["Already registered."]})


def register(*, email: str, roles: list[Role], phone: str | None = None, **details: Any) -> str:
    """Registration through the API: as `accounts.register`, except that a
    number an unclaimed account holds opens no second account. The number
    is texted a claim code instead (its owner claims the account with it
    and this email), and the answer is the same, so the API does not tell
    which numbers have accounts."""
    accounts.self_service_roles(roles)
    if phone is not None:
        allowed = throttle.claim_code_allowed(phone)  # counted for every number, as asking is
        with unit_of_work():
            user = accounts.unclaimed(phone)
            if user is not None:
                if allowed:
                    _text_code(user, phone)
                return accounts.normalise_email(email)
    return accounts.register(email=email, roles=roles, phone=phone, **details)
