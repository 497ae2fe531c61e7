"""XAPI's data sources: their names, kinds, units and ranges, and the values a sample gives them.

Host: ``cpu<N>`` (fraction of a CPU, from cumulative busy seconds), ``cpu_avg``,
``memory_total_kib``, ``memory_free_kib``, ``loadavg``, ``pif_<dev>_rx``/``_tx`` and
``pif_aggr_rx``/``_tx`` (bytes/s), ``xapi_memory_usage_kib``, ``xapi_open_fds`` (not
recorded unless asked), and per SR ``io_throughput_read_<sr8>``/``_write_`` (MiB/s, the
sum over the host's VMs' disks on that SR). VM: ``cpu<N>``, ``memory``, ``memory_target``
(bytes), ``memory_internal_free`` (KiB), ``vbd_<dev>_read``/``_write`` and ``vif_<n>_rx``/
``_tx`` (bytes/s). SR: ``physical_size``, ``physical_utilisation``, ``virtual_allocation``
(bytes).

Counters (CPU seconds, bytes) are DERIVE sources: the archive turns them into rates.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from .archive import DERIVE, GAUGE, DataSource

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


_PATTERNS: tuple[tuple[str, str, str, str, str, float, bool], ...] = (
    # (owner, regex, kind, units, description, max, standard)
    ("host", r"cpu(\d+)", DERIVE, "(fraction)", "Physical cpu usage for cpu {0}", 1.0, True),
    ("host", r"cpu_avg", GAUGE, "(fraction)", "Average physical cpu usage", 1.0, True),
    (
        "host",
        r"memory_total_kib",
        GAUGE,
        "KiB",
        "Total amount of memory in the host",
        math.inf,
        True,
    ),
    ("host", r"memory_free_kib", GAUGE, "KiB", "Total amount of free memory", math.inf, True),
    ("host", r"loadavg", GAUGE, "(fraction)", "Domain0 loadavg", math.inf, True),
    (
        "host",
        r"pif_(.+)_rx",
        DERIVE,
        "B/s",
        "Bytes per second received on physical interface {0}",
        math.inf,
        True,
    ),
    (
        "host",
        r"pif_(.+)_tx",
        DERIVE,
        "B/s",
        "Bytes per second sent on physical interface {0}",
        math.inf,
        True,
    ),
    (
        "host",
        r"xapi_memory_usage_kib",
        GAUGE,
        "KiB",
        "Total memory allocated used by xapi daemon",
        math.inf,
        True,
    ),
    (
        "host",
        r"xapi_open_fds",
        GAUGE,
        "count",
        "Number of open file descriptors held by xapi",
        math.inf,
        False,
    ),
    (
        "host",
        r"io_throughput_read_(\w{8})",
        GAUGE,
        "MiB/s",
        "Data read from SR {0}",
        math.inf,
        True,
    ),
    (
        "host",
        r"io_throughput_write_(\w{8})",
        GAUGE,
        "MiB/s",
        "Data written to SR {0}",
        math.inf,
        True,
    ),
    ("vm", r"cpu(\d+)", DERIVE, "(fraction)", "CPU{0} usage", 1.0, True),
    ("vm", r"memory", GAUGE, "B", "Memory currently allocated to VM", math.inf, True),
    ("vm", r"memory_target", GAUGE, "B", "Target of VM balloon driver", math.inf, True),
    (
        "vm",
        r"memory_internal_free",
        GAUGE,
        "KiB",
        "Memory used as reported by the guest agent",
        math.inf,
        True,
    ),
    (
        "vm",
        r"vbd_(\w+)_read",
        DERIVE,
        "B/s",
        "Reads from device {0} in bytes per second",
        math.inf,
        True,
    ),
    (
        "vm",
        r"vbd_(\w+)_write",
        DERIVE,
        "B/s",
        "Writes to device {0} in bytes per second",
        math.inf,
        True,
    ),
    (
        "vm",
        r"vif_(\d+)_rx",
        DERIVE,
        "B/s",
        "Bytes per second received on virtual interface number {0}",
        math.inf,
        True,
    ),
    (
        "vm",
        r"vif_(\d+)_tx",
        DERIVE,
        "B/s",
        "Bytes per second transmitted on virtual interface number {0}",
        math.inf,
        True,
    ),
    ("sr", r"physical_size", GAUGE, "B", "Size of the SR", math.inf, True),
    ("sr", r"physical_utilisation", GAUGE, "B", "Space used on the SR", math.inf, True),
    (
        "sr",
        r"virtual_allocation",
        GAUGE,
        "B",
        "Sum of the virtual sizes of the SR's disks",
        math.inf,
        True,
    ),
)
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


def host_values(
    sample: HostSample, sr_read: Mapping[str, float], sr_write: Mapping[str, float]
) -> dict[str, float]:
    """The host's source values; ``sr_read``/``sr_write``: bytes/s per SR uuid."""
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
    for sr, rate in sr_read.items():
        values[f"io_throughput_read_{sr[:8]}"] = rate / MIB
    for sr, rate in sr_write.items():
        values[f"io_throughput_write_{sr[:8]}"] = rate / MIB
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


def vm_values(
    stats: DomainCounters, disks: Mapping[str, str], vifs: Mapping[str, str]
) -> dict[str, float]:
    """A VM's source values; ``disks`` and ``vifs`` map the backend's device keys to the names
    XAPI uses (``"0"`` -> ``xvda``; a VIF's device number), unknown keys kept as they are."""
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
    return values


def cpu_avg(rates: list[float]) -> float:
    known = [r for r in rates if r == r]
    return sum(known) / len(known) if known else math.nan
