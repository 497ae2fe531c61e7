"""The disk streaming endpoints: ``PUT /import_raw_vdi`` and ``GET /export_raw_vdi``.

Wire only: the query (``session_id``, ``vdi``, ``format``, ``task_id``; the session may also
come as a ``session_id`` cookie), status codes as XAPI sends them (403 for a bad session, 404
for an unknown object, 400 for other refusals, 500 when the copy fails), and the byte pumps
between the socket and a worker thread. What may be transferred and how bytes become a VHD
is the ``opener``'s business (see ``impl/vdi_transfer.py``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any, Protocol

from aiohttp import web

from ..errors import ApiError

log = logging.getLogger(__name__)


class Transfer(Protocol):
    def import_from(self, source: Any) -> int: ...
    def export_size(self) -> tuple[int, Iterator[bytes | bytearray | memoryview]]: ...
    def close(self, error: ApiError | None) -> None: ...


Opener = Callable[[Mapping[str, str], bool], Awaitable[Transfer]]
_STATUS = {"SESSION_INVALID": 403, "HANDLE_INVALID": 404, "VDI_IN_USE": 409}


def _http_error(err: ApiError) -> web.Response:
    status = _STATUS.get(err.code, 400)
    return web.Response(status=status, text=" ".join(err.description) + "\n")


def _query(request: web.Request) -> dict[str, str]:
    query = dict(request.query)
    if "session_id" not in query and "session_id" in request.cookies:
        query["session_id"] = request.cookies["session_id"]
    return query


class _SocketSource:
    """A blocking ``read(n)``/``readinto(buf)`` over the request body, for the worker thread.

    The body is fetched by the event loop in large chunks (lists of the pieces the socket
    gave), one chunk ahead of the reader, so the network and the disk writes overlap, and
    ``readinto`` copies each byte once.
    """

    CHUNK = 4 * 1024 * 1024

    def __init__(self, request: web.Request, loop: asyncio.AbstractEventLoop) -> None:
        self.content = request.content
        self.loop = loop
        self._pending: concurrent.futures.Future[list[bytes]] | None = None
        self._parts: list[memoryview] = []
        self._eof = False
        self._task: asyncio.Task[list[bytes]] | None = None

    async def _read(self, size: int) -> list[bytes]:
        parts: list[bytes] = []
        while size > 0:
            chunk = await self.content.read(size)
            if not chunk:
                break
            parts.append(chunk)
            size -= len(chunk)
        return parts

    def _fetch(self) -> concurrent.futures.Future[list[bytes]]:
        """Start reading the next chunk on the loop (called from the worker thread)."""
        result: concurrent.futures.Future[list[bytes]] = concurrent.futures.Future()

        def done(task: asyncio.Task[list[bytes]]) -> None:
            if task.cancelled():
                result.cancel()
            elif task.exception() is not None:
                result.set_exception(task.exception())
            else:
                result.set_result(task.result())

        def spawn() -> None:
            self._task = self.loop.create_task(self._read(self.CHUNK))
            self._task.add_done_callback(done)

        self.loop.call_soon_threadsafe(spawn)
        return result

    async def stop(self) -> None:
        """Stop a read-ahead still waiting for data (the worker is done with the body)."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _take(self, size: int) -> memoryview:
        """Up to ``size`` bytes of the body (empty at its end), waiting for them if needed."""
        if not self._parts:
            if self._eof:
                return memoryview(b"")
            parts = (self._pending or self._fetch()).result()
            self._pending = self._fetch() if parts else None
            if not parts:
                self._eof = True
                return memoryview(b"")
            self._parts = [memoryview(p) for p in parts]
        head = self._parts[0]
        if len(head) <= size:
            return self._parts.pop(0)
        self._parts[0] = head[size:]
        return head[:size]

    def read(self, size: int, /) -> bytes:
        return bytes(self._take(size))

    def readinto(self, out: memoryview) -> int:
        view = self._take(len(out))
        out[: len(view)] = view
        return len(view)


def disk_routes(opener: Opener) -> list[tuple[str, str, Any]]:
    """The aiohttp routes of the two endpoints, bound to ``opener``."""

    async def import_raw_vdi(request: web.Request) -> web.StreamResponse:
        try:
            transfer = await opener(_query(request), True)
        except ApiError as err:
            return _http_error(err)
        source = _SocketSource(request, asyncio.get_running_loop())
        try:
            await asyncio.to_thread(transfer.import_from, source)
        except ApiError as err:
            await source.stop()
            transfer.close(err)
            return _http_error(err)
        except Exception as exc:
            await source.stop()
            log.warning("disk import failed: %s", exc)
            transfer.close(ApiError("VDI_IO_ERROR", []))
            return web.Response(status=500, text=f"{exc}\n")
        await source.stop()
        transfer.close(None)
        return web.Response(status=200)

    async def export_raw_vdi(request: web.Request) -> web.StreamResponse:
        try:
            transfer = await opener(_query(request), False)
        except ApiError as err:
            return _http_error(err)
        error: ApiError | None = None
        try:
            size, chunks = await asyncio.to_thread(transfer.export_size)
            response = web.StreamResponse(status=200)
            response.content_type = "application/octet-stream"
            response.content_length = size
            await response.prepare(request)
            await _pump(chunks, response)
            await response.write_eof()
            return response
        except Exception:
            error = ApiError("VDI_IO_ERROR", [])
            raise
        finally:
            transfer.close(error)

    return [("PUT", "/import_raw_vdi", import_raw_vdi), ("GET", "/export_raw_vdi", export_raw_vdi)]


async def _pump(
    chunks: Iterator[bytes | bytearray | memoryview], response: web.StreamResponse
) -> None:
    """Write chunks as a worker thread produces them, reading one ahead."""
    pending = asyncio.ensure_future(asyncio.to_thread(next, chunks, None))
    try:
        while True:
            chunk = await pending
            if chunk is None:
                return
            pending = asyncio.ensure_future(asyncio.to_thread(next, chunks, None))
            await response.write(chunk)
    finally:
        if not pending.done():
            pending.cancel()
        else:
            pending.exception() if not pending.cancelled() else None
