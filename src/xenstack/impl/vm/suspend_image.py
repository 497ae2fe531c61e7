"""The ``suspend_VDI`` of a suspended VM or a checkpoint: a VDI of type ``suspend``.

Suspend and checkpoint make one through the registered ``VDI.create`` (so it is a real disk
when the SR's driver makes real disks); resume, hard shutdown and reset destroy it through
``VDI.destroy``; revert gives the VM a clone of the checkpoint's. The SR is chosen as XAPI
chooses it: the VM's ``suspend_SR``, the pool's ``suspend_image_SR``, the host's
``suspend_image_sr`` — the first one the host can see — and here, last, the pool's
``default_SR``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ...core.context import Context
from ...core.objects import new_record
from ...db.store import Database
from ...errors import ApiError
from ...idl.types import NULL_REF
from ...xenops.interface import DomainSpec
from ..registry import HANDLERS
from .placement import srs_on_host

MIB = 1 << 20


def image_size(db: Database, vm_ref: str) -> int:
    """Room for the memory image: static maximum with XAPI's headroom, plus 100 MiB."""
    static_max = int(db.get("VM", vm_ref)["memory_static_max"])
    return int(static_max * 1.2 * 1.05) + 100 * MIB


def suspend_sr(db: Database, vm_ref: str, host_ref: str) -> str:
    """The SR a suspend image of the VM goes to; VM_NO_SUSPEND_SR if the host sees none."""
    pool = db.get("pool", next(iter(db.table("pool").rows)))
    host: dict[str, Any] = db.table("host").rows.get(host_ref) or {}
    candidates = [
        db.get("VM", vm_ref)["suspend_SR"],
        pool["suspend_image_SR"],
        host.get("suspend_image_sr", NULL_REF),
        pool["default_SR"],
    ]
    visible = srs_on_host(db, host_ref) if host else set()
    for sr in candidates:
        if sr != NULL_REF and db.exists("SR", sr) and sr in visible:
            return str(sr)
    raise ApiError("VM_NO_SUSPEND_SR", [vm_ref])


async def create(ctx: Context, vm_ref: str, host_ref: str) -> str:
    """A new suspend VDI for the VM (not yet recorded as its ``suspend_VDI``)."""
    db = ctx.db
    sr = suspend_sr(db, vm_ref, host_ref)
    record = new_record(
        "VDI",
        name_label="Suspend image",
        name_description="Suspend image",
        SR=sr,
        virtual_size=image_size(db, vm_ref),
        type="suspend",
        sm_config={"vmhint": db.get("VM", vm_ref)["uuid"]},
        other_config=devices_record(db, vm_ref),
    )
    return str(await ctx.invoke_and_wait("VDI.create", record))


VBDS_KEY, VIFS_KEY = "xenstack-vbds", "xenstack-vifs"


def devices_record(db: Database, vm_ref: str) -> dict[str, str]:
    """The devices the domain has as its memory is saved (its image restores those: a
    device model's saved state names its devices, so later ones are plugged after)."""
    vm = db.get("VM", vm_ref)
    out = {}
    for key, cls, refs, name in (
        (VBDS_KEY, "VBD", vm["VBDs"], "userdevice"),
        (VIFS_KEY, "VIF", vm["VIFs"], "device"),
    ):
        rows = [db.get(cls, r) for r in refs if db.exists(cls, r)]
        out[key] = ",".join(sorted(str(r[name]) for r in rows if r["currently_attached"]))
    return out


def as_saved(db: Database, image: str, spec: DomainSpec) -> DomainSpec:
    """``spec`` with only the devices the image ``image`` was saved with (all of them for
    an image that names none: one made before images kept their devices)."""
    saved = db.get("VDI", image)["other_config"] if db.exists("VDI", image) else {}
    if VBDS_KEY not in saved:
        return spec
    vbds = set(filter(None, saved[VBDS_KEY].split(",")))
    vifs = set(filter(None, saved.get(VIFS_KEY, "").split(",")))
    disks = tuple(d for d in spec.disks if d.device in vbds)
    nics = tuple(n for n in spec.nics if n.device in vifs)
    return replace(
        spec, disks=disks, nics=nics,
        vbds=tuple(d.device for d in disks), vifs=tuple(n.device for n in nics),
    )  # fmt: skip


async def destroy(ctx: Context, vdi: str) -> None:
    """Destroy a suspend VDI; one already gone is no error."""
    if vdi == NULL_REF or not ctx.db.exists("VDI", vdi):
        return
    if "VDI.destroy" in HANDLERS:
        await ctx.invoke_and_wait("VDI.destroy", vdi)
    else:
        with ctx.db.transaction() as db:
            db.destroy("VDI", vdi)


async def drop(ctx: Context, vm_ref: str) -> None:
    """Destroy the VM's ``suspend_VDI`` and clear the field."""
    db = ctx.db
    vdi = db.get("VM", vm_ref)["suspend_VDI"]
    if vdi == NULL_REF:
        return
    with db.transaction():
        db.set("VM", vm_ref, "suspend_VDI", NULL_REF)
    await destroy(ctx, vdi)


async def copy_to(ctx: Context, snapshot: str, vm_ref: str) -> None:
    """Give the VM a clone of the checkpoint's suspend VDI (revert to a checkpoint)."""
    db = ctx.db
    source = db.get("VM", snapshot)["suspend_VDI"]
    if source == NULL_REF or not db.exists("VDI", source):
        return
    clone = str(await ctx.invoke_and_wait("VDI.clone", source, {}))
    with db.transaction():
        db.set("VM", vm_ref, "suspend_VDI", clone)
