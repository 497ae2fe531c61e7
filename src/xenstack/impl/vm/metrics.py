"""What the database records about a VM's domain: power state, residence, domid, metrics.

These functions are called inside a transaction once the backend has acted. ``record_halted``
follows XAPI's state reset: devices detached, residence and domid cleared, guest metrics gone.
Stamps come from ``clock``: a caller holding a context passes ``ctx.toolstack.clock``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ...core.clock import Clock, SystemClock
from ...core.ids import new_ref, new_uuid
from ...db.store import Database
from ...idl.types import NULL_REF, DateTime
from ...xenops.interface import DomainInfo
from ..devices.devices import disk_name, disk_number
from .consoles import close_consoles, open_consoles

SYSTEM_CLOCK = SystemClock()  # for callers without a toolstack at hand


def ensure_metrics(db: Database, vm_ref: str, clock: Clock = SYSTEM_CLOCK) -> str:
    """The VM's VM_metrics ref, created if the VM has none (e.g. a row made by hand)."""
    metrics = db.get("VM", vm_ref)["metrics"]
    if db.exists("VM_metrics", metrics):
        return str(metrics)
    metrics = new_ref()
    db.create("VM_metrics", metrics, {"uuid": new_uuid(), "install_time": clock.now()})
    db.set("VM", vm_ref, "metrics", metrics)
    return metrics


def _time(seconds: float, clock: Clock) -> DateTime:
    if seconds <= 0:
        return clock.now()
    return DateTime(datetime.fromtimestamp(seconds, UTC).strftime("%Y%m%dT%H:%M:%SZ"))


def record_domain(
    db: Database, vm_ref: str, info: DomainInfo, *, started: bool, clock: Clock = SYSTEM_CLOCK
) -> None:
    """The VM runs (or is paused) as ``info`` describes; ``started`` if its domain is new."""
    vm = db.get("VM", vm_ref)
    power = "Paused" if info.state == "paused" else "Running"
    db.update(
        "VM",
        vm_ref,
        power_state=power,
        domid=info.domid,
        resident_on=info.host_id,
        scheduled_to_be_resident_on=NULL_REF,
    )
    metrics = ensure_metrics(db, vm_ref, clock)
    fields: dict[str, Any] = {
        "memory_actual": info.memory_actual,
        "VCPUs_number": info.vcpus,
        "VCPUs_utilisation": {str(i): 0.0 for i in range(info.vcpus)},  # str: JSON-persisted
        "state": [info.state],
        "last_updated": clock.now(),
        "current_domain_type": info.domain_type,
        "hvm": info.domain_type != "pv",
        "nomigrate": _flag(vm["platform"].get("nomigrate")),
        "nested_virt": _flag(vm["platform"].get("nested-virt")),
    }
    if started:
        fields["start_time"] = _time(info.start_time, clock)
    db.update("VM_metrics", metrics, **fields)
    if started:
        _set_attached(db, vm, info)
    if not vm["is_control_domain"]:
        open_consoles(db, vm_ref, info.host_id)


def record_halted(db: Database, vm_ref: str, clock: Clock = SYSTEM_CLOCK) -> None:
    """The VM has no domain any more and no saved image."""
    vm = db.get("VM", vm_ref)
    db.update("VM", vm_ref, power_state="Halted", requires_reboot=False)
    _set_attached(db, vm, None)
    _clear_residence(db, vm_ref, clock)
    drop_guest_metrics(db, vm_ref)
    close_consoles(db, vm_ref)


def record_suspended(
    db: Database, vm_ref: str, keep_residence: bool = False, clock: Clock = SYSTEM_CLOCK
) -> None:
    """The VM's memory is saved in an image; it has no domain."""
    db.set("VM", vm_ref, "power_state", "Suspended")
    close_consoles(db, vm_ref)
    if not keep_residence:
        _clear_residence(db, vm_ref, clock)


def _clear_residence(db: Database, vm_ref: str, clock: Clock) -> None:
    db.update("VM", vm_ref, resident_on=NULL_REF, scheduled_to_be_resident_on=NULL_REF, domid=-1)
    metrics = db.get("VM", vm_ref)["metrics"]
    if db.exists("VM_metrics", metrics):
        db.update(
            "VM_metrics",
            metrics,
            memory_actual=0,
            VCPUs_number=0,
            VCPUs_utilisation={},
            state=[],
            last_updated=clock.now(),
        )


def drop_guest_metrics(db: Database, vm_ref: str) -> None:
    guest = db.get("VM", vm_ref)["guest_metrics"]
    if guest != NULL_REF:
        db.set("VM", vm_ref, "guest_metrics", NULL_REF)
        if db.exists("VM_guest_metrics", guest):
            db.destroy("VM_guest_metrics", guest)


def _set_attached(db: Database, vm: dict[str, Any], info: DomainInfo | None) -> None:
    """Devices are attached exactly when the domain (if any) has them."""
    for cls, refs, present in (
        ("VBD", vm["VBDs"], info.vbds if info else ()),
        ("VIF", vm["VIFs"], info.vifs if info else ()),
    ):
        for ref in refs:
            if db.exists(cls, ref):
                row = db.get(cls, ref)
                name = row["userdevice"] if cls == "VBD" else row["device"]
                db.set(cls, ref, "currently_attached", name in present)
                number = disk_number(name) if cls == "VBD" and name in present else None
                if number is not None:
                    db.set(cls, ref, "device", disk_name(number))


def _flag(value: str | None) -> bool:
    return value is not None and value.lower() in ("1", "true")
