"""What a connection and a request may cost at the front door, before authentication.

:class:`Limits` is one request's (set from :class:`~.http.HttpConfig`, enforced by
:mod:`.protocol`); :class:`Admission` counts the open connections against their caps, and
:class:`Counted` keeps a connection handed over to the web application counted until it
closes.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """What one request may cost before it is refused; the defaults are HttpConfig's."""

    max_body: int = 16 * 1024 * 1024
    idle_timeout: float = 60.0
    max_head: int = 64 * 1024  # request line and headers together
    max_line: int = 16 * 1024  # the request line
    max_headers: int = 128
    head_timeout: float = 10.0
    request_timeout: float = 60.0


class Admission:
    """The connection caps every listener shares.

    Network peers (TCP and TLS) are capped per address (an IPv6 peer per /64, what one host is
    usually given) and together; the Unix socket, local root, is capped on its own, so that a
    flood from the network never locks out ``xe`` on the host.
    """

    def __init__(self, max_total: int, max_per_peer: int) -> None:
        self.max_total = max_total
        self.max_per_peer = max_per_peer
        self.total = 0
        self.unix = 0
        self.per_peer: dict[str, int] = {}

    def admit(self, peer: str) -> bool:
        """Count a new connection from ``peer`` (an address, or "unix"); False if over a cap."""
        if peer == "unix":
            if self.unix >= self.max_total:
                return False
            self.unix += 1
            return True
        count = self.per_peer.get(peer, 0)
        if count >= self.max_per_peer or self.total >= self.max_total:
            return False
        self.per_peer[peer] = count + 1
        self.total += 1
        return True

    def release(self, peer: str) -> None:
        if peer == "unix":
            self.unix -= 1
            return
        self.total -= 1
        count = self.per_peer.pop(peer, 1) - 1
        if count > 0:
            self.per_peer[peer] = count


def peer_key(address: str) -> str:
    """The key a peer address is capped under: IPv4 as is, IPv6 by its /64."""
    if ":" not in address:
        return address
    if address.startswith("::ffff:") and "." in address:
        return address[7:]  # an IPv4 peer on a dual-stack socket
    try:
        return str(ipaddress.IPv6Network(f"{address.split('%')[0]}/64", strict=False))
    except ValueError:
        return address


class Counted(asyncio.Protocol):
    """A handed-over connection's protocol, that frees its place under the caps once closed."""

    def __init__(self, inner: asyncio.Protocol, release: Callable[[], None]) -> None:
        self.inner = inner
        self.release: Callable[[], None] | None = release

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.release is not None:
            self.release()
            self.release = None
        self.inner.connection_lost(exc)
