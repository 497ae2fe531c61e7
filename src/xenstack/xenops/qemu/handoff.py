"""Live migration of a QEMU domain between two toolstacks (two hosts of a pool, each its
own ``xenstack serve``): the three steps of :class:`~xenstack.xenops.interface.Backend`'s
cross-backend migration, and the source's release.

- **receive** (destination): QEMU starts with ``-incoming defer`` on the same disks (this
  host's exports of them); the toolstack listens on a TCP port of its own and answers
  ``tcp:<address>:<port>/<token>``. The first connection that sends the token is handed
  to QEMU (QMP ``getfd`` then ``migrate-incoming fd:``): the stream goes from QEMU to QEMU
  over TCP, without a relay, whatever network namespaces the two QEMUs run in, and nobody
  else can feed the destination a state.
- **send** (source): the toolstack connects, sends the token and hands the socket to its
  QEMU (``migrate fd:``); once QEMU reports the migration completed the source is paused
  (``postmigrate``, its disks inactive: it writes no more) and leaves the backend's domains,
  kept aside until released. The answer carries QEMU's figures (downtime, total time).
- **finish** (destination): wait for the incoming side to complete, then ``cont`` (a VM that
  ran runs on).
- **release** (source, once the destination runs it): QEMU is ended. If the destination cannot
  run it, the master asks the source to ``receive`` and ``finish`` it back instead: the
  source QEMU continues where it paused.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import os
import secrets
import socket
import time
from dataclasses import dataclass
from typing import Any, Protocol

from ..interface import DomainInfo, DomainSpec, NoSuchDomain, OutOfMemory, XenopsError
from .domain import Domain
from .qmp import Monitor
from .suspend import MIGRATION_TIMEOUT, TUNING, wait_migration

TOKEN_BYTES = 32  # hex characters a sender writes before the stream


class Backend(Protocol):
    domains: dict[str, Domain]
    migrations: dict[str, dict[str, float]]
    incoming: dict[str, Incoming]
    departed: dict[str, Departed]

    def _qmp(self, dom: Domain) -> Monitor: ...

    def new_domid(self) -> int: ...

    def host_memory_free(self, host_id: str) -> int: ...

    def _run_dir(self, spec: DomainSpec, domid: int) -> Any: ...

    async def _make(self, dom: Domain, incoming: str) -> None: ...

    async def _wait_incoming(self, dom: Domain) -> None: ...

    async def _destroy(self, dom: Domain) -> None: ...

    async def _stop(self, dom: Domain, clean: bool, reboot: bool = False) -> None: ...


@dataclass(slots=True)
class Incoming:
    """A destination waiting for its stream."""

    dom: Domain
    listener: socket.socket
    accept: asyncio.Task[None]
    started: float


@dataclass(slots=True)
class Departed:
    """A source QEMU that sent its domain, paused until released or taken back."""

    dom: Domain
    was_running: bool


async def receive(backend: Backend, host_id: str, spec: DomainSpec, memory: int) -> str:
    if spec.vm_id in backend.departed:
        return ""  # taking back what it sent: the paused QEMU is still here
    if spec.vm_id in backend.domains or spec.vm_id in backend.incoming:
        raise XenopsError(f"VM {spec.vm_id} already has a domain here")
    free = backend.host_memory_free(host_id)
    if free < memory:
        raise OutOfMemory(memory, free)
    domid = backend.new_domid()
    dom = Domain(spec, host_id, domid, backend._run_dir(spec, domid), time.time(), state="paused")
    dom.vbds = [d.device for d in spec.disks]
    dom.vifs = [n.device for n in spec.nics]
    listener = socket.socket()
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        listener.setblocking(False)
        await backend._make(dom, incoming="defer")
    except BaseException:
        listener.close()
        await backend._destroy(dom)
        raise
    token = secrets.token_hex(TOKEN_BYTES // 2)
    task = asyncio.ensure_future(_accept(backend, dom, listener, token))
    backend.incoming[spec.vm_id] = Incoming(dom, listener, task, time.monotonic())
    port = listener.getsockname()[1]
    return f"tcp:127.0.0.1:{port}/{token}"


async def _accept(backend: Backend, dom: Domain, listener: socket.socket, token: str) -> None:
    """Hand QEMU the first connection that names ``token``."""
    loop = asyncio.get_running_loop()
    while True:
        conn, _ = await loop.sock_accept(listener)
        try:
            said = await asyncio.wait_for(_read(loop, conn, TOKEN_BYTES), 10.0)
        except (OSError, TimeoutError):
            conn.close()
            continue
        if not hmac.compare_digest(said, token.encode()):
            conn.close()
            continue
        try:
            qmp = backend._qmp(dom)
            qmp.send_fd(conn.fileno())
            await qmp.execute("getfd", {"fdname": "xs-migration"})
            # the disks are activated at ``cont``, once this host's exports have reopened
            # them as the source left them (see finish)
            late = [{"capability": "late-block-activate", "state": True}]
            await qmp.execute("migrate-set-capabilities", {"capabilities": late})
            await qmp.execute("migrate-incoming", {"uri": "fd:xs-migration"})
        finally:
            conn.close()
            listener.close()
        return


async def _read(loop: asyncio.AbstractEventLoop, conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = await loop.sock_recv(conn, n - len(data))
        if not chunk:
            raise OSError("closed before the token")
        data += chunk
    return data


def _parse(to: str) -> tuple[str, int, str]:
    try:
        where, token = to.removeprefix("tcp:").rsplit("/", 1)
        host, port = where.rsplit(":", 1)
        return host, int(port), token
    except ValueError:
        raise XenopsError(f"not a migration address: {to[:80]!r}") from None


async def send(backend: Backend, vm_id: str, to: str) -> dict[str, object]:
    dom = backend.domains.get(vm_id)
    if dom is None:
        raise NoSuchDomain(vm_id)
    host, port, token = _parse(to)
    loop = asyncio.get_running_loop()
    conn = await loop.run_in_executor(None, socket.create_connection, (host, port), 30.0)
    was_running = dom.state == "running"
    try:
        conn.sendall(token.encode())
        qmp = backend._qmp(dom)
        qmp.send_fd(conn.fileno())
        await qmp.execute("getfd", {"fdname": "xs-migration"})
    finally:
        conn.close()
    dom.expected = True  # the STOP at the end is the migration's
    try:
        await qmp.execute("migrate-set-parameters", TUNING)
        await qmp.execute("migrate", {"uri": "fd:xs-migration"})
        status = await wait_migration(backend, dom)
    except BaseException:
        dom.expected = False
        with contextlib.suppress(XenopsError):
            if was_running:
                await qmp.execute("cont")
        raise
    del backend.domains[vm_id]  # it left: paused here until released (or taken back)
    backend.departed[vm_id] = Departed(dom, was_running)
    return {
        "downtime_ms": float(status.get("downtime", 0)),
        "total_ms": float(status.get("total-time", 0)),
        "running": was_running,
    }


async def finish(backend: Backend, vm_id: str, state: dict[str, object]) -> DomainInfo:
    back = backend.departed.pop(vm_id, None)
    if back is not None and vm_id not in backend.incoming:
        return await _take_back(backend, back)  # the destination failed: run on here
    entry = backend.incoming.pop(vm_id, None)
    if entry is None:
        raise NoSuchDomain(vm_id)
    dom = entry.dom
    try:
        await asyncio.wait_for(entry.accept, MIGRATION_TIMEOUT)
        await backend._wait_incoming(dom)
        if state.get("running", True):
            await backend._qmp(dom).execute("cont")
            dom.state = "running"
    except BaseException:
        entry.listener.close()
        await backend._destroy(dom)
        raise
    dom.memory_actual = dom.spec.memory_dynamic_max
    backend.domains[vm_id] = dom
    dom.save()
    stats = {
        "downtime_ms": float(state.get("downtime_ms", 0)),  # type: ignore[arg-type]
        "total_ms": float(state.get("total_ms", 0)),  # type: ignore[arg-type]
        "wall_s": time.monotonic() - entry.started,
    }
    backend.migrations[vm_id] = stats
    with open(os.path.join(dom.run.path, "migration.json"), "w") as f:
        json.dump(stats, f)  # what QEMU measured, for people and benchmarks
    return dom.info()


async def _take_back(backend: Backend, back: Departed) -> DomainInfo:
    dom = back.dom
    if back.was_running:
        await backend._qmp(dom).execute("cont")
        dom.state = "running"
    dom.expected = False
    backend.domains[dom.vm_id] = dom
    return dom.info()


async def abort(backend: Backend, vm_id: str) -> None:
    """Drop a destination that got nothing (the send failed)."""
    entry = backend.incoming.pop(vm_id, None)
    if entry is not None:
        entry.accept.cancel()
        entry.listener.close()
        await backend._destroy(entry.dom)


async def release(backend: Backend, vm_id: str) -> None:
    """End the source QEMU: killed, since its disks are inactive (flushed when the
    migration completed) and their exports closed (a ``quit`` would wait out the NBD
    client's reconnect delay)."""
    back = backend.departed.pop(vm_id, None)
    if back is not None:
        await backend._destroy(back.dom)
