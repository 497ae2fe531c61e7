"""Helpers for the VM lifecycle tests: minimal VMs, extra simulated hosts, the simulator."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import XenAPI

from xenstack.impl.host.hypervisor import hypervisor
from xenstack.impl.install.bootstrap import create_host
from xenstack.testing import RunningPool
from xenstack.xenops.simulator import SimulatorBackend

MIB = 1 << 20
GIB = 1 << 30


def vm_record(name: str = "vm", memory: int = 256 * MIB, **extra: Any) -> dict[str, Any]:
    """The smallest VM.create record a client would send (a PV guest)."""
    record: dict[str, Any] = {
        "name_label": name,
        "name_description": "",
        "user_version": "1",
        "is_a_template": False,
        "affinity": "OpaqueRef:NULL",
        "memory_static_max": str(memory),
        "memory_dynamic_max": str(memory),
        "memory_dynamic_min": str(memory),
        "memory_static_min": str(memory // 2),
        "VCPUs_params": {},
        "VCPUs_max": "2",
        "VCPUs_at_startup": "1",
        "actions_after_shutdown": "destroy",
        "actions_after_reboot": "restart",
        "actions_after_crash": "restart",
        "PV_bootloader": "pygrub",
        "PV_kernel": "",
        "PV_ramdisk": "",
        "PV_args": "",
        "PV_bootloader_args": "",
        "PV_legacy_args": "",
        "HVM_boot_policy": "",
        "HVM_boot_params": {},
        "platform": {},
        "PCI_bus": "",
        "other_config": {},
        "recommendations": "",
    }
    record.update(extra)
    return record


def new_vm(x: Any, name: str = "vm", **extra: Any) -> str:
    """A new halted VM; ``x`` is a session's ``xenapi`` proxy."""
    return str(x.VM.create(vm_record(name, **extra)))


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


def failure(fn: Callable[..., Any], *args: Any) -> list[str]:
    """Call an SDK method that must fail; return its error description."""
    with pytest.raises(XenAPI.Failure) as err:
        fn(*args)
    return list(err.value.details)


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def login(pool: RunningPool, label: str) -> Iterator[Any]:
    """A logged-in SDK ``xenapi`` proxy for a fixture to yield; logs out afterwards."""
    s = XenAPI.Session(pool.url)
    s.xenapi.login_with_password("root", pool.password, "1.0", label)
    yield s.xenapi
    s.xenapi.session.logout()


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
