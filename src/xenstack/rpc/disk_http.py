"""The disk streaming endpoints: ``PUT /import_raw_vdi`` and ``GET /export_raw_vdi``.

Wire only: the query (``session_id``, ``vdi``, ``format``, ``task_id``; the session may also
come as a ``session_id`` cookie), status codes as XAPI sends them (403 for a bad session, 404
for an unknown object, 400 for other refusals, 500 when the copy fails), and the byte pumps
between the socket and a worker thread. What may be transferred and how bytes become a VHD
is the ``opener``'s business (see ``impl/vdi_transfer.py``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
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
_EOF = EOFError("end of the body")  # the marker of a complete body
_STATUS = {"SESSION_INVALID": 403, "HANDLE_INVALID": 404, "VDI_IN_USE": 409}


def _http_error(err: ApiError) -> web.Response:
    status = _STATUS.get(err.code, 400)
    return web.Response(status=status, text=" ".join(err.description) + "\n")


def _query(request: web.Request) -> dict[str, str]:
    query = dict(request.query)
    if "session_id" not in query and "session_id" in request.cookies:
        query["session_id"] = request.cookies["session_id"]
    return query


class _BodyPipe:
    """The request body as a blocking ``read``/``readinto`` source for one worker thread.

    The event loop pumps the body (:meth:`pump`) into a queue of the chunks aiohttp hands
    over, as they come, while the worker copies them out: the network and the disk writes
    overlap, each byte is copied once, and the loop wakes the worker only when the queue
    was empty. The queue is bounded (``LIMIT`` bytes): past it the pump waits, aiohttp
    stops reading the socket and TCP slows the client. The end of the body is EOF only if
    it is complete; a lost connection or a stopped pump is an error the worker sees.
    """

    LIMIT = 32 * 1024 * 1024

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._chunks: collections.deque[memoryview] = collections.deque()
        self._queued = 0
        self._lock = threading.Lock()
        self._filled = threading.Condition(self._lock)
        self._end: BaseException | None = None  # _EOF when the body is complete
        self._room = asyncio.Event()
        self._want_room = False

    async def pump(self, content: Any) -> None:
        """Move the body into the queue (on the loop) until its end, an error or cancel."""
        end: BaseException = _EOF
        try:
            async for chunk, _ in content.iter_chunks():  # as received: never joined
                if not chunk:
                    continue
                with self._lock:
                    self._chunks.append(memoryview(chunk))
                    self._queued += len(chunk)
                    self._filled.notify()
                    full = self._queued > self.LIMIT
                    if full:
                        self._want_room = True
                        self._room.clear()
                if full:
                    await self._room.wait()
        except BaseException as exc:
            end = exc if isinstance(exc, Exception) else ConnectionAbortedError("body abandoned")
            raise
        finally:
            with self._lock:
                self._end = end
                self._filled.notify()

    def _take(self, size: int) -> memoryview:
        """Up to ``size`` bytes of the body (empty at its end), waiting for them if needed."""
        with self._lock:
            while not self._chunks:
                if self._end is _EOF:
                    return memoryview(b"")
                if self._end is not None:
                    raise self._end
                self._filled.wait()
            head = self._chunks[0]
            if len(head) <= size:
                self._chunks.popleft()
            else:
                self._chunks[0], head = head[size:], head[:size]
            self._queued -= len(head)
            if self._want_room and self._queued <= self.LIMIT // 2:
                self._want_room = False
                self.loop.call_soon_threadsafe(self._room.set)
            return head

    def read(self, size: int, /) -> bytes:
        return bytes(self._take(size))

    def readinto(self, out: memoryview) -> int:
        view = self._take(len(out))
        out[: len(view)] = view
        return len(view)


class _SocketSource(_BodyPipe):
    """A :class:`_BodyPipe` already pumping ``request``'s body; ``stop`` ends the pump."""

    def __init__(self, request: web.Request, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self._pump = loop.create_task(self.pump(request.content))

    async def stop(self) -> None:
        await _stop(self._pump)


def disk_routes(opener: Opener) -> list[tuple[str, str, Any]]:
    """The aiohttp routes of the two endpoints, bound to ``opener``."""

    async def import_raw_vdi(request: web.Request) -> web.StreamResponse:
        try:
            transfer = await opener(_query(request), True)
        except ApiError as err:
            return _http_error(err)
        body = _BodyPipe(asyncio.get_running_loop())
        pump = asyncio.ensure_future(body.pump(request.content))
        try:
            await _in_worker(transfer, body, pump)
        except ApiError as err:
            transfer.close(err)
            return _http_error(err)
        except Exception as exc:
            log.warning("disk import failed: %s", exc)
            transfer.close(ApiError("VDI_IO_ERROR", []))
            return web.Response(status=500, text=f"{exc}\n")
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
            await _pump(chunks, response, size)
            await response.write_eof()
            return response
        except Exception:
            error = ApiError("VDI_IO_ERROR", [])
            raise
        finally:
            transfer.close(error)

    return [("PUT", "/import_raw_vdi", import_raw_vdi), ("GET", "/export_raw_vdi", export_raw_vdi)]


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


async def _stop(task: asyncio.Future[None]) -> None:
    """Cancel the body pump if it still runs (the worker is done with the body)."""
    if not task.done():
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task


async def _in_worker(transfer: Transfer, body: _BodyPipe, pump: asyncio.Future[None]) -> None:
    """Run the import in a thread while ``pump`` feeds it; the pump ends with it.

    If the handler is cancelled, the worker (which cannot be) sees the body end in an
    error, and the transfer is closed as failed once the worker returns.
    """
    worker = asyncio.ensure_future(asyncio.to_thread(transfer.import_from, body))
    try:
        await asyncio.shield(worker)
    except asyncio.CancelledError:
        pump.cancel()
        worker.add_done_callback(lambda _: transfer.close(ApiError("VDI_IO_ERROR", [])))
        raise
    finally:
        await _stop(pump)
