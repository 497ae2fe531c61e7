"""The VM class: creation, destruction, and the questions clients ask before acting.

The operations themselves live next door: power in :mod:`.power`, copies in
:mod:`.clone`, migration in :mod:`.migrate`, memory and VCPUs in :mod:`.memory`; the
rules they all obey in :mod:`.lifecycle`.
"""

from __future__ import annotations

import re
from typing import Any

from ...core.context import Context
from ...core.ids import new_ref, new_uuid
from ...core.objects import create_object
from ...errors import ApiError
from ...idl.types import NULL_REF
from ..host.hypervisor import hypervisor
from ..registry import implements
from .lifecycle import assert_operation_valid as check_op
from .lifecycle import update_allowed_operations as refresh_ops
from .placement import assert_can_boot_here as check_boot
from .placement import possible_hosts, validate_basic_parameters

MIB = 1 << 20
VBD_DEVICES = 255  # userdevice numbers "0".."254" (one more for a control domain)
VIF_DEVICES = 16
_DISK_NAME = re.compile(r"^(?:xvd|hd|sd|vd)([a-z]+)$")


def memory_overhead(vm: dict[str, Any]) -> int:
    """An estimate of what the hypervisor spends on a domain beyond its memory, in bytes.

    Page tables (8 bytes a page), one MiB per VCPU, and for HVM guests shadow memory scaled by
    the shadow multiplier; rounded up to whole MiB.
    """
    pages = vm["memory_static_max"] // 4096
    overhead = pages * 8 + vm["VCPUs_max"] * MIB
    if vm["HVM_boot_policy"] or vm["domain_type"] == "hvm":
        overhead += int(pages * 4 * vm["HVM_shadow_multiplier"]) + MIB
    return int(-(-overhead // MIB) * MIB)


@implements("VM.create")
def create(ctx: Context, record: dict[str, Any]) -> str:
    db = ctx.db
    with db.transaction():
        ref = create_object(ctx, "VM", record)
        vm = db.get("VM", ref)
        validate_basic_parameters(ref, vm)
        if vm["domain_type"] == "unspecified":
            db.set("VM", ref, "domain_type", "hvm" if vm["HVM_boot_policy"] else "pv")
        metrics = new_ref()
        db.create(
            "VM_metrics", metrics, {"uuid": new_uuid(), "install_time": ctx.toolstack.clock.now()}
        )
        db.update(
            "VM",
            ref,
            metrics=metrics,
            power_state="Halted",
            domid=-1,
            current_operations={},
            memory_overhead=memory_overhead(vm),
        )
        refresh_ops(db, ref)
    return ref


@implements("VM.destroy")
def destroy(ctx: Context, self_: str) -> None:
    db = ctx.db
    vm = db.get("VM", self_)
    with db.transaction():
        check_op(db, self_, "destroy")
        hv = hypervisor(ctx)
        hv.backend.vm_reset(self_)
        for cls, refs in (("VBD", vm["VBDs"]), ("VIF", vm["VIFs"]), ("console", vm["consoles"])):
            for ref in refs:
                if db.exists(cls, ref):
                    _destroy_device(db, cls, ref)
        for cls, ref in (("VM_metrics", vm["metrics"]), ("VM_guest_metrics", vm["guest_metrics"])):
            if ref != NULL_REF and db.exists(cls, ref):
                db.destroy(cls, ref)
        for snap in vm["snapshots"]:
            if db.exists("VM", snap):
                db.set("VM", snap, "snapshot_of", NULL_REF)
        db.destroy("VM", self_)


def _destroy_device(db: Any, cls: str, ref: str) -> None:
    metrics = db.get(cls, ref).get("metrics", NULL_REF)
    if metrics != NULL_REF and db.exists(f"{cls}_metrics", metrics):
        db.destroy(f"{cls}_metrics", metrics)
    db.destroy(cls, ref)


@implements("VM.assert_operation_valid")
def assert_operation_valid(ctx: Context, self_: str, op: str) -> None:
    check_op(ctx.db, self_, op)


@implements("VM.update_allowed_operations")
def update_allowed_operations(ctx: Context, self_: str) -> None:
    with ctx.db.transaction():
        refresh_ops(ctx.db, self_)


@implements("VM.assert_can_boot_here")
def assert_can_boot_here(ctx: Context, self_: str, host: str) -> None:
    check_boot(hypervisor(ctx), ctx.db, self_, host)


@implements("VM.get_possible_hosts")
def get_possible_hosts(ctx: Context, vm: str) -> list[str]:
    return possible_hosts(hypervisor(ctx), ctx.db, vm)


def _disk_number(name: str) -> int | None:
    if name.isdigit():
        return int(name)
    m = _DISK_NAME.match(name)
    if m is None:
        return None
    n = 0
    for ch in m.group(1):
        n = n * 26 + (ord(ch) - ord("a") + 1)
    return n - 1


@implements("VM.get_allowed_VBD_devices")
def get_allowed_VBD_devices(ctx: Context, vm: str) -> list[str]:
    row = ctx.db.get("VM", vm)
    vbds = ctx.db.table("VBD").rows
    used = set()
    for ref in row["VBDs"]:
        if ref in vbds:
            for name in (vbds[ref]["userdevice"], vbds[ref]["device"]):
                number = _disk_number(name)
                if number is not None:
                    used.add(number)
    count = VBD_DEVICES + (1 if row["is_control_domain"] else 0)
    return [str(n) for n in range(count) if n not in used]


@implements("VM.get_allowed_VIF_devices")
def get_allowed_VIF_devices(ctx: Context, vm: str) -> list[str]:
    row = ctx.db.get("VM", vm)
    vifs = ctx.db.table("VIF").rows
    used = {vifs[v]["device"] for v in row["VIFs"] if v in vifs}
    return [str(n) for n in range(VIF_DEVICES) if str(n) not in used]


@implements("VM.get_cooperative")
def get_cooperative(ctx: Context, self_: str) -> bool:
    return True


@implements("VM.compute_memory_overhead")
def compute_memory_overhead(ctx: Context, vm: str) -> int:
    return memory_overhead(ctx.db.get("VM", vm))


@implements("VM.get_boot_record")
def get_boot_record(ctx: Context, self_: str) -> dict[str, Any]:
    return dict(ctx.db.get("VM", self_))


@implements("VM.set_is_a_template")
def set_is_a_template(ctx: Context, self_: str, value: bool) -> None:
    """Making a VM a template needs it halted; a template may always become a VM again."""
    db = ctx.db
    vm = db.get("VM", self_)
    if value and not vm["is_a_template"]:
        check_op(db, self_, "make_into_template")
    if not value and vm["is_default_template"]:
        # xapi: ocaml/xapi/xapi_vm_lifecycle.ml passes 2
        raise ApiError("VM_IS_TEMPLATE", [self_, "make_into_template"])
    with db.transaction():
        db.set("VM", self_, "is_a_template", value)
        refresh_ops(db, self_)


def _refreshing(setter_name: str) -> Any:
    """blocked_operations edits also refresh allowed_operations, as in XAPI."""

    def edit(ctx: Context, self_: str, *args: Any) -> None:
        db = ctx.db
        current = dict(db.get("VM", self_)["blocked_operations"])
        if setter_name == "set":
            current = dict(args[0])
        elif setter_name == "add_to":
            key, value = args
            if key in current:
                uuid = db.get("VM", self_)["uuid"]
                raise ApiError("MAP_DUPLICATE_KEY", ["VM", "blocked_operations", uuid, key])
            current[key] = value
        else:
            current.pop(args[0], None)
        with db.transaction():
            db.set("VM", self_, "blocked_operations", current)
            refresh_ops(db, self_)

    return edit


for _verb in ("set", "add_to", "remove_from"):
    implements(f"VM.{_verb}_blocked_operations")(_refreshing(_verb))


def _action_setter(field: str) -> None:
    def run(ctx: Context, self_: str, value: str) -> None:
        with ctx.db.transaction() as db:
            db.set("VM", self_, field, value)

    implements(f"VM.set_{field}")(run)


for _field in ("actions_after_shutdown", "actions_after_reboot", "actions_after_crash"):
    _action_setter(_field)  # what a domain that ends by itself leads to (impl/vm/domains.py)
