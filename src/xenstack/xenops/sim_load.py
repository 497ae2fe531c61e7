"""The simulator's synthetic load: plausible, seeded counters that follow what a domain does.

Each domain gets a load drawn from a generator seeded by its VM id (the same VM always shows
the same kind of load): a base CPU use per vCPU, a guest-reported free memory fraction, and
byte rates for its disks and interfaces, and for its disks a request size and a latency
(each request counted as completed, with the nanoseconds it took, as QEMU's
``query-blockstats`` counts them). Counters advance only while the domain runs: a paused
domain burns no CPU and moves no bytes. Tests and benchmarks steer a domain with
:meth:`SimLoad.set_cpu` (make a guest burn CPU) and :meth:`SimLoad.transfer` (a VIF or a
disk moved N bytes); those bytes are counted exactly, added to the synthetic rate.

Time is read from ``clock`` (``time.monotonic`` by default), so a test can step it.
"""

from __future__ import annotations

import math
import random
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

from .interface import DomainInfo, DomainStats

KIB = 1024


@dataclass(slots=True)
class _Counters:
    """One domain's cumulative counters and the rates that feed them."""

    seed: int
    cpu_base: float  # fraction of one vCPU the guest uses on its own
    free_fraction: float  # of its memory, what the guest reports free
    disk_rate: float  # bytes per second read (and, halved, written) per disk
    net_rate: float  # bytes per second received (and, halved, sent) per interface
    at: float  # when the counters were last advanced
    request: float = 65536.0  # bytes per disk request
    latency_ns: float = 500_000.0  # nanoseconds a disk request takes
    cpu_override: float | None = None  # set_cpu: the fraction every vCPU burns
    cpu: list[float] = field(default_factory=list)
    vbd_read: dict[str, float] = field(default_factory=dict)
    vbd_write: dict[str, float] = field(default_factory=dict)
    vif_rx: dict[str, float] = field(default_factory=dict)
    vif_tx: dict[str, float] = field(default_factory=dict)
    vbd_read_ops: dict[str, float] = field(default_factory=dict)
    vbd_write_ops: dict[str, float] = field(default_factory=dict)
    vbd_read_ns: dict[str, float] = field(default_factory=dict)
    vbd_write_ns: dict[str, float] = field(default_factory=dict)
    vbd_inflight: dict[str, int] = field(default_factory=dict)

    def requests(self, kind: str, device: str, count: float) -> None:
        """Count the requests that moved ``count`` bytes (``kind``: read or write)."""
        ops = getattr(self, f"vbd_{kind}_ops")
        ns = getattr(self, f"vbd_{kind}_ns")
        n = count / self.request
        ops[device] = ops.get(device, 0.0) + n
        ns[device] = ns.get(device, 0.0) + n * self.latency_ns


def _seeded(vm_id: str, now: float) -> _Counters:
    seed = zlib.crc32(vm_id.encode())
    rng = random.Random(seed)
    return _Counters(
        seed=seed,
        cpu_base=rng.uniform(0.02, 0.35),
        free_fraction=rng.uniform(0.2, 0.6),
        disk_rate=rng.uniform(0.0, 2.0) * 1024 * KIB,
        net_rate=rng.uniform(0.0, 512.0) * KIB,
        at=now,
        request=float(rng.choice((4, 16, 64, 128)) * KIB),
        latency_ns=rng.uniform(0.1, 4.0) * 1e6,
    )


class SimLoad:
    """The counters of every simulated domain, by VM id."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.counters: dict[str, tuple[float, _Counters]] = {}  # vm -> (start time, counters)

    def _for(self, dom: DomainInfo) -> _Counters:
        """The domain's counters, advanced to now; fresh ones for a new domain (a reboot).

        A domain is known by its start time: a migrated or resumed domain keeps it (its
        guest's counters go on), a rebooted one gets a new one.
        """
        now = self.clock()
        held = self.counters.get(dom.vm_id)
        if held is None or held[0] != dom.start_time:
            held = (dom.start_time, _seeded(dom.vm_id, now))
            self.counters[dom.vm_id] = held
        counters = held[1]
        self._advance(counters, dom, now)
        return counters

    def _advance(self, c: _Counters, dom: DomainInfo, now: float) -> None:
        elapsed = max(0.0, now - c.at)
        c.at = now
        while len(c.cpu) < dom.vcpus:
            c.cpu.append(0.0)
        if dom.state != "running" or elapsed == 0.0:
            return
        wave = 0.5 + 0.5 * math.sin(now / 60.0 + c.seed % 628 / 100.0)  # slow, seeded swing
        for i in range(dom.vcpus):
            share = c.cpu_override if c.cpu_override is not None else c.cpu_base * (0.5 + wave)
            c.cpu[i] += elapsed * min(1.0, share)
        for device in dom.vbds:
            read = elapsed * c.disk_rate * wave
            c.vbd_read[device] = c.vbd_read.get(device, 0.0) + read
            c.vbd_write[device] = c.vbd_write.get(device, 0.0) + read / 2
            c.requests("read", device, read)
            c.requests("write", device, read / 2)
            # Little's law: requests in flight = request rate x latency
            rate = 1.5 * c.disk_rate * wave / c.request
            c.vbd_inflight[device] = round(rate * c.latency_ns / 1e9)
        for device in dom.vifs:
            c.vif_rx[device] = c.vif_rx.get(device, 0.0) + elapsed * c.net_rate * wave
            c.vif_tx[device] = c.vif_tx.get(device, 0.0) + elapsed * c.net_rate * wave / 2

    def stats(self, dom: DomainInfo, memory_target: int) -> DomainStats:
        c = self._for(dom)
        return DomainStats(
            cpu_seconds=tuple(c.cpu[: dom.vcpus]),
            memory_actual=dom.memory_actual,
            memory_target=memory_target,
            memory_internal_free=int(dom.memory_actual * c.free_fraction) // KIB * KIB,
            vbd_read_bytes={d: int(c.vbd_read.get(d, 0.0)) for d in dom.vbds},
            vbd_write_bytes={d: int(c.vbd_write.get(d, 0.0)) for d in dom.vbds},
            vif_rx_bytes={d: int(c.vif_rx.get(d, 0.0)) for d in dom.vifs},
            vif_tx_bytes={d: int(c.vif_tx.get(d, 0.0)) for d in dom.vifs},
            vbd_read_ops={d: int(c.vbd_read_ops.get(d, 0.0)) for d in dom.vbds},
            vbd_write_ops={d: int(c.vbd_write_ops.get(d, 0.0)) for d in dom.vbds},
            vbd_read_ns={d: int(c.vbd_read_ns.get(d, 0.0)) for d in dom.vbds},
            vbd_write_ns={d: int(c.vbd_write_ns.get(d, 0.0)) for d in dom.vbds},
            vbd_inflight={d: c.vbd_inflight.get(d, 0) for d in dom.vbds if dom.state == "running"},
        )

    def set_cpu(self, dom: DomainInfo, fraction: float | None) -> None:
        """Make every vCPU of the domain burn ``fraction`` of a CPU (None: its own load)."""
        self._for(dom).cpu_override = fraction

    def set_quiet(self, dom: DomainInfo) -> None:
        """No synthetic disk or network traffic from now on (only :meth:`transfer`'s)."""
        c = self._for(dom)
        c.disk_rate = c.net_rate = 0.0

    def transfer(self, dom: DomainInfo, kind: str, device: str, count: int) -> None:
        """Count ``count`` bytes on a device: ``kind`` is vif_rx, vif_tx, vbd_read, vbd_write."""
        counters = self._for(dom)
        table: dict[str, float] = getattr(counters, kind)
        table[device] = table.get(device, 0.0) + count
        if kind.startswith("vbd_"):
            counters.requests(kind.removeprefix("vbd_"), device, count)

    def forget(self, vm_id: str) -> None:
        self.counters.pop(vm_id, None)
