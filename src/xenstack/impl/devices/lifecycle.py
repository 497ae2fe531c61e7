"""Which operations a VBD or VIF allows now, and why not: one error table per device.

Each rule bans a set of operations with one XenAPI error; the first rule that bans an
operation gives its error (so the order of the rules is the order of XAPI's checks). An
operation no rule bans is allowed. ``allowed_operations`` is the list of unbanned operations;
``assert_operation_valid`` raises the ban of the operation asked for.

The tables depend on the device row, the VM's power state, current operations and guest
metrics, and the VDI's state; ``refresh_vm_devices`` is called whenever the VM's own
``allowed_operations`` are recomputed, so the devices follow every power-state change.
"""

from __future__ import annotations

from typing import Any

from ...db.store import Database
from ...errors import ApiError
from ..storage.vdi_rows import refresh_allowed as refresh_vdi  # a VDI's operations follow its VBDs

Ban = tuple[str, list[str]]
Table = dict[str, Ban]

VBD_OPS = ("attach", "eject", "unplug", "unplug_force", "insert", "plug", "pause", "unpause")
VIF_OPS = ("attach", "plug", "unplug")
_PARALLEL = ("pause", "unpause")  # VBD operations that may run beside each other
_VM_BUSY = ("clean_shutdown", "hard_shutdown", "suspend", "pause")


def _ban(table: Table, code: str, params: list[str], ops: tuple[str, ...] | list[str]) -> None:
    for op in ops:
        table.setdefault(op, (code, params))


def _domain_type(vm: dict[str, Any]) -> str:
    if vm["domain_type"] != "unspecified":
        return str(vm["domain_type"])
    return "hvm" if vm["HVM_boot_policy"] else "pv"


def _power_rules(
    table: Table, vm_ref: str, vm: dict[str, Any], ref: str, plugged: bool, unplug: list[str]
) -> None:
    """Hotplug needs a running VM; plug needs a detached device, unplug an attached one."""
    power = vm["power_state"]
    if power == "Running":
        if plugged:
            _ban(table, "DEVICE_ALREADY_ATTACHED", [ref], ["plug"])
        else:
            _ban(table, "DEVICE_ALREADY_DETACHED", [ref], unplug)
        return
    bad = ["plug", *unplug] if power == "Paused" else ["pause", "unpause", "plug", *unplug]
    _ban(table, "VM_BAD_POWER_STATE", [vm_ref, "running", power.lower()], bad)


def _vm_busy_rules(table: Table, vm_ref: str, vm: dict[str, Any]) -> None:
    for op in vm["current_operations"].values():
        if op in _VM_BUSY:
            text = f"Current operation on VM:{vm_ref} is {op}"
            _ban(table, "OPERATION_NOT_ALLOWED", [text], ["plug", "unplug"])


def _driver_rules(
    db: Database, table: Table, vm_ref: str, vm: dict[str, Any], kind: str, ops: list[str]
) -> None:
    """A running HVM guest hotplugs only with PV drivers that do not refuse it."""
    if vm["power_state"] != "Running" or _domain_type(vm) != "hvm":
        return
    gm = db.table("VM_guest_metrics").rows.get(vm["guest_metrics"])
    claim = gm[f"can_use_hotplug_{kind}"] if gm else "unspecified"
    if claim == "no":
        text = f"VM states it does not support {kind.upper()} hotplug."
        _ban(table, "OPERATION_NOT_ALLOWED", [text], ops)
    elif claim == "unspecified" and not (gm and gm["PV_drivers_detected"]):
        _ban(table, "VM_MISSING_PV_DRIVERS", [vm_ref], ops)


def _vbd_busy_rules(table: Table, ref: str, current: dict[str, str]) -> None:
    ops = sorted(current.items(), key=lambda item: item[1])
    if ops:
        task, op = ops[0]
        rest = [o for o in VBD_OPS if o not in _PARALLEL]
        _ban(table, "OTHER_OPERATION_IN_PROGRESS", ["VBD", ref, op, task], rest)
    for allowed_beside, banned in ((_PARALLEL, "pause"), (("attach", *_PARALLEL), "unpause")):
        busy = [(t, o) for t, o in ops if o not in allowed_beside]
        if busy:
            task, op = busy[0]
            _ban(table, "OTHER_OPERATION_IN_PROGRESS", ["VBD", ref, op, task], [banned])


def _vbd_vdi_rules(db: Database, table: Table, ref: str, row: dict[str, Any]) -> None:
    vdi = db.table("VDI").rows.get(row["VDI"])
    if row["empty"] or vdi is None:
        return
    if not vdi["managed"]:
        _ban(table, "VDI_NOT_MANAGED", [ref], VBD_OPS)
    busy = [(t, o) for t, o in vdi["current_operations"].items() if o not in ("mirror", "copy")]
    if busy:
        task, op = busy[0]
        params = ["VDI", row["VDI"], op, task]
        _ban(table, "OTHER_OPERATION_IN_PROGRESS", params, ["attach", "plug", "insert"])


def vbd_table(db: Database, ref: str) -> Table:
    row = db.get("VBD", ref)
    vm_ref = row["VM"]
    vm = db.get("VM", vm_ref)
    table: Table = {}
    _vbd_busy_rules(table, ref, row["current_operations"])
    if not row["unpluggable"]:
        _ban(table, "VBD_NOT_UNPLUGGABLE", [ref], ["unplug", "unplug_force"])
    if row["type"] != "CD":
        _ban(table, "VBD_NOT_REMOVABLE_MEDIA", [ref], ["insert", "eject"])
    if row["empty"]:
        _ban(table, "VBD_IS_EMPTY", [ref], ["eject"])
    else:
        _ban(table, "VBD_NOT_EMPTY", [ref], ["insert"])
    plugged = bool(row["currently_attached"])
    _power_rules(table, vm_ref, vm, ref, plugged, ["unplug", "unplug_force"])
    _vm_busy_rules(table, vm_ref, vm)
    hotplug = ["plug", "unplug", "unplug_force"]
    _driver_rules(db, table, vm_ref, vm, "vbd", hotplug)
    if vm["power_state"] == "Running" and _domain_type(vm) == "hvm" and row["type"] == "CD":
        text = "HVM CDROMs cannot be hotplugged/unplugged, only inserted or ejected"
        _ban(table, "OPERATION_NOT_ALLOWED", [text], hotplug)
    if row["type"] == "CD" and vm["power_state"] == "Suspended":
        params = [vm_ref, "halted, running", "suspended"]
        _ban(table, "VM_BAD_POWER_STATE", params, ["insert", "eject"])
    _vbd_vdi_rules(db, table, ref, row)
    return table


def vif_table(db: Database, ref: str) -> Table:
    row = db.get("VIF", ref)
    vm_ref = row["VM"]
    vm = db.get("VM", vm_ref)
    table: Table = {}
    current = row["current_operations"]
    if current:
        params = [
            "VIF",
            ref,
            "{" + "; ".join(current.values()) + "}",
            "{" + "; ".join(current) + "}",
        ]
        _ban(table, "OTHER_OPERATION_IN_PROGRESS", params, VIF_OPS)
    if vm["is_control_domain"]:
        _ban(table, "OPERATION_NOT_ALLOWED", ["Control domain does not support hotplug"], ["plug"])
    plugged = bool(row["currently_attached"])
    _power_rules(table, vm_ref, vm, ref, plugged, ["unplug"])
    _vm_busy_rules(table, vm_ref, vm)
    _driver_rules(db, table, vm_ref, vm, "vif", ["plug", "unplug"])
    return table


TABLES = {"VBD": (vbd_table, VBD_OPS), "VIF": (vif_table, VIF_OPS)}


def allowed_operations(db: Database, cls: str, ref: str) -> list[str]:
    table_of, ops = TABLES[cls]
    table = table_of(db, ref)
    return [op for op in ops if op not in table]


def assert_operation_valid(db: Database, cls: str, ref: str, op: str) -> None:
    ban = TABLES[cls][0](db, ref).get(op)
    if ban is not None:
        raise ApiError(*ban)


def refresh(db: Database, cls: str, ref: str) -> None:
    """Recompute a device's (and a VBD's VDI's) ``allowed_operations``, in a transaction."""
    row = db.get(cls, ref)
    ops = allowed_operations(db, cls, ref)
    if row["allowed_operations"] != ops:
        db.set(cls, ref, "allowed_operations", ops)
    if cls == "VBD" and db.exists("VDI", row["VDI"]):
        refresh_vdi(db, row["VDI"])


def refresh_vm_devices(db: Database, vm_ref: str) -> None:
    """Recompute the allowed operations of every VBD and VIF of the VM."""
    vm = db.get("VM", vm_ref)
    for cls, refs in (("VBD", vm["VBDs"]), ("VIF", vm["VIFs"])):
        for ref in refs:
            if db.exists(cls, ref):
                refresh(db, cls, ref)
