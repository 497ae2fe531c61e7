"""The disk streaming endpoints: ``PUT /import_raw_vdi`` and ``GET /export_raw_vdi``.

Wire only: the query (``session_id``, ``vdi``, ``format``, ``task_id``; the session may also come
as a ``session_id`` cookie), status codes as XAPI sends them (401 for a bad session, 403 for a role
without the permission, 404 for an unknown object, 400 for other refusals), and the byte pumps
between the socket and a worker thread. Every download route is served through
:func:`guard_routes`, which checks its declared permission first. Imports are uploads, served off
the connection by :mod:`.upload` (answered ``200`` before the body, as XAPI does); exports are an
aiohttp route. What may be transferred and how bytes become a VHD is the ``opener``'s business (see
``impl/storage/vdi_transfer.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any, Protocol

from aiohttp import web

from ..errors import ApiError
from .upload import (
    Body,
    Upload,
    UploadOpener,
    refusal_headers,
    refusal_reason,
    refusal_status,
)

log = logging.getLogger(__name__)


class Transfer(Protocol):
    task: str

    async def claim(self) -> None: ...
    def import_from(self, source: Any) -> int: ...
    async def durable(self) -> None: ...
    def export_size(self) -> tuple[int, Iterator[bytes | bytearray | memoryview]]: ...
    def close(self, error: ApiError | None) -> None: ...


# opener(query, writing, declared length of an upload or None)
Opener = Callable[[Mapping[str, str], bool, int | None], Awaitable[Transfer]]


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _http_error(err: ApiError) -> web.Response:
    status = refusal_status(err)
    return web.Response(
        status=status,
        reason=refusal_reason(status),
        text=" ".join(err.description) + "\n",
        headers=refusal_headers(err),
    )


AsyncCheck = Callable[[Mapping[str, str]], Awaitable[None]]


def guard_routes(
    routes: list[tuple[str, str, Handler]], checker: Callable[[str, str], AsyncCheck]
) -> list[Any]:
    """Each route behind the check of its declared permission (a check that may wait: a pool
    member asks its master about a session); LookupError for a route that has none (so none
    can be served unchecked)."""
    return [(m, p, _guarded(checker(m, p), h)) for m, p, h in routes]


def _guarded(check: AsyncCheck, handler: Handler) -> Handler:
    async def checked(request: web.Request) -> web.StreamResponse:
        try:
            await check(_query(request))
        except ApiError as err:
            response = _http_error(err)
            response.force_close()
            return response
        return await handler(request)

    return checked


def _query(request: web.Request) -> dict[str, str]:
    query = dict(request.query)
    if "session_id" not in query and "session_id" in request.cookies:
        query["session_id"] = request.cookies["session_id"]
    return query


class DiskUpload:
    """``PUT /import_raw_vdi`` as an :class:`~.upload.Upload`: the copy runs in a thread."""

    def __init__(self, transfer: Transfer) -> None:
        self.transfer = transfer

    @property
    def headers(self) -> dict[str, str]:
        return {"task-id": str(self.transfer.task)}

    async def claim(self) -> None:
        await self.transfer.claim()

    async def receive(self, body: Body) -> None:
        worker = asyncio.ensure_future(asyncio.to_thread(self.transfer.import_from, body))
        try:
            await asyncio.shield(worker)
        except asyncio.CancelledError:
            body.fail(ConnectionAbortedError("the server is stopping"))
            with contextlib.suppress(Exception):
                await worker  # it stops at its next read; the disk is closed after it
            raise
        except ApiError:
            raise
        except Exception as exc:
            log.warning("disk import failed: %s", exc)
            raise ApiError("VDI_IO_ERROR", []) from exc
        await self.transfer.durable()  # the task says success only once the VDI is on disk

    def close(self, error: ApiError | None) -> None:
        self.transfer.close(error)


def disk_upload(opener: Opener) -> UploadOpener:
    """The opener of ``PUT /import_raw_vdi`` uploads."""

    async def open_upload(query: Mapping[str, str], length: int | None) -> Upload:
        return DiskUpload(await opener(query, True, length))

    return open_upload


def disk_routes(opener: Opener) -> list[tuple[str, str, Any]]:
    """The aiohttp route of ``GET /export_raw_vdi``, bound to ``opener``."""

    async def export_raw_vdi(request: web.Request) -> web.StreamResponse:
        try:
            transfer = await opener(_query(request), False, None)
        except ApiError as err:
            return _http_error(err)
        error: ApiError | None = None
        try:
            size, chunks = await asyncio.to_thread(transfer.export_size)
            response = web.StreamResponse(status=200)
            response.content_type = "application/octet-stream"
            response.content_length = size
            response.force_close()  # as XAPI: the connection ends with the transfer
            await response.prepare(request)
            await _pump(chunks, response, size)
            await response.write_eof()
            return response
        except Exception:
            error = ApiError("VDI_IO_ERROR", [])
            raise
        finally:
            transfer.close(error)

    return [("GET", "/export_raw_vdi", export_raw_vdi)]


async def _pump(
    chunks: Iterator[bytes | bytearray | memoryview],
    response: web.StreamResponse,
    size: int | None = None,
) -> None:
    """Write chunks as a worker thread produces them, reading one ahead.

    Before the last bytes go out the producer is run to its end (it closes the disk and
    releases the VDI), so a client that has the whole body finds the VDI free.
    """
    pending = asyncio.ensure_future(asyncio.to_thread(next, chunks, None))
    sent = 0
    try:
        while True:
            chunk = await pending
            if chunk is None:
                return
            pending = asyncio.ensure_future(asyncio.to_thread(next, chunks, None))
            sent += len(chunk)
            if size is not None and sent >= size:
                await asyncio.shield(pending)
            await response.write(chunk)
    finally:
        if not pending.done():
            pending.cancel()
        else:
            pending.exception() if not pending.cancelled() else None
