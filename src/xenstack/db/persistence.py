"""Where committed rows go: an interface, an in-memory stand-in and SQLite (WAL, group commit).

The store hands each commit's changed rows to :meth:`Persistence.submit` and awaits
:meth:`Persistence.durable` before the client is answered, so an acknowledged write has reached
the disk. The SQLite writer runs in its own thread and commits every change waiting for it in
one transaction, so many clients share one fsync.

A failed write (a full disk, an I/O error) loses nothing and stops nothing for good: the
writer keeps the batch and retries it, with everything submitted since, in one transaction
(after RETRY_FIRST seconds, doubling to RETRY_MAX, or at once when a new write arrives), and
writes work again as soon as the disk does. Meanwhile :meth:`Persistence.durable` fails with
INTERNAL_ERROR ``database: <cause>`` (``database: no space left on device`` for a full disk)
when the attempt that was to write its change fails, and :meth:`Persistence.failure` tells
so beforehand. A change whose write failed stays queued: it is written once the disk works.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import orjson

from ..errors import ApiError
from ..idl.model import CLASSES

RETRY_FIRST = 0.05  # seconds before a failed batch is written again; doubles each time...
RETRY_MAX = 1.0  # ...up to this
Change = tuple[str, str, dict[str, Any] | None]  # class, ref, row (None: deleted)


class Persistence(Protocol):
    """The contract a store backend keeps (SQLite here; a distributed store for pools)."""

    def load(self) -> Iterator[tuple[str, str, dict[str, Any]]]: ...

    def generation(self) -> int: ...

    def submit(self, generation: int, changes: list[Change]) -> None: ...

    async def durable(self, generation: int) -> None: ...

    def failure(self) -> ApiError | None:
        """The error writes fail with now (the last write failed), or None when all is well."""

    def get_meta(self, key: str) -> str | None: ...

    def set_meta(self, key: str, value: str) -> None: ...

    def close(self) -> None: ...


class MemoryPersistence:
    """Keeps nothing: for tests and throwaway simulated pools."""

    def __init__(self) -> None:
        self.meta: dict[str, str] = {}

    def load(self) -> Iterator[tuple[str, str, dict[str, Any]]]:
        return iter(())

    def generation(self) -> int:
        return 0

    def submit(self, generation: int, changes: list[Change]) -> None:
        pass

    async def durable(self, generation: int) -> None:
        pass

    def failure(self) -> ApiError | None:
        return None

    def get_meta(self, key: str) -> str | None:
        return self.meta.get(key)

    def set_meta(self, key: str, value: str) -> None:
        self.meta[key] = value

    def close(self) -> None:
        pass


_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    ref TEXT PRIMARY KEY, class TEXT NOT NULL, record BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
"""


def _datetime_fields() -> dict[str, tuple[str, ...]]:
    return {
        name: tuple(f.name for f in c.fields.values() if f.type.kind == "datetime")
        for name, c in CLASSES.items()
    }


class SqlitePersistence:
    """SQLite in WAL mode with synchronous=FULL; one writer thread does group commits."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn = self._connect()
        self._cond = threading.Condition()
        self._io = threading.Lock()  # one user of the connection at a time
        self._queue: list[tuple[int, list[Change]]] = []
        self._durable_gen = 0
        self._submitted_gen = 0
        self._waiters: list[tuple[int, asyncio.Future[None], asyncio.AbstractEventLoop]] = []
        self._closing = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._writer, name="sqlite-writer", daemon=True)
        self._thread.start()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript(_SCHEMA)
        return conn

    def load(self) -> Iterator[tuple[str, str, dict[str, Any]]]:
        from ..idl.types import DateTime

        dt_fields = _datetime_fields()
        for ref, cls, blob in self._conn.execute("SELECT ref, class, record FROM objects"):
            row = orjson.loads(blob)
            for name in dt_fields.get(cls, ()):
                if name in row:
                    row[name] = DateTime(row[name])
            yield cls, ref, row

    def generation(self) -> int:
        value = self.get_meta("generation")
        return int(value) if value else 0

    def submit(self, generation: int, changes: list[Change]) -> None:
        encoded = [(cls, ref, None if row is None else _dump(row)) for cls, ref, row in changes]
        with self._cond:
            self._submitted_gen = generation
            self._queue.append((generation, encoded))  # type: ignore[arg-type]
            self._cond.notify()

    async def durable(self, generation: int) -> None:
        with self._cond:
            generation = min(generation, self._submitted_gen)
            if generation <= self._durable_gen:
                return
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append((generation, fut, asyncio.get_running_loop()))
        await fut

    def failure(self) -> ApiError | None:
        error = self._error
        return None if error is None else failure_error(error)

    def _writer(self) -> None:
        delay = 0.0  # seconds to wait before retrying a failed batch (0: none failed)
        while True:
            with self._cond:
                if delay:
                    self._cond.wait(delay)  # a new write or close() retries sooner
                while not self._queue and not self._closing:
                    self._cond.wait()
                batch = list(self._queue)  # stays queued until written
                if not batch and self._closing:
                    return
            try:
                with self._io:
                    self._write(batch)
            except Exception as exc:  # the server must learn the disk failed; retry later
                self._fail(exc)
                if self._closing:
                    return  # nothing acknowledged is lost: the batch was never answered
                delay = min(max(2 * delay, RETRY_FIRST), RETRY_MAX)
                continue
            delay = 0.0
            with self._cond:
                del self._queue[: len(batch)]
                self._error = None
            self._release(batch[-1][0])

    def _write(self, batch: list[tuple[int, list[Any]]]) -> None:
        conn = self._conn
        try:
            conn.execute("BEGIN")
            for _, changes in batch:
                for cls, ref, blob in changes:
                    if blob is None:
                        conn.execute("DELETE FROM objects WHERE ref = ?", (ref,))
                    else:
                        conn.execute(
                            "INSERT OR REPLACE INTO objects VALUES (?, ?, ?)", (ref, cls, blob)
                        )
            generation = str(batch[-1][0])
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('generation', ?)", (generation,))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise

    def _fail(self, exc: BaseException) -> None:
        """Remember the failure and answer everyone waiting: their writes are not durable."""
        with self._cond:
            self._error = exc
            waiters, self._waiters = self._waiters, []
        for _, fut, loop in waiters:
            loop.call_soon_threadsafe(_resolve, fut, exc)

    def _release(self, generation: int) -> None:
        with self._cond:
            self._durable_gen = max(self._durable_gen, generation)
            ready = [w for w in self._waiters if w[0] <= self._durable_gen]
            self._waiters = [w for w in self._waiters if w[0] > self._durable_gen]
        for _, fut, loop in ready:
            loop.call_soon_threadsafe(_resolve, fut, None)

    def get_meta(self, key: str) -> str | None:
        with self._io:
            row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self._io:
            self._conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout=10)
        self._conn.close()


def _dump(row: dict[str, Any]) -> bytes:
    """A record as JSON; int-keyed maps (``(int -> float) map``) get string keys."""
    return orjson.dumps(row, option=orjson.OPT_NON_STR_KEYS)


def _no_space(exc: BaseException) -> bool:
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    if isinstance(exc, sqlite3.Error):
        return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or (
            "disk is full" in str(exc)
        )
    return False


def failure_error(exc: BaseException) -> ApiError:
    """What a write the disk refused answers: INTERNAL_ERROR ``database: <cause>``."""
    cause = "no space left on device" if _no_space(exc) else f"{type(exc).__name__}: {exc}"
    return ApiError("INTERNAL_ERROR", [f"database: {cause}"])


def _resolve(fut: asyncio.Future[None], error: BaseException | None) -> None:
    if fut.done():
        return
    if error is not None:
        fut.set_exception(failure_error(error))
    else:
        fut.set_result(None)
