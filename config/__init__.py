"""Settings, read from environment variables with typed, safe defaults.

`load()` is the only place the process environment is read; `create_app`
takes the dict it returns, and tests pass overrides on top.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

ROOT = Path(__file__).resolve().parent.parent
# Stripe cannot create connected accounts in mainland China.
CONNECT_UNSERVED = frozenset({"CN"})
# Stripe's live secret and restricted keys: real money, real farmers.
LIVE_KEY_PREFIXES = ("sk_live_", "rk_live_")
# Where Stripe sends a farmer back from onboarding; live mode takes only https.
ONBOARDING_URLS = ("PAYOUT_ONBOARDING_RETURN_URL", "PAYOUT_ONBOARDING_REFRESH_URL")


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int | None = None) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from exc
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return value


def _timezone(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name) or default
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"{name} must be an IANA time zone such as Asia/Shanghai, got {value!r}") from exc
    return value


def _basis_points(env: Mapping[str, str], name: str, default: int) -> int:
    """A share in basis points, 0 to 10,000: the API's bounds on prices and
    grams keep every product inside 64 bits only for shares up to 100 %."""
    value = _int(env, name, default)
    if not 0 <= value <= 10_000:
        raise ValueError(f"{name} must be between 0 and 10000 basis points, got {value}")
    return value


def _currency(env: Mapping[str, str], name: str, default: str) -> str:
    value = (env.get(name) or default).strip().upper()
    if not re.fullmatch(r"[A-Z]{3}", value):
        raise ValueError(f"{name} must be a three-letter ISO 4217 currency code, got {value!r}")
    return value


def _connect_country(env: Mapping[str, str], name: str, default: str) -> str:
    value = (env.get(name) or default).strip().upper()
    if not re.fullmatch(r"[A-Z]{2}", value):
        raise ValueError(f"{name} must be a two-letter ISO 3166-1 country code, got {value!r}")
    if value in CONNECT_UNSERVED:
        raise ValueError(
            f"{name}={value}: Stripe cannot create connected accounts there; choose a country Stripe Connect "
            "serves, and farms in mainland China are paid by the bank file"
        )
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    """One of `choices`; the first is the default."""
    value = (env.get(name) or choices[0]).strip().lower()
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return value


def _list(env: Mapping[str, str], name: str) -> list[str]:
    return [item.strip() for item in (env.get(name) or "").split(",") if item.strip()]


def _networks(env: Mapping[str, str], name: str) -> list[str]:
    """Comma-separated CIDRs, each checked now rather than at the first
    outbound request."""
    networks = _list(env, name)
    for cidr in networks:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError as exc:
            raise ValueError(f"{name} must be comma-separated CIDRs such as 10.20.0.0/16, got {cidr!r}") from exc
    return networks


def _transport_options(env: Mapping[str, str], broker_url: str) -> dict[str, Any]:
    if not broker_url.startswith(("redis://", "rediss://")):
        return {}
    return {
        # A message not acknowledged within this time (its worker died
        # mid-task) is delivered again.
        "visibility_timeout": _int(env, "CELERY_VISIBILITY_TIMEOUT", 3600),
        "socket_connect_timeout": 2,
        "socket_timeout": 5,
        # One connection attempt when publishing: with Redis down, kombu's
        # default retries held every request that publishes for 6 s. What is
        # not published stays in the outbox for the beat job to send.
        "max_retries": 0,
    }


def _engine_options(env: Mapping[str, str], database_url: str) -> dict[str, Any]:
    """How each process holds its database connections (docs/performance.md,
    "Connections, chosen by measurement")."""
    # A connection the server closed (a restart, a failover) is found at
    # checkout and replaced, not handed to a request to fail on.
    options: dict[str, Any] = {"pool_pre_ping": True}
    if database_url.startswith("postgresql"):
        # Connections kept open: one per thread that may hold one at once.
        # Past it, each extra checkout opens a connection and closes it after.
        options["pool_size"] = _int(env, "DATABASE_POOL_SIZE", 5, minimum=1)
        # psycopg prepares a statement on a connection once it has run
        # there five times; a transaction-pooling PgBouncer (before 1.21)
        # cannot keep prepared statements, so they can be turned off.
        if not _bool(env, "DATABASE_PREPARED_STATEMENTS", True):
            options["connect_args"] = {"prepare_threshold": None}
    elif database_url.startswith("sqlite"):
        # A locked read takes SQLite's write lock (market.db
        # .lock_sqlite_for_locked_reads); the next waits this many seconds
        # for it (the driver's default is 5), past the longest a payout run
        # or the demo's seeding holds it.
        options["connect_args"] = {"timeout": 30}
    return options


def instance_path(env: Mapping[str, str] | None = None) -> Path:
    """Where the embedded mode keeps its SQLite files (MARKET_INSTANCE)."""
    env = os.environ if env is None else env
    return Path(env.get("MARKET_INSTANCE") or ROOT / "instance").resolve()


def load(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Build the Flask config from `env` (the process environment by default)."""
    env = os.environ if env is None else env
    instance = instance_path(env)
    database_url = env.get("DATABASE_URL") or f"sqlite:///{instance / 'market.sqlite3'}"
    if database_url.startswith("postgres://"):
        database_url = "postgresql+psycopg://" + database_url.removeprefix("postgres://")
    elif database_url.startswith("postgresql://"):
        database_url = "postgresql+psycopg://" + database_url.removeprefix("postgresql://")
    redis_url = env.get("REDIS_URL") or ""
    broker_url = env.get("CELERY_BROKER_URL") or redis_url or f"sqla+sqlite:///{instance / 'broker.sqlite3'}"
    market_currency = _currency(env, "MARKET_CURRENCY", "CNY")
    return {
        "INSTANCE_PATH": str(instance),
        # Signs account confirmation links, which one process makes and
        # another checks: unset, `create_app` keeps one in the instance folder.
        "SECRET_KEY": env.get("SECRET_KEY") or "",
        "SQLALCHEMY_DATABASE_URI": database_url,
        "SQLALCHEMY_ENGINE_OPTIONS": _engine_options(env, database_url),
        "MAX_CONTENT_LENGTH": _int(env, "MAX_BODY_BYTES", 1024 * 1024),
        # Times shown to people (notifications, files): the marketplace's own zone.
        "MARKET_TIMEZONE": _timezone(env, "MARKET_TIMEZONE", "Asia/Shanghai"),
        "MARKET_CURRENCY": market_currency,
        "TOKEN_TTL_DAYS": _int(env, "TOKEN_TTL_DAYS", 30),
        "TOKEN_CACHE_SECONDS": _int(env, "TOKEN_CACHE_SECONDS", 5),
        # The operator console's session: how long a sign-in lasts, and whether
        # its cookie may travel over plain http (only where the console is
        # served without TLS on a trusted machine, as the one-command run is).
        "CONSOLE_SESSION_HOURS": _int(env, "CONSOLE_SESSION_HOURS", 12),
        "CONSOLE_INSECURE_COOKIE": _bool(env, "CONSOLE_INSECURE_COOKIE", False),
        "IDEMPOTENCY_LEASE_SECONDS": _int(env, "IDEMPOTENCY_LEASE_SECONDS", 60),
        "OUTBOX_RESEND_AFTER_SECONDS": _int(env, "OUTBOX_RESEND_AFTER_SECONDS", 30),
        "OUTBOX_RELAY_INTERVAL_SECONDS": _int(env, "OUTBOX_RELAY_INTERVAL_SECONDS", 10),
        # Who publishes committed outbox rows (docs/reliability.md): each
        # process the rows it committed, from a thread of its own, or only
        # the relay process (`flask --app wsgi relay`), woken by PostgreSQL's
        # NOTIFY at each commit (on SQLite, looking every OUTBOX_POLL_SECONDS).
        "OUTBOX_RELAY": _choice(env, "OUTBOX_RELAY", ("committer", "listener")),
        "OUTBOX_POLL_SECONDS": _int(env, "OUTBOX_POLL_SECONDS", 1, minimum=1),
        "COMMISSION_BP": _basis_points(env, "COMMISSION_BP", 500),
        # Sellers' shares of it (docs/commissions.md), where a seller is made
        # without a rate of its own.
        "HOST_COMMISSION_BP": _basis_points(env, "HOST_COMMISSION_BP", 200),
        "STATION_COMMISSION_BP": _basis_points(env, "STATION_COMMISSION_BP", 100),
        "WEIGHT_TOLERANCE_BP": _basis_points(env, "WEIGHT_TOLERANCE_BP", 1000),
        "ORDER_PAYMENT_MINUTES": _int(env, "ORDER_PAYMENT_MINUTES", 30),
        "ORDER_EXPIRY_INTERVAL_SECONDS": _int(env, "ORDER_EXPIRY_INTERVAL_SECONDS", 60),
        # The impact report's closed days are summed once (market/reports/models.py).
        "IMPACT_ROLLUP_INTERVAL_SECONDS": _int(env, "IMPACT_ROLLUP_INTERVAL_SECONDS", 900),
        "IMPACT_ROLLUP_DELAY_MINUTES": _int(env, "IMPACT_ROLLUP_DELAY_MINUTES", 60),
        "PICKUP_CODE_MAX_FAILURES": _int(env, "PICKUP_CODE_MAX_FAILURES", 5),
        "STATION_COLLECT_DAYS": _int(env, "STATION_COLLECT_DAYS", 7),
        "VILLAGER_CODE_MINUTES": _int(env, "VILLAGER_CODE_MINUTES", 15),
        "VILLAGER_CODE_MAX_FAILURES": _int(env, "VILLAGER_CODE_MAX_FAILURES", 5),
        "VILLAGER_CODE_MAX_SENDS": _int(env, "VILLAGER_CODE_MAX_SENDS", 3),
        "REDIS_URL": redis_url,
        "RATELIMIT_STORAGE_URI": redis_url or "memory://",
        # Off: market.extensions.rate_limit_headers writes the X-RateLimit-*
        # headers, and Retry-After only on a 429.
        "RATELIMIT_HEADERS_ENABLED": False,
        "RATELIMIT_LOGIN": env.get("RATELIMIT_LOGIN") or "10 per minute",
        "RATELIMIT_REGISTER": env.get("RATELIMIT_REGISTER") or "5 per minute",
        "RATELIMIT_PICKUP": env.get("RATELIMIT_PICKUP") or "30 per minute",
        "RATELIMIT_PICKUP_CODES": env.get("RATELIMIT_PICKUP_CODES") or "5 per hour",
        "RATELIMIT_ORDERS": env.get("RATELIMIT_ORDERS") or "20 per minute",
        "RATELIMIT_ENABLED": _bool(env, "RATELIMIT_ENABLED", True),
        # How many proxies in front of the app append to X-Forwarded-For; the
        # client address is read that many hops from its end (0: the peer).
        "TRUSTED_PROXY_COUNT": _int(env, "TRUSTED_PROXY_COUNT", 0),
        # Failed password logins per account (known or not) before it is
        # locked; each further failure doubles the lock, up to the maximum.
        # Failures are forgotten after the window or at a successful login.
        "LOGIN_FAILURES_PER_ACCOUNT": _int(env, "LOGIN_FAILURES_PER_ACCOUNT", 5),
        "LOGIN_LOCKOUT_SECONDS": _int(env, "LOGIN_LOCKOUT_SECONDS", 30),
        "LOGIN_LOCKOUT_MAX_SECONDS": _int(env, "LOGIN_LOCKOUT_MAX_SECONDS", 3600),
        "LOGIN_FAILURE_WINDOW_SECONDS": _int(env, "LOGIN_FAILURE_WINDOW_SECONDS", 86400),
        # A registration is confirmed by a signed link, valid this long, sent
        # to the address; an address gets at most this many registration emails.
        "ACCOUNT_CONFIRM_HOURS": _int(env, "ACCOUNT_CONFIRM_HOURS", 48),
        "ACCOUNT_CONFIRM_URL": env.get("ACCOUNT_CONFIRM_URL") or "http://127.0.0.1:8000/confirm",
        "REGISTRATION_EMAILS_PER_ADDRESS": env.get("REGISTRATION_EMAILS_PER_ADDRESS") or "3 per hour",
        "CLAIM_CODES_PER_PHONE": env.get("CLAIM_CODES_PER_PHONE") or "3 per hour",
        # What one buyer may hold unpaid at once (orders, and grams over them),
        # so no one buyer can block a listing's stock with orders never paid.
        "BUYER_MAX_UNPAID_ORDERS": _int(env, "BUYER_MAX_UNPAID_ORDERS", 5),
        "BUYER_MAX_UNPAID_G": _int(env, "BUYER_MAX_UNPAID_G", 20_000_000),  # a truckload: shops buy by the tonne
        "STRIPE_SECRET_KEY": env.get("STRIPE_SECRET_KEY") or "",
        "STRIPE_WEBHOOK_SECRET": env.get("STRIPE_WEBHOOK_SECRET") or "",
        "STRIPE_API_BASE": env.get("STRIPE_API_BASE") or "",
        # The currency Stripe pays the platform's balance in (its balance
        # transactions' `currency`); charges stay in MARKET_CURRENCY.
        "STRIPE_SETTLEMENT_CURRENCY": _currency(env, "STRIPE_SETTLEMENT_CURRENCY", market_currency),
        # Put before every idempotency key sent to Stripe: one per environment
        # sharing a Stripe account, changed when a database starts afresh.
        "STRIPE_IDEMPOTENCY_PREFIX": env.get("STRIPE_IDEMPOTENCY_PREFIX") or "",
        # Orders are paid out only once settled (delivered or collected) this long.
        "PAYOUT_HOLD_DAYS": _int(env, "PAYOUT_HOLD_DAYS", 3),
        # PostgreSQL memory (MB) a payout run may hash and sort its order parts
        # in (its transaction's work_mem); below what they need they spill to
        # disk and the run is slower, never different.
        "PAYOUT_RUN_WORK_MEM_MB": _int(env, "PAYOUT_RUN_WORK_MEM_MB", 128),
        # A card hold lasts this long unless Stripe says otherwise (the charge's
        # capture_before); the farm and operators are warned this long before it
        # lapses; a buyer whose hold lapsed has this long to pay again.
        "PAYMENT_HOLD_HOURS": _int(env, "PAYMENT_HOLD_HOURS", 7 * 24),
        "HOLD_WARNING_HOURS": _int(env, "HOLD_WARNING_HOURS", 48),
        "PAYMENT_RENEW_HOURS": _int(env, "PAYMENT_RENEW_HOURS", 24),
        "HOLD_WATCH_INTERVAL_SECONDS": _int(env, "HOLD_WATCH_INTERVAL_SECONDS", 900),
        # Where farms' Express accounts are made; only farms in this country can be paid by Stripe.
        "STRIPE_CONNECT_COUNTRY": _connect_country(env, "STRIPE_CONNECT_COUNTRY", "SG"),
        # Balance transactions fetched per page, and how far past each end of
        # a period records are read, so one timestamped a moment apart by the
        # gateway and the ledger still matches.
        "RECONCILIATION_PAGE_SIZE": _int(env, "RECONCILIATION_PAGE_SIZE", 100),
        "RECONCILIATION_MARGIN_SECONDS": _int(env, "RECONCILIATION_MARGIN_SECONDS", 3600),
        "PAYOUT_ONBOARDING_RETURN_URL": env.get("PAYOUT_ONBOARDING_RETURN_URL") or "http://127.0.0.1:8000/connected",
        "PAYOUT_ONBOARDING_REFRESH_URL": env.get("PAYOUT_ONBOARDING_REFRESH_URL") or "http://127.0.0.1:8000/connect",
        "SMTP_HOST": env.get("SMTP_HOST") or "",
        "SMTP_PORT": _int(env, "SMTP_PORT", 587),
        "SMTP_USER": env.get("SMTP_USER") or "",
        "SMTP_PASSWORD": env.get("SMTP_PASSWORD") or "",
        "SMTP_FROM": env.get("SMTP_FROM") or "Farm market <noreply@farm-market.local>",
        "SMTP_TLS": _bool(env, "SMTP_TLS", True),
        "SMS_GATEWAY_URL": env.get("SMS_GATEWAY_URL") or "",
        "SMS_API_KEY": env.get("SMS_API_KEY") or "",
        "NOTIFICATION_MAILBOX": env.get("NOTIFICATION_MAILBOX") or str(instance / "outbox.mbox"),
        "NOTIFY_MAX_ATTEMPTS": _int(env, "NOTIFY_MAX_ATTEMPTS", 6),
        "NOTIFY_RETRY_BASE_SECONDS": _int(env, "NOTIFY_RETRY_BASE_SECONDS", 30),
        "NOTIFY_REQUEUE_AFTER_SECONDS": _int(env, "NOTIFY_REQUEUE_AFTER_SECONDS", 900),
        "NOTIFY_REQUEUE_INTERVAL_SECONDS": _int(env, "NOTIFY_REQUEUE_INTERVAL_SECONDS", 300),
        "WEBHOOK_MAX_ATTEMPTS": _int(env, "WEBHOOK_MAX_ATTEMPTS", 8),
        "WEBHOOK_RETRY_BASE_SECONDS": _int(env, "WEBHOOK_RETRY_BASE_SECONDS", 30),
        "WEBHOOK_TIMEOUT_SECONDS": _int(env, "WEBHOOK_TIMEOUT_SECONDS", 10),
        # CIDRs that webhook, push and feed URLs may reach although not public.
        "WEBHOOK_ALLOW_PRIVATE_NETWORKS": _networks(env, "WEBHOOK_ALLOW_PRIVATE_NETWORKS"),
        # A CA bundle (a PEM file) to check receivers' certificates against
        # instead of the default one: an internal receiver's own CA.
        "WEBHOOK_CA_BUNDLE": env.get("WEBHOOK_CA_BUNDLE") or "",
        # A function (host, port) -> addresses that resolves the hosts of
        # those URLs instead of the system's resolver (getaddrinfo); not read
        # from the environment. Tests answer with it as a DNS server would.
        "OUTBOUND_RESOLVER": None,
        # How many webhook endpoints one account may register, and how many
        # sales channels one farmer's farms may have together.
        "WEBHOOK_ENDPOINTS_PER_ACCOUNT": _int(env, "WEBHOOK_ENDPOINTS_PER_ACCOUNT", 10),
        "SALES_CHANNELS_PER_ACCOUNT": _int(env, "SALES_CHANNELS_PER_ACCOUNT", 20),
        "INVENTORY_FEED_MAX_BYTES": _int(env, "INVENTORY_FEED_MAX_BYTES", 2 * 1024 * 1024),
        "INVENTORY_PUSH_RETRY_BASE_SECONDS": _int(env, "INVENTORY_PUSH_RETRY_BASE_SECONDS", 30),
        "INVENTORY_SCHEDULER_INTERVAL_SECONDS": _int(env, "INVENTORY_SCHEDULER_INTERVAL_SECONDS", 30),
        "CELERY": {
            "broker_url": broker_url,
            "broker_connection_retry_on_startup": True,
            "broker_transport_options": _transport_options(env, broker_url),
            "task_serializer": "json",
            "accept_content": ["json"],
            "task_ignore_result": True,
            "task_acks_late": True,
            "task_reject_on_worker_lost": True,
            "worker_prefetch_multiplier": 1,
            "task_default_queue": "market",
            "timezone": "UTC",
        },
    }


def instance_secret(instance: Path) -> str:
    """The embedded mode's secret key when SECRET_KEY is unset: made once in
    the instance folder (readable by its owner only) and read by every
    process of the one-command run, so a link signed by one checks in another."""
    path = instance / "secret_key"
    if not path.exists():
        instance.mkdir(parents=True, exist_ok=True)
        draft = instance / f".secret_key.{os.getpid()}.{secrets.token_hex(4)}"
        with os.fdopen(os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
            file.write(secrets.token_hex(32))
        try:
            os.link(draft, path)  # whole or not at all; a process that lost the race reads the winner's
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path.read_text().strip()


def check(settings: Mapping[str, Any]) -> None:
    """Refuse, before the app starts, settings that are wrong together: with
    a live Stripe key, onboarding links must send farmers back over https
    (Stripe refuses anything else in live mode, and a farmer's session must
    not travel in clear)."""
    if not str(settings.get("STRIPE_SECRET_KEY") or "").startswith(LIVE_KEY_PREFIXES):
        return
    insecure = [f"{name}={settings.get(name)!r}" for name in ONBOARDING_URLS if not _https(settings.get(name))]
    if insecure:
        raise ValueError(f"A live Stripe key needs https:// onboarding URLs; got {', '.join(insecure)}")


def _https(url: object) -> bool:
    parts = urlsplit(str(url or ""))
    return parts.scheme == "https" and bool(parts.netloc)
