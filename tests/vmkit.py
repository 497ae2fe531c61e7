"""Helpers for the VM lifecycle tests: extra simulated hosts, the simulator, device records.

VM records, new VMs, logins and expected failures come from ``xenstack.testing``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from xenstack.impl.host.hypervisor import hypervisor
from xenstack.impl.install.bootstrap import create_host
from xenstack.testing import RunningPool
from xenstack.xenops.simulator import SimulatorBackend

MIB = 1 << 20
GIB = 1 << 30


def add_hosts(pool: RunningPool, count: int, memory: int = 64 * GIB) -> list[str]:
    """Add simulated hosts to the pool (as ``xenstack init --hosts N`` would)."""

    def add(ts: Any) -> list[str]:
        refs = []
        with ts.db.transaction():
            base = len(ts.db.refs("host"))
            for i in range(count):
                n = base + i
                refs.append(create_host(ts.db, f"host{n}", f"127.0.1.{n}", memory))
        return refs

    return list(pool.call(add))


def master(x: Any) -> str:
    """The pool master's host ref."""
    (pool,) = x.pool.get_all_records().values()
    return str(pool["master"])


def simulator(pool: RunningPool) -> SimulatorBackend:
    sim = pool.call(lambda ts: hypervisor(ts).simulator)
    assert isinstance(sim, SimulatorBackend)
    return sim


def set_delays(pool: RunningPool, **delays: float) -> None:
    pool.call(lambda ts: hypervisor(ts).simulator.delays.update(delays))


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def vif_record(vm: str, network: str, device: str = "0", mac: str = "") -> dict[str, Any]:
    """The VIF.create record a client sends (an empty ``mac``: the server chooses one)."""
    return {
        "device": device,
        "network": network,
        "VM": vm,
        "MAC": mac,
        "MTU": "1500",
        "other_config": {},
        "qos_algorithm_type": "",
        "qos_algorithm_params": {},
    }


def local_sr(x: Any) -> str:
    """The first SR that can hold disks (not an ISO library or removable media)."""
    return str(
        next(
            r
            for r, rec in x.SR.get_all_records().items()
            if rec["type"] != "iso" and rec["content_type"] != "iso" and rec["type"] != "udev"
        )
    )


def disk_record(sr: str, name: str = "disk", size: int = GIB) -> dict[str, Any]:
    """The VDI.create record of a user disk of ``size`` bytes on ``sr``."""
    return {
        "name_label": name,
        "name_description": "",
        "SR": sr,
        "virtual_size": str(size),
        "type": "user",
        "sharable": False,
        "read_only": False,
        "other_config": {},
        "xenstore_data": {},
        "sm_config": {},
        "tags": [],
    }


def vbd_record(vm: str, vdi: str, userdevice: str = "autodetect", **extra: Any) -> dict[str, Any]:
    """The VBD.create record of a read-write disk; ``extra`` replaces fields."""
    record = {
        "VM": vm,
        "VDI": vdi,
        "userdevice": userdevice,
        "bootable": False,
        "mode": "RW",
        "type": "Disk",
        "unpluggable": True,
        "empty": False,
        "other_config": {},
        "qos_algorithm_type": "",
        "qos_algorithm_params": {},
    }
    record.update(extra)
    return record
