"""XAPI's data sources: their names, kinds, units and ranges, and the values a sample gives them.

Host: ``cpu<N>`` (fraction of a CPU, from cumulative busy seconds), ``cpu_avg``,
``memory_total_kib``, ``memory_free_kib``, ``loadavg``, ``pif_<dev>_rx``/``_tx`` and
``pif_aggr_rx``/``_tx`` (bytes/s), ``xapi_memory_usage_kib``, ``xapi_open_fds`` (not
recorded unless asked), and per SR the sources XAPI's rrdp-iostat reports, named
``<key>_<sr8>`` (the first 8 characters of the SR's uuid): ``read``/``write`` (B/s),
``read_latency``/``write_latency``/``latency`` (μs), ``io_throughput_read``/``_write``/
``_total`` (MiB/s), ``iops_read``/``_write``/``_total`` (requests/s), ``iowait`` (s/s),
``inflight`` and ``avgqu_sz`` (requests): over the host's VMs' disks on that SR. VM:
``cpu<N>``, ``memory``, ``memory_target`` (bytes), ``memory_internal_free`` (KiB), the same
iostat sources per disk as ``vbd_<dev>_<key>`` (``vbd_xvda_read_latency``...), and
``vif_<n>_rx``/``_tx`` (bytes/s). SR: ``size`` and ``physical_utilisation`` (bytes), what
XAPI's SR plugin (xenvmd) reports.

Counters (CPU seconds, bytes) are DERIVE sources: the archive turns them into rates.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from .archive import ABSOLUTE, DERIVE, GAUGE, DataSource

KIB = 1024
MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class SourceDef:
    """What a data source is: XAPI's ``data_source`` record, less its value."""

    name: str
    kind: str
    units: str
    description: str
    min: float = 0.0
    max: float = math.inf
    standard: bool = True  # recorded by default

    def new(self) -> DataSource:
        return DataSource(self.name, self.kind, self.min, self.max)


_INF = math.inf
_SR8 = r"([0-9A-Za-z-]{8})"  # an SR's uuid prefix, as rrdp-iostat names the host's SR sources
_DEV = r"([^_]+)"  # a disk's device name (xvda) or a VIF's device number
# per disk (VM ``vbd_<dev>_<key>``) and per SR (host ``<key>_<sr8>``), rrdp-iostat's sources:
# (key, kind, units, description); {0} is the device or the SR
_IOSTAT: tuple[tuple[str, str, str, str], ...] = (
    ("read", DERIVE, "B/s", "Reads from {0}, in B/s"),
    ("write", DERIVE, "B/s", "Writes to {0}, in B/s"),
    ("read_latency", GAUGE, "μs", "Read latency of {0}, in microseconds"),
    ("write_latency", GAUGE, "μs", "Write latency of {0}, in microseconds"),
    ("io_throughput_read", ABSOLUTE, "MiB/s", "Data read from {0}, in MiB/s"),
    ("io_throughput_write", ABSOLUTE, "MiB/s", "Data written to {0}, in MiB/s"),
    ("io_throughput_total", ABSOLUTE, "MiB/s", "All I/O of {0}, in MiB/s"),
    ("iops_read", ABSOLUTE, "requests/s", "Read requests per second"),
    ("iops_write", ABSOLUTE, "requests/s", "Write requests per second"),
    ("iops_total", ABSOLUTE, "requests/s", "I/O requests per second"),
    ("iowait", ABSOLUTE, "s/s", "Total I/O wait time (all requests) per second"),
    ("inflight", GAUGE, "requests", "Number of I/O requests currently in flight"),
    ("latency", GAUGE, "μs", "Average I/O latency"),
    ("avgqu_sz", GAUGE, "requests", "Average I/O queue size"),
)
IOSTAT_KEYS = tuple(key for key, *_ in _IOSTAT)

_PATTERNS: tuple[tuple[str, str, str, str, str, float, bool], ...] = (
    # (owner, regex, kind, units, description, max, standard)
    ("host", r"cpu(\d+)", DERIVE, "(fraction)", "Physical cpu usage for cpu {0}", 1.0, True),
    ("host", r"cpu_avg", GAUGE, "(fraction)", "Average physical cpu usage", 1.0, True),
    ("host", r"memory_total_kib", GAUGE, "KiB", "Total amount of memory in the host", _INF, True),
    ("host", r"memory_free_kib", GAUGE, "KiB", "Total amount of free memory", _INF, True),
    ("host", r"loadavg", GAUGE, "(fraction)", "Domain0 loadavg", _INF, True),
    ("host", r"pif_(.+)_rx", DERIVE, "B/s", "Bytes per second received on physical interface {0}", _INF, True),  # noqa: E501
    ("host", r"pif_(.+)_tx", DERIVE, "B/s", "Bytes per second sent on physical interface {0}", _INF, True),  # noqa: E501
    ("host", r"xapi_memory_usage_kib", GAUGE, "KiB", "Total memory allocated used by xapi daemon", _INF, True),  # noqa: E501
    ("host", r"xapi_open_fds", GAUGE, "count", "Number of open file descriptors held by xapi", _INF, False),  # noqa: E501
    *(
        ("host", f"{key}_{_SR8}", GAUGE, units, d.replace("{0}", "SR {0}"), _INF, True)
        for key, kind, units, d in _IOSTAT
    ),
    *(
        ("vm", f"vbd_{_DEV}_{key}", kind, units, d.replace("{0}", "device {0}"), _INF, True)
        for key, kind, units, d in _IOSTAT
    ),
    ("vm", r"cpu(\d+)", DERIVE, "(fraction)", "CPU{0} usage", 1.0, True),
    ("vm", r"memory", GAUGE, "B", "Memory currently allocated to VM", _INF, True),
    ("vm", r"memory_target", GAUGE, "B", "Target of VM balloon driver", _INF, True),
    ("vm", r"memory_internal_free", GAUGE, "KiB", "Memory used as reported by the guest agent", _INF, True),  # noqa: E501
    ("vm", rf"vif_{_DEV}_rx", DERIVE, "B/s", "Bytes per second received on virtual interface number {0}", _INF, True),  # noqa: E501
    ("vm", rf"vif_{_DEV}_tx", DERIVE, "B/s", "Bytes per second transmitted on virtual interface number {0}", _INF, True),  # noqa: E501
    # the SR's own RRD: the sources XAPI's SR plugins (xenvmd) report
    ("sr", r"size", GAUGE, "B", "Size of the SR", _INF, True),
    ("sr", r"physical_utilisation", GAUGE, "B", "Physical utilisation of the SR", _INF, True),
)  # fmt: skip
_COMPILED = [(o, re.compile(rx + "$"), k, u, d, mx, st) for o, rx, k, u, d, mx, st in _PATTERNS]


def definition(owner: str, name: str) -> SourceDef | None:
    """The definition of ``owner``'s (``host``, ``vm``, ``sr``) source ``name``, or None."""
    for o, regex, kind, units, description, high, standard in _COMPILED:
        if o != owner:
            continue
        match = regex.match(name)
        if match is not None:
            return SourceDef(
                name, kind, units, description.format(*match.groups()), 0.0, high, standard
            )
    return None


@dataclass(frozen=True, slots=True)
class HostSample:
    """One host's figures at a moment: cumulative CPU busy seconds per CPU, memory in bytes,
    the load average, cumulative bytes per PIF device, the toolstack's own footprint."""

    cpu_seconds: tuple[float, ...]
    memory_total: int
    memory_free: int
    loadavg: float
    pif_rx: dict[str, int] = field(default_factory=dict)
    pif_tx: dict[str, int] = field(default_factory=dict)
    xapi_memory: int = 0
    xapi_open_fds: int = 0


def host_values(sample: HostSample, sr_io: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """The host's source values; ``sr_io``: per SR uuid, its iostat values (:func:`sr_values`)."""
    values: dict[str, float] = {f"cpu{i}": s for i, s in enumerate(sample.cpu_seconds)}
    values["memory_total_kib"] = sample.memory_total / KIB
    values["memory_free_kib"] = sample.memory_free / KIB
    values["loadavg"] = sample.loadavg
    for device, count in sample.pif_rx.items():
        values[f"pif_{device}_rx"] = count
    for device, count in sample.pif_tx.items():
        values[f"pif_{device}_tx"] = count
    values["pif_aggr_rx"] = sum(sample.pif_rx.values())
    values["pif_aggr_tx"] = sum(sample.pif_tx.values())
    values["xapi_memory_usage_kib"] = sample.xapi_memory / KIB
    values["xapi_open_fds"] = sample.xapi_open_fds
    for sr, io in sr_io.items():
        for key, value in io.items():
            values[f"{key}_{sr[:8]}"] = value
    return values


@dataclass(slots=True)
class DiskDelta:
    """What one disk did between two samples: bytes, requests completed, the nanoseconds they
    took, and the requests in flight at the second (None when the backend does not know)."""

    read_bytes: float = 0.0
    write_bytes: float = 0.0
    read_ops: float = 0.0
    write_ops: float = 0.0
    read_ns: float = 0.0
    write_ns: float = 0.0
    inflight: float | None = None

    def add(self, other: DiskDelta) -> None:
        self.read_bytes += other.read_bytes
        self.write_bytes += other.write_bytes
        self.read_ops += other.read_ops
        self.write_ops += other.write_ops
        self.read_ns += other.read_ns
        self.write_ns += other.write_ns
        if other.inflight is not None:
            self.inflight = (self.inflight or 0.0) + other.inflight


def _latency_us(ns: float, ops: float) -> float:
    return ns / ops / 1000.0 if ops > 0 else 0.0


def disk_values(d: DiskDelta, dt: float) -> dict[str, float]:
    """rrdp-iostat's per-disk sources (but ``read``/``write``, counters the archive derives) from
    what the disk did over ``dt`` seconds: ABSOLUTE ones as amounts over the interval (the
    archive divides), GAUGE ones as levels; latencies in microseconds."""
    ops, ns = d.read_ops + d.write_ops, d.read_ns + d.write_ns
    values = {
        "read_latency": _latency_us(d.read_ns, d.read_ops),
        "write_latency": _latency_us(d.write_ns, d.write_ops),
        "io_throughput_read": d.read_bytes / MIB,
        "io_throughput_write": d.write_bytes / MIB,
        "io_throughput_total": (d.read_bytes + d.write_bytes) / MIB,
        "iops_read": d.read_ops,
        "iops_write": d.write_ops,
        "iops_total": ops,
        "iowait": ns / 1e9,
        "latency": _latency_us(ns, ops),
        "avgqu_sz": ns / 1e9 / dt if dt > 0 else 0.0,  # Little's law: time waited per second
    }
    if d.inflight is not None:
        values["inflight"] = d.inflight
    return values


def sr_values(d: DiskDelta, dt: float) -> dict[str, float]:
    """A host's per-SR sources from what its disks on the SR did over ``dt`` seconds, all as
    rates (gauges): B/s, MiB/s, requests/s, s/s, microseconds."""
    values = disk_values(d, dt)
    for key in ("io_throughput_read", "io_throughput_write", "io_throughput_total"):
        values[key] /= dt
    for key in ("iops_read", "iops_write", "iops_total", "iowait"):
        values[key] /= dt
    values["read"] = d.read_bytes / dt
    values["write"] = d.write_bytes / dt
    return values


class DomainCounters(Protocol):
    """A domain's cumulative counters (what ``xenops.interface.DomainStats`` holds)."""

    @property
    def cpu_seconds(self) -> tuple[float, ...]: ...
    @property
    def memory_actual(self) -> int: ...
    @property
    def memory_target(self) -> int: ...
    @property
    def memory_internal_free(self) -> int: ...
    @property
    def vbd_read_bytes(self) -> dict[str, int]: ...
    @property
    def vbd_write_bytes(self) -> dict[str, int]: ...
    @property
    def vif_rx_bytes(self) -> dict[str, int]: ...
    @property
    def vif_tx_bytes(self) -> dict[str, int]: ...
    @property
    def vbd_read_ops(self) -> dict[str, int]: ...
    @property
    def vbd_write_ops(self) -> dict[str, int]: ...
    @property
    def vbd_read_ns(self) -> dict[str, int]: ...
    @property
    def vbd_write_ns(self) -> dict[str, int]: ...
    @property
    def vbd_inflight(self) -> dict[str, int]: ...


def _delta(now: Mapping[str, int], before: Mapping[str, int], key: str) -> float | None:
    """How far a counter moved; None if it is unknown or went back (a reset)."""
    a, b = now.get(key), before.get(key)
    if a is None or b is None or a < b:
        return None
    return float(a - b)


def disk_deltas(now: DomainCounters, before: DomainCounters) -> dict[str, DiskDelta]:
    """Per disk (backend key) with request counters in both samples, what it did between them."""
    deltas = {}
    for key in now.vbd_read_ops:
        moved = [
            _delta(now.vbd_read_bytes, before.vbd_read_bytes, key),
            _delta(now.vbd_write_bytes, before.vbd_write_bytes, key),
            _delta(now.vbd_read_ops, before.vbd_read_ops, key),
            _delta(now.vbd_write_ops, before.vbd_write_ops, key),
            _delta(now.vbd_read_ns, before.vbd_read_ns, key),
            _delta(now.vbd_write_ns, before.vbd_write_ns, key),
        ]
        known = [m for m in moved if m is not None]
        if len(known) != len(moved):
            continue
        inflight = now.vbd_inflight.get(key)
        read_bytes, write_bytes, read_ops, write_ops, read_ns, write_ns = known
        deltas[key] = DiskDelta(
            read_bytes, write_bytes, read_ops, write_ops, read_ns, write_ns,
            None if inflight is None else float(inflight),
        )  # fmt: skip
    return deltas


def vm_values(
    stats: DomainCounters,
    disks: Mapping[str, str],
    vifs: Mapping[str, str],
    moved: Mapping[str, DiskDelta] | None = None,
    dt: float = 0.0,
) -> dict[str, float]:
    """A VM's source values; ``disks`` and ``vifs`` map the backend's device keys to the names
    XAPI uses (``"0"`` -> ``xvda``; a VIF's device number), unknown keys kept as they are;
    ``moved``: what each disk did over the ``dt`` seconds since the previous sample."""
    values: dict[str, float] = {f"cpu{i}": s for i, s in enumerate(stats.cpu_seconds)}
    values["memory"] = stats.memory_actual
    values["memory_target"] = stats.memory_target
    values["memory_internal_free"] = stats.memory_internal_free / KIB
    for key, count in stats.vbd_read_bytes.items():
        values[f"vbd_{disks.get(key, key)}_read"] = count
    for key, count in stats.vbd_write_bytes.items():
        values[f"vbd_{disks.get(key, key)}_write"] = count
    for key, count in stats.vif_rx_bytes.items():
        values[f"vif_{vifs.get(key, key)}_rx"] = count
    for key, count in stats.vif_tx_bytes.items():
        values[f"vif_{vifs.get(key, key)}_tx"] = count
    for key, delta in (moved or {}).items():
        name = disks.get(key, key)
        for source, value in disk_values(delta, dt).items():
            values[f"vbd_{name}_{source}"] = value
    return values


def cpu_avg(rates: list[float]) -> float:
    known = [r for r in rates if r == r]
    return sum(known) / len(known) if known else math.nan
