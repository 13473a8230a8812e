"""A free TCP port on 127.0.0.1 for a server a test or benchmark starts."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port nothing listens on now (the OS's choice; the caller binds it
    soon after, so another process taking it first is unlikely)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
