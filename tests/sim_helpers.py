"""Helpers for the simulated-pool tests that work on a whole SDK ``session`` (devices, storage,
networks); the records and the polling they share with the VM tests come from :mod:`vmkit`."""

from __future__ import annotations

from typing import Any

from vmkit import disk_record, master, vbd_record, vif_record, wait_for

from xenstack.impl.host.hypervisor import hypervisor
from xenstack.testing import RunningPool, vm_from_template

GiB = 1 << 30

__all__ = ["GiB", "default_sr", "new_disk", "pool_master", "running_vm"]
__all__ += ["vbd_record", "vif_record"]


def pool_master(session: Any) -> str:
    return master(session.xenapi)


def default_sr(session: Any) -> str:
    (pool,) = session.xenapi.pool.get_all_records().values()
    return str(pool["default_SR"])


def running_vm(session: Any, pool: RunningPool, label: str = "vm") -> str:
    """A running VM whose (simulated) guest agent has reported PV drivers, so it hotplugs."""
    vm = vm_from_template(session, label)
    pool.call(lambda ts: setattr(hypervisor(ts).simulator, "guest_agent_delay", 0.02))
    session.xenapi.VM.start(vm, False, True)
    wait_for(lambda: session.xenapi.VM.get_guest_metrics(vm) != "OpaqueRef:NULL")
    return vm


def new_disk(session: Any, size: int = GiB, sr: str | None = None, label: str = "disk") -> str:
    """A new user disk of ``size`` bytes, on the pool's default SR unless ``sr`` is given."""
    record = disk_record(sr or default_sr(session), label, size)
    return str(session.xenapi.VDI.create(record))
