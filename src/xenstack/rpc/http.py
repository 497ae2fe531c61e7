"""The HTTP server: XML-RPC on ``/``, JSON-RPC on ``/jsonrpc``, over TCP, TLS and a Unix socket.

Wire only. A request becomes ``call(method, params, origin)``; what comes back (a value, a
:class:`Pending` to await, or an :class:`ApiError`) is encoded in the caller's protocol. Nothing
here knows what a VM is. API calls and uploads are served by :mod:`.protocol`; every other
path (downloads) by an aiohttp application that takes over the connection.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from aiohttp import web

from ..errors import ApiError, ProtocolError
from . import jsonrpc, xmlrpc
from .protocol import RPC_PATHS, Endpoint, Reply, RpcProtocol
from .upload import UploadOpener

log = logging.getLogger(__name__)

MAX_BODY = 16 * 1024 * 1024
XML = "text/xml"
JSON = "application/json"


class Origin(NamedTuple):
    """Where a call came from."""

    peer: str
    transport: str  # "tcp", "tls" or "unix"
    protocol: str  # "xmlrpc" or "jsonrpc"


class Pending:
    """A call that has to wait (for I/O, or for its writes to be durable) before it answers."""

    __slots__ = ("wait",)

    def __init__(self, wait: Awaitable[Any]) -> None:
        self.wait = wait


# ``call(method, params, origin)``: the call's result, or a Pending; errors raised as ApiError.
Call = Callable[[str, list[Any], Origin], Any]
Route = tuple[str, str, Callable[[web.Request], Awaitable[web.StreamResponse]]]


@dataclass
class HttpConfig:
    listen: str = "127.0.0.1"
    port: int | None = 8080
    socket_path: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_port: int | None = None
    idle_timeout: float = 60.0
    max_body: int = MAX_BODY
    extra_routes: list[Route] = field(default_factory=list)
    uploads: dict[bytes, UploadOpener] = field(default_factory=dict)  # PUT path -> opener


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


async def _later(
    pending: Pending, reply: Callable[[Any], Reply], failure: Callable[[list[str]], Reply]
) -> Reply:
    """The answer of a call that had to wait."""
    try:
        value = await pending.wait
    except Exception as exc:
        return failure(_description(exc))
    return reply(value)


class RpcServer:
    """The listening sockets, the call path and the aiohttp application behind them."""

    def __init__(self, call: Call, config: HttpConfig) -> None:
        self.call = call
        self.config = config
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
        try:
            method, params = xmlrpc.decode_call(body)
        except ProtocolError as exc:
            return xmlrpc.encode_fault(-32700, str(exc)), XML
        try:
            value = self.call(method, params, origin)
        except Exception as exc:
            return _xml_failure(_description(exc))
        if type(value) is Pending:
            return _later(value, functools.partial(_xml_reply, method), _xml_failure)
        return _xml_reply(method, value)

    def _jsonrpc(self, body: bytes, origin: Origin) -> Reply | Coroutine[Any, Any, Reply]:
        try:
            req = jsonrpc.decode_call(body)
        except ProtocolError as exc:
            return jsonrpc.encode_protocol_error(str(exc)), JSON
        try:
            value = self.call(req.method, req.params, origin)
        except Exception as exc:
            return _json_failure(req, _description(exc))
        if type(value) is Pending:
            reply = functools.partial(_json_reply, req)
            return _later(value, reply, functools.partial(_json_failure, req))
        return _json_reply(req, value)

    def _endpoint(self, kind: str) -> Endpoint:
        assert self.runner is not None and self.runner.server is not None
        endpoint = Endpoint(
            self.handle,
            self.runner.server,
            max_body=self.config.max_body,
            idle_timeout=self.config.idle_timeout,
            transport_kind=kind,
            uploads=self.config.uploads,
        )
        self.endpoints.append(endpoint)
        return endpoint

    async def start(self) -> None:
        cfg = self.config
        loop = asyncio.get_running_loop()
        self.runner = web.AppRunner(
            self.app, access_log=None, keepalive_timeout=cfg.idle_timeout, handle_signals=False
        )
        await self.runner.setup()
        if cfg.tls_cert and cfg.tls_key:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(cfg.tls_cert, cfg.tls_key)
            server = await loop.create_server(
                self._endpoint("tls"), cfg.listen, cfg.tls_port or 0, ssl=ctx
            )
            self._add(server, "https")
        if cfg.socket_path is not None:
            cfg.socket_path.unlink(missing_ok=True)
            server = await loop.create_unix_server(self._endpoint("unix"), str(cfg.socket_path))
            self.servers.append(server)
        # The plain HTTP port opens last: once it answers, every other listener is up.
        if cfg.port is not None:
            server = await loop.create_server(
                self._endpoint("tcp"), cfg.listen, cfg.port, reuse_address=True
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
