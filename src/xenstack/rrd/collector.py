"""The collector: every ``step`` seconds, sample every host, running VM and SR into the store.

It knows no database and no backend: a :class:`Feed` (built by the toolstack over its
database and hypervisor) says what exists now, as plain views. Host figures come from
``/proc`` for the local host and from :class:`~.hoststats.SimHosts` for simulated ones; VM
figures are the backend's counters. After each tick ``on_tick`` (the toolstack's: it keeps
the ``*_metrics`` records current) is given the tick's rates. A VM that is no longer sampled
has its archive written out (as XAPI archives a stopped VM's RRD on the master).

The rows clients read (each live RRD's 5-second AVERAGE rows, as ``/rrd_updates`` XML and
JSON) are rendered ahead of the reads: after each tick its new row, and when the loop starts
every row of the archives read from disk that reach into the last ten minutes, one RRD per
turn of the event loop. A first read after a restart then costs what any other does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from . import export
from .archive import Rrd
from .hoststats import ProcHost, SimHosts
from .sources import (
    DiskDelta,
    DomainCounters,
    HostSample,
    cpu_avg,
    disk_deltas,
    host_values,
    sr_values,
    vm_values,
)
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
    async def refresh(self) -> None:
        """Read the backend's counters afresh (before each tick of the loop)."""


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
        self.counters: dict[str, tuple[float, DomainCounters]] = {}  # VM -> its last sample
        self._task: asyncio.Task[None] | None = None

    def tick(self, timestamp: float | None = None) -> Rates:
        """Sample everything once, at ``timestamp`` (default: now)."""
        t = self.now() if timestamp is None else timestamp
        rates = Rates(t)
        guest_cpu: dict[str, float] = {}
        sr_io: dict[str, dict[str, DiskDelta]] = {}  # host -> SR -> what its disks did
        sr_dt: dict[str, float] = {}  # host -> the interval its disks' figures cover
        sampled: set[str] = set()
        for vm in self.feed.vms():
            moved, dt = self._disks_moved(vm, t)
            values = vm_values(vm.stats, vm.disks, vm.vifs, moved, dt)
            vm_rates = self._counted("vm", vm.uuid, t, values)
            rates.vms[vm.uuid] = vm_rates
            self.store.update("vm", vm.uuid, t, values)
            self.store.resident[vm.uuid] = vm.host
            sampled.add(vm.uuid)
            busy = sum(v for k, v in vm_rates.items() if k.startswith("cpu"))
            guest_cpu[vm.host] = guest_cpu.get(vm.host, 0.0) + busy
            for key, delta in moved.items():
                sr = vm.disk_srs.get(vm.disks.get(key, key))
                if sr is not None:
                    sr_io.setdefault(vm.host, {}).setdefault(sr, DiskDelta()).add(delta)
                    sr_dt[vm.host] = dt
        for host in self.feed.hosts():
            sample = self._host_sample(host, t, guest_cpu.get(host.uuid, 0.0))
            dt = sr_dt.get(host.uuid, 0.0)
            io = {sr: sr_values(d, dt) for sr, d in sr_io.get(host.uuid, {}).items()}
            values = host_values(sample, io)
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

    def _disks_moved(self, vm: VmView, t: float) -> tuple[dict[str, DiskDelta], float]:
        """What the VM's disks did since its previous sample, and over how many seconds."""
        before = self.counters.get(vm.uuid)
        self.counters[vm.uuid] = (t, vm.stats)
        if before is None or t <= before[0]:
            return {}, 0.0
        return disk_deltas(vm.stats, before[1]), t - before[0]

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
            self.counters.pop(vm, None)
            try:
                self.store.save("vm", vm)
            except OSError as exc:
                log.warning("could not archive the RRD of VM %s: %s", vm, exc)

    # ---- rendering ahead of the reads ---------------------------------------------------

    def live(self) -> list[Rrd]:
        """What ``/rrd_updates`` reads: every host's and SR's RRD, and the sampled VMs'."""
        resident = self.store.resident
        return [
            r for (owner, uuid), r in self.store.rrds.items() if owner != "vm" or uuid in resident
        ]

    def recent(self, now: float) -> list[Rrd]:
        """The RRDs updated within their finest archive's reach of ``now`` (ten minutes)."""
        found = []
        for rrd in self.store.rrds.values():
            finest = rrd.timescales[0]
            if now - rrd.last_updated < rrd.step * finest.pdp_per_row * finest.rows:
                found.append(rrd)
        return found

    def prerender(self, rrds: Sequence[Rrd] | None = None) -> int:
        """Render the rows clients read of ``rrds`` (default: the live ones) now; return how
        many segments were rendered."""
        return sum(export.prerender(rrd) for rrd in (self.live() if rrds is None else rrds))

    async def prerender_gently(self, rrds: Sequence[Rrd]) -> int:
        """:meth:`prerender`, one RRD per turn of the event loop (a few milliseconds each)."""
        rendered = 0
        for rrd in rrds:
            try:
                rendered += export.prerender(rrd)
            except Exception:
                log.exception("rendering the rows of an RRD failed")
            await asyncio.sleep(0)
        return rendered

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
        last = 0.0
        await self.prerender_gently(self.recent(self.now()))  # the archives read at start
        while True:
            now = self.now()
            boundary = now - now % step + step
            if boundary <= last:  # woke a hair early last time: this boundary is done
                boundary += step
            await asyncio.sleep(boundary - now)  # on the step's boundaries, as rrdd
            # stamped with the boundary the sleep aimed at (unless it overslept badly), not
            # when a slow backend answered: each 5-second row is then one interval's figures
            t = self.now()
            t = last = boundary if t - boundary < step / 2 else t
            try:
                await asyncio.wait_for(self.feed.refresh(), step / 2)
            except Exception:  # a backend that cannot say: its last counters are used
                log.warning("the backend's counters could not be read afresh", exc_info=True)
            try:
                self.tick(t)
            except Exception:
                log.exception("metrics collection failed")
            await self.prerender_gently(self.live())
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
    return {"size": sr.physical_size, "physical_utilisation": sr.physical_utilisation}
