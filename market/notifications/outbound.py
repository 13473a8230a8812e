"""Outbound HTTP to addresses our users give us: webhooks, sales-channel
pushes and stock feeds.

Such a URL could point inside our own network (a database, a cloud metadata
service), so:

- only globally routable addresses are called, plus the ranges an operator
  opens with WEBHOOK_ALLOW_PRIVATE_NETWORKS. An IPv6 address that carries an
  IPv4 one (IPv4-mapped, NAT64, 6to4) is judged by the IPv4 address too;
- the host is resolved once per request, every address it resolves to is
  checked, and the connection goes to a checked address (the `Host` header,
  TLS SNI and certificate check still name the host), so a DNS answer that
  changes between the check and the connection (rebinding) reaches nothing;
- redirects are not followed, so a public address cannot bounce a request
  inward;
- what the far side answers is judged by its status alone: its body is
  never read into an error, a log or anything the URL's owner sees.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from flask import current_app
from requests.adapters import HTTPAdapter
from sqlalchemy import Select, select

from market.accounts.models import User
from market.db import locked
from market.errors import Conflict, Invalid
from market.extensions import TransientError, db

SIGNATURE_HEADER = "Market-Signature"
USER_AGENT = "farm-market-webhooks/1"
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# (host, port) -> the addresses DNS gives for it, as text. The system's
# resolver unless the app's OUTBOUND_RESOLVER replaces it.
Resolver = Callable[[str, int], Sequence[str]]

# Ranges `is_global` lets through (on some Python versions at least) that
# are no place for a webhook: shared address space (cloud metadata services
# live in it), IETF protocol assignments, the 6to4 relay anycast,
# benchmarking, multicast, IPv6 site-local (deprecated but still routed
# inside some networks), Teredo, local-use NAT64, SRv6 and documentation.
NEVER_CALLED: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(cidr)
    for cidr in (
        "100.64.0.0/10",
        "192.0.0.0/24",
        "192.88.99.0/24",
        "198.18.0.0/15",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "fec0::/10",
        "ff00::/8",
        "2001::/23",
        "64:ff9b:1::/48",
        "5f00::/16",
        "3fff::/20",
    )
)
# The well-known NAT64 prefix: on an IPv6-only network DNS64 answers with
# it for IPv4-only hosts, so it is judged by the IPv4 address it carries.
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class UnsafeUrl(Exception):
    """The URL is not http(s) or leads to an address we do not call."""


@dataclass(frozen=True)
class Target:
    """A URL and the checked address its request goes to."""

    url: str
    scheme: str
    host: str  # as the URL names it: the Host header, SNI and certificate name
    port: int
    netloc: str
    address: IPAddress


def _allowed_networks() -> list[IPNetwork]:
    return [ipaddress.ip_network(cidr, strict=False) for cidr in current_app.config["WEBHOOK_ALLOW_PRIVATE_NETWORKS"]]


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for, where it stands for one."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def is_public(address: IPAddress) -> bool:
    """Whether `address` is globally routable and no range we never call."""
    embedded = _embedded_ipv4(address)
    if embedded is not None and not is_public(embedded):
        return False
    if isinstance(address, ipaddress.IPv6Address) and (address.ipv4_mapped is not None or address in NAT64):
        return True  # the IPv4 address it carries is what is reached
    return (
        address.is_global
        and not address.is_multicast
        and not address.is_reserved
        and not any(address in network for network in NEVER_CALLED)
    )


def may_call(address: IPAddress, allowed: Sequence[IPNetwork] = ()) -> bool:
    """Whether `address` is public or inside a range the operator opened."""
    candidates = [address, *filter(None, [_embedded_ipv4(address)])]
    if any(candidate in network for candidate in candidates for network in allowed):
        return True
    return is_public(address)


def system_resolver(host: str, port: int) -> list[str]:
    """What the system's resolver (getaddrinfo: DNS, /etc/hosts, numeric
    spellings such as 2130706433 or 0x7f.1) gives for `host`."""
    infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    return [str(info[4][0]) for info in infos]


def _resolve(host: str, port: int) -> list[IPAddress]:
    resolver: Resolver = current_app.config.get("OUTBOUND_RESOLVER") or system_resolver
    try:
        answers = resolver(host, port)
    except (OSError, UnicodeError) as exc:
        raise UnsafeUrl(f"The host {host!r} does not resolve.") from exc
    try:
        addresses = [ipaddress.ip_address(answer.split("%", 1)[0]) for answer in answers]
    except ValueError as exc:
        raise UnsafeUrl(f"The host {host!r} does not resolve to an IP address.") from exc
    if not addresses:
        raise UnsafeUrl(f"The host {host!r} does not resolve.")
    return addresses


def checked_target(url: str) -> Target:
    """Resolve `url`'s host once and return the address to connect to;
    `UnsafeUrl` unless it is http(s) and every address the host resolves to
    may be called."""
    try:
        # As requests will send it: an international host name in IDNA form.
        prepared = requests.PreparedRequest()
        prepared.prepare_url(url, None)
    except requests.RequestException as exc:
        raise UnsafeUrl("Only http and https URLs with a host are accepted.") from exc
    url = str(prepared.url)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeUrl("Only http and https URLs with a host are accepted.")
    if parts.username is not None or parts.password is not None:
        raise UnsafeUrl("Credentials in the URL are not accepted; use the signing secret.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise UnsafeUrl("The port is not valid.") from exc
    addresses = _resolve(parts.hostname, port)
    allowed = _allowed_networks()
    for address in addresses:
        if not may_call(address, allowed):
            raise UnsafeUrl(f"The host resolves to {address}, an address that is not public.")
    return Target(url, parts.scheme, parts.hostname, port, parts.netloc, addresses[0])


def check_url(url: str) -> None:
    """Raise `UnsafeUrl` unless `url` is http(s) and every address its host
    resolves to may be called."""
    checked_target(url)


def require_safe_url(url: str, field: str) -> None:
    """`check_url` for input: a refusal is a 422 naming `field`."""
    try:
        check_url(url)
    except UnsafeUrl as exc:
        raise Invalid(f"The URL cannot be used: {exc}", {field: [str(exc)]}) from None


class QuotaExceeded(Conflict):
    slug = "quota-exceeded"
    title = "Quota exceeded"


def require_quota(owner_id: int, owned: Select[tuple[int]], setting: str, what: str) -> None:
    """Refuse (409) one more of `what` for the account `owner_id` when it
    has as many as `setting` allows (`owned` counts them). Locks the
    account's row, so concurrent registrations are counted in turn."""
    db.session.execute(locked(select(User.id).where(User.id == owner_id)))
    limit: int = current_app.config[setting]
    if (db.session.scalar(owned) or 0) >= limit:
        raise QuotaExceeded(
            f"An account may have at most {limit} {what}; delete one before adding another.", limit=limit
        )


class PinnedAdapter(HTTPAdapter):
    """Connects to the target's checked address whatever DNS says now; the
    URL keeps the host name, so TLS sends it as SNI and checks the
    certificate against it."""

    def __init__(self, target: Target) -> None:
        self.target = target
        super().__init__(max_retries=0)

    def build_connection_pool_key_attributes(
        self, request: requests.PreparedRequest, verify: Any, cert: Any = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        if (host_params["host"], host_params["port"] or self.target.port) != (self.target.host, self.target.port):
            raise UnsafeUrl("The request left the URL that was checked.")
        host_params["host"] = str(self.target.address)
        if self.target.scheme == "https":
            pool_kwargs |= {"server_hostname": self.target.host, "assert_hostname": self.target.host}
        return host_params, pool_kwargs


def _reason(exc: requests.RequestException) -> str:
    """Our own short words for a failed request: never the text of the
    exception, which can carry what the far side said."""
    if isinstance(exc, requests.ConnectTimeout):
        return "Timed out connecting."
    if isinstance(exc, requests.Timeout):
        return "Timed out waiting for the answer."
    if isinstance(exc, requests.exceptions.SSLError):
        return "The TLS handshake or certificate check failed."
    if isinstance(exc, requests.ConnectionError):
        return "Could not connect, or the connection broke."
    return "The request failed."


@contextmanager
def request(
    method: str, url: str, *, headers: Mapping[str, str], data: bytes | None = None
) -> Iterator[requests.Response]:
    """Send one request to the checked address of `url` and yield the
    response, its body not yet read (read it, bounded, or leave it). Raises
    `UnsafeUrl` when the URL leads where we do not call and `TransientError`
    when it cannot be reached."""
    target = checked_target(url)
    with requests.Session() as session:
        session.trust_env = False  # no proxy or .netrc credentials from the environment
        adapter = PinnedAdapter(target)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        try:
            response = session.request(
                method,
                url,
                data=data,
                headers={"User-Agent": USER_AGENT, **headers, "Host": target.netloc},
                timeout=current_app.config["WEBHOOK_TIMEOUT_SECONDS"],
                verify=current_app.config["WEBHOOK_CA_BUNDLE"] or True,
                allow_redirects=False,
                stream=True,
            )
        except requests.RequestException as exc:
            raise TransientError(_reason(exc)) from exc
        with response:
            try:
                yield response
            except requests.RequestException as exc:
                raise TransientError(_reason(exc)) from exc


def signature(secret: str, body: bytes, timestamp: int) -> str:
    """The `Market-Signature` header value for `body` sent at `timestamp`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def post_signed(url: str, body: bytes, *, secret: str, idempotency_key: str) -> int:
    """POST `body` as JSON, signed with `secret`, and return the answer's
    status (its body is not read). Raises `UnsafeUrl` when the URL now leads
    where we do not call and `TransientError` when the receiver could not be
    reached."""
    headers = {
        "Content-Type": "application/json",
        "Idempotency-Key": idempotency_key,
        SIGNATURE_HEADER: signature(secret, body, int(time.time())),
    }
    with request("POST", url, headers=headers, data=body) as response:
        return response.status_code
