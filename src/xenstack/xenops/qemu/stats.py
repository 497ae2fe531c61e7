"""A QEMU domain's counters for the metrics: read over QMP and from ``/proc``.

Disks from ``query-blockstats`` (bytes, requests completed, the nanoseconds they took; the
device is the ``vbd-<device>`` QEMU names in ``qdev``), vCPUs from their threads' CPU time
(``query-cpus-fast`` gives each vCPU's thread id), interfaces from the taps' counters in the
namespace QEMU runs in (``/proc/<pid>/net/dev``: what the tap receives the guest sent), the
balloon from ``query-balloon``, the guest's free memory from what its agent reported
(``data/meminfo_free``, KiB). One :func:`read` per domain and tick; what it cannot read is
left out, never guessed.
"""

from __future__ import annotations

import asyncio
import os
import re
from typing import TYPE_CHECKING, Any

from ..interface import DomainStats, XenopsError
from .cmdline import tap_name

if TYPE_CHECKING:
    from .domain import Domain

_QDEV = re.compile(r"vbd-([^/]+)")
KIB = 1024


def _ticks(path: str) -> float:
    """User plus system CPU seconds of the task whose ``stat`` is at ``path`` (0 if gone)."""
    try:
        with open(path) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def net_dev(pid: int) -> dict[str, tuple[int, int]]:
    """Bytes received and sent per interface of the process's network namespace."""
    try:
        with open(f"/proc/{pid}/net/dev") as f:
            lines = f.readlines()[2:]
    except OSError:
        return {}
    counters = {}
    for line in lines:
        name, _, rest = line.partition(":")
        fields = rest.split()
        if len(fields) >= 9:
            counters[name.strip()] = (int(fields[0]), int(fields[8]))
    return counters


def blockstats(answer: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """``query-blockstats``' answer, per device (``0`` for ``vbd-0``)."""
    disks = {}
    for entry in answer:
        found = _QDEV.search(str(entry.get("qdev", "")))
        if found is not None and isinstance(entry.get("stats"), dict):
            disks[found.group(1)] = entry["stats"]
    return disks


async def read(dom: Domain) -> DomainStats | None:
    """The domain's counters now; None if its monitor does not answer."""
    if dom.monitor is None:
        return None
    try:
        # one round trip, not three: QEMU's monitor answers slowly while a TCG guest is busy
        queries = ("query-blockstats", "query-cpus-fast", "query-balloon")
        replies = await asyncio.gather(*(dom.monitor.execute(q) for q in queries))
    except XenopsError:
        return None
    disks, cpus, balloon = blockstats(replies[0]), replies[1], replies[2]
    threads = [int(c["thread-id"]) for c in sorted(cpus, key=lambda c: int(c["cpu-index"]))]
    cpu = tuple(_ticks(f"/proc/{dom.pid}/task/{tid}/stat") for tid in threads)
    taps = net_dev(dom.pid)
    rx, tx = {}, {}
    for device in dom.vifs:
        counters = taps.get(tap_name(dom.domid, device))
        if counters is not None:  # the tap receives what the guest sends
            tx[device], rx[device] = counters
    keys = dom.channel.keys if dom.channel is not None else {}
    free = keys.get("data/meminfo_free", "")
    plugged = [d for d in dom.vbds if d in disks]
    return DomainStats(
        cpu_seconds=cpu,
        memory_actual=int(balloon.get("actual", dom.memory_actual)),
        memory_target=dom.memory_actual or dom.spec.memory_dynamic_max,
        memory_internal_free=int(free) * KIB if free.isdigit() else 0,
        vbd_read_bytes={d: int(disks[d].get("rd_bytes", 0)) for d in plugged},
        vbd_write_bytes={d: int(disks[d].get("wr_bytes", 0)) for d in plugged},
        vif_rx_bytes=rx,
        vif_tx_bytes=tx,
        vbd_read_ops={d: int(disks[d].get("rd_operations", 0)) for d in plugged},
        vbd_write_ops={d: int(disks[d].get("wr_operations", 0)) for d in plugged},
        vbd_read_ns={d: int(disks[d].get("rd_total_time_ns", 0)) for d in plugged},
        vbd_write_ns={d: int(disks[d].get("wr_total_time_ns", 0)) for d in plugged},
    )
