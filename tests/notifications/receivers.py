"""Local stand-ins for the outside services notifications talk to: a real
SMTP server (aiosmtpd) and a small HTTP receiver (webhooks, the SMS gateway,
sales channels' push endpoints and stock feeds), each on 127.0.0.1."""

from __future__ import annotations

import email
import email.policy
import json
import threading
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.ports import free_port


class SmtpInbox:
    """A real SMTP server; every accepted message lands in `messages`."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.lock = threading.Lock()
        self.port = free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content if isinstance(envelope.content, bytes) else str(envelope.content).encode()
        with self.lock:
            self.messages.append(email.message_from_bytes(content, policy=email.policy.default))
        return "250 OK"

    def to(self, address: str) -> list[Message]:
        with self.lock:
            return [m for m in self.messages if m["To"] == address]

    def subjects(self, address: str) -> list[str]:
        return [str(m["Subject"]) for m in self.to(address)]


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Route:
    """What the receiver answers on one path: scripted statuses first (to
    fail, then recover), then `status`; a GET can serve `body` with an ETag.
    Other answers carry `answer` (what a receiver writes back), and every
    answer `headers` (a redirect's Location, say)."""

    status: int = 200
    script: list[int] = field(default_factory=list)
    body: bytes = b"{}"
    content_type: str = "application/json"
    etag: str | None = None
    answer: bytes = b"{}"
    headers: dict[str, str] = field(default_factory=dict)


class HttpReceiver:
    """An HTTP server on 127.0.0.1 (or another loopback address) recording
    every request it gets."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.requests: list[Received] = []
        self.routes: dict[str, Route] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                received = Received(self.command, self.path, dict(self.headers.items()), body)
                status, headers, payload = receiver._answer(received)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.host = host
        self.server = ThreadingHTTPServer((host, port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    def route(self, path: str, **kwargs: Any) -> Route:
        with self.lock:
            self.routes[path] = Route(**kwargs)
            return self.routes[path]

    def _answer(self, received: Received) -> tuple[int, dict[str, str], bytes]:
        with self.lock:
            route = self.routes.setdefault(received.path, Route())
            self.requests.append(received)
            status = route.script.pop(0) if route.script else route.status
            if received.method == "GET" and status == 200:
                if route.etag and received.headers.get("If-None-Match") == route.etag:
                    return 304, {"ETag": route.etag, **route.headers}, b""
                headers = {"Content-Type": route.content_type, **route.headers}
                if route.etag:
                    headers["ETag"] = route.etag
                return 200, headers, route.body
            return status, {"Content-Type": "application/json", **route.headers}, route.answer

    def at(self, path: str, *, method: str = "POST") -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.path == path and r.method == method]

    def count(self, path: str) -> int:
        return len(self.at(path))

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
