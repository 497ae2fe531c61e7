"""Memory and VCPU settings, halted and live.

Memory limits must keep ``static_min ≤ dynamic_min ≤ dynamic_max ≤ static_max``
(MEMORY_CONSTRAINT_VIOLATION_ORDER); a control domain's must be pinned at its static maximum.
Static limits change only while halted, the dynamic range also while running (the backend
balloons the domain), VCPUs live within ``VCPUs_max``.
"""

from __future__ import annotations

from ...core.context import Context
from ...db.store import Database
from ...errors import ApiError
from ..host.hypervisor import backend_errors, hypervisor
from ..registry import implements
from .vm import memory_overhead

VCPU_RULE = "VCPU values must satisfy: 0 < VCPUs_at_startup ≤ VCPUs_max"


def assert_valid(
    db: Database, vm: str, static_min: int, dynamic_min: int, dynamic_max: int, static_max: int
) -> None:
    row = db.get("VM", vm)
    if row["is_control_domain"] and not (dynamic_min == dynamic_max == static_max):
        raise ApiError("MEMORY_CONSTRAINT_VIOLATION_MAXPIN", ["control domain"])
    if not (static_min <= dynamic_min <= dynamic_max <= static_max):
        raise ApiError("MEMORY_CONSTRAINT_VIOLATION_ORDER", [])


def _set_limits(db: Database, vm: str, smin: int, dmin: int, dmax: int, smax: int) -> None:
    assert_valid(db, vm, smin, dmin, dmax, smax)
    with db.transaction():
        db.update(
            "VM",
            vm,
            memory_static_min=smin,
            memory_dynamic_min=dmin,
            memory_dynamic_max=dmax,
            memory_static_max=smax,
            memory_target=dmin,
        )
        db.set("VM", vm, "memory_overhead", memory_overhead(db.get("VM", vm)))
        if db.get("VM", vm)["is_control_domain"] and db.get("VM", vm)["power_state"] == "Running":
            db.set("VM", vm, "requires_reboot", True)


@implements("VM.set_memory_limits")
def set_memory_limits(
    ctx: Context, self_: str, static_min: int, static_max: int, dynamic_min: int, dynamic_max: int
) -> None:
    _set_limits(ctx.db, self_, static_min, dynamic_min, dynamic_max, static_max)


@implements("VM.set_memory")
def set_memory(ctx: Context, self_: str, value: int) -> None:
    row = ctx.db.get("VM", self_)
    _set_limits(ctx.db, self_, row["memory_static_min"], value, value, value)


@implements("VM.set_memory_static_range")
def set_memory_static_range(ctx: Context, self_: str, min_: int, max_: int) -> None:
    row = ctx.db.get("VM", self_)
    dmin, dmax = row["memory_dynamic_min"], row["memory_dynamic_max"]
    _set_limits(ctx.db, self_, min_, dmin, dmax, max_)


@implements("VM.set_memory_static_min")
def set_memory_static_min(ctx: Context, self_: str, value: int) -> None:
    set_memory_static_range(ctx, self_, value, ctx.db.get("VM", self_)["memory_static_max"])


@implements("VM.set_memory_static_max")
def set_memory_static_max(ctx: Context, self_: str, value: int) -> None:
    set_memory_static_range(ctx, self_, ctx.db.get("VM", self_)["memory_static_min"], value)


@implements("VM.set_memory_dynamic_range")
async def set_memory_dynamic_range(ctx: Context, self_: str, min_: int, max_: int) -> None:
    db = ctx.db
    row = db.get("VM", self_)
    assert_valid(db, self_, row["memory_static_min"], min_, max_, row["memory_static_max"])
    info = None
    if row["power_state"] == "Running":
        hv = hypervisor(ctx)
        with backend_errors():
            info = await hv.backend.vm_set_memory_dynamic_range(self_, min_, max_)
    with db.transaction():
        db.update("VM", self_, memory_target=min_, memory_dynamic_min=min_, memory_dynamic_max=max_)
        if info is not None:
            db.set("VM_metrics", row["metrics"], "memory_actual", info.memory_actual)
            hypervisor(ctx).sync_memory(db, row["resident_on"])


@implements("VM.set_memory_dynamic_min")
async def set_memory_dynamic_min(ctx: Context, self_: str, value: int) -> None:
    await set_memory_dynamic_range(ctx, self_, value, ctx.db.get("VM", self_)["memory_dynamic_max"])


@implements("VM.set_memory_dynamic_max")
async def set_memory_dynamic_max(ctx: Context, self_: str, value: int) -> None:
    await set_memory_dynamic_range(ctx, self_, ctx.db.get("VM", self_)["memory_dynamic_min"], value)


@implements("VM.set_memory_target_live")
def set_memory_target_live(ctx: Context, self_: str, target: int) -> None:
    """Deprecated in XAPI in favour of set_memory_dynamic_range; accepted and ignored."""


@implements("VM.wait_memory_target_live")
def wait_memory_target_live(ctx: Context, self_: str) -> None:
    """The simulator reaches its target at once (while the policy layer marks the wait)."""


@implements("VM.set_VCPUs_max")
def set_VCPUs_max(ctx: Context, self_: str, value: int) -> None:
    db = ctx.db
    row = db.get("VM", self_)
    if value < 1 or value < row["VCPUs_at_startup"]:
        raise ApiError("INVALID_VALUE", [VCPU_RULE, value])
    with db.transaction():
        db.set("VM", self_, "VCPUs_max", value)
        db.set("VM", self_, "memory_overhead", memory_overhead(db.get("VM", self_)))
        if row["is_control_domain"] and row["power_state"] == "Running":
            db.set("VM", self_, "requires_reboot", True)


@implements("VM.set_VCPUs_at_startup")
def set_VCPUs_at_startup(ctx: Context, self_: str, value: int) -> None:
    db = ctx.db
    row = db.get("VM", self_)
    host = db.table("host").rows.get(row["resident_on"])
    if row["is_control_domain"] and host is not None and host["control_domain"] == self_:
        raise ApiError("OPERATION_NOT_ALLOWED", ["set_VCPUs_at_startup is not allowed on dom0"])
    if value < 1 or value > row["VCPUs_max"]:
        raise ApiError("INVALID_VALUE", [VCPU_RULE, value])
    with db.transaction():
        db.set("VM", self_, "VCPUs_at_startup", value)


@implements("VM.set_VCPUs_number_live")
async def set_VCPUs_number_live(ctx: Context, self_: str, nvcpu: int) -> None:
    db = ctx.db
    row = db.get("VM", self_)
    if nvcpu < 1 or nvcpu > row["VCPUs_max"]:
        raise ApiError("INVALID_VALUE", ["VCPU values must satisfy: 0 < VCPUs ≤ VCPUs_max", nvcpu])
    with backend_errors():
        info = await hypervisor(ctx).backend.vm_set_vcpus(self_, nvcpu)
    with db.transaction():
        db.set("VM", self_, "VCPUs_at_startup", nvcpu)
        db.update(
            "VM_metrics",
            row["metrics"],
            VCPUs_number=info.vcpus,
            VCPUs_utilisation={str(i): 0.0 for i in range(info.vcpus)},
        )
