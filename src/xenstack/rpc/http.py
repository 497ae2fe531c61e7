"""The HTTP server: XML-RPC on ``/``, JSON-RPC on ``/jsonrpc``, over TCP, TLS and a Unix socket.

Wire only. A request becomes ``call(method, params, origin)``; what comes back (a value, a
:class:`Pending` to await, or an :class:`ApiError`) is encoded in the caller's protocol. Nothing
here knows what a VM is. API calls and uploads are served by :mod:`.protocol`; every other
path (downloads) by an aiohttp application that takes over the connection.

Bodies up to ``inline_body`` bytes (nearly every call) are decoded on the event loop, in the
turn they arrive in. Larger ones are first bounded (at most ``max_body_values`` values, and at
most ``MAX_PARAMS`` XML-RPC parameters, counted without parsing) and then decoded by one of
``body_workers`` threads, so that no body, authenticated or not, holds up the other clients
for the time it takes to parse.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import resource
import ssl
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from ..core.calls import Origin, Pending
from ..errors import ApiError, ProtocolError
from . import jsonrpc, xmlrpc
from .console_http import ConsoleOpener
from .limits import Admission, Limits
from .protocol import RPC_PATHS, Endpoint, Reply, RpcProtocol
from .upload import UploadOpener

log = logging.getLogger(__name__)

MAX_BODY = 16 * 1024 * 1024
# No XenAPI message takes more than a few dozen parameters: more is not a call, only work.
MAX_PARAMS = 256
# Descriptors kept back from the connection cap: the database, disks being copied, NBD...
FD_RESERVE = 256
# Connections the kernel may hold before they are accepted (and, over a cap, closed at once).
STOP_GRACE = 1.0  # seconds the web application's handlers have to end at stop
BACKLOG = 1024
XML = "text/xml"
JSON = "application/json"


# ``call(method, params, origin)``: the call's result, or a Pending; errors raised as ApiError.
Call = Callable[[str, list[Any], Origin], Any]
Route = tuple[str, str, Callable[[web.Request], Awaitable[web.StreamResponse]]]


@dataclass
class HttpConfig:
    """Where to listen, and the limits every request and connection is held to.

    The limits apply before authentication, to every listener (the Unix socket is exempt only
    from the per-peer cap, having no peers, and has its own total of ``max_connections``).
    """

    listen: str = "127.0.0.1"
    port: int | None = 8080
    socket_path: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_port: int | None = None
    idle_timeout: float = 60.0  # a keep-alive connection idle this long between requests closes
    max_body: int = MAX_BODY  # an API call's body; more gets 413 (uploads are streamed, unbounded)
    # The request head: request line and headers together, the request line alone, and how
    # many headers; past any of these, 431 (XO's cookies and query strings fit many times).
    max_head: int = 64 * 1024
    max_request_line: int = 16 * 1024
    max_headers: int = 128
    # Deadlines from a request's first byte (a connection's first request: from its opening),
    # not extended by bytes trickling in: its head within head_timeout, and a whole API call
    # within request_timeout (uploads and downloads are streamed and exempt); 408 after.
    head_timeout: float = 10.0
    request_timeout: float = 60.0
    # Open connections: per peer address (IPv6: per /64) and in total over TCP and TLS; more
    # are answered 503 and closed. The total is lowered to fit the open-files limit.
    max_connections: int = 1024
    max_connections_per_peer: int = 256
    # Bodies over inline_body are bounded, then decoded in one of body_workers threads.
    inline_body: int = 64 * 1024
    max_body_values: int = 65536  # XML-RPC <value>s; JSON-RPC arrays and objects
    body_workers: int = 2
    extra_routes: list[Route] = field(default_factory=list)
    uploads: dict[bytes, UploadOpener] = field(default_factory=dict)  # PUT path -> opener
    connects: dict[bytes, ConsoleOpener] = field(default_factory=dict)  # CONNECT path -> opener


def _xml_reply(method: str, value: Any) -> Reply:
    if method.startswith("system."):
        return xmlrpc.encode_bare(value), XML
    return xmlrpc.encode_success(value), XML


def _xml_failure(description: list[str]) -> Reply:
    return xmlrpc.encode_failure(description), XML


def _json_reply(req: jsonrpc.Request, value: Any) -> Reply:
    return jsonrpc.encode_success(req, value), JSON


def _json_failure(req: jsonrpc.Request, description: list[str]) -> Reply:
    return jsonrpc.encode_failure(req, description), JSON


def _description(exc: Exception) -> list[str]:
    """The error a failed call answers with: its own, or INTERNAL_ERROR for a crash."""
    if isinstance(exc, ApiError):
        return exc.description
    log.exception("internal error while serving a call", exc_info=exc)
    return ApiError("INTERNAL_ERROR", [f"{type(exc).__name__}: {exc}"]).description


_T = TypeVar("_T")


def _xml_bounded(max_values: int, body: bytes) -> tuple[str, list[Any]]:
    """``xmlrpc.decode_call``, once counting (not parsing) shows the work is bounded.

    Every value is a ``<value>`` element and every parameter a ``<param>`` (text cannot hold
    a raw ``<``), so the counts are exact upper bounds.
    """
    if body.count(b"<param") > MAX_PARAMS + 1:  # "<params>" is counted too
        raise ProtocolError(f"a call takes at most {MAX_PARAMS} parameters")
    if body.count(b"<value") > max_values:
        raise ProtocolError(f"a call holds at most {max_values} values")
    return xmlrpc.decode_call(body)


def _json_bounded(max_values: int, body: bytes) -> jsonrpc.Request:
    """``jsonrpc.decode_call``, once counting shows at most ``max_values`` arrays and objects
    (what costs to build; brackets inside strings count too, erring on the safe side)."""
    if body.count(b"[") + body.count(b"{") > max_values:
        raise ProtocolError(f"a call holds at most {max_values} arrays and objects")
    return jsonrpc.decode_call(body)


async def _later(
    pending: Pending, reply: Callable[[Any], Reply], failure: Callable[[list[str]], Reply]
) -> Reply:
    """The answer of a call that had to wait."""
    try:
        value = await pending.wait
    except Exception as exc:
        return failure(_description(exc))
    return reply(value)


def raise_open_files() -> int:
    """Raise this process's soft limit on open files to its hard limit; return the soft limit.

    Every connection is a descriptor: the default soft limit (often 1024) would be exhausted
    long before the connection caps are.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = 1 << 20 if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            log.warning("could not raise the open files limit from %d", soft)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


class RpcServer:
    """The listening sockets, the call path and the aiohttp application behind them."""

    def __init__(self, call: Call, config: HttpConfig) -> None:
        self.call = call
        self.config = config
        self.limits = Limits(
            max_body=config.max_body,
            idle_timeout=config.idle_timeout,
            max_head=config.max_head,
            max_line=config.max_request_line,
            max_headers=config.max_headers,
            head_timeout=config.head_timeout,
            request_timeout=config.request_timeout,
        )
        self.admission = Admission(config.max_connections, config.max_connections_per_peer)
        self.decoder: ThreadPoolExecutor | None = None  # made on the first large body
        self.app = web.Application(client_max_size=config.max_body)
        for rpc_path in RPC_PATHS:
            self.app.router.add_route("POST", rpc_path.decode(), self._call_in_app)
        for method, path, handler in config.extra_routes:
            self.app.router.add_route(method, path, handler)
            if not path.endswith("/"):  # XAPI answers "/import/" as "/import" (XO uses both)
                self.app.router.add_route(method, path + "/", handler)
        self.runner: web.AppRunner | None = None
        self.servers: list[asyncio.Server] = []
        self.endpoints: list[Endpoint] = []
        self.ports: dict[str, int] = {}

    def handle(
        self, protocol: str, body: bytes, peer: str, conn: RpcProtocol
    ) -> Reply | Coroutine[Any, Any, Reply]:
        """Decode, dispatch and encode one call; never raises.

        A call that needs no wait is answered at once; otherwise the answer is a coroutine.
        """
        origin = conn.origins.get(protocol)
        if origin is None:
            origin = conn.origins[protocol] = Origin(peer, conn.endpoint.transport_kind, protocol)
        return self.answer(body, origin)

    def answer(self, body: bytes, origin: Origin) -> Reply | Coroutine[Any, Any, Reply]:
        if origin.protocol == "jsonrpc":
            return self._jsonrpc(body, origin)
        return self._xmlrpc(body, origin)

    async def _call_in_app(self, request: web.Request) -> web.Response:
        """An API call on a connection the web application took over (after a download, say):
        keep-alive clients send their next calls down the same connection."""
        transport = request.transport
        peer = transport.get_extra_info("peername") if transport is not None else None
        if transport is not None and transport.get_extra_info("sslcontext") is not None:
            kind = "tls"
        else:
            kind = "tcp" if isinstance(peer, tuple) else "unix"
        origin = Origin(
            peer[0] if isinstance(peer, tuple) else "unix", kind, RPC_PATHS[request.path.encode()]
        )
        reply = self.answer(await request.read(), origin)
        body, content_type = reply if isinstance(reply, tuple) else await reply
        return web.Response(body=body, headers={"Content-Type": content_type})

    def _xmlrpc(self, body: bytes, origin: Origin) -> Reply | Coroutine[Any, Any, Reply]:
        if len(body) > self.config.inline_body:
            return self._xmlrpc_large(body, origin)
        try:
            method, params = xmlrpc.decode_call(body)
        except ProtocolError as exc:
            return xmlrpc.encode_fault(-32700, str(exc)), XML
        return self._xml_call(method, params, origin)

    async def _xmlrpc_large(self, body: bytes, origin: Origin) -> Reply:
        try:
            method, params = await self._off_loop(_xml_bounded, body)
        except ProtocolError as exc:
            return xmlrpc.encode_fault(-32700, str(exc)), XML
        reply = self._xml_call(method, params, origin)
        return reply if isinstance(reply, tuple) else await reply

    def _xml_call(
        self, method: str, params: list[Any], origin: Origin
    ) -> Reply | Coroutine[Any, Any, Reply]:
        try:
            value = self.call(method, params, origin)
        except Exception as exc:
            return _xml_failure(_description(exc))
        if type(value) is Pending:
            return _later(value, functools.partial(_xml_reply, method), _xml_failure)
        return _xml_reply(method, value)

    def _jsonrpc(self, body: bytes, origin: Origin) -> Reply | Coroutine[Any, Any, Reply]:
        if len(body) > self.config.inline_body:
            return self._jsonrpc_large(body, origin)
        try:
            req = jsonrpc.decode_call(body)
        except ProtocolError as exc:
            return jsonrpc.encode_protocol_error(str(exc)), JSON
        return self._json_call(req, origin)

    async def _jsonrpc_large(self, body: bytes, origin: Origin) -> Reply:
        try:
            req = await self._off_loop(_json_bounded, body)
        except ProtocolError as exc:
            return jsonrpc.encode_protocol_error(str(exc)), JSON
        reply = self._json_call(req, origin)
        return reply if isinstance(reply, tuple) else await reply

    def _json_call(
        self, req: jsonrpc.Request, origin: Origin
    ) -> Reply | Coroutine[Any, Any, Reply]:
        try:
            value = self.call(req.method, req.params, origin)
        except Exception as exc:
            return _json_failure(req, _description(exc))
        if type(value) is Pending:
            reply = functools.partial(_json_reply, req)
            return _later(value, reply, functools.partial(_json_failure, req))
        return _json_reply(req, value)

    async def _off_loop(self, decode: Callable[[int, bytes], _T], body: bytes) -> _T:
        """Run a bounded decode in a worker thread; at most body_workers run at once."""
        if self.decoder is None:
            self.decoder = ThreadPoolExecutor(
                self.config.body_workers, thread_name_prefix="xenstack-decode"
            )
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.decoder, decode, self.config.max_body_values, body)

    def _endpoint(self, kind: str) -> Endpoint:
        assert self.runner is not None and self.runner.server is not None
        endpoint = Endpoint(
            self.handle,
            self.runner.server,
            limits=self.limits,
            admission=self.admission,
            transport_kind=kind,
            uploads=self.config.uploads,
            connects=self.config.connects,
        )
        self.endpoints.append(endpoint)
        return endpoint

    async def start(self) -> None:
        cfg = self.config
        loop = asyncio.get_running_loop()
        self.admission.max_total = max(
            16, min(cfg.max_connections, raise_open_files() - FD_RESERVE)
        )
        # A connection handed over to the web application is parsed by aiohttp from then on:
        # the same head limits apply there.
        self.runner = web.AppRunner(
            self.app,
            access_log=None,
            keepalive_timeout=cfg.idle_timeout,
            handle_signals=False,
            # at stop, calls in flight on handed-over connections (a browser's event.from
            # long poll) get a moment to end, then are cancelled: a stop never waits minutes
            shutdown_timeout=STOP_GRACE,
            max_line_size=cfg.max_request_line,
            max_field_size=cfg.max_head,
            max_headers=cfg.max_headers,
        )
        await self.runner.setup()
        if cfg.tls_cert and cfg.tls_key:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(cfg.tls_cert, cfg.tls_key)
            server = await loop.create_server(
                self._endpoint("tls"), cfg.listen, cfg.tls_port or 0, ssl=ctx, backlog=BACKLOG
            )
            self._add(server, "https")
        if cfg.socket_path is not None:
            cfg.socket_path.unlink(missing_ok=True)
            server = await loop.create_unix_server(
                self._endpoint("unix"), str(cfg.socket_path), backlog=BACKLOG
            )
            self.servers.append(server)
        # The plain HTTP port opens last: once it answers, every other listener is up.
        if cfg.port is not None:
            server = await loop.create_server(
                self._endpoint("tcp"), cfg.listen, cfg.port, reuse_address=True, backlog=BACKLOG
            )
            self._add(server, "http")

    def _add(self, server: asyncio.Server, name: str) -> None:
        self.servers.append(server)
        self.ports[name] = int(server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        for server in self.servers:
            server.close()
        for endpoint in self.endpoints:
            for conn in list(endpoint.connections):
                if conn.transport is not None:
                    conn.transport.close()
        for server in self.servers:
            await server.wait_closed()
        if self.runner is not None:
            await self.runner.cleanup()
        if self.decoder is not None:
            self.decoder.shutdown(wait=False, cancel_futures=True)
