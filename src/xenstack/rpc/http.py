"""The HTTP server: XML-RPC on ``/``, JSON-RPC on ``/jsonrpc``, over TCP, TLS and a Unix socket.

Wire only. A request becomes ``dispatch(method, params, origin)``; what comes back (a value or an
:class:`ApiError`) is encoded in the caller's protocol. Nothing here knows what a VM is.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from ..errors import ApiError, ProtocolError
from . import jsonrpc, xmlrpc

log = logging.getLogger(__name__)

MAX_BODY = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a call came from."""

    peer: str
    transport: str  # "tcp", "tls" or "unix"
    protocol: str  # "xmlrpc" or "jsonrpc"


Dispatch = Callable[[str, list[Any], Origin], Awaitable[Any]]
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


def _origin(request: web.Request, protocol: str) -> Origin:
    transport = request.transport
    sockname = transport.get_extra_info("sockname") if transport else None
    if isinstance(sockname, str) or sockname is None:
        return Origin("unix", "unix", protocol)
    peer = request.remote or ""
    return Origin(peer, "tls" if request.secure else "tcp", protocol)


def _internal(exc: BaseException) -> ApiError:
    log.exception("internal error while serving a call", exc_info=exc)
    return ApiError("INTERNAL_ERROR", [f"{type(exc).__name__}: {exc}"])


class RpcServer:
    """Holds the aiohttp application and its listening sites."""

    def __init__(self, dispatch: Dispatch, config: HttpConfig) -> None:
        self.dispatch = dispatch
        self.config = config
        self.app = web.Application(client_max_size=config.max_body)
        self.app.router.add_post("/", self._xmlrpc)
        self.app.router.add_post("/RPC2", self._xmlrpc)
        self.app.router.add_post("/jsonrpc", self._jsonrpc)
        for method, path, handler in config.extra_routes:
            self.app.router.add_route(method, path, handler)
        self.runner: web.AppRunner | None = None
        self.ports: dict[str, int] = {}

    async def _xmlrpc(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            method, params = xmlrpc.decode_call(body)
        except ProtocolError as exc:
            return _xml(xmlrpc.encode_fault(-32700, str(exc)))
        try:
            value = await self.dispatch(method, params, _origin(request, "xmlrpc"))
        except ApiError as err:
            return _xml(xmlrpc.encode_failure(err.description))
        except Exception as exc:
            return _xml(xmlrpc.encode_failure(_internal(exc).description))
        if method.startswith("system."):
            return _xml(xmlrpc.encode_bare(value))
        return _xml(xmlrpc.encode_success(value))

    async def _jsonrpc(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            req = jsonrpc.decode_call(body)
        except ProtocolError as exc:
            return _json(jsonrpc.encode_protocol_error(str(exc)))
        try:
            value = await self.dispatch(req.method, req.params, _origin(request, "jsonrpc"))
        except ApiError as err:
            return _json(jsonrpc.encode_failure(req, err.description))
        except Exception as exc:
            return _json(jsonrpc.encode_failure(req, _internal(exc).description))
        return _json(jsonrpc.encode_success(req, value))

    async def start(self) -> None:
        cfg = self.config
        self.runner = web.AppRunner(
            self.app, access_log=None, keepalive_timeout=cfg.idle_timeout, handle_signals=False
        )
        await self.runner.setup()
        if cfg.port is not None:
            site = web.TCPSite(self.runner, cfg.listen, cfg.port, reuse_address=True)
            await site.start()
            self.ports["http"] = _bound_port(site)
        if cfg.tls_cert and cfg.tls_key:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(cfg.tls_cert, cfg.tls_key)
            tls = web.TCPSite(self.runner, cfg.listen, cfg.tls_port or 0, ssl_context=ctx)
            await tls.start()
            self.ports["https"] = _bound_port(tls)
        if cfg.socket_path is not None:
            cfg.socket_path.unlink(missing_ok=True)
            await web.UnixSite(self.runner, str(cfg.socket_path)).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


def _bound_port(site: web.TCPSite) -> int:
    server = site._server  # aiohttp keeps the asyncio server here
    assert server is not None
    sockets = getattr(server, "sockets", None) or []
    return int(sockets[0].getsockname()[1]) if sockets else 0


def _xml(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="text/xml", charset="utf-8")


def _json(body: bytes) -> web.Response:
    resp = web.Response(body=body)
    resp.headers["Content-Type"] = "application/json"
    return resp
