"""Helpers for the metric tests (``tests/rrd``, ``tests/ui``, ``tests/cli``): the collector's
ticks driven at chosen times with the simulator's load clock following, so every figure is
exact; HTTP GETs; a VM with a disk and a VIF."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from vmkit import vbd_record, vif_record

from xenstack.testing import RunningPool, vm_from_template

GIB = 1 << 30


@dataclass
class Driver:
    """Ticks of the collector at 5-second steps, the simulator's clock following."""

    pool: RunningPool
    now: float = field(default_factory=lambda: (int(time.time()) // 5) * 5 - 3600.0)
    load_clock: list[float] = field(default_factory=lambda: [0.0])

    def __post_init__(self) -> None:
        clock = self.load_clock
        self.pool.call(lambda ts: setattr(ts.hypervisor.simulator.load, "clock", lambda: clock[0]))

    def tick(self, count: int = 1) -> None:
        for _ in range(count):
            self.now += 5
            self.load_clock[0] += 5
            self.pool.call(lambda ts, t=self.now: ts.collector.tick(t))

    def domain(self, vm: str) -> Any:
        return self.pool.call(lambda ts: ts.hypervisor.simulator.domains[vm])

    def sim(self, fn: Any) -> Any:
        return self.pool.call(lambda ts: fn(ts.hypervisor.simulator))


def get(pool: RunningPool, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(pool.url.rstrip("/") + path, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def busy_vm(session: Any, label: str = "vm", *, disk: bool = True) -> str:
    """A running VM with a VIF on the first network and (``disk``) a disk on the default SR."""
    x = session.xenapi
    vm = vm_from_template(session, label)
    network = sorted(x.network.get_all())[0]
    x.VIF.create(vif_record(vm, network, "0"))
    if disk:
        _add_disk(x, vm, label)
    x.VM.start(vm, False, True)
    return vm


def _add_disk(x: Any, vm: str, label: str) -> None:
    (pool_rec,) = x.pool.get_all_records().values()
    disk = x.VDI.create(
        {
            "name_label": f"{label}-disk", "name_description": "", "SR": pool_rec["default_SR"],
            "virtual_size": str(GIB), "type": "user", "sharable": False, "read_only": False,
            "other_config": {}, "xenstore_data": {}, "sm_config": {}, "tags": [],
        }
    )  # fmt: skip
    x.VBD.create(vbd_record(vm, disk, "0", bootable=True))
