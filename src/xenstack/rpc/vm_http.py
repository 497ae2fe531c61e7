"""The VM streaming endpoints: ``GET /export`` (an XVA) and ``PUT /import``.

Wire only, like :mod:`.disk_http` (whose body reader, pump and status mapping are reused):
the ``opener`` checks the request and returns the transfer; errors before any byte is sent
become the status XAPI uses (403 bad session, 404 unknown object, 400 otherwise). An accepted
import is answered ``200`` (with its ``task-id``) before its body is read, as XAPI does; a
failure afterwards, like one in the middle of an export, is recorded by the task.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any, Protocol

from aiohttp import web

from ..errors import ApiError
from .disk_http import _http_error, _pump, _query
from .upload import Body, Upload, UploadOpener

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


def vm_routes(export: ExportOpener) -> list[tuple[str, str, Any]]:
    """The aiohttp route of ``GET /export``."""

    async def get_export(request: web.Request) -> web.StreamResponse:
        try:
            transfer = await export(_query(request))
        except ApiError as err:
            return _refusal(err)
        error: ApiError | None = None
        try:
            response = web.StreamResponse(status=200, headers=transfer.headers)
            response.content_type = "application/octet-stream"
            response.force_close()  # as XAPI: the connection ends with the transfer
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

    return [("GET", "/export", get_export)]


class VmUpload:
    """``PUT /import`` as an :class:`~.upload.Upload`."""

    def __init__(self, transfer: Import) -> None:
        self.transfer = transfer

    @property
    def headers(self) -> dict[str, str]:
        return self.transfer.headers

    async def claim(self) -> None:
        pass  # the import makes new objects: nothing to take first

    async def receive(self, body: Body) -> None:
        try:
            await self.transfer.run(body)
        except ApiError:
            raise
        except Exception as exc:
            log.warning("VM import failed: %s", exc)
            raise ApiError("IMPORT_ERROR", [f"{type(exc).__name__}: {exc}"]) from exc

    def close(self, error: ApiError | None) -> None:
        self.transfer.close(error)


def vm_upload(opener: ImportOpener) -> UploadOpener:
    """The opener of ``PUT /import`` uploads."""

    async def open_upload(query: Mapping[str, str], length: int | None) -> Upload:
        return VmUpload(await opener(query))

    return open_upload


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
