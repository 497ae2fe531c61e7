"""The VM streaming endpoints: ``GET /export`` (an XVA) and ``PUT /import``.

Wire only, like :mod:`.disk_http` (whose body reader, pump and status mapping are reused):
the ``opener`` checks the request and returns the transfer; errors before any byte is sent
become the status XAPI uses (403 bad session, 404 unknown object, 400 otherwise). A failure
in the middle of an export can only cut the stream: the task records the error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any, Protocol

from aiohttp import web

from ..errors import ApiError
from .disk_http import _http_error, _pump, _query, _SocketSource

log = logging.getLogger(__name__)


class Export(Protocol):
    @property
    def headers(self) -> dict[str, str]: ...

    def chunks(self) -> Iterator[bytes | bytearray | memoryview]: ...
    def close(self, error: ApiError | None) -> None: ...


class Import(Protocol):
    @property
    def headers(self) -> dict[str, str]: ...

    async def run(self, source: Any) -> None: ...
    def close(self, error: ApiError | None) -> None: ...


ExportOpener = Callable[[Mapping[str, str]], Awaitable[Export]]
ImportOpener = Callable[[Mapping[str, str]], Awaitable[Import]]


def vm_routes(export: ExportOpener, import_: ImportOpener) -> list[tuple[str, str, Any]]:
    """The aiohttp routes of the two endpoints."""

    async def get_export(request: web.Request) -> web.StreamResponse:
        try:
            transfer = await export(_query(request))
        except ApiError as err:
            return _refusal(err)
        error: ApiError | None = None
        try:
            response = web.StreamResponse(status=200, headers=transfer.headers)
            response.content_type = "application/octet-stream"
            await response.prepare(request)
            await _pump(transfer.chunks(), response)
            await response.write_eof()
            return response
        except BaseException as exc:
            log.warning("VM export failed: %s", exc)
            error = _failure(exc)
            raise
        finally:
            transfer.close(error)

    async def put_import(request: web.Request) -> web.StreamResponse:
        try:
            transfer = await import_(_query(request))
        except ApiError as err:
            return _refusal(err)
        source = _SocketSource(request, asyncio.get_running_loop())
        error: ApiError | None = None
        try:
            await transfer.run(source)
        except ApiError as err:
            error = err
        except Exception as exc:
            log.warning("VM import failed: %s", exc)
            error = ApiError("IMPORT_ERROR", [f"{type(exc).__name__}: {exc}"])
        finally:
            await source.stop()
            transfer.close(error)
        response = _http_error(error) if error is not None else web.Response(status=200)
        response.headers.update(transfer.headers)
        return response

    return [("GET", "/export", get_export), ("PUT", "/import", put_import)]


def _refusal(err: ApiError) -> web.Response:
    """An unknown uuid is a missing object too (404), as for a bad ref."""
    response = _http_error(err)
    if err.code == "UUID_INVALID":
        response.set_status(404)
    return response


def _failure(exc: BaseException) -> ApiError:
    if isinstance(exc, ApiError):
        return exc
    return ApiError("INTERNAL_ERROR", [f"{type(exc).__name__}: {exc}"])
