"""Who is calling, and the one check every service uses for roles."""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from cachetools import TTLCache
from flask import Flask, current_app, request
from sqlalchemy import bindparam, or_, select, update

from market.accounts.models import ApiToken, Role, UserRole
from market.db import utcnow
from market.errors import NotAllowed, Unauthenticated
from market.extensions import db

# last_used_at is refreshed at most this often, so reads do not write per
# request; and each process writes the uses it noted at most this often too,
# all in one statement.
LAST_USED_GRANULARITY = timedelta(minutes=1)
ACTOR_KEY = "market.actor"
CACHE_KEY = "market.token_cache"
USES_KEY = "market.token_uses"
# Tokens a process remembers at most (least recently used go first).
TOKEN_CACHE_SIZE = 10_000


@dataclass(frozen=True)
class Actor:
    """The authenticated caller as plain values, passed into services."""

    user_id: int
    roles: frozenset[Role]
    token_id: int | None = None

    def has(self, role: Role) -> bool:
        return role in self.roles

    def require(self, *roles: Role) -> None:
        """Raise `NotAllowed` unless the actor holds at least one of `roles`."""
        if not any(role in self.roles for role in roles):
            wanted = " or ".join(sorted(r.value for r in roles))
            raise NotAllowed(f"This needs the {wanted} role.")


def bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def optional_actor() -> Actor | None:
    """The caller if a bearer token was sent; a bad token is still a 401."""
    if ACTOR_KEY not in request.environ:
        token = bearer_token()
        if token is None:
            if request.headers.get("Authorization"):
                raise Unauthenticated("Use 'Authorization: Bearer <token>'.")
            request.environ[ACTOR_KEY] = None
        else:
            request.environ[ACTOR_KEY] = authenticate_token(token)
    actor: Actor | None = request.environ[ACTOR_KEY]
    return actor


def account_or_address() -> str:
    """What a per-account rate limit counts: the account behind the bearer
    token, or the client's address when none is sent."""
    actor = optional_actor()
    return f"account:{actor.user_id}" if actor else f"address:{request.remote_addr}"


def current_actor() -> Actor:
    actor = optional_actor()
    if actor is None:
        raise Unauthenticated("This endpoint needs a bearer token.")
    return actor


def hash_token(token: str) -> str:
    # Tokens carry 256 random bits, so a fast hash is enough: there is
    # nothing to brute-force, unlike a password.
    return hashlib.sha256(token.encode()).hexdigest()


class TokenCache:
    """The actors of tokens checked in the last TOKEN_CACHE_SECONDS, by
    token hash, so most requests do not read the token and its roles: a
    process forgets a token when it is revoked there at once, and other
    processes within the setting's seconds (docs/reliability.md). Never
    past the token's own expiry.

    A token forgotten stays unremembered for those seconds: a request of
    another thread that read it before the revocation committed must not
    put it back once the revoking thread has forgotten it (it would then
    be accepted here for the seconds, not refused at once)."""

    def __init__(self, seconds: int) -> None:
        self._lock = threading.Lock()
        self._actors: TTLCache[str, tuple[Actor, datetime]] | None = (
            TTLCache(maxsize=TOKEN_CACHE_SIZE, ttl=seconds) if seconds > 0 else None
        )
        self._forgotten: TTLCache[str, bool] | None = (
            TTLCache(maxsize=TOKEN_CACHE_SIZE, ttl=seconds) if seconds > 0 else None
        )

    def get(self, token_hash: str) -> Actor | None:
        if self._actors is None:
            return None
        with self._lock:
            found = self._actors.get(token_hash)
        if found is None or found[1] <= utcnow():
            return None
        return found[0]

    def put(self, token_hash: str, actor: Actor, expires_at: datetime) -> None:
        if self._actors is not None and self._forgotten is not None:
            with self._lock:
                if token_hash not in self._forgotten:
                    self._actors[token_hash] = (actor, expires_at)

    def forget(self, token_hash: str) -> None:
        if self._actors is not None and self._forgotten is not None:
            with self._lock:
                self._actors.pop(token_hash, None)
                self._forgotten[token_hash] = True


class TokenUses:
    """When tokens this process read were used, noted in memory and written
    together (`write_due`): the first at once, then whatever gathered, at
    most once every LAST_USED_GRANULARITY. Before, each token read that
    found `last_used_at` a minute old wrote it and committed on its own."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._noted: dict[int, datetime] = {}
        self._written: datetime | None = None

    def note(self, token_id: int, moment: datetime) -> None:
        with self._lock:
            self._noted[token_id] = moment

    def write_due(self, now: datetime) -> None:
        """Write the uses noted, in the caller's session, and commit, unless
        this process wrote them less than LAST_USED_GRANULARITY ago. Called
        before the request's own work, like the token read itself."""
        with self._lock:
            if not self._noted or (self._written is not None and now - self._written < LAST_USED_GRANULARITY):
                return
            noted, self._noted, self._written = self._noted, {}, now
        db.session.execute(_USED, [{"token_id": token_id, "used": moment} for token_id, moment in noted.items()])
        db.session.commit()


def install(app: Flask) -> None:
    app.extensions[CACHE_KEY] = TokenCache(app.config["TOKEN_CACHE_SECONDS"])
    app.extensions[USES_KEY] = TokenUses()


def token_cache() -> TokenCache:
    cache: TokenCache = current_app.extensions[CACHE_KEY]
    return cache


# Statements on the tables' columns, so they run as Core: named by the
# models, the ORM compiles and executes them itself, at more CPU.
_TOKENS, _ROLES = ApiToken.__table__, UserRole.__table__
# A use written never moves last_used_at back (another process may have
# written a later one).
_USED = (
    update(_TOKENS)
    .where(
        _TOKENS.c.id == bindparam("token_id"),
        or_(_TOKENS.c.last_used_at.is_(None), _TOKENS.c.last_used_at < bindparam("used")),
    )
    .values(last_used_at=bindparam("used"))
)
# The token and its user's roles in one round trip, a row per role; built
# once, as it runs on most requests.
_TOKEN = (
    select(
        _TOKENS.c.id, _TOKENS.c.user_id, _TOKENS.c.expires_at, _TOKENS.c.revoked_at, _TOKENS.c.last_used_at,
        _ROLES.c.role,
    )
    .select_from(_TOKENS.outerjoin(_ROLES, _ROLES.c.user_id == _TOKENS.c.user_id))
    .where(_TOKENS.c.token_hash == bindparam("token_hash"))
)  # fmt: skip


def authenticate_token(token: str) -> Actor:
    """Resolve a bearer token to an actor, or raise `Unauthenticated`."""
    token_hash = hash_token(token)
    now = utcnow()
    uses: TokenUses = current_app.extensions[USES_KEY]
    uses.write_due(now)
    cached = token_cache().get(token_hash)
    if cached is not None:
        return cached
    rows = db.session.execute(_TOKEN, {"token_hash": token_hash}).all()
    if not rows:
        raise Unauthenticated("The token is not valid.")
    row = rows[0]
    if row.revoked_at is not None:
        raise Unauthenticated("The token has been revoked.")
    if row.expires_at <= now:
        raise Unauthenticated("The token has expired.")
    roles = frozenset(r.role for r in rows if r.role is not None)
    if row.last_used_at is None or now - row.last_used_at > LAST_USED_GRANULARITY:
        uses.note(row.id, now)
        uses.write_due(now)
    actor = Actor(user_id=row.user_id, roles=roles, token_id=row.id)
    token_cache().put(token_hash, actor, row.expires_at)
    return actor
