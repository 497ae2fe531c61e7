"""The simulator backend: domains are records in memory, on as many hosts as you like.

It keeps per-host domains and memory the way a hypervisor would: a domain takes its dynamic
maximum if the host has it, at least its dynamic minimum, plus its overhead; suspending keeps
an image (on "shared storage": any host can resume it) and frees the memory; migration moves
a domain between hosts. ``delays`` makes chosen operations take time (seconds, by operation
name such as ``"start"``), so that callers can observe operations in progress.

Its domains show seeded synthetic load (:mod:`.sim_load`, read with ``vm_stats``).

Its guests run simulated agents (:mod:`.guest_agent`): ``guest_agent_delay`` seconds after a
domain boots (start, reboot, resume, or arrives by migration) its guest writes its XenStore
keys through :meth:`Backend.report_guest_key`, unless the domain is gone by then; a
``guest_write`` of ``control/shutdown`` is acknowledged at once.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

from ..core.config import GUEST_AGENT_DELAY
from .guest_agent import GuestAgents
from .interface import (
    Backend,
    BadDomainState,
    Capabilities,
    DeviceError,
    DiskSpec,
    DomainExists,
    DomainInfo,
    DomainSpec,
    DomainStats,
    HostSpec,
    NicSpec,
    NoSuchDomain,
    OutOfMemory,
    Unimplemented,
    UnknownHost,
)
from .sim_load import SimLoad

SIMULATOR_CAPABILITIES = Capabilities(
    name="simulator",
    live_migration=True,
    suspend=True,
    pause=True,
    vcpu_hotplug=True,
    memory_ballooning=True,
    device_hotplug=True,
    max_vcpus=64,
    domain_types=("pv", "hvm", "pvh", "pv_in_pvh"),
)


@dataclass(slots=True)
class _Host:
    spec: HostSpec
    used: int = 0  # memory held by domains, overhead included

    @property
    def free(self) -> int:
        return self.spec.memory_total - self.spec.memory_reserved - self.used


class SimulatorBackend(Backend):
    """In-memory domains on in-memory hosts."""

    capabilities = SIMULATOR_CAPABILITIES

    def __init__(
        self, delays: dict[str, float] | None = None, guest_agent_delay: float = GUEST_AGENT_DELAY
    ) -> None:
        self.delays: dict[str, float] = dict(delays or {})
        self.hosts: dict[str, _Host] = {}
        self.domains: dict[str, DomainInfo] = {}
        self.images: dict[str, DomainInfo] = {}  # suspended domains, by VM
        self._incoming: dict[str, tuple[str, int]] = {}  # vm -> (host, memory held)
        self._next_domid = 1
        self.agents = GuestAgents(guest_agent_delay, self.report_guest_key)
        self.load = SimLoad()  # the domains' synthetic counters (vm_stats)
        self.triggers: list[tuple[str, int, str]] = []  # (vm, domid, trigger) sent, in order

    @property
    def guest_agent_delay(self) -> float:
        """Seconds from a domain's boot to its guest agent's report."""
        return self.agents.delay

    @guest_agent_delay.setter
    def guest_agent_delay(self, seconds: float) -> None:
        self.agents.delay = seconds

    def _booted(self, info: DomainInfo) -> DomainInfo:
        """Start the guest agent of a domain that just booted; return ``info``."""
        self.agents.boot(info, self.vm_info)
        return info

    # ---- helpers -------------------------------------------------------------------------

    async def _wait(self, operation: str) -> None:
        delay = self.delays.get(operation, 0.0)
        if delay > 0:
            await asyncio.sleep(delay)

    def _host(self, host_id: str) -> _Host:
        host = self.hosts.get(host_id)
        if host is None:
            raise UnknownHost(host_id)
        return host

    def _domain(self, vm_id: str) -> DomainInfo:
        dom = self.domains.get(vm_id)
        if dom is None:
            raise NoSuchDomain(vm_id)
        return dom

    def _domid(self) -> int:
        domid, self._next_domid = self._next_domid, self._next_domid + 1
        return domid

    @staticmethod
    def _footprint(dom: DomainInfo) -> int:
        return dom.memory_actual + dom.memory_overhead

    def _place(self, host: _Host, dom: DomainInfo, low: int, high: int) -> DomainInfo:
        """Give ``dom`` as much of [low, high] as ``host`` has; raise OutOfMemory if < low."""
        needed = low + dom.memory_overhead
        if host.free < needed:
            raise OutOfMemory(needed, max(0, host.free))
        dom.memory_actual = max(low, min(high, host.free - dom.memory_overhead))
        host.used += self._footprint(dom)
        dom.host_id = host.spec.host_id
        self.domains[dom.vm_id] = dom
        return replace(dom)

    def _release(self, dom: DomainInfo) -> None:
        self.hosts[dom.host_id].used -= self._footprint(dom)
        del self.domains[dom.vm_id]

    def restore(self, info: DomainInfo) -> None:
        """Adopt a domain that outlived a toolstack restart (the database says it runs)."""
        if info.vm_id in self.domains:
            return
        host = self._host(info.host_id)
        host.used += self._footprint(info)
        self.domains[info.vm_id] = info
        self._next_domid = max(self._next_domid, info.domid + 1)

    def restore_image(self, info: DomainInfo) -> None:
        """Adopt the saved image of a VM the database says is suspended."""
        self.images.setdefault(info.vm_id, info)

    # ---- HOST ----------------------------------------------------------------------------

    def host_add(self, spec: HostSpec) -> None:
        current = self.hosts.get(spec.host_id)
        self.hosts[spec.host_id] = _Host(spec, current.used if current else 0)

    def host_remove(self, host_id: str) -> None:
        if self.host_domains(host_id):
            raise BadDomainState(f"host {host_id} still runs domains")
        self.hosts.pop(host_id, None)

    def host_ids(self) -> list[str]:
        return list(self.hosts)

    def host_memory_free(self, host_id: str) -> int:
        return self._host(host_id).free

    def host_domains(self, host_id: str) -> list[DomainInfo]:
        self._host(host_id)
        return [replace(d) for d in self.domains.values() if d.host_id == host_id]

    # ---- VM ------------------------------------------------------------------------------

    def vm_info(self, vm_id: str) -> DomainInfo | None:
        dom = self.domains.get(vm_id)
        return replace(dom) if dom is not None else None

    def vm_has_image(self, vm_id: str) -> bool:
        return vm_id in self.images

    async def vm_start(self, host_id: str, spec: DomainSpec, paused: bool) -> DomainInfo:
        host = self._host(host_id)
        if spec.vm_id in self.domains or spec.vm_id in self.images:
            raise DomainExists(spec.vm_id)
        await self._wait("start")
        dom = _new_domain(spec, host_id, 0, "paused" if paused else "running")
        info = self._place(host, dom, spec.memory_dynamic_min, spec.memory_dynamic_max)
        dom.domid = info.domid = self._domid()
        return self._booted(info)

    async def vm_shutdown(self, vm_id: str, clean: bool) -> None:
        self._domain(vm_id)
        await self._wait("clean_shutdown" if clean else "hard_shutdown")
        self._release(self._domain(vm_id))
        self.agents.stop(vm_id)

    async def vm_reboot(self, vm_id: str, clean: bool, spec: DomainSpec) -> DomainInfo:
        old = self._domain(vm_id)
        await self._wait("clean_reboot" if clean else "hard_reboot")
        self._release(old)
        host = self.hosts[old.host_id]
        dom = _new_domain(spec, old.host_id, self._domid(), "running")
        try:
            info = self._place(host, dom, spec.memory_dynamic_min, spec.memory_dynamic_max)
        except OutOfMemory:
            self._place(host, old, old.memory_actual, old.memory_actual)  # undo
            raise
        return self._booted(info)

    async def vm_pause(self, vm_id: str) -> DomainInfo:
        return await self._set_state(vm_id, "running", "paused", "pause")

    async def vm_unpause(self, vm_id: str) -> DomainInfo:
        return await self._set_state(vm_id, "paused", "running", "unpause")

    async def _set_state(self, vm_id: str, before: str, after: str, op: str) -> DomainInfo:
        dom = self._domain(vm_id)
        if dom.state != before:
            raise BadDomainState(f"{vm_id} is {dom.state}")
        await self._wait(op)
        dom.state = "paused" if after == "paused" else "running"
        return replace(dom)

    async def vm_suspend(self, vm_id: str, image: DiskSpec | None = None) -> int:
        self._domain(vm_id)
        await self._wait("suspend")
        dom = self._domain(vm_id)
        self._release(dom)
        self.agents.stop(vm_id)
        self.images[vm_id] = dom
        return dom.memory_actual

    async def vm_resume(
        self,
        host_id: str,
        vm_id: str,
        paused: bool,
        spec: DomainSpec | None = None,
        image: DiskSpec | None = None,
    ) -> DomainInfo:
        host = self._host(host_id)
        saved = self.images.get(vm_id)
        if saved is None:
            raise NoSuchDomain(vm_id)
        await self._wait("resume")
        dom = replace(saved, domid=self._domid(), state="paused" if paused else "running")
        info = self._place(host, dom, saved.memory_actual, saved.memory_actual)
        del self.images[vm_id]
        return self._booted(info)

    async def vm_save_image(self, vm_id: str, image_id: str, image: DiskSpec | None = None) -> int:
        self._domain(vm_id)
        await self._wait("checkpoint")
        dom = self._domain(vm_id)
        self.images[image_id] = replace(dom, vm_id=image_id, vbds=dom.vbds, vifs=dom.vifs)
        return dom.memory_actual

    def vm_copy_image(self, image_id: str, vm_id: str) -> None:
        image = self.images.get(image_id)
        if image is None:
            raise NoSuchDomain(image_id)
        if vm_id in self.domains:
            raise DomainExists(vm_id)
        self.images[vm_id] = replace(image, vm_id=vm_id)

    def vm_discard_image(self, vm_id: str) -> None:
        self.images.pop(vm_id, None)

    async def vm_migrate(
        self, vm_id: str, host_id: str, spec: DomainSpec | None = None
    ) -> DomainInfo:
        target = self._host(host_id)
        self._domain(vm_id)
        await self._wait("pool_migrate")
        dom = self._domain(vm_id)
        if dom.host_id == host_id:
            return replace(dom)
        source = dom.host_id
        self._release(dom)
        moved = replace(dom, domid=self._domid())
        try:
            info = self._place(target, moved, dom.memory_actual, dom.memory_actual)
        except OutOfMemory:
            self._place(self.hosts[source], dom, dom.memory_actual, dom.memory_actual)
            raise
        self._booted(info)  # the guest's keys are written again on the new host's XenStore
        return info

    # ---- moves to and from another backend (another toolstack's simulator) ---------------

    async def vm_migrate_receive(self, host_id: str, spec: DomainSpec, memory: int) -> str:
        host = self._host(host_id)
        if spec.vm_id in self.domains or spec.vm_id in self.images:
            raise DomainExists(spec.vm_id)
        if host.free < memory:
            raise OutOfMemory(memory, max(0, host.free))
        self.vm_migrate_abort(spec.vm_id)
        host.used += memory  # held until the domain arrives
        self._incoming[spec.vm_id] = (host_id, memory)
        return ""  # the domain's state travels with the send's answer

    async def vm_migrate_send(self, vm_id: str, to: str) -> dict[str, object]:
        self._domain(vm_id)
        await self._wait("pool_migrate")
        dom = self._domain(vm_id)
        self._release(dom)
        self.agents.stop(vm_id)
        return _domain_doc(dom)

    async def vm_migrate_finish(self, vm_id: str, state: dict[str, object]) -> DomainInfo:
        if vm_id not in self._incoming:
            raise NoSuchDomain(vm_id)
        host_id, _ = self._incoming[vm_id]
        self.vm_migrate_abort(vm_id)
        dom = replace(_domain_of(state), domid=self._domid(), host_id=host_id)
        info = self._place(self.hosts[host_id], dom, dom.memory_actual, dom.memory_actual)
        return self._booted(info)  # its guest writes its keys in this host's XenStore

    def vm_migrate_abort(self, vm_id: str) -> None:
        held = self._incoming.pop(vm_id, None)
        if held is not None and held[0] in self.hosts:
            self.hosts[held[0]].used -= held[1]

    def vm_image_send(self, vm_id: str) -> dict[str, object]:
        image = self.images.pop(vm_id, None)
        if image is None:
            raise NoSuchDomain(vm_id)
        return _domain_doc(image)

    def vm_image_receive(self, vm_id: str, image: dict[str, object]) -> None:
        if vm_id in self.domains:
            raise DomainExists(vm_id)
        self.images[vm_id] = replace(_domain_of(image), vm_id=vm_id)

    async def vm_set_vcpus(self, vm_id: str, vcpus: int) -> DomainInfo:
        dom = self._domain(vm_id)
        await self._wait("set_vcpus")
        dom.vcpus = vcpus
        return replace(dom)

    async def vm_set_memory_dynamic_range(self, vm_id: str, low: int, high: int) -> DomainInfo:
        dom = self._domain(vm_id)
        await self._wait("set_memory")
        host = self.hosts[dom.host_id]
        spare = host.free + dom.memory_actual
        if spare < low:
            raise OutOfMemory(low + dom.memory_overhead, spare + dom.memory_overhead)
        host.used -= dom.memory_actual
        dom.memory_actual = max(low, min(high, spare))
        host.used += dom.memory_actual
        return replace(dom)

    async def guest_write(self, vm_id: str, key: str, value: str) -> None:
        self.agents.acknowledge(self._domain(vm_id), key, value)

    def guest_ends(self, vm_id: str, why: str) -> None:
        """The guest ends its domain itself (``why``: poweroff, reboot, crash), as a real guest
        does from inside: the domain goes and its end is reported to the exit listener."""
        dom = self._domain(vm_id)
        self._release(dom)
        self.agents.stop(vm_id)
        self.report_exit(vm_id, dom.domid, why)

    def vm_reset(self, vm_id: str) -> None:
        dom = self.domains.get(vm_id)
        if dom is not None:
            self._release(dom)
        self.agents.stop(vm_id)
        self.images.pop(vm_id, None)

    # ---- metrics -------------------------------------------------------------------------

    def vm_stats(self, vm_id: str) -> DomainStats | None:
        dom = self.domains.get(vm_id)
        if dom is None:
            self.load.forget(vm_id)
            return None
        return self.load.stats(dom, dom.memory_actual)

    # ---- VBD / VIF -----------------------------------------------------------------------

    async def vbd_plug(self, vm_id: str, device: str, disk: DiskSpec | None = None) -> None:
        dom = self._domain(vm_id)
        dom.vbds = _plugged(dom.vbds, device, "disk")

    async def vbd_unplug(self, vm_id: str, device: str) -> None:
        dom = self._domain(vm_id)
        dom.vbds = _unplugged(dom.vbds, device, "disk")

    async def vif_plug(self, vm_id: str, device: str, nic: NicSpec | None = None) -> None:
        dom = self._domain(vm_id)
        dom.vifs = _plugged(dom.vifs, device, "interface")

    async def vif_unplug(self, vm_id: str, device: str) -> None:
        dom = self._domain(vm_id)
        dom.vifs = _unplugged(dom.vifs, device, "interface")

    async def vm_send_trigger(self, vm_id: str, trigger: str) -> None:
        """A simulated guest has no firmware or OS to act on a button: an NMI (logged by a
        real kernel, which runs on) is recorded in :attr:`triggers`; the others, which a
        real guest would act on, are not simulated."""
        dom = self._domain(vm_id)
        if dom.state != "running":
            raise BadDomainState(f"{vm_id} is {dom.state}")
        if trigger != "nmi":
            raise Unimplemented("send_trigger")
        await self._wait("send_trigger")
        self.triggers.append((vm_id, dom.domid, trigger))


def _plugged(devices: tuple[str, ...], device: str, kind: str) -> tuple[str, ...]:
    """``devices`` with ``device`` added; DeviceError if it is there already."""
    if device in devices:
        raise DeviceError(f"{kind} {device} is plugged already")
    return (*devices, device)


def _unplugged(devices: tuple[str, ...], device: str, kind: str) -> tuple[str, ...]:
    """``devices`` without ``device``; DeviceError if it is not there."""
    if device not in devices:
        raise DeviceError(f"{kind} {device} is not plugged")
    return tuple(d for d in devices if d != device)


def _new_domain(spec: DomainSpec, host_id: str, domid: int, state: str) -> DomainInfo:
    return DomainInfo(
        vm_id=spec.vm_id,
        host_id=host_id,
        domid=domid,
        state="paused" if state == "paused" else "running",
        domain_type=spec.domain_type,
        memory_actual=0,
        memory_overhead=spec.memory_overhead,
        vcpus=spec.vcpus,
        start_time=time.time(),
        vbds=spec.vbds,
        vifs=spec.vifs,
        platform=dict(spec.platform),
        vif_networks=spec.vif_networks,
        os_hint=spec.os_hint,
    )


def _domain_doc(dom: DomainInfo) -> dict[str, object]:
    """A domain as JSON-able data, for another backend's :func:`_domain_of`."""
    return asdict(dom)


def _domain_of(doc: dict[str, Any]) -> DomainInfo:
    return DomainInfo(
        **{
            **doc,
            "vbds": tuple(doc["vbds"]),
            "vifs": tuple(doc["vifs"]),
            "platform": dict(doc["platform"]),
            "vif_networks": tuple(tuple(p) for p in doc["vif_networks"]),
        }
    )
