"""The HTTP/1.1 front door: XML-RPC and JSON-RPC calls served straight off the socket.

API calls are small and frequent, so they skip the general web framework: an asyncio protocol
parses requests with ``httptools`` (the parser behind uvicorn), keeps connections alive, and
runs each call eagerly: a call that completes without waiting is answered in the same turn
of the event loop, with no task created. Uploads (``PUT`` of disks and VMs) are served here
too, by :mod:`.upload`, their bodies going from the parser to the import. Any other request
(downloads and the other streaming endpoints) is handed, connection and all, to the aiohttp
application, which also answers API calls that come after it on that connection.

Limits: bodies over ``max_body`` get 413; a connection idle for ``idle_timeout`` is closed.
Pipelined requests are answered in order.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

import httptools

from .upload import UploadOpener, UploadRequest, plain_response, upload_query

RPC_PATHS = {b"/": "xmlrpc", b"/RPC2": "xmlrpc", b"/jsonrpc": "jsonrpc"}

Reply = tuple[bytes, str]  # the body and its content type
# handle(protocol, body, peer, connection): the reply, or a coroutine that will produce it.
Handler = Callable[[str, bytes, str, "RpcProtocol"], Reply | Coroutine[Any, Any, Reply]]


def _head(content_type: str, connection: str) -> bytes:
    return (
        f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: %d\r\n"
        f"Connection: {connection}\r\n\r\n"
    ).encode()


_HEADS = {t: _head(t, "keep-alive") for t in ("text/xml", "application/json")}
_HEADS_CLOSE = {t: _head(t, "close") for t in ("text/xml", "application/json")}


class Endpoint:
    """What every connection shares: the call handler, limits and the fallback application."""

    def __init__(
        self,
        handle: Handler,
        fallback: Callable[[], asyncio.Protocol] | None,
        *,
        max_body: int,
        idle_timeout: float,
        transport_kind: str,
        uploads: Mapping[bytes, UploadOpener] | None = None,
    ) -> None:
        self.handle = handle
        self.fallback = fallback
        self.uploads = uploads or {}  # PUT paths served here, as uploads
        self.max_body = max_body
        self.idle_timeout = idle_timeout
        self.transport_kind = transport_kind
        self.connections: set[RpcProtocol] = set()

    def __call__(self) -> RpcProtocol:
        return RpcProtocol(self)


class RpcProtocol(asyncio.Protocol):
    """One client connection."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.kind = ""  # "xmlrpc" or "jsonrpc", once the headers are in
        self.body: list[bytes] = []
        self.body_size = 0
        self.raw: list[bytes] = []  # the chunks of the request in progress, for a hand-over
        self.in_message = False
        self.head_done = False
        self.too_large = False
        self.handing_over = False
        self.upload: UploadRequest | None = None
        self.queue: list[tuple[str, bytes, bool]] = []
        self.busy = False
        self.closed = False
        self.peer = ""
        self.origins: dict[str, Any] = {}  # per protocol, made once per connection
        self.idle: asyncio.TimerHandle | None = None
        self.loop = asyncio.get_running_loop()
        self.last_active = self.loop.time()

    # ---- connection ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if isinstance(peer, tuple) else "unix"
        self.endpoint.connections.add(self)
        self._arm_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.upload is not None:
            self.upload.lost()
        self.endpoint.connections.discard(self)
        if self.idle is not None:
            self.idle.cancel()

    def _arm_idle(self) -> None:
        """Note activity; the idle timer re-arms itself lazily rather than per request."""
        self.last_active = self.loop.time()
        if self.idle is None:
            self.idle = self.loop.call_later(self.endpoint.idle_timeout, self._idle_out)

    def _idle_out(self) -> None:
        self.idle = None
        quiet = self.loop.time() - self.last_active
        if quiet >= self.endpoint.idle_timeout and not self.busy and not self.queue:
            if self.transport is not None:
                self.transport.close()
            return
        wait = max(0.01, self.endpoint.idle_timeout - quiet)
        self.idle = self.loop.call_later(wait, self._idle_out)

    def data_received(self, data: bytes) -> None:
        if self.upload is not None and not self.in_message:
            return  # the upload ends the connection: nothing after it is read
        if not self.in_message:
            self.raw = [data]
        elif not self.head_done:  # kept for a hand-over, decided once the head is in
            self.raw.append(data)
        self._arm_idle()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.handing_over = True
        except httptools.HttpParserError:
            if not self.handing_over:
                self._reply_and_close(400, "Bad Request", b"malformed HTTP request\n")
                return
        if self.handing_over:
            self._hand_over()

    # ---- parser callbacks ------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.in_message = True
        self.head_done = False
        self.url = b""
        self.body = []
        self.body_size = 0
        self.too_large = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_headers_complete(self) -> None:
        self.head_done = True
        path = self.url.split(b"?", 1)[0]
        kind = RPC_PATHS.get(path)
        method = self.parser.get_method()
        if kind is not None and method == b"POST":
            self.kind = kind
            return
        opener = self.endpoint.uploads.get(path.rstrip(b"/"))
        if opener is not None and method == b"PUT" and not self.busy and not self.queue:
            head = b"".join(self.raw).split(b"\r\n\r\n", 1)[0]
            query, length, expect = upload_query(self.url, head)
            self.busy = True  # till the connection closes: no idle timeout, no more calls
            self.upload = UploadRequest(self, opener, query, length, expect)
            return
        self.handing_over = True

    def on_body(self, body: bytes) -> None:
        if self.upload is not None:
            self.upload.feed(body)
            return
        if self.handing_over:
            return
        self.body_size += len(body)
        if self.body_size > self.endpoint.max_body:
            self.too_large = True
            self.body = []
        elif not self.too_large:
            self.body.append(body)

    def on_message_complete(self) -> None:
        self.in_message = False
        if self.upload is not None:
            self.upload.finish()
            return
        if self.handing_over:
            return
        if self.too_large:
            self._reply_and_close(413, "Request Entity Too Large", b"request body too large\n")
            return
        body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
        self.body = []
        call = (self.kind, body, self.parser.should_keep_alive())
        if self.busy or self.queue:
            self.queue.append(call)
        else:
            self._run(*call)

    # ---- calls -----------------------------------------------------------------------

    def _run(self, protocol: str, body: bytes, keep_alive: bool) -> bool:
        """Start one call; answer it now if it needs no wait. True if it is still running."""
        reply = self.endpoint.handle(protocol, body, self.peer, self)
        if type(reply) is tuple:
            self._respond(reply, keep_alive)
            return False
        self.busy = True
        task = self.loop.create_task(reply)  # type: ignore[arg-type]
        task.add_done_callback(functools.partial(self._done, keep_alive=keep_alive))
        return True

    def _next(self) -> None:
        while self.queue and not self.closed:
            if self._run(*self.queue.pop(0)):
                return

    def _done(self, task: asyncio.Task[Reply], *, keep_alive: bool) -> None:
        self.busy = False
        if task.cancelled() or task.exception() is not None:
            self._reply_and_close(500, "Internal Server Error", b"internal error\n")
            return
        self._arm_idle()  # the call may have run for long: the connection was not idle
        self._respond(task.result(), keep_alive)
        self._next()

    def _respond(self, reply: Reply, keep_alive: bool) -> None:
        if self.transport is None or self.closed:
            return
        body, content_type = reply
        if keep_alive:
            self.transport.write(_HEADS[content_type] % len(body) + body)
        else:
            self.transport.write(_HEADS_CLOSE[content_type] % len(body) + body)
            self.transport.close()

    def _reply_and_close(self, code: int, reason: str, body: bytes) -> None:
        if self.transport is None or self.closed:
            return
        self.transport.write(plain_response(code, reason, body))
        self.transport.close()
        self.closed = True

    # ---- hand-over to the web application -------------------------------------------

    def _hand_over(self) -> None:
        """Give this connection to the aiohttp application (non-RPC requests)."""
        if self.endpoint.fallback is None or self.transport is None or self.busy or self.queue:
            self._reply_and_close(404, "Not Found", b"no such endpoint\n")
            return
        if self.idle is not None:
            self.idle.cancel()
            self.idle = None
        self.endpoint.connections.discard(self)
        protocol = self.endpoint.fallback()
        self.closed = True
        self.transport.set_protocol(protocol)
        protocol.connection_made(self.transport)
        protocol.data_received(b"".join(self.raw))
