"""Helpers shared by the simulated-pool tests (devices, storage, networks)."""

from __future__ import annotations

import time
from typing import Any

import XenAPI

from xenstack.impl.hypervisor import hypervisor
from xenstack.testing import RunningPool

GiB = 1 << 30


def pool_master(session: Any) -> str:
    (pool,) = session.xenapi.pool.get_all_records().values()
    return str(pool["master"])


def default_sr(session: Any) -> str:
    (pool,) = session.xenapi.pool.get_all_records().values()
    return str(pool["default_SR"])


def new_vm(session: Any, label: str = "vm") -> str:
    """A halted VM cloned from the "Other install media" template."""
    (template,) = session.xenapi.VM.get_by_name_label("Other install media")
    vm = session.xenapi.VM.clone(template, label)
    session.xenapi.VM.set_is_a_template(vm, False)
    return str(vm)


def running_vm(session: Any, pool: RunningPool, label: str = "vm") -> str:
    """A running VM whose (simulated) guest agent has reported PV drivers, so it hotplugs."""
    vm = new_vm(session, label)
    pool.call(lambda ts: setattr(hypervisor(ts), "guest_agent_delay", 0.02))
    session.xenapi.VM.start(vm, False, True)
    deadline = time.monotonic() + 5
    while session.xenapi.VM.get_guest_metrics(vm) == "OpaqueRef:NULL":
        assert time.monotonic() < deadline, "the guest agent never reported"
        time.sleep(0.01)
    return vm


def new_disk(session: Any, size: int = GiB, sr: str | None = None, label: str = "disk") -> str:
    record = {
        "name_label": label,
        "name_description": "",
        "SR": sr or default_sr(session),
        "virtual_size": str(size),
        "type": "user",
        "sharable": False,
        "read_only": False,
        "other_config": {},
        "xenstore_data": {},
        "sm_config": {},
        "tags": [],
    }
    return str(session.xenapi.VDI.create(record))


def vbd_record(vm: str, vdi: str, userdevice: str = "autodetect", **extra: Any) -> dict[str, Any]:
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


def vif_record(vm: str, network: str, device: str, mac: str = "") -> dict[str, Any]:
    return {
        "device": device,
        "network": network,
        "VM": vm,
        "MAC": mac,
        "MTU": "1500",
        "other_config": {},
        "qos_algorithm_type": "",
        "qos_algorithm_params": {},
        "locking_mode": "network_default",
        "ipv4_allowed": [],
        "ipv6_allowed": [],
    }


def error_of(call: Any, *args: Any) -> list[str]:
    """The ErrorDescription of a call that must fail."""
    try:
        call(*args)
    except XenAPI.Failure as failure:
        return list(failure.details)
    raise AssertionError("the call succeeded")
