"""Uploads (``PUT /import_raw_vdi``, ``PUT /import``) served straight off the connection.

As XAPI serves them: once the request is accepted (session, object, format), the answer
``200`` with the ``task-id`` goes out before the body is read; the body then streams into the
import, and the connection closes when the import ends. The task holds the outcome. Clients
rely on this: Xen Orchestra probes with a request whose body never comes, and sends streams
of unknown length under a huge Content-Length, waiting for the answer before it has sent
them. (A client that asks ``Expect: 100-continue`` gets ``100 Continue`` instead, and the
``200`` at the end, as HTTP wants.)

The body goes from the HTTP parser to the worker that writes the disk: no framework buffer
in between, one copy, and nothing received is lost when the client hangs up after sending.
A refused upload is answered with XAPI's status (401 bad session, 403 a role without the
handler's permission, 404 unknown object, 400 otherwise) and its body is discarded.

Every upload path is served through :func:`guard_uploads`, which checks the session and role
against the path's declared permission (the api layer's ``rbac``) before the opener runs: a
path without a declaration cannot be served.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

from ..errors import ApiError

log = logging.getLogger(__name__)


class Connection(Protocol):
    """The connection an upload arrives on (``protocol.RpcProtocol``, which imports this)."""

    transport: asyncio.Transport | None
    loop: asyncio.AbstractEventLoop


_STATUS = {
    "SESSION_INVALID": 401,  # XAPI: Unauthorised, with a Basic challenge
    "RBAC_PERMISSION_DENIED": 403,
    "HANDLE_INVALID": 404,
    "UUID_INVALID": 404,
    "VDI_IN_USE": 409,
}
_REASONS = {
    400: "Bad Request",
    401: "Unauthorised",  # as XAPI spells it
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
}
DRAIN_SECONDS = 10.0  # how long the rest of a body is read and dropped after its upload ends


def plain_response(
    status: int, reason: str, body: bytes, headers: Mapping[str, str] | None = None
) -> bytes:
    """A complete ``text/plain`` answer that ends the connection."""
    extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    head = (
        f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: text/plain\r\n"
        f"{extra}Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def refusal_status(err: ApiError) -> int:
    """The HTTP status XAPI answers a refused transfer with."""
    return _STATUS.get(err.code, 400)


def refusal_reason(status: int) -> str:
    return _REASONS.get(status, "Error")


def refusal_headers(err: ApiError) -> dict[str, str]:
    """The headers of a refusal: a bad session is challenged, as XAPI's 401 is."""
    if refusal_status(err) == 401:
        return {"WWW-Authenticate": 'Basic realm="xapi"'}
    return {}


class Upload(Protocol):
    """One accepted upload, as an opener returns it."""

    @property
    def headers(self) -> dict[str, str]: ...  # of the answer: ``task-id``

    async def claim(self) -> None: ...  # take what the body goes into, once it starts; ApiError
    async def receive(self, body: Body) -> None: ...  # the import; errors as ApiError
    def close(self, error: ApiError | None) -> None: ...  # always: settles the task


# opener(query, declared body length or None): the accepted upload, or ApiError
UploadOpener = Callable[[Mapping[str, str], int | None], Awaitable[Upload]]
# check(query): None, or ApiError SESSION_INVALID / RBAC_PERMISSION_DENIED
Check = Callable[[Mapping[str, str]], None]
# checker(method, path): the check of that handler's declared permission; LookupError when it
# has none (the policy is the api layer's: see api/rbac.py)
Checker = Callable[[str, str], Check]


def guard_uploads(
    uploads: Mapping[bytes, UploadOpener], checker: Checker
) -> dict[bytes, UploadOpener]:
    """Each ``PUT`` path's opener behind the check of its declared permission; LookupError
    for a path that has none."""
    return {path: _guarded(checker("PUT", path.decode()), opener)
            for path, opener in uploads.items()}  # fmt: skip


def _guarded(check: Check, opener: UploadOpener) -> UploadOpener:
    async def open_upload(query: Mapping[str, str], length: int | None) -> Upload:
        check(query)
        return await opener(query, length)

    return open_upload


class Body:
    """A request body as a blocking ``read``/``readinto`` source for one worker thread.

    The connection feeds the chunks the HTTP parser hands over (on the event loop); the
    worker copies them out. Past ``LIMIT`` queued bytes the connection stops reading the
    socket, and TCP slows the client. The end is EOF only if the body is complete; a lost
    connection is an error the worker sees once it has had every byte that did arrive.
    """

    LIMIT = 32 * 1024 * 1024

    def __init__(
        self, loop: asyncio.AbstractEventLoop, pause: Callable[[], None], resume: Callable[[], None]
    ) -> None:
        self.loop, self._pause, self._resume = loop, pause, resume
        self._chunks: collections.deque[memoryview] = collections.deque()
        self._queued = 0
        self._received = 0
        self._paused = False
        self._filled = threading.Condition(threading.Lock())
        self._end: BaseException | None = None  # EOFError when complete
        self.started = asyncio.Event()  # the first bytes, the end, or a failure

    @property
    def complete(self) -> bool:
        return isinstance(self._end, EOFError)

    @property
    def abandoned(self) -> bool:
        """Failed before a single byte came."""
        return self._end is not None and not self.complete and not self._received

    # ---- the loop's side ---------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        if not data or self._end is not None:
            return
        with self._filled:
            self._chunks.append(memoryview(data))
            self._queued += len(data)
            self._received += len(data)
            self._filled.notify()
            pause = self._queued > self.LIMIT and not self._paused
            self._paused = self._paused or pause
        if pause:
            self._pause()
        self.started.set()

    def finish(self) -> None:
        self._stop(EOFError("end of the body"))

    def fail(self, exc: BaseException) -> None:
        self._stop(exc)

    def drop(self) -> None:
        """Nobody reads on: forget what is queued, take no more, and let the socket flow."""
        with self._filled:
            self._chunks.clear()
            self._queued = 0
            if self._end is None:
                self._end = ConnectionAbortedError("the upload ended")
            self._filled.notify()
            resume, self._paused = self._paused, False
        if resume:
            self._resume()
        self.started.set()

    def _stop(self, end: BaseException) -> None:
        with self._filled:
            if self._end is None:
                self._end = end
            self._filled.notify()
        self.started.set()

    # ---- the worker's side -------------------------------------------------------------

    def _take(self, size: int) -> memoryview:
        """Up to ``size`` bytes (empty at the end of a complete body), waiting for them."""
        with self._filled:
            while not self._chunks:
                if isinstance(self._end, EOFError):
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
            resume = self._paused and self._queued <= self.LIMIT // 2
            if resume:
                self._paused = False
        if resume:
            self.loop.call_soon_threadsafe(self._resume)
        return head

    def read(self, size: int, /) -> bytes:
        return bytes(self._take(size))

    def readinto(self, out: memoryview) -> int:
        view = self._take(len(out))
        out[: len(view)] = view
        return len(view)


class UploadRequest:
    """One upload on a connection: open, answer, feed the import, close."""

    def __init__(
        self,
        conn: Connection,
        opener: UploadOpener,
        query: dict[str, str],
        length: int | None,
        expect: bool,
    ) -> None:
        transport = conn.transport
        assert transport is not None
        self.conn, self.transport, self.expect = conn, transport, expect
        self.body = Body(conn.loop, transport.pause_reading, transport.resume_reading)
        self.draining = False
        self.lost_connection = False
        self.task = conn.loop.create_task(self._run(opener, query, length))

    async def _run(self, opener: UploadOpener, query: dict[str, str], length: int | None) -> None:
        try:
            upload = await opener(query, length)
        except ApiError as err:
            self._refuse(err)
            return
        except Exception as exc:
            log.exception("upload not opened")
            self._refuse(ApiError("INTERNAL_ERROR", [f"{type(exc).__name__}: {exc}"]))
            return
        error: ApiError | None = ApiError("INTERNAL_ERROR", ["the upload was abandoned"])
        try:
            if self.expect:
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # the 200 comes last
            else:
                self._accepted(upload.headers)  # as XAPI: before the body
            await self.body.started.wait()
            if self.body.abandoned:  # a probe, or a client gone: take nothing
                raise ApiError("VDI_IO_ERROR", [])
            await upload.claim()
            await upload.receive(self.body)
            error = None
        except ApiError as err:
            error = err
        except Exception as exc:
            log.exception("upload failed")
            error = ApiError("INTERNAL_ERROR", [f"{type(exc).__name__}: {exc}"])
        finally:
            self.body.drop()  # a worker still reading stops; what still comes is dropped
            upload.close(error)
            if self.expect:
                self._accepted(upload.headers)
            self._end_connection(waiting_for_body=False)

    def _accepted(self, headers: dict[str, str]) -> None:
        fields = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        self.transport.write(
            (
                "HTTP/1.1 200 OK\r\nConnection: close\r\nCache-Control: no-cache, no-store\r\n"
                f"Content-Type: application/octet-stream\r\n{fields}\r\n"
            ).encode()
        )

    def _refuse(self, err: ApiError) -> None:
        """Answer the refusal; the body that still comes is read and dropped."""
        status = refusal_status(err)
        text = (" ".join(err.description) + "\n").encode()
        headers = refusal_headers(err)
        reason = refusal_reason(status)
        self.transport.write(plain_response(status, reason, text, headers))
        self.body.drop()
        self._end_connection(waiting_for_body=self.expect)

    def _end_connection(self, *, waiting_for_body: bool) -> None:
        """Close now if the client has sent its whole body, left, or waits to be told to send
        it; otherwise read and drop the rest for a while first, so that it can finish sending
        and read the answer."""
        if self.body.complete or self.lost_connection or waiting_for_body:
            self.transport.close()
        else:
            self.draining = True
            self.conn.loop.call_later(DRAIN_SECONDS, self.transport.close)

    # ---- from the connection -----------------------------------------------------------

    def feed(self, data: bytes) -> None:
        if not self.draining:
            self.body.feed(data)

    def finish(self) -> None:
        self.body.finish()
        if self.draining:
            self.transport.close()

    def lost(self) -> None:
        self.lost_connection = True
        self.body.fail(ConnectionResetError("the client hung up"))


def upload_query(url: bytes, head: bytes) -> tuple[dict[str, str], int | None, bool]:
    """The query of an upload (the session may come as a cookie), its Content-Length (None
    when chunked) and whether it expects ``100 Continue``."""
    query = dict(urllib.parse.parse_qsl(url.partition(b"?")[2].decode("latin-1")))
    expect, length = False, None
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length" and value.strip().isdigit():
            length = int(value.strip())
        elif name == b"expect":
            expect = value.strip().lower() == b"100-continue"
        elif name == b"cookie" and "session_id" not in query:
            for part in value.decode("latin-1").split(";"):
                key, _, val = part.strip().partition("=")
                if key == "session_id":
                    query["session_id"] = val
    return query, length, expect
