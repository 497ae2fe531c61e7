"""The pool's database in etcd: the :class:`~.persistence.Persistence` of hosts served with
``--etcd URL[,URL...]``.

Every committed change goes to etcd in one transaction per batch (group commit): the writer
takes everything submitted since its last transaction, so eight clients writing at once share
one round trip through etcd's quorum, and a write is answered only once etcd has acknowledged
it, i.e. once a majority of its members hold it. A master's loss therefore loses nothing that
was answered (where XAPI flushes its database every few seconds).

Keys, under ``/xenstack/``:

- ``db/<namespace>/obj/<ref>``: one object (``{"c": class, "r": row}`` as JSON);
- ``db/<namespace>/meta/<key>``: the database's meta (users, the pool secret, members...);
- ``db/<namespace>/master``: who is the master of the pool of that database (a lease's key);
- ``host/<host id>/<key>``: what one host keeps of itself (:data:`HOST_KEYS`: its ref, its
  role, the master it follows, its pool's database and its ref there, the database it serves).

A standalone host's database has its own namespace (its host id); a member keeps its own
until it becomes master, and then serves the pool's. The master holds the ``master`` key
under a lease it renews; every write it makes is conditional on still holding it (the key's
create revision), so a master that lost its lease can no longer write: no split brain.

etcd's client here is :mod:`etcd3aio` (gRPC, asyncio), chosen by measurement over
``etcd3gw`` (the JSON gateway): about 2.5 times the transactions per second on this machine.
It runs on an event loop of its own, in its own thread, as the SQLite writer does, so the
synchronous parts of the interface (load, meta) can wait for it from anywhere.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from etcd3aio import Etcd3Client
from etcd3aio.kv import KVService, prefix_range_end

from ..errors import ApiError
from ..idl.model import CLASSES
from .persistence import Change, _datetime_fields, _dump

log = logging.getLogger(__name__)

T = TypeVar("T")
ROOT = "/xenstack"
HOST_KEYS = frozenset(
    {
        *("this_host", "pool_role", "master_address", "pool_db", "pool_host", "serve_db"),
        *("master_lease", "ha_armed", "ha_fenced"),
    }
)
MAX_OPS = 120  # etcd refuses a transaction of more than 128 operations by default
MAX_BYTES = 1 << 20  # ... or of more than 1.5 MiB
RETRY_FIRST, RETRY_MAX = 0.05, 1.0
DEPTH = 2  # transactions of the writer in flight at once (etcd may reorder concurrent ones)
LINGER_MAX = 0.004  # seconds a batch may wait for the writers just answered
MAX_LINGER_WRITES = 64
CALL_TIMEOUT = 10.0


class LostMastership(Exception):
    """A write was refused: this host no longer holds the pool's master key."""


def endpoints(urls: str) -> list[str]:
    """``http://h:p,h2:p2`` -> ``["h:p", "h2:p2"]``."""
    found = []
    for url in urls.split(","):
        url = url.strip()
        for scheme in ("http://", "https://"):
            url = url.removeprefix(scheme)
        if url:
            found.append(url.rstrip("/"))
    if not found:
        raise ValueError("no etcd endpoint given")
    return found


class EtcdLoop:
    """An etcd client on its own event loop and thread; ``run`` waits for a coroutine."""

    def __init__(self, urls: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="etcd", daemon=True)
        self.thread.start()
        self.endpoints = endpoints(urls)
        self.client = Etcd3Client(self.endpoints, rpc_max_attempts=2)
        self.run(self.client.connect())
        # one client per member, for lease renewals: they must not wait on a member that
        # is unreachable (the shared client's round robin notices only after seconds)
        self.singles: list[Etcd3Client | None] = [None] * len(self.endpoints)

    @property
    def kv(self) -> KVService:
        assert self.client.kv is not None
        return self.client.kv

    def run(self, coro: Awaitable[T], timeout: float = CALL_TIMEOUT) -> T:
        future = asyncio.run_coroutine_threadsafe(_timed(coro, timeout), self.loop)
        return future.result()

    def spawn(self, coro: Awaitable[T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(_as_coro(coro), self.loop)

    async def keepalive(self, lease_id: int, within: float) -> int:
        """Renew ``lease_id`` through every member at once; the first answer within
        ``within`` seconds wins (the TTL left; 0: the lease is gone)."""
        for i, client in enumerate(self.singles):
            if client is None:
                client = self.singles[i] = Etcd3Client([self.endpoints[i]], rpc_max_attempts=1)
                await client.connect()
        tries = [
            asyncio.ensure_future(_keepalive(c, lease_id)) for c in self.singles if c is not None
        ]
        try:
            for done in asyncio.as_completed(tries, timeout=within):
                with contextlib.suppress(Exception):
                    return await done
        except TimeoutError:
            pass
        finally:
            for t in tries:
                t.cancel()
        raise ConnectionError("no etcd member renewed the lease in time")

    def close(self) -> None:
        for single in self.singles:
            if single is not None:
                with contextlib.suppress(Exception):
                    self.run(single.close(), 2)
        with contextlib.suppress(Exception):
            self.run(self.client.close(), 5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


async def _as_coro(aw: Awaitable[T]) -> T:
    return await aw


async def _timed(aw: Awaitable[T], timeout: float) -> T:
    return await asyncio.wait_for(_as_coro(aw), timeout)


@dataclass(slots=True)
class _Unit:
    """One transaction of the writer: its generation (0 for a chunk that is not a batch's
    last), its operations, the version of ``seq`` it expects, and its state."""

    gen: int
    ops: list[Any]
    version: int
    writes: int = 0  # the commits it carries (a batch's last chunk)
    task: asyncio.Future[bool] | None = None
    done: bool = False
    behind: bool = False  # came before its predecessor: send again once that one is in


class EtcdPersistence:
    """The database of ``namespace`` in etcd; host-own keys under ``host_id``."""

    def __init__(self, urls: str, host_id: str, namespace: str | None = None) -> None:
        self.urls = urls
        self.host_id = host_id
        self.etcd = EtcdLoop(urls)
        self.host_prefix = f"{ROOT}/host/{host_id}/"
        self._host_meta = self._read_prefix(self.host_prefix)
        self.namespace = namespace or self._host_meta.get("serve_db") or host_id
        self.prefix = f"{ROOT}/db/{self.namespace}/"
        self._meta = self._read_prefix(self.prefix + "meta/")
        self.fence: int = 0  # create revision of our master key; 0: writes unconditional
        self.on_lost: Callable[[], object] | None = None
        self._cond = threading.Condition()
        self._queue: list[tuple[int, list[Change]]] = []
        self._submitted_gen = 0
        self._durable_gen = 0
        self._waiters: list[tuple[int, asyncio.Future[None], asyncio.AbstractEventLoop]] = []
        self._error: BaseException | None = None
        self._lost = False
        self._closing = False
        self._revision = 0
        self._expect = 1  # writes the last acknowledged batch carried (see _linger)
        seq = self.etcd.run(self.etcd.kv.get(self.prefix + "seq"))
        self._next_version = int(seq.kvs[0].version) if seq.kvs else 0
        self._wake = asyncio.Event()
        self._writer = self.etcd.spawn(self._pipeline())

    # ---- keys --------------------------------------------------------------------------

    @property
    def master_key(self) -> str:
        return self.prefix + "master"

    def _read_prefix(self, prefix: str) -> dict[str, str]:
        reply = self.etcd.run(self.etcd.kv.get(prefix, prefix_range_end(prefix)))
        self._revision = max(getattr(self, "_revision", 0), int(reply.header.revision))
        return {kv.key.decode()[len(prefix) :]: kv.value.decode() for kv in reply.kvs}

    # ---- Persistence -------------------------------------------------------------------

    def load(self) -> Iterator[tuple[str, str, dict[str, Any]]]:
        from ..idl.types import DateTime

        dt_fields = _datetime_fields()
        prefix = self.prefix + "obj/"
        reply = self.etcd.run(self.etcd.kv.get(prefix, prefix_range_end(prefix)), 60)
        self._revision = max(self._revision, int(reply.header.revision))
        for kv in reply.kvs:
            doc = orjson.loads(kv.value)
            cls, row = doc["c"], doc["r"]
            if cls not in CLASSES:
                continue
            for name in dt_fields.get(cls, ()):
                if name in row:
                    row[name] = DateTime(row[name])
            yield cls, kv.key.decode()[len(prefix) :], row

    def generation(self) -> int:
        stored = self._meta.get("generation")
        return max(int(stored) if stored else 0, self._revision)

    def submit(self, generation: int, changes: list[Change]) -> None:
        with self._cond:
            self._submitted_gen = generation
            self._queue.append((generation, changes))
        self.etcd.loop.call_soon_threadsafe(self._wake.set)

    async def durable(self, generation: int) -> None:
        with self._cond:
            if self._lost:
                raise _lost_error()
            generation = min(generation, self._submitted_gen)
            if generation <= self._durable_gen:
                return
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append((generation, fut, asyncio.get_running_loop()))
        await fut

    def failure(self) -> ApiError | None:
        if self._lost:
            return _lost_error()
        error = self._error
        return None if error is None else _etcd_error(error)

    def get_meta(self, key: str) -> str | None:
        if key in HOST_KEYS:
            return self._host_meta.get(key)
        return self._meta.get(key)

    def set_meta(self, key: str, value: str) -> None:
        if key in HOST_KEYS:
            self.etcd.run(self.etcd.kv.put(self.host_prefix + key, value))
            self._host_meta[key] = value
        else:
            self.etcd.run(self._txn([KVService.txn_op_put(self.prefix + "meta/" + key, value)]))
            self._meta[key] = value

    def close(self) -> None:
        with self._cond:
            self._closing = True
        self.etcd.loop.call_soon_threadsafe(self._wake.set)
        with contextlib.suppress(Exception):
            self._writer.result(10)
        self.etcd.close()

    # ---- the writer --------------------------------------------------------------------

    async def _txn(self, ops: list[Any]) -> None:
        compare = []
        if self.fence:
            compare = [KVService.txn_compare_create_revision(self.master_key, self.fence)]
        reply = await self.etcd.kv.txn(compare, ops)
        if not reply.succeeded:
            raise LostMastership(self.master_key)

    def _ops(self, batch: list[tuple[int, list[Change]]]) -> list[list[Any]]:
        """The batch as chunks of etcd operations, the last change of a ref winning."""
        last: dict[str, Any] = {}
        for _, changes in batch:
            for cls, ref, row in changes:
                key = self.prefix + "obj/" + ref
                last.pop(key, None)
                last[key] = None if row is None else _dump({"c": cls, "r": row})
        chunks: list[list[Any]] = [[]]
        size = 0
        for key, blob in last.items():
            if len(chunks[-1]) >= MAX_OPS or size > MAX_BYTES:
                chunks.append([])
                size = 0
            if blob is None:
                chunks[-1].append(KVService.txn_op_delete(key))
            else:
                chunks[-1].append(KVService.txn_op_put(key, blob))
                size += len(blob)
        generation = str(batch[-1][0])
        chunks[-1].append(KVService.txn_op_put(self.prefix + "meta/generation", generation))
        return chunks

    async def _pipeline(self) -> None:
        """The writer, on etcd's loop: up to :data:`DEPTH` transactions in flight, in order.

        Each unit of work (a batch, or a chunk of a large one) is a transaction that also
        bumps the ``seq`` key and holds only if ``seq`` has the version the unit before it
        left; a unit that overtook its predecessor fails that check and is sent again once
        the predecessor is in, and one sent again after an unknown outcome (a timeout) that
        had in fact been applied is known by ``seq`` being past it. So transactions apply
        in submission order while several are on the wire.
        """
        units: collections.deque[_Unit] = collections.deque()
        delay = 0.0
        while True:
            if not any(u.task is not None for u in units):
                await self._linger()
            with self._cond:
                batch, self._queue = self._queue, []
                closing = self._closing
            if batch:
                for i, ops in enumerate(chunks := self._ops(batch)):
                    last = i == len(chunks) - 1
                    gen = batch[-1][0] if last else 0
                    units.append(_Unit(gen, ops, self._next_version, len(batch) if last else 0))
                    self._next_version += 1
            if not units:
                if closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            for i, unit in enumerate(list(units)[:DEPTH]):
                if unit.task is None and (not unit.behind or i == 0):
                    unit.task = asyncio.ensure_future(self._send(unit))
            running: list[asyncio.Future[Any]] = [
                u.task for u in units if u.task is not None and not u.task.done()
            ]
            if running and not any(u.task is not None and u.task.done() for u in units):
                waker: asyncio.Future[Any] = asyncio.ensure_future(self._wake.wait())
                await asyncio.wait([*running, waker], return_when=asyncio.FIRST_COMPLETED)
                waker.cancel()
                self._wake.clear()
            failed = self._settle(units)
            if failed is not None:
                if isinstance(failed, LostMastership):
                    self._lose(failed)
                    return
                self._fail(failed)
                delay = min(max(2 * delay, RETRY_FIRST), RETRY_MAX)
                await asyncio.sleep(delay)
            else:
                delay = 0.0

    async def _linger(self) -> None:
        """Let a batch fill while its writers are still sending: the writers of the batch
        just acknowledged were answered and are likely to write again, so wait (up to
        :data:`LINGER_MAX`) until as many writes wait as that batch carried. Fewer, larger
        transactions cost etcd less per write than many small ones, and a lone writer
        (one write acknowledged) does not wait."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LINGER_MAX
        while True:
            with self._cond:
                size = len(self._queue)
            if size == 0 or size >= self._expect:
                return
            left = deadline - loop.time()
            if left <= 0:
                self._expect = max(1, size)  # fewer came back: expect as many next time
                return
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), left)

    def _settle(self, units: collections.deque[_Unit]) -> BaseException | None:
        """Take in the finished sends: release what is in, in order; the first failure."""
        failure: BaseException | None = None
        for unit in units:
            if unit.task is None or not unit.task.done():
                continue
            task, unit.task = unit.task, None
            error = task.exception()
            if error is not None:
                failure = failure or error
                unit.behind = False
            elif task.result():
                unit.done = True
            else:
                unit.behind = True
        released = 0
        while units and units[0].done:
            unit = units.popleft()
            released = max(released, unit.gen)
            if unit.writes:
                self._expect = min(unit.writes, MAX_LINGER_WRITES)
        if released:
            with self._cond:
                self._error = None
            self._release(released)
        return failure

    async def _send(self, unit: _Unit) -> bool:
        """One unit's transaction; True once it is applied, False if it came too early."""
        seq = self.prefix + "seq"
        compare = [KVService.txn_compare_version(seq, unit.version)]
        failure = [KVService.txn_op_get(seq)]
        if self.fence:
            compare.append(KVService.txn_compare_create_revision(self.master_key, self.fence))
            failure.append(KVService.txn_op_get(self.master_key))
        ops = [*unit.ops, KVService.txn_op_put(seq, str(unit.gen))]
        reply = await self.etcd.kv.txn(compare, ops, failure, timeout=CALL_TIMEOUT)
        if reply.succeeded:
            return True
        got = reply.responses[0].response_range.kvs
        version = int(got[0].version) if got else 0
        if self.fence:
            held = reply.responses[1].response_range.kvs
            if not held or int(held[0].create_revision) != self.fence:
                raise LostMastership(self.master_key)
        return version > unit.version  # past it: applied before (an unknown outcome)

    def _fail(self, exc: BaseException) -> None:
        with self._cond:
            self._error = exc
            waiters, self._waiters = self._waiters, []
        for _, fut, loop in waiters:
            loop.call_soon_threadsafe(_resolve, fut, _etcd_error(exc))

    def _lose(self, exc: BaseException) -> None:
        log.error("etcd: this host is no longer the pool's master (%s)", exc)
        with self._cond:
            self._lost = True
            waiters, self._waiters = self._waiters, []
        for _, fut, loop in waiters:
            loop.call_soon_threadsafe(_resolve, fut, _lost_error())
        if self.on_lost is not None:
            self.on_lost()

    def _release(self, generation: int) -> None:
        with self._cond:
            self._durable_gen = max(self._durable_gen, generation)
            ready = [w for w in self._waiters if w[0] <= self._durable_gen]
            self._waiters = [w for w in self._waiters if w[0] > self._durable_gen]
        for _, fut, loop in ready:
            loop.call_soon_threadsafe(_resolve, fut, None)


def _etcd_error(exc: BaseException) -> ApiError:
    return ApiError("INTERNAL_ERROR", [f"database: etcd: {type(exc).__name__}: {exc}"])


def _lost_error() -> ApiError:
    return ApiError("INTERNAL_ERROR", ["database: this host is no longer the pool master"])


def _resolve(fut: asyncio.Future[None], error: ApiError | None) -> None:
    if fut.done():
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(None)


class Lease:
    """The master key of a pool's database, held under an etcd lease this host renews.

    ``campaign`` takes the key if nobody holds it (or keeps it if it is ours already, from
    before a restart); ``renew`` sends one keep-alive and answers the TTL etcd has left (0:
    the lease is gone, and the key with it); ``holder`` reads who holds the key now.
    """

    def __init__(self, etcd: EtcdLoop, key: str, ttl: int) -> None:
        self.etcd = etcd
        self.key = key
        self.ttl = max(2, int(ttl))
        self.lease_id = 0
        self.revision = 0  # the key's create revision while we hold it

    def holder(self) -> tuple[str, int, int] | None:
        """(value, lease id, create revision) of the key, or None."""
        reply = self.etcd.run(self.etcd.kv.get(self.key), 5)
        if not reply.kvs:
            return None
        kv = reply.kvs[0]
        return kv.value.decode(), int(kv.lease), int(kv.create_revision)

    def campaign(self, value: str, lease_id: int = 0) -> bool:
        """Take the key for ``value``; True if we hold it now."""
        held = self.holder()
        if held is not None:
            if lease_id and held[1] == lease_id and self.renew_id(lease_id) > 0:
                self.lease_id, self.revision = lease_id, held[2]
                return True
            return False
        grant = self.etcd.run(self.etcd.client.lease.grant(self.ttl), 5)  # type: ignore[union-attr]
        lease = int(grant.ID)
        put = KVService.txn_op_put(self.key, value, lease=lease)
        absent = KVService.txn_compare_create_revision(self.key, 0)
        reply = self.etcd.run(self.etcd.kv.txn([absent], [put]), 5)
        if not reply.succeeded:
            with contextlib.suppress(Exception):
                self.etcd.run(self.etcd.client.lease.revoke(lease), 5)  # type: ignore[union-attr]
            return False
        self.lease_id, self.revision = lease, int(reply.header.revision)
        return True

    def renew_id(self, lease_id: int) -> int:
        within = max(0.3, self.ttl / 5)
        return self.etcd.run(self.etcd.keepalive(lease_id, within), within + 2)

    def renew(self) -> int:
        return self.renew_id(self.lease_id) if self.lease_id else 0

    def resign(self) -> None:
        if self.lease_id:
            with contextlib.suppress(Exception):
                self.etcd.run(self.etcd.client.lease.revoke(self.lease_id), 5)  # type: ignore[union-attr]
            self.lease_id = 0


class LeaseCarrier:
    """Keeps a lease alive from a thread and client of its own, until stopped or the lease is
    gone: a host that won the master key renews it so while its toolstack restarts to serve
    as master (a restart outlasts a short lease on a loaded machine, and the key lost
    meanwhile would pass to another host, which would restart in turn...)."""

    def __init__(self, urls: str, lease_id: int, ttl: int) -> None:
        self._stopped = threading.Event()
        args = (urls, lease_id, max(2, int(ttl)))
        self.thread = threading.Thread(target=self._run, args=args, name="etcd-lease", daemon=True)
        self.thread.start()

    def _run(self, urls: str, lease_id: int, ttl: int) -> None:
        etcd = EtcdLoop(urls)
        lease = Lease(etcd, "", ttl)
        lease.lease_id = lease_id
        try:
            failed = False
            while not self._stopped.wait(renew_pause(ttl, failed)):
                try:
                    if lease.renew() == 0:
                        return
                    failed = False
                except Exception:
                    failed = True
        finally:
            etcd.close()

    def stop(self) -> None:
        self._stopped.set()


def renew_pause(ttl: float, failed: bool) -> float:
    """The pause before a lease's next renewal: a quarter of its TTL after a renewal, so that
    three more tries fit before it expires; a twentieth after one that failed (each try may
    take a fifth of the TTL), so a keep-alive lost on a loaded machine costs a retry, not the
    lease."""
    return ttl / 20 if failed else ttl / 4


async def _keepalive(client: Etcd3Client, lease_id: int) -> int:
    lease = client.lease
    assert lease is not None
    stream = lease.keep_alive(lease_id)
    try:
        async for response in stream:
            return max(0, int(response.TTL))
    finally:
        stream.cancel()
    raise ConnectionError("etcd closed the keep-alive stream without an answer")
