"""Record what guest agents report: the VM's VM_guest_metrics.

The backend delivers a :class:`GuestReport` for a domain (the simulator some time after a
boot, a real host when its guest writes to XenStore); :func:`record` keeps it in the VM's
VM_guest_metrics, creating the row the first time. A report about a domain the database no
longer shows (the VM halted, rebooted into a new domain, or went away) is dropped.
"""

from __future__ import annotations

from typing import Any

from ...core.clock import Clock
from ...core.ids import new_ref, new_uuid
from ...db.store import Database
from ...xenops.interface import GuestReport

LIVE_STATES = ("Running", "Paused")


def record(db: Database, clock: Clock, report: GuestReport) -> str | None:
    """Keep ``report`` in its VM's guest metrics (in a transaction); return their ref, or
    None when the report is about a domain that is gone."""
    vm = db.table("VM").rows.get(report.vm_id)
    if vm is None or vm["domid"] != report.domid or vm["power_state"] not in LIVE_STATES:
        return None
    with db.transaction():
        return write(db, report.vm_id, fields(report, clock))


def fields(report: GuestReport, clock: Clock) -> dict[str, Any]:
    """The VM_guest_metrics fields a report fills."""
    return {
        "os_version": dict(report.os_version),
        "PV_drivers_version": dict(report.pv_drivers_version),
        "PV_drivers_up_to_date": bool(report.pv_drivers_version),
        "PV_drivers_detected": bool(report.pv_drivers_version),
        "memory": dict(report.memory),
        "disks": {},
        "networks": dict(report.networks),
        "other": dict(report.features),
        "last_updated": clock.now(),
        "live": True,
        "can_use_hotplug_vbd": "yes" if report.pv_drivers_version else "unspecified",
        "can_use_hotplug_vif": "yes" if report.pv_drivers_version else "unspecified",
    }


def write(db: Database, vm_ref: str, record_fields: dict[str, Any]) -> str:
    """Create or refresh the VM's VM_guest_metrics with ``record_fields``; return its ref."""
    ref = db.get("VM", vm_ref)["guest_metrics"]
    if db.exists("VM_guest_metrics", ref):
        db.update("VM_guest_metrics", ref, **record_fields)
        return str(ref)
    ref = new_ref()
    db.create("VM_guest_metrics", ref, {"uuid": new_uuid(), **record_fields})
    db.set("VM", vm_ref, "guest_metrics", ref)
    return str(ref)
