"""The collector: every ``step`` seconds, sample every host, running VM and SR into the store.

It knows no database and no backend: a :class:`Feed` (built by the toolstack over its
database and hypervisor) says what exists now, as plain views. Host figures come from
``/proc`` for the local host and from :class:`~.hoststats.SimHosts` for simulated ones; VM
figures are the backend's counters. After each tick ``on_tick`` (the toolstack's: it keeps
the ``*_metrics`` records current) is given the tick's rates. A VM that is no longer sampled
has its archive written out (as XAPI archives a stopped VM's RRD on the master).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from .hoststats import ProcHost, SimHosts
from .sources import DomainCounters, HostSample, cpu_avg, host_values, vm_values
from .store import RrdStore

log = logging.getLogger(__name__)

STEP = 5.0
SAVE_EVERY = 300.0  # seconds between writing every archive out


@dataclass(frozen=True, slots=True)
class HostView:
    uuid: str
    cpus: int
    memory_total: int
    memory_free: int
    pifs: tuple[str, ...] = ()
    local: bool = False  # this machine: figures from /proc


@dataclass(frozen=True, slots=True)
class VmView:
    uuid: str
    host: str  # the uuid of the host it runs on
    stats: DomainCounters
    disks: Mapping[str, str] = field(default_factory=dict)  # backend key -> xvda...
    vifs: Mapping[str, str] = field(default_factory=dict)  # backend key -> device number
    disk_srs: Mapping[str, str] = field(default_factory=dict)  # xvda... -> SR uuid


@dataclass(frozen=True, slots=True)
class SrView:
    uuid: str
    physical_size: int
    physical_utilisation: int
    virtual_allocation: int


class Feed(Protocol):
    def hosts(self) -> Sequence[HostView]: ...
    def vms(self) -> Sequence[VmView]: ...
    def srs(self) -> Sequence[SrView]: ...


@dataclass(slots=True)
class Rates:
    """What one tick measured, as rates: per VM and per host, by source name."""

    timestamp: float
    vms: dict[str, dict[str, float]] = field(default_factory=dict)
    hosts: dict[str, dict[str, float]] = field(default_factory=dict)
    host_samples: dict[str, HostSample] = field(default_factory=dict)


def _rates(now: dict[str, float], before: dict[str, float] | None, dt: float) -> dict[str, float]:
    """Per-second rates of the counters in ``now`` since ``before`` (empty if none)."""
    if before is None or dt <= 0:
        return {}
    return {k: (v - before[k]) / dt for k, v in now.items() if k in before and v >= before[k]}


class Collector:
    def __init__(
        self,
        store: RrdStore,
        feed: Feed,
        *,
        now: Callable[[], float] = time.time,
        proc: ProcHost | None = None,
        on_tick: Callable[[Rates], object] | None = None,
    ) -> None:
        self.store = store
        self.feed = feed
        self.now = now
        self.proc = proc or ProcHost()
        self.sim = SimHosts()
        self.on_tick = on_tick
        self.previous: dict[tuple[str, str], tuple[float, dict[str, float]]] = {}
        self._task: asyncio.Task[None] | None = None

    def tick(self, timestamp: float | None = None) -> Rates:
        """Sample everything once, at ``timestamp`` (default: now)."""
        t = self.now() if timestamp is None else timestamp
        rates = Rates(t)
        guest_cpu: dict[str, float] = {}
        sr_read: dict[str, dict[str, float]] = {}
        sr_write: dict[str, dict[str, float]] = {}
        sampled: set[str] = set()
        for vm in self.feed.vms():
            values = vm_values(vm.stats, vm.disks, vm.vifs)
            vm_rates = self._counted("vm", vm.uuid, t, values)
            rates.vms[vm.uuid] = vm_rates
            self.store.update("vm", vm.uuid, t, values)
            self.store.resident[vm.uuid] = vm.host
            sampled.add(vm.uuid)
            busy = sum(v for k, v in vm_rates.items() if k.startswith("cpu"))
            guest_cpu[vm.host] = guest_cpu.get(vm.host, 0.0) + busy
            for disk, sr in vm.disk_srs.items():
                reads, writes = sr_read.setdefault(vm.host, {}), sr_write.setdefault(vm.host, {})
                reads[sr] = reads.get(sr, 0.0) + vm_rates.get(f"vbd_{disk}_read", 0.0)
                writes[sr] = writes.get(sr, 0.0) + vm_rates.get(f"vbd_{disk}_write", 0.0)
        for host in self.feed.hosts():
            sample = self._host_sample(host, t, guest_cpu.get(host.uuid, 0.0))
            values = host_values(sample, sr_read.get(host.uuid, {}), sr_write.get(host.uuid, {}))
            host_rates = self._counted("host", host.uuid, t, values)
            cpus = [host_rates.get(f"cpu{i}", float("nan")) for i in range(len(sample.cpu_seconds))]
            values["cpu_avg"] = cpu_avg(cpus)
            rates.hosts[host.uuid] = host_rates
            rates.host_samples[host.uuid] = sample
            self.store.update("host", host.uuid, t, values)
        for sr_view in self.feed.srs():
            self.store.update("sr", sr_view.uuid, t, _sr_values(sr_view))
        self._stopped(sampled)
        if self.on_tick is not None:
            self.on_tick(rates)
        return rates

    def _counted(
        self, owner: str, uuid: str, t: float, values: dict[str, float]
    ) -> dict[str, float]:
        before = self.previous.get((owner, uuid))
        self.previous[(owner, uuid)] = (t, values)
        if before is None:
            return {}
        return _rates(values, before[1], t - before[0])

    def _host_sample(self, host: HostView, t: float, guest_cpu: float) -> HostSample:
        if host.local:
            return self.proc.sample(host.pifs)
        return self.sim.sample(
            host.uuid, t, host.cpus, (host.memory_total, host.memory_free), host.pifs, guest_cpu
        )

    def _stopped(self, sampled: set[str]) -> None:
        for vm in [v for v in self.store.resident if v not in sampled]:
            del self.store.resident[vm]
            self.previous.pop(("vm", vm), None)
            try:
                self.store.save("vm", vm)
            except OSError as exc:
                log.warning("could not archive the RRD of VM %s: %s", vm, exc)

    # ---- the loop ---------------------------------------------------------------------------

    def start(self, step: float = STEP) -> None:
        if self._task is None and step > 0:
            self._task = asyncio.create_task(self._run(step))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.store.save_all()

    async def _run(self, step: float) -> None:
        saved = time.monotonic()
        while True:
            now = self.now()
            await asyncio.sleep(step - now % step)  # on the step's boundaries, as rrdd
            try:
                self.tick()
            except Exception:
                log.exception("metrics collection failed")
            if time.monotonic() - saved > SAVE_EVERY:
                saved = time.monotonic()
                await self._save_gently()

    async def _save_gently(self) -> None:
        for owner, uuid in list(self.store.rrds):
            try:
                self.store.save(owner, uuid)
            except OSError as exc:
                log.warning("could not write the RRD of %s %s: %s", owner, uuid, exc)
            await asyncio.sleep(0)


def _sr_values(sr: SrView) -> dict[str, float]:
    return {
        "physical_size": sr.physical_size,
        "physical_utilisation": sr.physical_utilisation,
        "virtual_allocation": sr.virtual_allocation,
    }
