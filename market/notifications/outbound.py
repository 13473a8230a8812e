"""Outbound HTTP to addresses our users give us: webhooks, sales-channel
pushes and stock feeds.

Such a URL could point inside our own network, so every address it resolves
to is checked when the URL is saved and again before each request (DNS can
change in between); redirects are not followed, so a public address cannot
bounce a request inward.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import socket
import time
from collections.abc import Iterable
from urllib.parse import urlsplit

import requests
from flask import current_app

from market.errors import Invalid
from market.extensions import TransientError

SIGNATURE_HEADER = "Market-Signature"
USER_AGENT = "farm-market-webhooks/1"
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UnsafeUrl(Exception):
    """The URL is not http(s) or leads to an address we do not call."""


def _allowed_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(cidr, strict=False) for cidr in current_app.config["WEBHOOK_ALLOW_PRIVATE_NETWORKS"]]


def _is_internal(address: IPAddress) -> bool:
    return (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


def _resolve(host: str, port: int) -> Iterable[IPAddress]:
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeUrl(f"The host {host!r} does not resolve.") from exc
    for info in infos:
        yield ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])


def check_url(url: str) -> None:
    """Raise `UnsafeUrl` unless `url` is http(s) and every address its host
    resolves to is public (or inside WEBHOOK_ALLOW_PRIVATE_NETWORKS)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeUrl("Only http and https URLs with a host are accepted.")
    if parts.username or parts.password:
        raise UnsafeUrl("Credentials in the URL are not accepted; use the signing secret.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise UnsafeUrl("The port is not valid.") from exc
    allowed = _allowed_networks()
    for address in _resolve(parts.hostname, port):
        if _is_internal(address) and not any(address in network for network in allowed):
            raise UnsafeUrl(f"The host resolves to {address}, an address inside a private network.")


def require_safe_url(url: str, field: str) -> None:
    """`check_url` for input: a refusal is a 422 naming `field`."""
    try:
        check_url(url)
    except UnsafeUrl as exc:
        raise Invalid(f"The URL cannot be used: {exc}", {field: [str(exc)]}) from None


def signature(secret: str, body: bytes, timestamp: int) -> str:
    """The `Market-Signature` header value for `body` sent at `timestamp`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def post_signed(url: str, body: bytes, *, secret: str, idempotency_key: str) -> requests.Response:
    """POST `body` as JSON, signed with `secret`. Raises `UnsafeUrl` when the
    URL now leads inside the network and `TransientError` when the receiver
    could not be reached; any HTTP answer is returned for the caller to judge."""
    check_url(url)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Idempotency-Key": idempotency_key,
        SIGNATURE_HEADER: signature(secret, body, int(time.time())),
    }
    try:
        return requests.post(
            url,
            data=body,
            headers=headers,
            timeout=current_app.config["WEBHOOK_TIMEOUT_SECONDS"],
            allow_redirects=False,
        )
    except requests.RequestException as exc:
        raise TransientError(f"{type(exc).__name__}: {exc}"[:500]) from exc
