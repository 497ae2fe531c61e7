"""The HTTP/1.1 front door: XML-RPC and JSON-RPC calls served straight off the socket.

API calls are small and frequent, so they skip the general web framework: an asyncio protocol
parses requests with ``httptools`` (the parser behind uvicorn), keeps connections alive, and
runs each call eagerly: a call that completes without waiting is answered in the same turn
of the event loop, with no task created. Uploads (``PUT`` of disks and VMs) are served here
too, by :mod:`.upload`, their bodies going from the parser to the import. Any other request
(downloads and the other streaming endpoints) is handed, connection and all, to the aiohttp
application, which also answers API calls that come after it on that connection.

Limits (:class:`Limits`, set from the server's configuration), all enforced before any
authentication: a request head (request line and headers) over ``max_head`` bytes, a request
line over ``max_line`` or more than ``max_headers`` headers gets 431; a body over ``max_body``
gets 413; a head not complete ``head_timeout`` seconds after its first byte (or, for a
connection's first request, after the connection opened), or a whole API call not received
``request_timeout`` seconds after its first byte, gets 408. These deadlines are fixed when the
request begins: bytes trickling in do not extend them. Upload bodies and downloads are
streamed and not under the request deadline. A connection idle for ``idle_timeout`` between
requests is closed.
:class:`Admission` caps the connections per peer and in total; one over a cap gets 503 and is
closed at once. Pipelined requests are answered in order; while ``MAX_QUEUED`` wait behind
one still running, the connection is not read.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

import httptools

from . import console_http, console_ws
from .console_http import ConsoleOpener
from .handback import HandBack
from .limits import Admission, Limits, peer_key
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


MAX_QUEUED = 16  # pipelined calls waiting behind a running one before reading pauses
LINGER_SECONDS = 2.0  # how long a refused request's remaining bytes are read and dropped
HEAD_TOO_LARGE = (431, "Request Header Fields Too Large", b"request head too large\n")
_HEADS = {t: _head(t, "keep-alive") for t in ("text/xml", "application/json")}
_HEADS_CLOSE = {t: _head(t, "close") for t in ("text/xml", "application/json")}


class Endpoint:
    """What every connection shares: the call handler, limits and the fallback application."""

    def __init__(
        self,
        handle: Handler,
        fallback: Callable[[], asyncio.Protocol] | None,
        *,
        limits: Limits,
        admission: Admission,
        transport_kind: str,
        uploads: Mapping[bytes, UploadOpener] | None = None,
        connects: Mapping[bytes, ConsoleOpener] | None = None,
    ) -> None:
        self.handle = handle
        self.fallback = fallback
        self.uploads = uploads or {}  # PUT paths served here, as uploads
        self.connects = connects or {}  # CONNECT paths served here, as relayed streams
        self.limits = limits
        self.max_body = limits.max_body
        self.idle_timeout = limits.idle_timeout
        self.admission = admission
        self.transport_kind = transport_kind
        self.connections: set[RpcProtocol] = set()
        self.relays: set[asyncio.Task[None]] = set()

    def __call__(self) -> RpcProtocol:
        return RpcProtocol(self)


class RpcProtocol(asyncio.Protocol):
    """One client connection."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.limits = endpoint.limits
        self.max_head = self.limits.max_head
        self.max_headers = self.limits.max_headers
        self.max_line = self.limits.max_line
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.kind = ""  # "xmlrpc" or "jsonrpc", once the headers are in
        self.body: list[bytes] = []
        self.body_size = 0
        self.raw: list[bytes] = []  # the chunks of the request in progress, for a hand-over
        self.in_message = False
        self.head_done = False
        self.head_bytes = 0  # read while this head was incomplete, after the read it began in
        self.fresh = False  # the next message begins at the start of the current read
        self.at_start = False  # the message in progress began at the start of a read
        self.refusal: tuple[int, str, bytes] | None = None  # set by a parser callback
        self.too_large = False
        self.handing_over = False
        self.upload: UploadRequest | None = None
        self.connect: ConsoleOpener | None = None  # a CONNECT being served
        self.queue: list[tuple[str, bytes, bool]] = []
        self.busy = False
        self.paused = False  # reading, while too many pipelined calls wait
        self.closed = False
        self.peer = ""
        self.admitted = ""  # the key this connection is counted under, once admitted
        self.origins: dict[str, Any] = {}  # per protocol, made once per connection
        self.idle: asyncio.TimerHandle | None = None
        self.deadline: asyncio.TimerHandle | None = None
        self.loop = asyncio.get_running_loop()
        self.last_active = self.loop.time()
        self.started = self.last_active  # when the request in progress began
        self.requests = 0

    # ---- connection ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if isinstance(peer, tuple) else "unix"
        key = peer_key(self.peer)
        if not self.endpoint.admission.admit(key):
            self._reply_and_close(
                503, "Service Unavailable", b"too many connections\n", linger=False
            )
            return
        self.admitted = key
        self.endpoint.connections.add(self)
        self._arm_idle()
        # the first request's head is due within head_timeout of the connection opening
        self.deadline = self.loop.call_later(self.limits.head_timeout, self._deadline_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.upload is not None:
            self.upload.lost()
        self.endpoint.connections.discard(self)
        if self.admitted:
            self.endpoint.admission.release(self.admitted)
            self.admitted = ""
        if self.idle is not None:
            self.idle.cancel()
        self._cancel_deadline()

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

    def _arm_deadline(self) -> None:
        """Time out the request in progress: its head, or (API calls) the whole request.

        Measured from the request's first byte, so a trickle of bytes does not extend it; a
        request read whole in one go never arms a timer.
        """
        limit = self.limits.request_timeout if self.head_done else self.limits.head_timeout
        self.deadline = self.loop.call_at(self.started + limit, self._deadline_out)

    def _cancel_deadline(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def _deadline_out(self) -> None:
        self.deadline = None
        if self.closed or self.upload is not None or self.handing_over or self.transport is None:
            return
        if not self.in_message and self.requests:
            return  # between requests: the idle timer's business
        if self.busy or self.queue:  # an answer is still due: a 408 would come out of order
            self.transport.close()
            self.closed = True
            return
        self._reply_and_close(408, "Request Timeout", b"request not received in time\n")

    def data_received(self, data: bytes) -> None:
        if self.upload is not None and not self.in_message:
            return  # the upload ends the connection: nothing after it is read
        if self.closed:
            return
        if not self.in_message:
            self.raw = [data]
            self.fresh = True
        elif not self.head_done:  # kept for a hand-over, decided once the head is in
            self.raw.append(data)
            self.head_bytes += len(data)
        self._arm_idle()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.handing_over = True
        except httptools.HttpParserError:
            if self.refusal is not None:
                self._reply_and_close(*self.refusal)
                return
            if not self.handing_over:
                self._reply_and_close(400, "Bad Request", b"malformed HTTP request\n")
                return
        if self.connect is not None:
            self._connect()
        elif self.handing_over:
            self._hand_over()
        elif self.in_message and self.upload is None:
            if not self.head_done and self.head_bytes > self.limits.max_head:
                self._reply_and_close(*HEAD_TOO_LARGE)  # early: the rest is never buffered
            elif self.deadline is None:
                self._arm_deadline()

    # ---- parser callbacks ------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.in_message = True
        self.head_done = False
        self.head_bytes = 0
        self.at_start = self.fresh
        self.requests += 1
        self.started = self.last_active
        self.url = b""
        self.body = []
        self.body_size = 0
        self.too_large = False

    def on_url(self, url: bytes) -> None:
        self.url += url  # its length is checked once the head is in (the cut bounds it till then)

    def _check_head(self) -> None:
        """Hold a complete head to max_head and max_headers, scanning its bytes once.

        No per-header callback: httptools would build every name and value as objects, a cost
        on every call. Only a head that began at the start of a read can be found in the
        reads; one pipelined behind another inside a read is held to the cut that
        data_received makes (max_head plus that read), and aiohttp holds a handed-over
        connection to the same limits.
        """
        if len(self.url) > self.max_line:
            self._refuse_head()
        raw = self.raw
        head = raw[0] if len(raw) == 1 else b"".join(raw)
        end = head.find(b"\r\n\r\n")
        if end < 0:
            return  # bare LF line ends: left to the cut
        if end + 4 > self.max_head or head.count(b"\n", 0, end) > self.max_headers:
            self._refuse_head()

    def _refuse_head(self) -> None:
        """Stop the parser from inside a callback: data_received answers the refusal."""
        self.refusal = HEAD_TOO_LARGE
        raise ValueError("request head over the limits")

    def on_headers_complete(self) -> None:
        self.head_done = True
        if self.at_start and len(self.raw) == 1:  # the common case, inline: a head in one read
            head = self.raw[0]
            end = head.find(b"\r\n\r\n")
            if end >= 0 and (
                end + 4 > self.max_head
                or head.count(b"\n", 0, end) > self.max_headers
                or len(self.url) > self.max_line
            ):
                self._refuse_head()
        elif self.at_start:
            self._check_head()
        elif len(self.url) > self.max_line:
            self._refuse_head()
        if self.deadline is not None:  # data_received re-arms it for a body still to come
            self._cancel_deadline()
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
        connect = self.endpoint.connects.get(path.rstrip(b"/"))
        relayed = method == b"CONNECT" or (  # or a browser's console, over a WebSocket
            method == b"GET" and connect is not None and console_ws.is_websocket(b"".join(self.raw))
        )
        if connect is not None and relayed and not self.busy and not self.queue:
            self.busy = True  # the connection becomes the relayed stream
            self.connect = connect
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
        self.fresh = False  # a message that follows in this read begins inside it
        if self.deadline is not None:
            self._cancel_deadline()
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
            if len(self.queue) >= MAX_QUEUED and not self.paused:
                self._pause()
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
                break
        if self.paused and len(self.queue) < MAX_QUEUED and not self.closed:
            self._resume()

    def _pause(self) -> None:
        """Stop reading while too many calls wait for one still running (pipelined calls are
        answered in order): the client cannot make the server buffer them without bound."""
        if self.transport is not None:
            self.transport.pause_reading()
            self.paused = True
            self._cancel_deadline()  # time spent not reading is not the client's

    def _resume(self) -> None:
        if self.transport is not None:
            self.transport.resume_reading()
            self.paused = False
            if self.in_message and self.upload is None:
                self.started = self.loop.time()
                self._arm_deadline()

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

    def _reply_and_close(self, code: int, reason: str, body: bytes, *, linger: bool = True) -> None:
        """Answer and close. Lingering, what the client still sends is read and dropped for a
        moment: closing with unread bytes would reset the connection, and the reset can
        destroy the answer before the client reads it."""
        if self.transport is None or self.closed:
            return
        self.transport.write(plain_response(code, reason, body))
        self.closed = True
        if linger and self.transport.can_write_eof():
            self.transport.write_eof()
            self.loop.call_later(LINGER_SECONDS, self.transport.close)
        else:
            self.transport.close()

    # ---- CONNECT: a relayed stream (console_http) ------------------------------------

    def _connect(self) -> None:
        assert self.connect is not None and self.transport is not None
        if self.idle is not None:
            self.idle.cancel()
            self.idle = None
        self._cancel_deadline()
        self.endpoint.connections.discard(self)
        if self.admitted:
            self.endpoint.admission.release(self.admitted)
            self.admitted = ""
        self.closed = True
        data = b"".join(self.raw)
        method = self.parser.get_method()
        start = data.find(b"%s %s " % (method, self.url))
        head, _, early = data[max(start, 0) :].partition(b"\r\n\r\n")
        query = console_http.connect_query(self.url, head)
        if method == b"CONNECT":
            relay = console_http.serve(self.transport, self.connect, query, early)
        else:  # GET with Upgrade: websocket
            relay = console_ws.serve(self.transport, self.connect, query, head, early)
        task = self.loop.create_task(relay)
        self.endpoint.relays.add(task)
        task.add_done_callback(self.endpoint.relays.discard)

    # ---- hand-over to the web application -------------------------------------------

    def _hand_over(self) -> None:
        """Give this connection to the aiohttp application (non-RPC requests)."""
        if self.endpoint.fallback is None or self.transport is None or self.busy or self.queue:
            self._reply_and_close(404, "Not Found", b"no such endpoint\n")
            return
        if self.idle is not None:
            self.idle.cancel()
            self.idle = None
        self._cancel_deadline()
        self.endpoint.connections.discard(self)
        release = None
        if self.admitted:  # the connection keeps its place under the caps till it closes
            release = functools.partial(self.endpoint.admission.release, self.admitted)
            self.admitted = ""
        # a later upload or CONNECT on this connection comes back to a protocol connection
        served = {(b"PUT", p) for p in self.endpoint.uploads}
        served |= {(m, p) for p in self.endpoint.connects for m in (b"CONNECT", b"GET")}
        protocol = HandBack(self.endpoint.fallback(), release, served, self.endpoint)
        self.closed = True
        self.transport.set_protocol(protocol)
        protocol.connection_made(self.transport)
        protocol.data_received(self._from_request_line())

    def _from_request_line(self) -> bytes:
        """The bytes read from this request's first on, for the application to parse again.

        A request pipelined behind calls already answered, inside the same read, starts
        within it: the calls before it must not reach the application, which would run them
        a second time.
        """
        data = b"".join(self.raw)
        if not self.at_start:
            start = data.find(b"%s %s " % (self.parser.get_method(), self.url))
            if start > 0:
                return data[start:]
        return data
