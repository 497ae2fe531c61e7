"""New VMs from old: clone, copy, snapshot, checkpoint; and revert, provision.

A new VM record copies the source's configuration, never its runtime state. Its disks come
from the storage layer's own ``VDI.clone``/``VDI.snapshot``/``VDI.copy`` when those messages
have functions, otherwise from a new VDI row of the same size in the same SR. A failure
removes whatever was made, so a failed clone leaves nothing behind.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ...core.context import Context
from ...core.ids import new_ref, new_uuid
from ...core.objects import new_record
from ...db.store import Database
from ...errors import ApiError
from ...idl.types import NULL_REF, DateTime
from ..host.hypervisor import backend_errors, hypervisor
from ..host.specs import image_disk
from ..registry import HANDLERS, implements
from . import suspend_image
from .lifecycle import update_allowed_operations
from .metrics import record_halted, record_suspended

RUNTIME_FIELDS = frozenset(
    {
        "uuid",
        "allowed_operations",
        "current_operations",
        "power_state",
        "resident_on",
        "scheduled_to_be_resident_on",
        "domid",
        "metrics",
        "guest_metrics",
        "is_a_snapshot",
        "snapshot_of",
        "snapshot_time",
        "transportable_snapshot_id",
        "snapshot_info",
        "snapshot_metadata",
        "parent",
        "blobs",
        "is_default_template",
        "suspend_VDI",
        "requires_reboot",
        "last_booted_record",
        "is_vmss_snapshot",
        "is_snapshot_from_vmpp",
    }
)
DEVICE_RUNTIME = frozenset(
    {
        "uuid",
        "allowed_operations",
        "current_operations",
        "VM",
        "VDI",
        "currently_attached",
        "status_code",
        "status_detail",
        "runtime_properties",
        "metrics",
    }
)


class Undo:
    """Objects made so far, destroyed in reverse if the operation fails."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.made: list[tuple[str, str]] = []

    async def rollback(self) -> None:
        db = self.ctx.db
        for cls, ref in reversed(self.made):
            if not db.exists(cls, ref):
                continue
            if cls == "VDI" and "VDI.destroy" in HANDLERS:
                try:
                    await self.ctx.invoke_and_wait("VDI.destroy", ref)
                    continue
                except ApiError:
                    pass
            with db.transaction():
                db.destroy(cls, ref)


def copy_vm_record(
    db: Database, vm_ref: str, name: str, *, installed: DateTime, **overrides: Any
) -> str:
    """A new VM row with the source's configuration and fresh runtime state, its metrics
    installed at ``installed``."""
    src = db.get("VM", vm_ref)
    cdef = db.table("VM").cdef
    record = {k: v for k, v in src.items() if k not in RUNTIME_FIELDS and k not in cdef.derived}
    other = {k: v for k, v in src["other_config"].items() if k != "default_template"}
    metrics = new_ref()
    db.create("VM_metrics", metrics, {"uuid": new_uuid(), "install_time": installed})
    record.update(
        uuid=new_uuid(),
        name_label=name,
        other_config=other,
        power_state="Halted",
        domid=-1,
        metrics=metrics,
        current_operations={},
        **overrides,
    )
    ref = new_ref()
    db.create("VM", ref, new_record("VM", **record))
    return ref


async def copy_disk(ctx: Context, vdi: str, how: str, sr: str | None) -> str:
    """A new VDI from ``vdi``: ``how`` is "clone", "snapshot" or "copy" (to ``sr``)."""
    name = f"VDI.{how}"
    if name in HANDLERS:
        if how == "copy":
            return str(
                await ctx.invoke_and_wait(
                    name, vdi, sr or ctx.db.get("VDI", vdi)["SR"], NULL_REF, NULL_REF
                )
            )
        return str(await ctx.invoke_and_wait(name, vdi, {}))
    db = ctx.db
    src = db.get("VDI", vdi)
    record = {k: v for k, v in src.items() if k not in db.table("VDI").cdef.derived}
    record.update(
        uuid=new_uuid(),
        SR=sr or src["SR"],
        current_operations={},
        is_a_snapshot=how == "snapshot",
        snapshot_of=vdi if how == "snapshot" else NULL_REF,
    )
    ref = new_ref()
    with db.transaction():
        db.create("VDI", ref, new_record("VDI", **record))
    return ref


async def copy_devices(
    ctx: Context,
    undo: Undo,
    src: str,
    dst: str,
    how: str,
    sr: str | None,
    skip: set[str],
    keep_macs: bool = False,
) -> None:
    """Give ``dst`` copies of ``src``'s VBDs (disks copied by ``how``) and VIFs (new MACs
    for a clone or copy, unless ``keep_macs``: a revert keeps them, as XAPI's does)."""
    db = ctx.db
    vm = db.get("VM", src)
    for vbd_ref in vm["VBDs"]:
        vbd = db.get("VBD", vbd_ref)
        vdi = vbd["VDI"]
        if vdi in skip:
            continue
        if not vbd["empty"] and vbd["type"] == "Disk" and db.exists("VDI", vdi):
            vdi = await copy_disk(ctx, vdi, how, sr)
            undo.made.append(("VDI", vdi))
        record = {k: v for k, v in vbd.items() if k not in DEVICE_RUNTIME}
        undo.made.append(("VBD", new_device(db, "VBD", record, VM=dst, VDI=vdi)))
    for vif_ref in vm["VIFs"]:
        vif = db.get("VIF", vif_ref)
        record = {k: v for k, v in vif.items() if k not in DEVICE_RUNTIME}
        if how != "snapshot" and not keep_macs and vif["MAC_autogenerated"]:
            record["MAC"] = random_mac()
        undo.made.append(("VIF", new_device(db, "VIF", record, VM=dst)))


def new_device(db: Database, cls: str, record: dict[str, Any], **fields: Any) -> str:
    """A new ``cls`` row from the declared defaults, ``record`` (copied fields) and ``fields``;
    a fresh uuid, and a VBD or VIF not attached."""
    ref = new_ref()
    with db.transaction():
        row = new_record(cls, **{**record, **fields, "uuid": new_uuid()})
        if cls in ("VBD", "VIF"):
            row["currently_attached"] = False
        db.create(cls, ref, row)
    return ref


def random_mac() -> str:
    octets = bytearray(secrets.token_bytes(6))
    octets[0] = (octets[0] & 0xFC) | 0x02  # locally administered, unicast
    return ":".join(f"{b:02x}" for b in octets)


@contextmanager
def finished(db: Database, ref: str) -> Iterator[None]:
    with db.transaction():
        yield
        update_allowed_operations(db, ref)


async def make_copy(
    ctx: Context,
    vm: str,
    name: str,
    how: str,
    sr: str | None = None,
    skip: set[str] | None = None,
    **overrides: Any,
) -> str:
    """The shared body of clone, copy, snapshot and checkpoint; returns the new VM."""
    db = ctx.db
    undo = Undo(ctx)
    try:
        with db.transaction():
            new = copy_vm_record(db, vm, name, installed=ctx.toolstack.clock.now(), **overrides)
        undo.made.append(("VM", new))
        undo.made.insert(0, ("VM_metrics", db.get("VM", new)["metrics"]))
        await copy_devices(ctx, undo, vm, new, how, sr, skip or set())
        with finished(db, new):
            pass
    except BaseException:
        await undo.rollback()
        raise
    return new


async def discard_vm(ctx: Context, ref: str) -> None:
    """Remove a VM made moments ago, with its devices and disks."""
    db = ctx.db
    row = db.get("VM", ref)
    undo = Undo(ctx)
    vdis = [db.get("VBD", v)["VDI"] for v in row["VBDs"] if db.exists("VBD", v)]
    undo.made = [("VM_metrics", row["metrics"]), ("VM", ref)]
    undo.made += [("VDI", v) for v in vdis if v != NULL_REF]
    undo.made += [("VBD", v) for v in row["VBDs"]] + [("VIF", v) for v in row["VIFs"]]
    await undo.rollback()


async def save_memory(ctx: Context, vm: str, snapshot: str, image: str) -> None:
    """Write the paused VM's memory into ``image``, the checkpoint's suspend VDI."""
    storage = ctx.toolstack.storage
    host = ctx.db.get("VM", vm)["resident_on"]
    target = await image_disk(ctx.toolstack, image, writable=True, host=host)
    try:
        with backend_errors():
            await hypervisor(ctx).backend.vm_save_image(vm, snapshot, target)
    finally:
        if target is not None:
            await storage.detach(ctx.db.get("VDI", image)["uuid"])  # the image is durable


# ---- the messages ------------------------------------------------------------------------


@implements("VM.clone")
async def clone(ctx: Context, vm: str, new_name: str) -> str:
    return await make_copy(ctx, vm, new_name, "clone", parent=vm)


@implements("VM.copy")
async def copy(ctx: Context, vm: str, new_name: str, sr: str) -> str:
    if sr != NULL_REF:
        ctx.db.get("SR", sr)
    how = "copy" if sr != NULL_REF else "clone"
    return await make_copy(ctx, vm, new_name, how, sr if sr != NULL_REF else None)


def _snapshot_fields(ctx: Context, vm: str) -> dict[str, Any]:
    db = ctx.db
    return {
        "is_a_snapshot": True,
        "is_a_template": True,
        "snapshot_of": vm,
        "snapshot_time": ctx.toolstack.clock.now(),
        "transportable_snapshot_id": new_uuid(),
        "parent": db.get("VM", vm)["parent"],
    }


@implements("VM.snapshot")
async def snapshot(ctx: Context, vm: str, new_name: str, ignore_vdis: list[str]) -> str:
    db = ctx.db
    snap = await make_copy(
        ctx, vm, new_name, "snapshot", skip=set(ignore_vdis), **_snapshot_fields(ctx, vm)
    )
    with db.transaction():
        db.set("VM", vm, "parent", snap)
    return snap


@implements("VM.checkpoint")
async def checkpoint(ctx: Context, vm: str, new_name: str) -> str:
    """A snapshot that also keeps the memory of a live VM: it reverts to a suspended VM.

    As XAPI's, disks and memory are taken at one instant: a running VM is paused (its
    writes drained to the disks), its disks snapshotted, its memory saved into the
    snapshot's suspend VDI, and it runs on."""
    db = ctx.db
    hv = hypervisor(ctx)
    state = db.get("VM", vm)["power_state"]
    live = state in ("Running", "Paused")
    image = snap = NULL_REF
    if state == "Running":
        with backend_errors():
            await hv.backend.vm_pause(vm)
    try:
        if live:
            image = await suspend_image.create(ctx, vm, db.get("VM", vm)["resident_on"])
        snap = await make_copy(ctx, vm, new_name, "snapshot", **_snapshot_fields(ctx, vm))
        if live:
            await save_memory(ctx, vm, snap, image)
    except BaseException:
        await suspend_image.destroy(ctx, image)
        if snap != NULL_REF:
            await discard_vm(ctx, snap)
        raise
    finally:
        if state == "Running":
            with backend_errors():
                await hv.backend.vm_unpause(vm)
    with db.transaction():
        db.set("VM", vm, "parent", snap)
        db.set("VM", snap, "power_state", "Suspended" if live else "Halted")
        db.set("VM", snap, "suspend_VDI", image)
        update_allowed_operations(db, snap)
    return snap


@implements("VM.revert")
async def revert(ctx: Context, snapshot: str) -> None:
    """Make the snapshot's VM what the snapshot recorded: configuration, disks, memory.

    The policy layer marks the snapshot ``revert`` and its VM ``reverting`` around this."""
    db = ctx.db
    vm = db.get("VM", snapshot)["snapshot_of"]
    if not db.exists("VM", vm):
        raise ApiError("VM_REVERT_FAILED", [vm, snapshot])
    await _revert(ctx, snapshot, vm)


async def _revert(ctx: Context, snapshot: str, vm: str) -> None:
    db = ctx.db
    hv = hypervisor(ctx)
    row = db.get("VM", vm)
    with backend_errors():
        if hv.backend.vm_info(vm) is not None:
            await hv.backend.vm_shutdown(vm, clean=False)
        hv.backend.vm_discard_image(vm)
    old_vdis = [db.get("VBD", v)["VDI"] for v in row["VBDs"] if db.exists("VBD", v)]
    await suspend_image.drop(ctx, vm)
    with db.transaction():
        record_halted(db, vm, ctx.toolstack.clock)
        hv.sync_memory(db, row["resident_on"])
        for cls, refs in (("VBD", row["VBDs"]), ("VIF", row["VIFs"])):
            for ref in refs:
                db.destroy(cls, ref)
        snap = db.get("VM", snapshot)
        keep = {"uuid", "name_label", "name_description", "is_a_template", "snapshots"}
        for field, value in snap.items():
            if field not in RUNTIME_FIELDS and field not in keep and not _derived(db, field):
                db.set("VM", vm, field, value)
        db.set("VM", vm, "parent", snapshot)
    await copy_devices(ctx, Undo(ctx), snapshot, vm, "clone", None, set(), keep_macs=True)
    for vdi in old_vdis:
        await _drop_unused_vdi(ctx, vdi)
    if snap["power_state"] == "Suspended":
        with db.transaction():  # a suspended VM's devices are attached: the image has them
            for cls in ("VBD", "VIF"):
                for ref in db.get("VM", vm)[f"{cls}s"]:
                    db.set(cls, ref, "currently_attached", True)
        with backend_errors():
            hv.backend.vm_copy_image(snapshot, vm)
        await suspend_image.copy_to(ctx, snapshot, vm)
        with db.transaction():
            record_suspended(db, vm, clock=ctx.toolstack.clock)


def _derived(db: Database, field: str) -> bool:
    return field in db.table("VM").cdef.derived


async def _drop_unused_vdi(ctx: Context, vdi: str) -> None:
    db = ctx.db
    if not db.exists("VDI", vdi) or db.get("VDI", vdi)["VBDs"]:
        return
    if db.get("VDI", vdi)["type"] == "iso" or db.get("VDI", vdi)["is_a_snapshot"]:
        return
    if "VDI.destroy" in HANDLERS:
        await ctx.invoke_and_wait("VDI.destroy", vdi)
    else:
        with db.transaction():
            db.destroy("VDI", vdi)
