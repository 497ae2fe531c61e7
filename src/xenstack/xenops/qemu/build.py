"""Building a QEMU domain: memory check, run directory, taps, QEMU (``-S``), its QMP session
and agent channel, then (a resume's) memory image, the balloon target and ``cont``. The
marks of where the time went go into the run directory's ``timings.json``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import time
from typing import Any, Protocol

from ..interface import (
    BootFailed,
    DiskSpec,
    DomainInfo,
    DomainSpec,
    OutOfMemory,
    PortHooks,
    XenopsError,
)
from . import cmdline, process
from .agent import GuestChannel
from .cmdline import RunDir
from .domain import Domain
from .qmp import Monitor
from .suspend import finish_image, spawn


class Builder(Protocol):
    """What building needs of :class:`.backend.QemuBackend`."""

    domains: dict[str, Domain]
    hooks: PortHooks
    binary: str
    runas: str
    netns: str

    def host_memory_free(self, host_id: str) -> int: ...

    def new_domid(self) -> int: ...

    def _run_dir(self, spec: DomainSpec, domid: int) -> RunDir: ...

    def _qmp(self, dom: Domain) -> Monitor: ...

    async def _destroy(self, dom: Domain) -> None: ...

    async def accel(self) -> str: ...

    def grant(self, socket_path: str) -> None: ...

    def _event(self, dom: Domain, name: str, data: dict[str, Any]) -> None: ...

    def report_guest_key(self, vm_id: str, domid: int, key: str, value: str | None) -> None: ...


async def build(
    backend: Builder,
    host_id: str,
    spec: DomainSpec,
    paused: bool,
    incoming: str = "",
    image: DiskSpec | None = None,
) -> DomainInfo:
    """Make the domain: taps, run directory, QEMU, monitor and agent; undo all on failure."""
    began = time.time()
    needed = spec.memory_static_max + spec.memory_overhead
    free = backend.host_memory_free(host_id)
    if free < needed:
        raise OutOfMemory(needed, free)
    domid = backend.new_domid()
    run = backend._run_dir(spec, domid)
    dom = Domain(spec, host_id, domid, run, time.time(), state="paused")
    dom.vbds = [d.device for d in spec.disks]
    dom.vifs = [n.device for n in spec.nics]
    backend.domains[spec.vm_id] = dom
    marks = dom.timings
    marks["build"] = began
    if image is not None:
        incoming = "defer"  # the memory image comes through a pipe (see .suspend.pump)
    # a resume's helper starts beside QEMU: it reads the image while QEMU starts
    spawning = asyncio.ensure_future(spawn("load", image)) if image is not None else None
    helper = None
    try:
        await make(backend, dom, incoming)
        if spawning is not None:
            helper = await spawning
            await helper.hand(backend, dom)
            await backend._qmp(dom).execute("migrate-incoming", {"uri": "fd:xs-image"})
            marks["handed"] = time.time()
            await wait_incoming(backend, dom)
            marks["incoming_done"] = time.time()
            await finish_image(helper.task)
            marks["image_done"] = time.time()
        elif incoming:
            await wait_incoming(backend, dom)
            marks["incoming_done"] = time.time()
        await balloon(backend, dom, spec.memory_dynamic_max)
        if not paused:
            await backend._qmp(dom).execute("cont")
            dom.state = "running"
        marks["cont"] = time.time()
    except BaseException:
        if spawning is not None and helper is None:
            with contextlib.suppress(BaseException):  # not cancelled: the child would leak
                helper = await spawning
        if helper is not None:
            await helper.abort()
        await backend._destroy(dom)
        raise
    _write_timings(dom)
    return dom.info()


async def make(backend: Builder, dom: Domain, incoming: str) -> None:
    run, spec = dom.run, dom.spec
    for path in (spec.boot.kernel, spec.boot.ramdisk):
        if path and not os.path.isfile(path):
            raise BootFailed(spec.vm_id, f"cannot read {path}")
    shutil.rmtree(run.path, ignore_errors=True)
    os.makedirs(run.path, mode=0o700)
    if spec.boot.firmware == "uefi" and not spec.boot.kernel:
        shutil.copyfile(cmdline.OVMF_VARS, run.nvram)
    for nic in spec.nics:
        await backend.hooks.vif_plug(
            spec.vm_id, dom.domid, nic, cmdline.tap_name(dom.domid, nic.device)
        )
    argv = cmdline.argv(
        spec, run, dom.domid, accel=await backend.accel(), binary=backend.binary,
        incoming=incoming, runas=backend.runas,
    )  # fmt: skip
    argv.insert(1, "-S")
    for disk in spec.disks:
        backend.grant(disk.nbd_socket)
    dom.save()
    dom.timings["launch"] = time.time()
    await process.launch(argv, run.log, backend.netns)
    dom.timings["launched"] = time.time()
    pid = process.read_pid(run.pidfile, run.path)
    if pid is None:
        raise process.QemuFailed("qemu exited as soon as it started")
    dom.pid = pid
    await attach(backend, dom)
    dom.timings["attached"] = time.time()


async def attach(backend: Builder, dom: Domain) -> None:
    """Open the domain's QMP session and agent channel."""
    dom.monitor = Monitor(dom.run.path, dom.run.qmp, lambda n, d: backend._event(dom, n, d))
    await dom.monitor.connect()
    macs = {n.mac.lower(): n.device for n in dom.spec.nics}
    dom.channel = GuestChannel(
        dom.vm_id, dom.domid, dom.run.agent, macs,
        lambda k, v: backend.report_guest_key(dom.vm_id, dom.domid, k, v),
    )  # fmt: skip
    dom.channel.start()
    for key, value in dom.spec.xenstore_data:
        dom.channel.write(key, value)


async def wait_incoming(backend: Builder, dom: Domain) -> None:
    qmp = backend._qmp(dom)
    delay = 0.002
    while True:
        status = await qmp.execute("query-status")
        if status["status"] not in ("inmigrate",):
            break
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.02)
    mig = await qmp.execute("query-migrate")
    if mig.get("status") == "failed":
        raise XenopsError(f"restoring the memory image failed: {mig.get('error-desc', '')}")


async def balloon(backend: Builder, dom: Domain, target: int) -> None:
    """At start: ask for ``target`` (the guest inflates its balloon as it boots, and
    BALLOON_CHANGE events then give the real figure)."""
    static = max(dom.spec.memory_static_max, dom.spec.memory_dynamic_max)
    dom.memory_actual = min(target, static)
    if target < static:
        await backend._qmp(dom).execute("balloon", {"value": int(target)})


def _write_timings(dom: Domain) -> None:
    """Where a build's time went (wall clock marks), for people and benchmarks."""
    with contextlib.suppress(OSError), open(os.path.join(dom.run.path, "timings.json"), "w") as f:
        json.dump(dom.timings, f)
