"""One-time codes texted to a villager's phone: to confirm an order placed
for them (`ConfirmationCode`), or to claim the account opened for them
(`ClaimCode`). Six digits from `secrets`, stored only as HMAC-SHA256 keyed
with SECRET_KEY over what the code is for and the code, so a copy of the
database does not give them away; compared in constant time. Each expires
after VILLAGER_CODE_MINUTES, takes VILLAGER_CODE_MAX_FAILURES wrong tries,
and a new one replaces it."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta
from typing import Protocol

from flask import current_app

from market.db import utcnow
from market.errors import Conflict
from market.extensions import db
from market.orders.service import TooManyAttempts

CODE_DIGITS = 6


class TextedCode(Protocol):
    code_hash: str
    expires_at: datetime
    failures: int


def _keyed(subject: str, code: str) -> str:
    """The code keyed with the app's secret and what it is for: six digits
    are quickly guessed from a plain hash, not from this without the key."""
    key = current_app.config["SECRET_KEY"].encode()
    return hmac.new(key, f"{subject}:{code}".encode(), hashlib.sha256).hexdigest()


def renew(row: TextedCode, subject: str) -> str:
    """A fresh code for `subject` (say `order-12`) on `row`, which keeps only
    its hash; the one before stops working. Returns the code, to text now."""
    code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
    row.code_hash = _keyed(subject, code)
    row.expires_at = utcnow() + timedelta(minutes=current_app.config["VILLAGER_CODE_MINUTES"])
    row.failures = 0
    return code


def matches(row: TextedCode, subject: str, code: str, *, renewal: str) -> bool:
    """Whether `code` is `row`'s; the caller counts a wrong one. Past
    VILLAGER_CODE_MAX_FAILURES wrong ones (a 429) or once expired (a 409),
    nothing is compared and only a new code (`renewal` says how to get
    one) will do."""
    if row.failures >= current_app.config["VILLAGER_CODE_MAX_FAILURES"]:
        db.session.rollback()
        raise TooManyAttempts(f"Too many wrong codes; {renewal}.")
    if row.expires_at <= utcnow():
        db.session.rollback()
        raise Conflict(f"The code has expired; {renewal}.")
    return hmac.compare_digest(row.code_hash, _keyed(subject, code))
