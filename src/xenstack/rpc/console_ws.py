"""``GET /console?ref=...&session_id=...`` with ``Upgrade: websocket``: a console for browsers.

A browser cannot send ``CONNECT``; noVNC (the UI's client, and XO Lite's) opens a WebSocket
instead (RFC 6455) and speaks RFB in binary messages. The session comes from the query or a
``session_id`` cookie, as for ``CONNECT`` (:func:`console_http.connect_query`), and the
opener is the ``CONNECT`` one, behind the same declared permission (``api/rbac.py``), so the
check is made in one place. A refusal is answered as HTTP before any upgrade. Once accepted
(``101``, the ``binary`` subprotocol if offered), each message from the client goes to the
console's socket and what the socket sends goes back as binary messages; pings are answered,
and a close from either side ends both. Framing is :mod:`wsproto`'s (sans-IO).
"""

from __future__ import annotations

import asyncio
import contextlib

from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from . import console_http
from .console_http import ConsoleOpener

SUBPROTOCOLS = ("binary",)  # what noVNC and websockify name a binary RFB stream


def is_websocket(head: bytes) -> bool:
    """Whether a request head asks for a WebSocket upgrade."""
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"upgrade" and value.strip().lower() == b"websocket":
            return True
    return False


class WsRelay(console_http.Relay):
    """The client's side: WebSocket frames in, their payloads to the console's writer."""

    def __init__(self, transport: asyncio.Transport, ws: WSConnection) -> None:
        super().__init__(transport, b"")
        self.ws = ws

    def data_received(self, data: bytes) -> None:
        try:
            self.ws.receive_data(data)
            for event in self.ws.events():
                self._event(event)
        except (LocalProtocolError, RemoteProtocolError):
            self.transport.close()

    def _event(self, event: object) -> None:
        if isinstance(event, BytesMessage):
            super().data_received(bytes(event.data))
        elif isinstance(event, Ping):
            self.transport.write(self.ws.send(event.response()))
        elif isinstance(event, CloseConnection):
            self.transport.write(self.ws.send(event.response()))
            self.transport.close()
        elif isinstance(event, TextMessage):  # RFB is binary: a text message is a misuse
            self.transport.write(self.ws.send(CloseConnection(code=1003)))
            self.transport.close()


async def serve(
    transport: asyncio.Transport, opener: ConsoleOpener, query: dict[str, str], head: bytes,
    early: bytes,
) -> None:  # fmt: skip
    """Check, upgrade and relay one WebSocket console request (``head`` without its end)."""
    ws = WSConnection(ConnectionType.SERVER)
    relay = WsRelay(transport, ws)
    transport.set_protocol(relay)
    try:
        ws.receive_data(head + b"\r\n\r\n")
        request = next((e for e in ws.events() if isinstance(e, Request)), None)
    except RemoteProtocolError:
        request = None
    if request is None:
        transport.write(console_http.status_line("400 Bad Request", b"bad WebSocket request\n"))
        transport.close()
        return
    streams = await console_http.open_stream(transport, opener, query)
    if streams is None:
        return
    reader, writer = streams
    chosen = next((p for p in request.subprotocols if p in SUBPROTOCOLS), None)
    transport.write(ws.send(AcceptConnection(subprotocol=chosen)))
    relay.attach(writer)
    if early:
        relay.data_received(early)
    try:
        while not transport.is_closing():
            data = await reader.read(65536)
            if not data:
                break
            transport.write(ws.send(Message(data=data)))
        if not transport.is_closing():
            transport.write(ws.send(CloseConnection(code=1000)))
    except LocalProtocolError:
        pass  # the client closed first
    finally:
        writer.close()
        transport.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
