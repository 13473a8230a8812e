"""Webhook, push and feed URLs cannot reach inside: every non-public range
and its other spellings is refused, a DNS answer that changes between the
check and the connection reaches nothing, redirects are not followed, what
a receiver writes back is never shown to the URL's owner, and an account
registers only so many of them.

Nothing here sends a packet off this machine: "public" receivers are
loopback addresses the tests open with WEBHOOK_ALLOW_PRIVATE_NETWORKS, and
a stub resolver answers for made-up host names as a rebinding DNS server
would."""

from __future__ import annotations

import ipaddress
import json
import socket
import ssl
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import trustme
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from market.accounts.models import Role
from market.catalog.models import Farm, Listing
from market.db import utcnow
from market.extensions import TransientError, db
from market.inventory import service as inventory
from market.inventory.models import SalesChannel
from market.notifications import service as notifications
from market.notifications.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from market.notifications.outbound import UnsafeUrl, may_call, post_signed
from tests.conftest import needs
from tests.factories import FarmFactory, ListingFactory, bearer, token_for, user_with_token
from tests.notifications.receivers import HttpReceiver

ENDPOINTS = "/api/v1/webhook-endpoints"
CHANNELS = "/api/v1/sales-channels"
# Stands for a public address: a second loopback address the tests open.
OUTSIDE = "127.0.0.2"
SECRET = "SECRET-7f3a-internal-only"

# One address from every range that is not globally routable, or that no
# webhook should reach, as URL hosts.
NOT_PUBLIC = [
    "0.0.0.0",  # noqa: S104 ("this network": a URL host to refuse, not a bind)
    "0.1.2.3",
    "10.0.0.1",  # private
    "100.64.0.1",  # shared address space (carrier-grade NAT)
    "100.100.100.200",  # a cloud metadata service inside it
    "127.0.0.1",  # loopback
    "127.255.255.254",
    "169.254.169.254",  # link-local: the usual cloud metadata address
    "172.16.0.1",
    "172.31.255.255",
    "192.0.0.1",  # IETF protocol assignments
    "192.0.0.9",
    "192.0.2.1",  # documentation
    "192.88.99.1",  # 6to4 relay anycast
    "192.168.1.1",
    "198.18.0.1",  # benchmarking
    "198.51.100.1",
    "203.0.113.1",
    "224.0.0.1",  # multicast
    "239.255.255.250",
    "240.0.0.1",  # reserved
    "255.255.255.255",  # broadcast
    "[::]",
    "[::1]",
    "[::ffff:127.0.0.1]",  # IPv4-mapped
    "[::ffff:10.0.0.1]",
    "[::ffff:169.254.169.254]",
    "[::ffff:100.64.0.1]",
    "[::127.0.0.1]",  # IPv4-compatible (deprecated)
    "[64:ff9b::7f00:1]",  # NAT64 of 127.0.0.1
    "[64:ff9b::a9fe:a9fe]",  # NAT64 of 169.254.169.254
    "[64:ff9b:1::1]",  # local-use NAT64
    "[100::1]",  # discard-only
    "[2001::1]",  # Teredo
    "[2001:0:4136:e378:8000:63bf:3fff:fdd2]",
    "[2001:db8::1]",  # documentation
    "[3fff::1]",
    "[2001:10::1]",  # ORCHID
    "[2002:7f00:1::]",  # 6to4 of 127.0.0.1
    "[2002:a9fe:a9fe::1]",  # 6to4 of 169.254.169.254
    "[2002:c0a8:101::]",  # 6to4 of 192.168.1.1
    "[5f00::1]",  # SRv6
    "[fc00::1]",  # unique local
    "[fd00:ec2::254]",  # a cloud metadata service over IPv6
    "[fe80::1]",  # link-local
    "[fec0::1]",  # site-local (deprecated)
    "[ff02::1]",  # multicast
    "[ff0e::1]",
]
# Other spellings of loopback the system's resolver takes.
SPELLINGS = [
    "2130706433",  # decimal
    "0x7f000001",  # hex
    "0x7f.0.0.1",
    "0x7f.1",
    "0177.0.0.1",  # octal
    "017700000001",
    "127.1",  # short form
    "127.000.000.001",
    "0",
    "localhost",
    "LOCALHOST",
    "[::ffff:7f00:1]",
    "[0:0:0:0:0:ffff:127.0.0.1]",
    "[0000::1]",
]
# Public addresses, also in their IPv6 forms, that stay allowed.
PUBLIC = [
    "93.184.215.14",
    "2606:2800:21f:cb07:6820:80da:af6b:8b2c",
    "::ffff:93.184.215.14",
    "2002:5db8:d70e::1",  # 6to4 of a public address
    "64:ff9b::5db8:d70e",  # NAT64 of a public address
]


# --- a DNS that rebinds --------------------------------------------------------


@dataclass
class RebindingDns:
    """Answers as an attacker's DNS server with a zero TTL would: the first
    query for a name gets `first`, every later one `then`. An IP address is
    its own answer, as getaddrinfo gives it; other names do not resolve."""

    names: dict[str, tuple[list[str], list[str]]] = field(default_factory=dict)
    queries: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def rebind(self, name: str, first: Sequence[str], then: Sequence[str]) -> None:
        with self.lock:
            self.names[name] = (list(first), list(then))
            self.queries = [q for q in self.queries if q != name]

    def __call__(self, host: str, port: int) -> list[str]:
        try:
            return [str(ipaddress.ip_address(host))]
        except ValueError:
            pass
        with self.lock:
            if host not in self.names:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            first, then = self.names[host]
            answer = first if host not in self.queries else then
            self.queries.append(host)
            return answer

    def count(self, name: str) -> int:
        with self.lock:
            return self.queries.count(name)


@pytest.fixture
def dns(app: Flask) -> RebindingDns:
    resolver = RebindingDns()
    app.config["OUTBOUND_RESOLVER"] = resolver
    app.config["WEBHOOK_ALLOW_PRIVATE_NETWORKS"] = [f"{OUTSIDE}/32"]
    return resolver


@dataclass
class Pair:
    """A receiver standing for a public address and one inside the
    network on the same port: a rebound name leads to the second."""

    outside: HttpReceiver
    inside: HttpReceiver

    @property
    def port(self) -> int:
        return self.outside.port


@pytest.fixture
def pair() -> Iterator[Pair]:
    for _ in range(20):
        outside = HttpReceiver(OUTSIDE)
        try:
            inside = HttpReceiver("127.0.0.1", outside.port)
        except OSError:  # that port is taken on 127.0.0.1
            outside.server.server_close()
            continue
        break
    else:
        pytest.fail("no port free on both loopback addresses")
    outside.start()
    inside.start()
    yield Pair(outside, inside)
    outside.stop()
    inside.stop()


@dataclass
class Farmer:
    headers: dict[str, str]
    farm_id: int
    listing_id: int


@pytest.fixture
def farmer(app: Flask) -> Farmer:
    farm = FarmFactory()
    listing = ListingFactory(farm=farm, sku="ORANGE", stock_g=50_000)
    db.session.commit()
    return Farmer(bearer(token_for(farm.owner)), farm.id, listing.id)


def _endpoint(user_id: int, url: str) -> int:
    """An endpoint saved while its URL was fine, and a delivery waiting."""
    endpoint = WebhookEndpoint(user_id=user_id, url=url, event_types=["order.paid"], secret="whsec_x", active=True)
    delivery = WebhookDelivery(
        occurrence="test-occurrence", endpoint=endpoint, event="order.paid", payload="{}", next_attempt_at=utcnow()
    )
    db.session.add_all([endpoint, delivery])
    db.session.commit()
    return delivery.id


def _delivery(delivery_id: int) -> WebhookDelivery:
    db.session.rollback()
    delivery = db.session.get(WebhookDelivery, delivery_id)
    assert delivery is not None
    db.session.refresh(delivery)
    return delivery


def _channel(client: FlaskClient, farmer: Farmer, **urls: str) -> SalesChannel:
    created = client.post(CHANNELS, json={"farm_id": farmer.farm_id, "name": "Shop", **urls}, headers=farmer.headers)
    assert created.status_code == 201, created.json
    channel = db.session.get(SalesChannel, created.json["id"])
    assert channel is not None
    return channel


def _last_error(channel: SalesChannel) -> str:
    db.session.rollback()
    db.session.refresh(channel)
    return channel.last_error or ""


def _stock_changed(listing_id: int) -> None:
    listing = db.session.get(Listing, listing_id)
    assert listing is not None
    listing.stock_g -= 1_000
    db.session.commit()
    inventory.queue_push(listing_id)


# --- ranges and spellings ---------------------------------------------------------


@pytest.mark.parametrize("host", NOT_PUBLIC + SPELLINGS)
def test_webhook_urls_to_any_address_that_is_not_public_are_refused(client: FlaskClient, host: str) -> None:
    _, headers = user_with_token(Role.BUYER)
    response = client.post(
        ENDPOINTS, json={"url": f"http://{host}/hook", "event_types": ["order.paid"]}, headers=headers
    )
    assert response.status_code == 422, host
    assert response.mimetype == "application/problem+json"
    assert "not public" in response.json["errors"]["url"][0], response.json
    assert db.session.scalar(select(func.count(WebhookEndpoint.id))) == 0


@pytest.mark.parametrize("host", ["100.64.0.1", "[fec0::1]", "[2002:7f00:1::]", "0x7f.1", "[::ffff:169.254.169.254]"])
@pytest.mark.parametrize("field_name", ["push_url", "feed_url"])
def test_sales_channel_urls_are_held_to_the_same_rule(
    client: FlaskClient, farmer: Farmer, host: str, field_name: str
) -> None:
    response = client.post(
        CHANNELS,
        json={"farm_id": farmer.farm_id, "name": "Shop", field_name: f"https://{host}/stock"},
        headers=farmer.headers,
    )
    assert response.status_code == 422, host
    assert field_name in response.json["errors"]
    assert db.session.scalar(select(func.count(SalesChannel.id))) == 0


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_and_their_ipv6_forms_stay_allowed(address: str) -> None:
    assert may_call(ipaddress.ip_address(address))


def test_an_operator_can_open_a_range_and_only_that_range(app: Flask, client: FlaskClient) -> None:
    app.config["WEBHOOK_ALLOW_PRIVATE_NETWORKS"] = ["10.20.0.0/16"]
    _, headers = user_with_token(Role.BUYER)
    for url, status in [
        ("http://10.20.3.4/hook", 201),
        ("http://10.21.0.1/hook", 422),
        ("http://[::ffff:10.20.0.9]/", 201),
    ]:
        response = client.post(ENDPOINTS, json={"url": url, "event_types": ["order.paid"]}, headers=headers)
        assert response.status_code == status, url


def test_a_host_with_any_address_inside_is_refused(dns: RebindingDns, client: FlaskClient) -> None:
    dns.rebind("mixed.example.test", ["93.184.215.14", "10.0.0.5"], ["93.184.215.14", "10.0.0.5"])
    _, headers = user_with_token(Role.BUYER)
    response = client.post(
        ENDPOINTS, json={"url": "http://mixed.example.test/hook", "event_types": ["order.paid"]}, headers=headers
    )
    assert response.status_code == 422
    assert "10.0.0.5" in response.json["detail"]


# --- DNS rebinding ---------------------------------------------------------------------


def test_a_rebinding_name_gets_one_query_and_the_post_goes_to_the_checked_address(
    dns: RebindingDns, pair: Pair
) -> None:
    host = "hooks.rebind.test"
    dns.rebind(host, [OUTSIDE], ["127.0.0.1"])
    url = f"http://{host}:{pair.port}/hook"

    assert post_signed(url, b"{}", secret="whsec_x", idempotency_key="k1") == 200
    assert dns.count(host) == 1  # resolved once: checked, then connected to
    assert pair.inside.requests == []
    (received,) = pair.outside.at("/hook")
    assert received.headers["Host"] == f"{host}:{pair.port}"  # the name, not the address

    # The next request finds the name moved inside and sends nothing.
    with pytest.raises(UnsafeUrl, match=r"127\.0\.0\.1"):
        post_signed(url, b"{}", secret="whsec_x", idempotency_key="k2")
    assert pair.inside.requests == []


def test_a_webhook_whose_name_rebinds_is_delivered_to_the_checked_address_only(dns: RebindingDns, pair: Pair) -> None:
    user, _ = user_with_token(Role.BUYER)
    host = "hooks.rebind.test"
    delivery_id = _endpoint(user.id, f"http://{host}:{pair.port}/hook")
    dns.rebind(host, [OUTSIDE], ["127.0.0.1"])

    assert notifications.deliver_webhook(delivery_id) is None
    assert _delivery(delivery_id).status == DeliveryStatus.SENT
    assert (pair.outside.count("/hook"), pair.inside.count("/hook")) == (1, 0)


def test_a_push_and_a_feed_whose_names_rebind_reach_the_checked_address_only(
    dns: RebindingDns, pair: Pair, client: FlaskClient, farmer: Farmer
) -> None:
    dns.rebind("push.rebind.test", [OUTSIDE], [OUTSIDE])
    dns.rebind("feed.rebind.test", [OUTSIDE], [OUTSIDE])
    channel = _channel(
        client,
        farmer,
        push_url=f"http://push.rebind.test:{pair.port}/push",
        feed_url=f"http://feed.rebind.test:{pair.port}/feed",
    )
    pair.outside.route("/feed", body=json.dumps([{"sku": "ORANGE", "quantity_g": 5_000}]).encode())
    dns.rebind("push.rebind.test", [OUTSIDE], ["127.0.0.1"])
    dns.rebind("feed.rebind.test", [OUTSIDE], ["127.0.0.1"])

    _stock_changed(farmer.listing_id)
    assert inventory.push_channel(channel.id) == 1
    inventory.pull_channel(channel.id)
    assert _last_error(channel) == ""
    assert (pair.outside.count("/push"), len(pair.outside.at("/feed", method="GET"))) == (1, 1)
    assert pair.inside.requests == []


# --- TLS to a pinned address ---------------------------------------------------------------


@dataclass
class TlsServer:
    port: int
    server_names: list[str | None]


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[TlsServer, Path]]:
    """An HTTPS server on OUTSIDE with a certificate for shop.example.test
    only, from a CA of its own, recording the name each client asked for
    (SNI). Yields the server and the CA's certificate."""
    authority = trustme.CA()
    ca = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(ca))
    names: list[str | None] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    authority.issue_cert("shop.example.test").configure_cert(context)

    def remember(sock: Any, name: str | None, ctx: Any) -> None:
        names.append(name)

    context.sni_callback = remember

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((OUTSIDE, 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield TlsServer(server.server_address[1], names), ca
    server.shutdown()
    server.server_close()


def test_https_to_a_pinned_address_sends_the_name_and_checks_the_certificate_for_it(
    app: Flask, dns: RebindingDns, tls_server: tuple[TlsServer, Path]
) -> None:
    server, ca = tls_server
    app.config["WEBHOOK_CA_BUNDLE"] = str(ca)
    dns.rebind("shop.example.test", [OUTSIDE], ["127.0.0.1"])
    dns.rebind("other.example.test", [OUTSIDE], ["127.0.0.1"])

    assert post_signed(f"https://shop.example.test:{server.port}/h", b"{}", secret="s", idempotency_key="k") == 204
    assert server.server_names == ["shop.example.test"]

    # The same address under a name the certificate does not cover.
    with pytest.raises(TransientError, match="certificate"):
        post_signed(f"https://other.example.test:{server.port}/h", b"{}", secret="s", idempotency_key="k")
    assert server.server_names[-1] == "other.example.test"

    app.config["WEBHOOK_CA_BUNDLE"] = ""  # a CA nobody trusts by default
    dns.rebind("shop.example.test", [OUTSIDE], ["127.0.0.1"])
    with pytest.raises(TransientError, match="certificate"):
        post_signed(f"https://shop.example.test:{server.port}/h", b"{}", secret="s", idempotency_key="k")


# --- redirects ---------------------------------------------------------------------------


def test_a_webhook_redirected_inside_is_not_followed(dns: RebindingDns, pair: Pair) -> None:
    user, _ = user_with_token(Role.BUYER)
    pair.outside.route("/hook", status=307, headers={"Location": pair.inside.url("/admin")})
    delivery_id = _endpoint(user.id, pair.outside.url("/hook"))
    notifications.deliver_webhook(delivery_id)
    delivery = _delivery(delivery_id)
    assert (delivery.response_status, delivery.last_error) == (307, "The endpoint answered HTTP 307.")
    assert pair.inside.requests == []


def test_a_push_or_feed_redirected_inside_is_not_followed(
    dns: RebindingDns, pair: Pair, client: FlaskClient, farmer: Farmer
) -> None:
    channel = _channel(client, farmer, push_url=pair.outside.url("/push"), feed_url=pair.outside.url("/feed"))
    for path in ("/push", "/feed"):
        pair.outside.route(path, status=302, headers={"Location": pair.inside.url("/latest/meta-data")})
    _stock_changed(farmer.listing_id)
    inventory.push_channel(channel.id)
    assert _last_error(channel) == "Push answered HTTP 302."
    inventory.pull_channel(channel.id)
    assert _last_error(channel) == "Feed not applied: The feed answered HTTP 302."
    assert pair.inside.requests == []


# --- what receivers write back --------------------------------------------------------------


def test_a_receivers_answer_never_reaches_the_delivery_log(dns: RebindingDns, pair: Pair, client: FlaskClient) -> None:
    user, headers = user_with_token(Role.BUYER)
    pair.outside.route("/hook", status=500, answer=f"<html>{SECRET} db=postgres://admin:pw@10.0.0.5</html>".encode())
    delivery_id = _endpoint(user.id, pair.outside.url("/hook"))
    notifications.deliver_webhook(delivery_id)
    delivery = _delivery(delivery_id)
    assert (delivery.response_status, delivery.last_error) == (500, "The endpoint answered HTTP 500.")

    log = client.get(f"{ENDPOINTS}/{delivery.endpoint_id}/deliveries", headers=headers)
    assert log.status_code == 200
    assert SECRET not in log.get_data(as_text=True)
    assert "postgres" not in log.get_data(as_text=True)


def test_connection_failures_are_told_in_our_words(dns: RebindingDns, pair: Pair) -> None:
    user, _ = user_with_token(Role.BUYER)
    closed = HttpReceiver(OUTSIDE)
    closed_url = closed.url("/hook")
    closed.server.server_close()  # nothing listens there now
    delivery_id = _endpoint(user.id, closed_url)
    notifications.deliver_webhook(delivery_id)
    assert _delivery(delivery_id).last_error == "Could not connect, or the connection broke."


def test_a_channels_answers_never_reach_its_last_error(
    dns: RebindingDns, pair: Pair, client: FlaskClient, farmer: Farmer
) -> None:
    channel = _channel(client, farmer, push_url=pair.outside.url("/push"), feed_url=pair.outside.url("/feed"))
    pair.outside.route("/push", status=503, answer=SECRET.encode())
    _stock_changed(farmer.listing_id)
    inventory.push_channel(channel.id)
    assert _last_error(channel) == "Push answered HTTP 503."

    feeds = [
        json.dumps([{"sku": "ORANGE", "quantity_g": 1}, {"sku": SECRET, "quantity_g": 2}]).encode(),  # unknown SKU
        json.dumps([{"sku": SECRET, "quantity_g": 1}, {"sku": SECRET, "quantity_g": 2}]).encode(),  # twice
        json.dumps([{"sku": "ORANGE", "quantity_g": SECRET}]).encode(),  # not a quantity
        f'[{{"sku": "{SECRET}", "quantity_g": 1}},'.encode(),  # cut short
        SECRET.encode() + b"\xff\xfe",  # not UTF-8
        json.dumps({SECRET: []}).encode(),  # not a list
        json.dumps([SECRET]).encode(),  # not an object
    ]
    for body in feeds:
        pair.outside.route("/feed", body=body)
        inventory.pull_channel(channel.id)
        error = _last_error(channel)
        assert error, body
        assert SECRET not in error, error


def test_a_csv_feed_that_is_not_a_feed_is_not_quoted(
    dns: RebindingDns, pair: Pair, client: FlaskClient, farmer: Farmer
) -> None:
    channel = _channel(client, farmer, feed_url=pair.outside.url("/feed"), feed_format="csv")
    for body in (f"root:x:0:0:{SECRET}:/root:/bin/bash\n".encode(), f"sku,quantity_g\n{SECRET},{SECRET}\n".encode()):
        pair.outside.route("/feed", body=body, content_type="text/csv")
        inventory.pull_channel(channel.id)
        error = _last_error(channel)
        assert error and SECRET not in error, error


def test_an_oversized_validator_from_a_feed_is_not_kept(
    dns: RebindingDns, pair: Pair, client: FlaskClient, farmer: Farmer
) -> None:
    channel = _channel(client, farmer, feed_url=pair.outside.url("/feed"))
    pair.outside.route("/feed", body=b"[]", etag='"' + "x" * 500 + '"', headers={"Last-Modified": "y" * 300})
    inventory.pull_channel(channel.id)
    db.session.rollback()
    db.session.refresh(channel)
    assert (channel.feed_etag, channel.feed_last_modified, channel.last_error) == (None, None, None)
    assert channel.last_success_at is not None


# --- quotas ----------------------------------------------------------------------------------


@pytest.fixture
def app_overrides() -> dict[str, Any]:
    return {"WEBHOOK_ENDPOINTS_PER_ACCOUNT": 2, "SALES_CHANNELS_PER_ACCOUNT": 2}


def test_webhook_endpoints_past_the_quota_are_refused_and_nothing_is_written(client: FlaskClient) -> None:
    _, headers = user_with_token(Role.BUYER)
    _, other_h = user_with_token(Role.BUYER)
    body = {"url": "http://93.184.215.14/hook", "event_types": ["order.paid"]}
    first = client.post(ENDPOINTS, json=body, headers=headers)
    assert client.post(ENDPOINTS, json=body, headers=headers).status_code == 201

    refused = client.post(ENDPOINTS, json=body, headers=headers)
    assert refused.status_code == 409
    assert refused.mimetype == "application/problem+json"
    assert refused.json["type"] == "/problems/quota-exceeded"
    assert refused.json["limit"] == 2
    assert db.session.scalar(select(func.count(WebhookEndpoint.id))) == 2

    assert client.post(ENDPOINTS, json=body, headers=other_h).status_code == 201  # per account
    assert client.delete(f"{ENDPOINTS}/{first.json['id']}", headers=headers).status_code == 204
    assert client.post(ENDPOINTS, json=body, headers=headers).status_code == 201


def test_sales_channels_past_the_quota_are_refused_over_all_the_farmers_farms(
    client: FlaskClient, farmer: Farmer
) -> None:
    first = db.session.get(Farm, farmer.farm_id)
    assert first is not None
    farm = FarmFactory(owner=first.owner)
    db.session.commit()
    body = {"name": "Shop", "push_url": "https://93.184.215.14/stock"}
    assert client.post(CHANNELS, json={"farm_id": farmer.farm_id, **body}, headers=farmer.headers).status_code == 201
    assert client.post(CHANNELS, json={"farm_id": farm.id, **body}, headers=farmer.headers).status_code == 201

    refused = client.post(CHANNELS, json={"farm_id": farm.id, **body}, headers=farmer.headers)
    assert refused.status_code == 409
    assert refused.mimetype == "application/problem+json"
    assert refused.json["type"] == "/problems/quota-exceeded"
    assert db.session.scalar(select(func.count(SalesChannel.id))) == 2


def test_concurrent_registrations_do_not_pass_the_quota(app: Flask) -> None:
    needs("postgresql")  # row locks; under .ci/run a failure, never a skip
    _, headers = user_with_token(Role.BUYER)
    db.session.commit()
    barrier = threading.Barrier(6)
    statuses: list[int] = []

    def register() -> None:
        client = app.test_client()
        barrier.wait()
        response = client.post(
            ENDPOINTS, json={"url": "http://93.184.215.14/hook", "event_types": ["order.paid"]}, headers=headers
        )
        statuses.append(response.status_code)

    threads = [threading.Thread(target=register) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [201, 201, 409, 409, 409, 409]
    db.session.rollback()
    assert db.session.scalar(select(func.count(WebhookEndpoint.id))) == 2
