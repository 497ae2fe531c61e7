"""Suspend, resume and live migration of QEMU domains.

Suspend stops the guest and streams its memory (``migrate fd:``, a pipe the toolstack
pumps, see :func:`pump`) into the suspend VDI through the VDI's NBD export (:mod:`.nbdio`);
resume builds the same domain with ``-incoming defer`` and reads it back the same way.
Live migration between two hosts of this backend starts
the destination QEMU with ``-incoming tcp:127.0.0.1:<port>`` beside the source (both open
the same NBD exports, which allow it) and moves the guest with QMP ``migrate``; the
downtime QEMU measured is kept in :attr:`QemuBackend.migrations`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import sys
import time
from typing import Any, Protocol

from ..interface import DiskSpec, DomainInfo, DomainSpec, XenopsError
from .cmdline import RunDir
from .domain import Domain
from .qmp import Monitor


class QemuBackend(Protocol):
    """What these operations need of :class:`.backend.QemuBackend`."""

    domains: dict[str, Domain]
    images: set[str]
    migrations: dict[str, dict[str, float]]

    def _qmp(self, dom: Domain) -> Monitor: ...

    def grant(self, socket_path: str) -> None: ...

    def new_domid(self) -> int: ...

    def _run_dir(self, spec: DomainSpec, domid: int) -> RunDir: ...

    async def _make(self, dom: Domain, incoming: str) -> None: ...

    async def _wait_incoming(self, dom: Domain) -> None: ...

    async def _destroy(self, dom: Domain) -> None: ...

    async def _stop(self, dom: Domain, clean: bool, reboot: bool = False) -> None: ...

    async def _build(
        self,
        host_id: str,
        spec: DomainSpec,
        paused: bool,
        incoming: str = "",
        image: DiskSpec | None = None,
    ) -> DomainInfo: ...


MIGRATION_TIMEOUT = 300.0
# QEMU's defaults throttle a live migration to 128 MiB/s and allow a 300 ms pause; the hosts
# of a pool have a faster link than that, and the guest's pause is what its users see
TUNING = {"max-bandwidth": 8 << 30, "downtime-limit": 20}
log = logging.getLogger(__name__)
# the helper runs as a script, isolated and without site (it imports only the standard
# library): its interpreter starts in about two thirds of the time ``-m`` takes
NBDIO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "nbdio.py")


async def pump(backend: QemuBackend, dom: Domain, verb: str, image: DiskSpec) -> Any:
    """Stream the memory image between QEMU and the VDI from this process: one end of a
    pipe goes to QEMU (QMP ``getfd``; the URI is ``fd:xs-image``), a helper moves the bytes
    to or from the VDI's NBD export: QEMU starts no helper of its own, so a deprivileged
    QEMU needs nothing it could not reach. Returns the helper's future."""
    helper = await spawn(verb, image)
    await helper.hand(backend, dom)
    return helper.task


class Helper:
    """The helper process of :func:`spawn`, and the end of its pipe that goes to QEMU."""

    def __init__(self, proc: asyncio.subprocess.Process, theirs: int) -> None:
        self.proc, self.theirs = proc, theirs
        self.task = asyncio.ensure_future(_helper(proc))

    async def hand(self, backend: HasMonitor, dom: Domain) -> None:
        """Give QEMU its end of the pipe (as ``xs-image``)."""
        qmp = backend._qmp(dom)
        try:
            qmp.send_fd(self.theirs)
            await qmp.execute("getfd", {"fdname": "xs-image"})
        except BaseException:
            await self.abort()
            raise
        finally:
            self._close()

    def _close(self) -> None:
        if self.theirs >= 0:
            os.close(self.theirs)
            self.theirs = -1

    async def abort(self) -> None:
        self._close()
        if self.proc.returncode is None:
            self.proc.kill()
        with contextlib.suppress(BaseException):
            await self.task


async def spawn(verb: str, image: DiskSpec) -> Helper:
    """Start the helper (it may run before QEMU does: a load connects to the export and
    fills the pipe meanwhile, hiding its interpreter's start-up behind QEMU's)."""
    if not image.nbd_socket:
        raise XenopsError("the suspend image has no NBD export")
    r, w = os.pipe()
    ours, theirs = (r, w) if verb == "save" else (w, r)
    # the bytes move in a helper process of the toolstack's (its own interpreter, so it
    # does not contend with the NBD server in this one), given the other end of the pipe
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-I", "-S", NBDIO, verb,
            image.nbd_socket, image.export,
            stdin=ours if verb == "save" else asyncio.subprocess.DEVNULL,
            stdout=ours if verb == "load" else asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
    except BaseException:
        os.close(theirs)
        raise
    finally:
        os.close(ours)
    return Helper(proc, theirs)


async def _helper(proc: asyncio.subprocess.Process) -> None:
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise XenopsError(f"the memory image: {err.decode(errors='replace').strip()[-500:]}")


async def finish_image(task: Any) -> None:
    await asyncio.wait_for(task, MIGRATION_TIMEOUT)


class HasMonitor(Protocol):
    def _qmp(self, dom: Domain) -> Monitor: ...


async def wait_migration(backend: HasMonitor, dom: Domain) -> dict[str, Any]:
    """Poll ``query-migrate`` until it completes; its last answer."""
    qmp = backend._qmp(dom)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + MIGRATION_TIMEOUT
    delay = 0.005
    while True:
        status: dict[str, Any] = await qmp.execute("query-migrate")
        state = status.get("status")
        if state == "completed":
            return status
        if state in ("failed", "cancelled"):
            raise XenopsError(f"migration {state}: {status.get('error-desc', '')}")
        if loop.time() > deadline:
            await qmp.execute("migrate_cancel")
            raise XenopsError("migration timed out")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.05)


async def suspend(backend: QemuBackend, dom: Domain, image: DiskSpec | None) -> int:
    if image is None:
        raise XenopsError("no suspend image to write into")
    qmp = backend._qmp(dom)
    backend.grant(image.nbd_socket)  # QEMU's exec: child writes it, as QEMU's user
    was_running = dom.state == "running"
    dom.expected = True  # the STOP below is ours
    await qmp.execute("stop")
    try:
        task = await pump(backend, dom, "save", image)
        await qmp.execute("migrate", {"uri": "fd:xs-image"})
        status = await wait_migration(backend, dom)
        await finish_image(task)
    except BaseException:
        if was_running:
            await qmp.execute("cont")
        dom.expected = False
        raise
    await backend._stop(dom, clean=False)
    backend.images.add(dom.vm_id)
    return int(status.get("ram", {}).get("total", 0))


async def checkpoint(backend: QemuBackend, dom: Domain, image: DiskSpec | None) -> int:
    """Save the memory of the live domain into ``image``; it goes on as it was.

    The guest is stopped while its memory streams out (a paused one stays paused, for the
    toolstack to snapshot its disks at the same instant); QEMU's ``cont`` takes back the
    disks a completed migration handed over."""
    if image is None:
        raise XenopsError("no checkpoint image to write into")
    qmp = backend._qmp(dom)
    backend.grant(image.nbd_socket)
    was_running = dom.state == "running"
    if was_running:
        await qmp.execute("stop")
        dom.state = "paused"
    try:
        task = await pump(backend, dom, "save", image)
        await qmp.execute("migrate", {"uri": "fd:xs-image"})
        status = await wait_migration(backend, dom)
        await finish_image(task)
    finally:
        if was_running:
            await qmp.execute("cont")
            dom.state = "running"
    return int(status.get("ram", {}).get("total", 0))


async def resume(
    backend: QemuBackend, host_id: str, spec: DomainSpec, image: DiskSpec, paused: bool
) -> DomainInfo:
    return await backend._build(host_id, spec, paused, image=image)


def _move_home(dom: Domain, home: str) -> None:
    """Give the migrated domain the run directory its source had (sockets follow: a Unix
    socket is found through its directory's inode, which a rename keeps)."""
    if os.path.exists(home) or dom.run.path == home:
        return
    os.rename(dom.run.path, home)
    dom.run = RunDir(home)
    if dom.channel is not None:
        dom.channel.path = dom.run.agent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def migrate(backend: QemuBackend, src: Domain, host_id: str, spec: DomainSpec) -> DomainInfo:
    """Move ``src`` live to ``host_id``: a new QEMU there, the old one ends."""
    started = time.monotonic()
    port = _free_port()
    domid = backend.new_domid()
    dst = Domain(spec, host_id, domid, backend._run_dir(spec, domid), src.start_time)
    dst.state = "paused"
    dst.vbds, dst.vifs = list(src.vbds), list(src.vifs)
    was_running = src.state == "running"  # the migration's last step stops the source
    try:
        await backend._make(dst, incoming=f"tcp:127.0.0.1:{port}")
        await backend._qmp(src).execute("migrate-set-parameters", TUNING)
        await backend._qmp(src).execute("migrate", {"uri": f"tcp:127.0.0.1:{port}"})
        status = await wait_migration(backend, src)
        await backend._wait_incoming(dst)
        if was_running:
            await backend._qmp(dst).execute("cont")
            dst.state = "running"
    except BaseException:
        await backend._destroy(dst)
        raise
    dst.memory_actual = src.memory_actual
    home = src.run.path
    await backend._stop(src, clean=False)
    backend.domains[spec.vm_id] = dst
    _move_home(dst, home)
    dst.save()
    stats = {
        "downtime_ms": float(status.get("downtime", 0)),
        "total_ms": float(status.get("total-time", 0)),
        "wall_s": time.monotonic() - started,
    }
    backend.migrations[spec.vm_id] = stats
    with open(os.path.join(dst.run.path, "migration.json"), "w") as f:
        json.dump(stats, f)  # what QEMU measured, for people and benchmarks
    log.info("VM %s migrated: downtime %.1f ms", spec.vm_id, stats["downtime_ms"])
    return dst.info()
