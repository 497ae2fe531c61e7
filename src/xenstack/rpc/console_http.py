"""``CONNECT /console?ref=<console>&session_id=<session>``: a VM's console, relayed.

As XAPI serves it (what XenCenter and Xen Orchestra use): the client sends an HTTP
``CONNECT`` for the console's ``location``, with its session in the query or in a
``session_id`` cookie; once the session and role are checked (the route's declared
permission, ``api/rbac.py``) and the console is found, the answer is ``HTTP/1.1 200 OK`` and
the connection becomes the console's own byte stream (RFB for a ``rfb`` console: the VNC
server QEMU keeps on a Unix socket). A refusal is answered with the XenAPI error as text and
the connection closed. The opener that finds the socket is given by the composition root.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from urllib.parse import parse_qsl, urlsplit

from ..errors import ApiError

log = logging.getLogger(__name__)

# the query (with the cookie's session_id if the query has none) -> the stream's Unix socket
ConsoleOpener = Callable[[dict[str, str]], Awaitable[str]]
Check = Callable[[Mapping[str, str]], None]
Checker = Callable[[str, str], Check]

CONNECT_PATHS = (b"/console",)


def guard_connects(
    connects: Mapping[bytes, ConsoleOpener], checker: Checker
) -> dict[bytes, ConsoleOpener]:
    """Each CONNECT path's opener behind its declared permission (LookupError if none)."""

    def guarded(check: Check, opener: ConsoleOpener) -> ConsoleOpener:
        async def open_console(query: dict[str, str]) -> str:
            check(query)
            return await opener(query)

        return open_console

    return {p: guarded(checker("CONNECT", p.decode()), o) for p, o in connects.items()}


def connect_query(url: bytes, head: bytes) -> dict[str, str]:
    """The request's query, with ``session_id`` from a cookie when the query lacks it."""
    query = dict(parse_qsl(urlsplit(url.decode("latin-1")).query))
    if "session_id" not in query:
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"cookie":
                for part in value.decode("latin-1").split(";"):
                    key, _, val = part.strip().partition("=")
                    if key == "session_id":
                        query["session_id"] = val
    return query


class Relay(asyncio.Protocol):
    """The client's side of a relayed connection: bytes go to the console's writer."""

    def __init__(self, transport: asyncio.Transport, early: bytes) -> None:
        self.transport = transport
        self.pending = [early] if early else []
        self.writer: asyncio.StreamWriter | None = None
        self.lost = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        if self.writer is None:
            self.pending.append(data)
        else:
            self.writer.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)
        if self.writer is not None:
            self.writer.close()

    def attach(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        for chunk in self.pending:
            writer.write(chunk)
        self.pending.clear()


def status_line(status: str, body: bytes = b"") -> bytes:
    """A complete answer that ends the connection."""
    head = f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    return head.encode() + body


async def open_stream(
    transport: asyncio.Transport, opener: ConsoleOpener, query: dict[str, str]
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
    """Check the request and open the console's stream; None once a refusal is answered."""
    try:
        path = await opener(query)
        return await asyncio.open_unix_connection(path)
    except ApiError as err:
        body = ("\n".join([err.code, *map(str, err.params)]) + "\n").encode()
        code = "403 Forbidden" if "SESSION" in err.code or "RBAC" in err.code else "404 Not Found"
        transport.write(status_line(code, body))
    except OSError:
        transport.write(status_line("503 Service Unavailable"))
    transport.close()
    return None


async def serve(
    transport: asyncio.Transport, opener: ConsoleOpener, query: dict[str, str], early: bytes
) -> None:
    """Check, answer and relay one CONNECT (``early``: bytes the client sent after the head)."""
    relay = Relay(transport, early)
    transport.set_protocol(relay)
    streams = await open_stream(transport, opener, query)
    if streams is None:
        return
    reader, writer = streams
    transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
    relay.attach(writer)
    try:
        while not transport.is_closing():
            data = await reader.read(65536)
            if not data:
                break
            transport.write(data)
    finally:
        writer.close()
        transport.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
