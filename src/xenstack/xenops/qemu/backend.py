"""The QEMU backend: every domain is a ``qemu-system-x86_64`` of its own.

A domain is built paused (``-S``), its QMP session and agent channel opened, ballooned to its
dynamic maximum, then let run: so nothing the guest says is missed. Every way a domain can
end is an exit of its QEMU (``-action reboot=shutdown,panic=shutdown``): the QMP events say
why (SHUTDOWN's ``reason``), and an end the toolstack did not ask for is reported to the exit
listener, which applies the VM's ``actions_after_*``. QEMU outlives the toolstack; a
restarted toolstack takes its domains back with :meth:`QemuBackend.adopt`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from dataclasses import dataclass, replace
from typing import Any

from ..interface import (
    Backend,
    BadDomainState,
    Capabilities,
    DiskSpec,
    DomainExists,
    DomainInfo,
    DomainSpec,
    DomainStats,
    HostSpec,
    MissingPvDrivers,
    NicSpec,
    NoSuchDomain,
    PortHooks,
    Unimplemented,
    UnknownHost,
    XenopsError,
)
from . import adoption, build, cmdline, devices, handoff, hostinfo, live, process
from . import runas as deprivilege
from . import stats as domain_stats
from .bridge import LinuxBridgeHooks
from .cmdline import RunDir
from .domain import Domain
from .qmp import Monitor
from .suspend import checkpoint, migrate, resume, suspend

log = logging.getLogger(__name__)

QEMU_CAPABILITIES = Capabilities(
    name="qemu",
    live_migration=True,
    suspend=True,
    pause=True,
    vcpu_hotplug=True,
    memory_ballooning=True,
    device_hotplug=True,
    max_vcpus=16,
    domain_types=("hvm", "pv", "pvh", "pv_in_pvh"),
    opens_disks=True,
    domains_outlive_toolstack=True,
)
CLEAN_SHUTDOWN_TIMEOUT = 120.0
HARD_SHUTDOWN_TIMEOUT = 30.0
EXIT_REASONS = {"guest-shutdown": "poweroff", "guest-reset": "reboot", "guest-panic": "crash"}


@dataclass(slots=True)
class _Host:
    spec: HostSpec


class QemuBackend(Backend):
    """Domains as QEMU processes, their files under ``<state>/run/qemu/``."""

    capabilities = QEMU_CAPABILITIES

    def __init__(
        self,
        state_dir: str,
        *,
        netns: str = "",
        hooks: PortHooks | None = None,
        binary: str = "qemu-system-x86_64",
        accel: str = "",
        runas: str = "",
    ) -> None:
        self.root = os.path.join(state_dir, "run", "qemu")
        self.netns = netns
        self.hooks: PortHooks = hooks or LinuxBridgeHooks(netns)
        self.binary = binary
        self.runas = runas
        self.state_dir = state_dir
        self._user: deprivilege.QemuUser | None = None
        self.hosts: dict[str, _Host] = {}
        self.domains: dict[str, Domain] = {}
        self.images: set[str] = set()  # VMs suspended into a VDI (the toolstack keeps it)
        self._accel = accel
        self._probe: asyncio.Task[str] | None = None
        self._next_domid = 1
        self.migrations: dict[str, dict[str, float]] = {}  # the last one of each VM
        self.incoming: dict[str, handoff.Incoming] = {}  # destinations of migrations
        self.departed: dict[str, handoff.Departed] = {}  # sources waiting for release
        self._background: set[asyncio.Task[None]] = set()
        self.stats: dict[str, DomainStats] = {}  # each domain's counters, read by refresh_stats
        self.facts = hostinfo.machine_facts()

    # ---- helpers -------------------------------------------------------------------------

    async def accel(self) -> str:
        """ "kvm" if it works here (probed once, with a timeout), else "tcg"."""
        cache = os.path.join(self.root, "accel")
        if not self._accel:
            with contextlib.suppress(OSError), open(cache) as f:
                self._accel = f.read().strip()
        if self._accel not in ("kvm", "tcg"):
            if self._probe is None:
                self._probe = asyncio.ensure_future(hostinfo.probe_kvm(self.binary))
            self._accel = await self._probe
            os.makedirs(self.root, mode=0o700, exist_ok=True)
            with open(cache, "w") as f:
                f.write(self._accel)
        return self._accel

    def grant(self, socket_path: str) -> None:
        """Let the deprivileged QEMU reach ``socket_path`` (see :mod:`.runas`)."""
        if self.runas:
            if self._user is None:
                self._user = deprivilege.ensure_user(self.runas)
            deprivilege.grant(self._user, socket_path, self.state_dir)

    def new_domid(self) -> int:
        domid, self._next_domid = self._next_domid, self._next_domid + 1
        return domid

    def _host(self, host_id: str) -> _Host:
        host = self.hosts.get(host_id)
        if host is None:
            raise UnknownHost(host_id)
        return host

    def _domain(self, vm_id: str) -> Domain:
        dom = self.domains.get(vm_id)
        if dom is None:
            raise NoSuchDomain(vm_id)
        return dom

    def _run_dir(self, spec: DomainSpec, domid: int) -> RunDir:
        name = spec.uuid or spec.vm_id.removeprefix("OpaqueRef:")
        path = os.path.join(self.root, name)
        if os.path.exists(path) and any(d.run.path == path for d in self.domains.values()):
            path = f"{path}~{domid}"  # a migration's destination beside its source
        if len(os.path.join(path, "serial.sock").encode()) > 107:
            path = os.path.join(self.root, name.split("-")[0] + f"~{domid}")
        return RunDir(path)

    def _used(self, host_id: str) -> int:
        return sum(
            d.spec.memory_static_max + d.spec.memory_overhead
            for d in self.domains.values()
            if d.host_id == host_id
        )

    # ---- HOST ----------------------------------------------------------------------------

    def host_add(self, spec: HostSpec) -> None:
        self.hosts[spec.host_id] = _Host(spec)

    def host_remove(self, host_id: str) -> None:
        if self.host_domains(host_id):
            raise BadDomainState(f"host {host_id} still runs domains")
        self.hosts.pop(host_id, None)

    def host_ids(self) -> list[str]:
        return list(self.hosts)

    def host_memory_free(self, host_id: str) -> int:
        """What the accounting leaves, but never more than the machine has available."""
        host = self._host(host_id)
        booked = host.spec.memory_total - host.spec.memory_reserved - self._used(host_id)
        return max(0, min(booked, hostinfo.memory_available()))

    def host_domains(self, host_id: str) -> list[DomainInfo]:
        self._host(host_id)
        return [d.info() for d in self.domains.values() if d.host_id == host_id]

    # ---- VM: start -----------------------------------------------------------------------

    def vm_info(self, vm_id: str) -> DomainInfo | None:
        dom = self.domains.get(vm_id)
        return dom.info() if dom is not None else None

    def vm_has_image(self, vm_id: str) -> bool:
        return vm_id in self.images

    async def vm_start(self, host_id: str, spec: DomainSpec, paused: bool) -> DomainInfo:
        if spec.vm_id in self.domains:
            raise DomainExists(spec.vm_id)
        return await self._build(host_id, spec, paused)

    async def _build(
        self,
        host_id: str,
        spec: DomainSpec,
        paused: bool,
        incoming: str = "",
        image: DiskSpec | None = None,
    ) -> DomainInfo:
        return await build.build(self, host_id, spec, paused, incoming, image)

    async def _make(self, dom: Domain, incoming: str) -> None:
        await build.make(self, dom, incoming)

    async def _attach(self, dom: Domain) -> None:
        await build.attach(self, dom)

    async def _wait_incoming(self, dom: Domain) -> None:
        await build.wait_incoming(self, dom)

    def _qmp(self, dom: Domain) -> Monitor:
        if dom.monitor is None:
            raise XenopsError(f"domain {dom.domid} has no QMP session")
        return dom.monitor

    # ---- the end of a domain -------------------------------------------------------------

    def _event(self, dom: Domain, name: str, data: dict[str, Any]) -> None:
        if name == "SHUTDOWN":
            dom.reason = str(data.get("reason", ""))
        elif name == "STOP" and dom.state == "running" and not dom.expected:
            dom.state = "paused"
        elif name == "RESUME":
            dom.state = "running"
        elif name == "BALLOON_CHANGE":
            dom.memory_actual = int(data.get("actual", dom.memory_actual))
        elif name == "DISCONNECTED":
            asyncio.get_running_loop().create_task(self._ended(dom))

    async def _ended(self, dom: Domain) -> None:
        """QEMU is gone: release what the domain held; report an end nobody asked for."""
        await process.wait_gone(dom.pid, dom.run.path, HARD_SHUTDOWN_TIMEOUT)
        expected = dom.expected
        await self._destroy(dom)
        if not expected:
            why = EXIT_REASONS.get(dom.reason, "vanished")
            self.report_exit(dom.vm_id, dom.domid, why)

    async def _destroy(self, dom: Domain) -> None:
        """Kill the QEMU if it still runs and remove everything the domain had."""
        dom.expected = True
        if dom.pid:
            process.kill(dom.pid, dom.run.path)
            await process.wait_gone(dom.pid, dom.run.path, HARD_SHUTDOWN_TIMEOUT)
        if dom.channel is not None:
            await dom.channel.stop()
        if dom.monitor is not None:
            await dom.monitor.close()
        for nic in dom.spec.nics:
            with contextlib.suppress(Exception):
                tap = cmdline.tap_name(dom.domid, nic.device)
                await self.hooks.vif_unplug(dom.vm_id, dom.domid, nic, tap)
        shutil.rmtree(dom.run.path, ignore_errors=True)
        if self.domains.get(dom.vm_id) is dom:
            del self.domains[dom.vm_id]
        dom.gone.set()

    async def _stop(self, dom: Domain, clean: bool, reboot: bool = False) -> None:
        """Ask the guest (clean) or QEMU to end the domain; wait until it has."""
        dom.expected = True
        qmp = self._qmp(dom)
        features = dom.channel.keys if dom.channel is not None else {}
        try:
            if clean and reboot:
                if "control/feature-reboot" not in features or dom.channel is None:
                    raise MissingPvDrivers(dom.vm_id)
                dom.channel.write("control/shutdown", "reboot")
            elif clean and "control/feature-shutdown" in features and dom.channel is not None:
                dom.channel.write("control/shutdown", "poweroff")
            elif clean:
                await qmp.execute("system_powerdown")
            else:
                with contextlib.suppress(XenopsError):
                    await qmp.execute("quit")
            timeout = CLEAN_SHUTDOWN_TIMEOUT if clean else HARD_SHUTDOWN_TIMEOUT
            await asyncio.wait_for(dom.gone.wait(), timeout)
        except TimeoutError:
            dom.expected = False
            raise XenopsError(f"domain {dom.domid} did not shut down in time") from None
        except MissingPvDrivers:
            dom.expected = False
            raise

    async def vm_shutdown(self, vm_id: str, clean: bool) -> None:
        await self._stop(self._domain(vm_id), clean)

    async def vm_reboot(self, vm_id: str, clean: bool, spec: DomainSpec) -> DomainInfo:
        dom = self._domain(vm_id)
        await self._stop(dom, clean, reboot=True)
        return await self._build(dom.host_id, spec, paused=False)

    # ---- pause, memory -------------------------------------------------------------------

    async def vm_pause(self, vm_id: str) -> DomainInfo:
        dom = self._domain(vm_id)
        if dom.state != "running":
            raise BadDomainState(f"{vm_id} is {dom.state}")
        await self._qmp(dom).execute("stop")
        dom.state = "paused"
        return dom.info()

    async def vm_unpause(self, vm_id: str) -> DomainInfo:
        dom = self._domain(vm_id)
        if dom.state != "paused":
            raise BadDomainState(f"{vm_id} is {dom.state}")
        await self._qmp(dom).execute("cont")
        dom.state = "running"
        return dom.info()

    async def vm_set_vcpus(self, vm_id: str, vcpus: int) -> DomainInfo:
        dom = self._domain(vm_id)
        await live.set_vcpus(self, dom, vcpus)
        dom.spec = replace(dom.spec, vcpus=vcpus)
        dom.save()
        return dom.info()

    async def vm_set_memory_dynamic_range(self, vm_id: str, low: int, high: int) -> DomainInfo:
        """Balloon to ``high`` (the host has room: the squeezer lowers it first if not)."""
        dom = self._domain(vm_id)
        static = max(dom.spec.memory_static_max, dom.spec.memory_dynamic_max)
        await live.balloon(self, dom, high, static)
        dom.spec = replace(dom.spec, memory_dynamic_min=low, memory_dynamic_max=high)
        dom.save()
        return dom.info()

    def vm_reset(self, vm_id: str) -> None:
        dom = self.domains.pop(vm_id, None)
        if dom is not None and dom.pid:
            process.kill(dom.pid, dom.run.path)
        self.images.discard(vm_id)

    # ---- guest agent ---------------------------------------------------------------------

    async def guest_write(self, vm_id: str, key: str, value: str) -> None:
        dom = self._domain(vm_id)
        if dom.channel is None:
            raise XenopsError(f"domain {dom.domid} has no agent channel")
        dom.channel.write(key, value)

    def console(self, vm_id: str) -> str:
        dom = self.domains.get(vm_id)
        return dom.run.vnc if dom is not None else ""

    def console_log(self, vm_id: str) -> str:
        dom = self.domains.get(vm_id)
        return dom.run.console_log if dom is not None else ""

    # ---- adoption ------------------------------------------------------------------------

    async def host_facts(self, probe: bool = True) -> dict[str, object] | None:
        cpu = dict(self.facts.cpu)
        caps = ["hvm-3.0-x86_64", "hvm-3.0-x86_32"]
        if probe or self._accel:
            accel = await self.accel()
            cpu["accelerator"] = accel  # KVM only when its probe boot worked; TCG otherwise
            caps.insert(0, f"qemu-{accel}-x86_64")
        return {"memory_total": self.facts.memory_total, "cpu_info": cpu, "capabilities": caps}

    async def close(self) -> None:
        """Leave every domain's sessions; the QEMU processes run on."""
        for dom in list(self.domains.values()):
            dom.expected = True
            if dom.channel is not None:
                await dom.channel.stop()
            if dom.monitor is not None:
                await dom.monitor.close()

    async def adopt(self, host_id: str, spec: DomainSpec, info: DomainInfo) -> DomainInfo | None:
        return await adoption.adopt(self, host_id, spec, info)

    def recorded_domains(self) -> list[tuple[str, DomainSpec, tuple[str, ...]]]:
        """(host, spec, plugged disks' devices) of every domain recorded here."""
        return [(d.host_id, d.spec, tuple(d.vbds)) for d in adoption.recorded(self.root)]

    # ---- images and migration (see .suspend) ---------------------------------------------

    async def vm_suspend(self, vm_id: str, image: DiskSpec | None = None) -> int:
        return await suspend(self, self._domain(vm_id), image)

    async def vm_resume(
        self,
        host_id: str,
        vm_id: str,
        paused: bool,
        spec: DomainSpec | None = None,
        image: DiskSpec | None = None,
    ) -> DomainInfo:
        if vm_id in self.domains:
            raise DomainExists(vm_id)
        if spec is None or image is None:
            raise NoSuchDomain(vm_id)
        info = await resume(self, host_id, spec, image, paused)
        self.images.discard(vm_id)
        return info

    async def vm_save_image(self, vm_id: str, image_id: str, image: DiskSpec | None = None) -> int:
        size = await checkpoint(self, self._domain(vm_id), image)
        self.images.add(image_id)
        return size

    def vm_copy_image(self, image_id: str, vm_id: str) -> None:
        """Revert: the image itself is the VM's new suspend VDI (a clone the toolstack makes
        of the checkpoint's); the VM is now one that resumes from a VDI."""
        if vm_id in self.domains:
            raise DomainExists(vm_id)
        self.images.add(vm_id)

    def vm_discard_image(self, vm_id: str) -> None:
        self.images.discard(vm_id)

    def vm_image_send(self, vm_id: str) -> dict[str, object]:
        """The memory image is in the suspend VDI (on the shared SR another host resumes
        from): nothing travels but the VM itself, which this backend forgets."""
        if vm_id not in self.images:
            raise NoSuchDomain(vm_id)
        self.images.discard(vm_id)
        return {}

    def vm_image_receive(self, vm_id: str, image: dict[str, object]) -> None:
        self.images.add(vm_id)

    # ---- live migration between toolstacks (see .handoff) --------------------------------

    async def vm_migrate_receive(self, host_id: str, spec: DomainSpec, memory: int) -> str:
        self._host(host_id)
        return await handoff.receive(self, host_id, spec, memory)

    async def vm_migrate_send(self, vm_id: str, to: str) -> dict[str, object]:
        return await handoff.send(self, vm_id, to)

    async def vm_migrate_finish(self, vm_id: str, state: dict[str, object]) -> DomainInfo:
        return await handoff.finish(self, vm_id, state)

    def vm_migrate_abort(self, vm_id: str) -> None:
        if vm_id in self.incoming:
            task = asyncio.get_running_loop().create_task(handoff.abort(self, vm_id))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def vm_migrate_release(self, vm_id: str) -> None:
        await handoff.release(self, vm_id)

    def vm_migrating_in(self, vm_id: str) -> bool:
        return vm_id in self.incoming

    async def vm_migrate(
        self, vm_id: str, host_id: str, spec: DomainSpec | None = None
    ) -> DomainInfo:
        dom = self._domain(vm_id)
        self._host(host_id)
        if dom.host_id == host_id:
            return dom.info()
        return await migrate(self, dom, host_id, spec or dom.spec)

    # ---- metrics (see .stats) -----------------------------------------------------------

    def vm_stats(self, vm_id: str) -> DomainStats | None:
        return self.stats.get(vm_id) if vm_id in self.domains else None

    async def refresh_stats(self) -> None:
        """Each domain's counters afresh, each kept as soon as it is read: a domain whose
        monitor is slow to answer (the collector stops waiting) keeps its last counters and
        does not cost the others theirs."""
        for gone in [v for v in self.stats if v not in self.domains]:
            del self.stats[gone]

        async def one(dom: Domain) -> None:
            read = await domain_stats.read(dom)
            if read is not None and self.domains.get(dom.vm_id) is dom:
                self.stats[dom.vm_id] = read

        await asyncio.gather(*(one(d) for d in list(self.domains.values())))

    # ---- VBD / VIF hot-plug (.devices) --------------------------------------------------

    async def vbd_plug(self, vm_id: str, device: str, disk: DiskSpec | None = None) -> None:
        await devices.vbd_plug(self, vm_id, device, disk)

    async def vbd_unplug(self, vm_id: str, device: str) -> None:
        await devices.vbd_unplug(self, vm_id, device)

    async def vbd_media(self, vm_id: str, device: str, disk: DiskSpec) -> None:
        await devices.vbd_media(self, vm_id, device, disk)

    async def vif_plug(self, vm_id: str, device: str, nic: NicSpec | None = None) -> None:
        await devices.vif_plug(self, vm_id, device, nic)

    async def vif_unplug(self, vm_id: str, device: str) -> None:
        await devices.vif_unplug(self, vm_id, device)

    async def vm_send_trigger(self, vm_id: str, trigger: str) -> None:
        """``nmi``: QMP ``inject-nmi`` (the guest's kernel logs it, or panics as it is set
        to); ``power``: the ACPI power button (``system_powerdown``), which the guest may
        act on; the domain's end then comes as any guest-made end does."""
        command = QMP_TRIGGERS.get(trigger)
        if command is None:
            raise Unimplemented("send_trigger")
        dom = self._domain(vm_id)
        if dom.state != "running":
            raise BadDomainState(f"{vm_id} is {dom.state}")
        await self._qmp(dom).execute(command)


#: the triggers (``xl trigger`` names) QEMU can send, and the QMP command for each
QMP_TRIGGERS = {"nmi": "inject-nmi", "power": "system_powerdown"}
