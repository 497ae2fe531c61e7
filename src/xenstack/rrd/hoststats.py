"""Host figures: the local host's from ``/proc``, a simulated host's from a seeded model.

:class:`ProcHost` reads ``/proc/stat`` (busy seconds per CPU: everything but idle and
iowait), ``/proc/meminfo``, ``/proc/loadavg``, ``/proc/net/dev`` (for the PIF devices that
exist here) and this process's own memory and descriptors. :class:`SimHosts` gives each
simulated host a seeded control-domain load to which the CPU its VMs burn is added, so a
busy guest shows on its host too.
"""

from __future__ import annotations

import os
import random
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .sources import HostSample

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


class ProcHost:
    """The machine this toolstack runs on, read from ``proc`` (a directory, ``/proc``)."""

    def __init__(self, proc: Path = Path("/proc")) -> None:
        self.proc = proc

    def cpu_seconds(self) -> tuple[float, ...]:
        busy: list[float] = []
        for line in _read(self.proc / "stat").splitlines():
            name, _, rest = line.partition(" ")
            if not name.startswith("cpu") or name == "cpu":
                continue
            ticks = [int(x) for x in rest.split()]
            idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
            busy.append((sum(ticks[:8]) - idle) / CLOCK_TICKS)
        return tuple(busy)

    def memory(self) -> tuple[int, int]:
        fields: dict[str, int] = {}
        for line in _read(self.proc / "meminfo").splitlines():
            key, _, rest = line.partition(":")
            parts = rest.split()
            if parts:
                fields[key] = int(parts[0]) * 1024
        total = fields.get("MemTotal", 0)
        return total, fields.get("MemAvailable", fields.get("MemFree", 0))

    def loadavg(self) -> float:
        text = _read(self.proc / "loadavg").split()
        return float(text[0]) if text else 0.0

    def net(self, devices: Sequence[str]) -> tuple[dict[str, int], dict[str, int]]:
        wanted = set(devices)
        rx: dict[str, int] = {}
        tx: dict[str, int] = {}
        for line in _read(self.proc / "net" / "dev").splitlines()[2:]:
            name, _, rest = line.partition(":")
            name = name.strip()
            if name in wanted:
                numbers = rest.split()
                rx[name], tx[name] = int(numbers[0]), int(numbers[8])
        return rx, tx

    def own_memory(self) -> int:
        for line in _read(self.proc / "self" / "status").splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def own_fds(self) -> int:
        try:
            return len(os.listdir(self.proc / "self" / "fd"))
        except OSError:
            return 0

    def sample(self, pifs: Sequence[str]) -> HostSample:
        total, free = self.memory()
        rx, tx = self.net(pifs)
        return HostSample(
            cpu_seconds=self.cpu_seconds(),
            memory_total=total,
            memory_free=free,
            loadavg=self.loadavg(),
            pif_rx=rx,
            pif_tx=tx,
            xapi_memory=self.own_memory(),
            xapi_open_fds=self.own_fds(),
        )


@dataclass(slots=True)
class _SimHost:
    seed: int
    base: float  # the control domain's share of a CPU
    net_rate: float  # bytes/s on each PIF
    at: float
    cpu: list[float] = field(default_factory=list)
    rx: dict[str, float] = field(default_factory=dict)
    tx: dict[str, float] = field(default_factory=dict)
    load: float = 0.0


class SimHosts:
    """Seeded figures for simulated hosts, by host uuid."""

    def __init__(self) -> None:
        self.hosts: dict[str, _SimHost] = {}

    def sample(
        self,
        uuid: str,
        now: float,
        cpus: int,
        memory: tuple[int, int],
        pifs: Sequence[str],
        guest_cpu: float,
    ) -> HostSample:
        """``memory``: (total, free) bytes as the hypervisor accounts them; ``guest_cpu``: CPUs
        the host's guests burn now (the sum of their vCPUs' rates)."""
        host = self.hosts.get(uuid)
        if host is None:
            seed = zlib.crc32(uuid.encode())
            rng = random.Random(seed)
            host = _SimHost(seed, rng.uniform(0.01, 0.06), rng.uniform(1e3, 64e3), now)
            self.hosts[uuid] = host
        elapsed, host.at = max(0.0, now - host.at), now
        share = min(1.0, host.base + guest_cpu / max(1, cpus))
        while len(host.cpu) < cpus:
            host.cpu.append(0.0)
        for i in range(cpus):  # the guests' load spread unevenly, as a scheduler does
            skew = 0.75 + 0.5 * ((host.seed >> (i % 24)) & 1)
            host.cpu[i] += elapsed * min(1.0, share * skew)
        for device in pifs:
            host.rx[device] = host.rx.get(device, 0.0) + elapsed * host.net_rate
            host.tx[device] = host.tx.get(device, 0.0) + elapsed * host.net_rate / 3
        host.load = 0.9 * host.load + 0.1 * share * cpus  # a smoothed run-queue length
        return HostSample(
            cpu_seconds=tuple(host.cpu[:cpus]),
            memory_total=memory[0],
            memory_free=memory[1],
            loadavg=round(host.load, 2),
            pif_rx={d: int(host.rx[d]) for d in pifs},
            pif_tx={d: int(host.tx[d]) for d in pifs},
            xapi_memory=64 * 1024 * 1024,
            xapi_open_fds=32,
        )
