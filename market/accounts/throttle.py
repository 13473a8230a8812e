"""Limits per email address: password logins, with a lock that grows, and
the emails registration sends.

The client-address limit on `POST /auth/tokens` does not stop guessing one
account's password from many addresses. So failures are also counted per
email address, in the rate limiter's storage (Redis in production): after
LOGIN_FAILURES_PER_ACCOUNT of them within LOGIN_FAILURE_WINDOW_SECONDS the
address is locked for LOGIN_LOCKOUT_SECONDS, twice as long for each further
failure, up to LOGIN_LOCKOUT_MAX_SECONDS. While locked, every login with
that email is a 429 before the password is checked, right or wrong.

Counts are kept by email, whether an account has it or not, so the limit
answers the same for an unknown address as for a known one. A successful
login forgets the failures. A lock stops password logins only: tokens
already issued keep working, so an attacker who locks a victim out does not
cut off the victim's running clients.

Registering sends the address an email (a confirmation link, or a note that
it has an account); REGISTRATION_EMAILS_PER_ADDRESS caps them, so the
endpoint cannot be used to flood somebody's inbox. Likewise
CLAIM_CODES_PER_PHONE caps the codes texted to claim a villager's account
(docs/stations.md).

Wrong claim codes are counted per number too, whether an account waits
for the number or not, and forgotten when the number may be sent a new
code: the claim answers a number with an account as it answers one
without, past VILLAGER_CODE_MAX_FAILURES as before it.
"""

from __future__ import annotations

import hashlib
import math
import time

from flask import current_app
from limits import parse

from market.errors import RateLimited
from market.extensions import limiter


def _digest(email: str) -> str:
    # Hashed, so the storage holds no addresses.
    return hashlib.sha256(email.encode()).hexdigest()[:32]


def _keys(email: str) -> tuple[str, str]:
    digest = _digest(email)
    return f"login-failures/{digest}", f"login-lock/{digest}"


def check(email: str) -> None:
    """Refuse a login while the email is locked (`RateLimited`, with Retry-After)."""
    if not limiter.enabled:
        return
    _, lock = _keys(email)
    if limiter.storage.get(lock) > 0:
        wait = max(1, math.ceil(limiter.storage.get_expiry(lock) - time.time()))
        raise RateLimited(f"Too many failed logins for this email; try again in {wait} seconds.", retry_after=wait)


def failed(email: str) -> None:
    """Count a failed login; past the allowance, lock the email."""
    if not limiter.enabled:
        return
    config = current_app.config
    failures_key, lock = _keys(email)
    failures = limiter.storage.incr(failures_key, config["LOGIN_FAILURE_WINDOW_SECONDS"])
    over = failures - config["LOGIN_FAILURES_PER_ACCOUNT"]
    if over >= 0:
        seconds = min(config["LOGIN_LOCKOUT_SECONDS"] * 2 ** min(over, 30), config["LOGIN_LOCKOUT_MAX_SECONDS"])
        limiter.storage.incr(lock, seconds)


def succeeded(email: str) -> None:
    if limiter.enabled:
        limiter.storage.clear(_keys(email)[0])


def _allowed(setting: str, kind: str, recipient: str) -> bool:
    """Count one message of `kind` to `recipient`; False once past the cap `setting`."""
    if not limiter.enabled:
        return True
    return limiter.limiter.hit(parse(current_app.config[setting]), kind, _digest(recipient))


def registration_email_allowed(email: str) -> bool:
    """Count one registration email to `email`; False once past the cap."""
    return _allowed("REGISTRATION_EMAILS_PER_ADDRESS", "registration-email", email)


def claim_code_allowed(phone: str) -> bool:
    """Count one claim code for `phone`, whether an account has the number
    or not; False once past the cap. A number within it starts its wrong
    tries afresh, as the new code would."""
    allowed = _allowed("CLAIM_CODES_PER_PHONE", "claim-code", phone)
    if allowed and limiter.enabled:
        limiter.storage.clear(_claim_failures_key(phone))
    return allowed


def _claim_failures_key(phone: str) -> str:
    return f"claim-failures/{_digest(phone)}"


def claim_tries_spent(phone: str) -> bool:
    """Whether `phone` had VILLAGER_CODE_MAX_FAILURES wrong claim codes
    since it was last allowed a code (any number, with an account or not)."""
    if not limiter.enabled:
        return False
    return bool(limiter.storage.get(_claim_failures_key(phone)) >= current_app.config["VILLAGER_CODE_MAX_FAILURES"])


def claim_failed(phone: str) -> None:
    """Count a wrong claim code for `phone`. The count lasts as long as a
    code does from the first wrong one: never less than the code it was
    counted against, so a code that expired is not told apart by it."""
    if limiter.enabled:
        limiter.storage.incr(_claim_failures_key(phone), current_app.config["VILLAGER_CODE_MINUTES"] * 60)
