"""The checks behind the lifecycle table, in XAPI's order; the first failure wins.

:class:`Facts` gathers what the checks need about one VM once, so computing
``allowed_operations`` (every operation in turn) stays cheap. The table itself is in
:mod:`xenstack.impl.vm.lifecycle_table`, the functions the rest of the toolstack calls are in
:mod:`xenstack.impl.vm.lifecycle`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ...db.store import Database
from ...errors import ApiError
from ...idl.types import NULL_REF
from .lifecycle_table import (
    CONTROL_DOMAIN_OPS,
    HALTED,
    PAUSED,
    RUNNING,
    SNAPSHOT_OPS,
    SUSPEND_LIKE,
    SUSPENDED,
    TEMPLATE_OPS,
    allowed_power_states,
    bad_power_state,
    concurrent_ok,
    in_progress_error,
    is_true,
    op_name,
)


@dataclass(slots=True)
class Facts:
    """What the checks need to know about one VM, gathered once for all operations."""

    ref: str
    vm: dict[str, Any]
    metrics: dict[str, Any] | None
    guest: dict[str, Any] | None
    is_dom0: bool
    vdi_modes: list[tuple[bool, bool]]  # per VDI: (on_boot=reset, caching)
    db: Database

    @classmethod
    def gather(cls, db: Database, ref: str) -> Facts:
        vm = db.get("VM", ref)
        metrics = db.table("VM_metrics").rows.get(vm["metrics"])
        guest = db.table("VM_guest_metrics").rows.get(vm["guest_metrics"])
        host = db.table("host").rows.get(vm["resident_on"])
        is_dom0 = bool(vm["is_control_domain"] and host and host["control_domain"] == ref)
        modes: list[tuple[bool, bool]] = []
        vbd_rows, vdi_rows = db.table("VBD").rows, db.table("VDI").rows
        for vbd in vm["VBDs"]:
            vdi = vdi_rows.get(vbd_rows[vbd]["VDI"]) if vbd in vbd_rows else None
            if vdi is not None:
                sm = vdi["sm_config"]
                modes.append((sm.get("on_boot") == "reset", is_true(sm.get("caching"))))
        return cls(ref, vm, metrics, guest, is_dom0, modes, db)

    @property
    def is_live(self) -> bool:
        return self.vm["power_state"] in (RUNNING, PAUSED)

    def feature(self, name: str) -> str | None:
        return self.guest["other"].get(name) if self.guest else None

    def implicit_support(self) -> bool:
        booted_pv = self.metrics is not None and self.metrics["current_domain_type"] in (
            "pv",
            "pv_in_pvh",
            "pvh",
        )
        drivers = self.guest is not None and bool(
            self.guest["PV_drivers_detected"] or self.guest["PV_drivers_version"]
        )
        return not self.is_live or booted_pv or drivers

    def platform_flag(self, key: str) -> bool:
        if self.metrics is not None and self.vm["power_state"] != HALTED:
            return bool(self.metrics[key.replace("-", "_")])
        return is_true(self.vm["platform"].get(key))


Check = Callable[[Facts, str, bool], ApiError | None]


def _blocked(f: Facts, op: str, strict: bool) -> ApiError | None:
    code = f.vm["blocked_operations"].get(op)
    return ApiError("OPERATION_BLOCKED", [f.ref, code]) if code is not None else None


def _power(f: Facts, op: str, strict: bool) -> ApiError | None:
    allowed = allowed_power_states(f.db, f.vm, op)
    if f.vm["power_state"] in allowed:
        return None
    return bad_power_state(f.ref, allowed, f.vm["power_state"])


def _concurrency(f: Facts, op: str, strict: bool) -> ApiError | None:
    current = f.vm["current_operations"]
    if current and not concurrent_ok(op, list(current.values())):
        return in_progress_error(f.ref, current)
    return None


def _template(f: Facts, op: str, strict: bool) -> ApiError | None:
    vm = f.vm
    if not vm["is_a_template"] or vm["is_a_snapshot"] or op in TEMPLATE_OPS:
        return None
    default = vm["is_default_template"] or is_true(vm["other_config"].get("default_template"))
    if op in ("destroy", "migrate_send") and not default:
        return None
    # xapi: ocaml/xapi/xapi_vm_lifecycle.ml passes 2
    return ApiError("VM_IS_TEMPLATE", [f.ref, op_name(op)])


def _snapshot(f: Facts, op: str, strict: bool) -> ApiError | None:
    if f.vm["is_a_snapshot"] and op not in SNAPSHOT_OPS:
        # xapi: ocaml/xapi/xapi_vm_lifecycle.ml passes 2
        return ApiError("VM_IS_SNAPSHOT", [f.ref, op_name(op)])
    return None


def _provision_revert(f: Facts, op: str, strict: bool) -> ApiError | None:
    if op == "provision" and not f.vm["is_a_template"]:
        return ApiError("PROVISION_ONLY_ALLOWED_ON_TEMPLATE", [])
    if op == "revert" and not f.vm["is_a_snapshot"]:
        return ApiError("REVERT_ONLY_ALLOWED_ON_SNAPSHOT", [])
    return None


def _mobility(f: Facts, op: str, strict: bool) -> ApiError | None:
    if (
        op in SUSPEND_LIKE
        and strict
        and (f.platform_flag("nomigrate") or f.platform_flag("nested-virt"))
    ):
        return ApiError("VM_IS_IMMOBILE", [f.ref])
    if op == "changing_dynamic_range" and strict and f.platform_flag("nested-virt"):
        return ApiError("VM_IS_USING_NESTED_VIRT", [f.ref])
    return None


def _control_domain(f: Facts, op: str, strict: bool) -> ApiError | None:
    if op in ("changing_VCPUs", "destroy") and f.is_dom0:
        return ApiError("OPERATION_NOT_ALLOWED", ["This operation is not allowed on dom0"])
    if f.vm["is_control_domain"] and op not in CONTROL_DOMAIN_OPS:
        return ApiError(
            "OPERATION_NOT_ALLOWED", ["This operation is not allowed on a control domain"]
        )
    return None


def _feature(f: Facts, op: str, strict: bool) -> ApiError | None:
    implicit = f.implicit_support()
    if op in SUSPEND_LIKE and f.is_live:
        reason = f.feature("data-cant-suspend-reason")
        if reason is not None:
            return ApiError("VM_NON_SUSPENDABLE", [f.ref, reason])
        if not implicit and strict and f.feature("feature-suspend") != "1":
            return ApiError("VM_LACKS_FEATURE", [f.ref])
        return None
    if implicit:
        return None
    lacks = {
        k: f.feature(k) != "1"
        for k in ("feature-shutdown", "feature-poweroff", "feature-reboot", "feature-vcpu-hotplug")
    }
    if (
        strict
        and op == "clean_shutdown"
        and lacks["feature-shutdown"]
        and lacks["feature-poweroff"]
    ):
        return ApiError("VM_LACKS_FEATURE", [f.ref])
    if strict and op == "clean_reboot" and lacks["feature-shutdown"] and lacks["feature-reboot"]:
        return ApiError("VM_LACKS_FEATURE", [f.ref])
    if op == "changing_VCPUs_live" and lacks["feature-vcpu-hotplug"]:
        return ApiError("VM_LACKS_FEATURE", [f.ref])
    return None


def _devices(f: Facts, op: str, strict: bool) -> ApiError | None:
    vm = f.vm
    if op == "snapshot_with_quiesce":
        # xapi: ocaml/xapi/xapi_vm_lifecycle.ml passes 1
        return ApiError("VM_SNAPSHOT_WITH_QUIESCE_NOT_SUPPORTED", [f.ref])
    if op in ("checkpoint", "snapshot", "suspend") and any(r for r, _ in f.vdi_modes):
        return ApiError("VDI_ON_BOOT_MODE_INCOMPATIBLE_WITH_OPERATION", [])
    if op == "pool_migrate" and any(r and c for r, c in f.vdi_modes):
        return ApiError("VDI_ON_BOOT_MODE_INCOMPATIBLE_WITH_OPERATION", [])
    if op in SUSPEND_LIKE and vm["attached_PCIs"]:
        return ApiError("VM_HAS_PCI_ATTACHED", [f.ref])
    if vm["VGPUs"] and op in SUSPEND_LIKE:
        halted_send = op == "migrate_send" and vm["power_state"] == HALTED
        suspended_cp = op == "checkpoint" and vm["power_state"] == SUSPENDED
        if not (halted_send or suspended_cp):
            return ApiError("VM_HAS_VGPU", [f.ref])
    if vm["VUSBs"] and op in SUSPEND_LIKE | {"snapshot"}:
        return ApiError("VM_HAS_VUSBS", [f.ref])
    return None


def _membership(f: Facts, op: str, strict: bool) -> ApiError | None:
    vm, db = f.vm, f.db
    if op == "make_into_template":
        for field, cls, code in (
            ("appliance", "VM_appliance", "VM_IS_PART_OF_AN_APPLIANCE"),
            ("protection_policy", "VMPP", "VM_ASSIGNED_TO_PROTECTION_POLICY"),
            ("snapshot_schedule", "VMSS", "VM_ASSIGNED_TO_SNAPSHOT_SCHEDULE"),
        ):
            if vm[field] != NULL_REF and db.exists(cls, vm[field]):
                return ApiError(code, [f.ref, vm[field]])
    if op == "query_services" and not is_true(vm["other_config"].get("is_system_domain")):
        return ApiError("NOT_SYSTEM_DOMAIN", [f.ref])
    if op == "create_vtpm" and vm["VTPMs"]:
        return ApiError("VTPM_MAX_AMOUNT_REACHED", [str(len(vm["VTPMs"]))])
    return None


CHECKS: tuple[Check, ...] = (
    _blocked,
    _power,
    _concurrency,
    _template,
    _snapshot,
    _provision_revert,
    _mobility,
    _control_domain,
    _feature,
    _devices,
    _membership,
)


def first_error(facts: Facts, op: str, strict: bool) -> ApiError | None:
    for check in CHECKS:
        err = check(facts, op, strict)
        if err is not None:
            return err
    return None
