"""VBDs: a VM's virtual block devices — create, hotplug, and CD insert/eject."""

from __future__ import annotations

from typing import Any

from ...core.context import Context
from ...core.ids import new_ref
from ...core.objects import new_record
from ...db.store import Database
from ...errors import ApiError
from ...idl.types import NULL_REF
from ..host.hypervisor import backend_errors, hypervisor
from ..host.specs import attach_disk, disk_spec, opens_disks
from ..registry import implements
from ..storage.vdi_rows import refresh_allowed as refresh_vdi
from . import devices, dom0
from . import lifecycle as device_lifecycle

ATTACHABLE_VDI_TYPES = frozenset(
    {"system", "user", "ephemeral", "suspend", "crashdump", "metadata", "rrd", "pvs_cache"}
)


def allowed_operations(db: Database, vbd: str) -> list[str]:
    return device_lifecycle.allowed_operations(db, "VBD", vbd)


def refresh(db: Database, vbd: str) -> None:
    """Recompute the VBD's and its VDI's allowed operations."""
    device_lifecycle.refresh(db, "VBD", vbd)
    vdi = db.get("VBD", vbd)["VDI"]
    if vdi != NULL_REF and db.exists("VDI", vdi):
        refresh_vdi(db, vdi)


def _check_vdi(db: Database, rec: dict[str, Any]) -> None:
    empty, vdi, mode = rec["empty"], rec["VDI"], rec["mode"]
    if not empty:
        vdi_row = db.get("VDI", vdi)
        if vdi_row["type"] not in ATTACHABLE_VDI_TYPES:
            raise ApiError("VDI_INCOMPATIBLE_TYPE", [vdi, vdi_row["type"]])
    if rec["type"] == "CD" and mode != "RO":
        raise ApiError("VBD_CDS_MUST_BE_READONLY", [])
    if rec["type"] != "CD" and empty:
        raise ApiError("VBD_NOT_REMOVABLE_MEDIA", ["in constructor"])
    if not empty and mode == "RW" and db.get("VDI", vdi)["read_only"]:
        raise ApiError("VDI_READONLY", [vdi])


def _resolve_userdevice(db: Database, vm: str, userdevice: str) -> str:
    if userdevice != "autodetect" and devices.disk_number(userdevice) is None:
        raise ApiError("INVALID_DEVICE", [userdevice])
    if userdevice == "autodetect":
        free = devices.free_vbd_devices(db, vm)
        if not free:
            raise ApiError("INVALID_DEVICE", [userdevice])
        return free[0]
    if devices.disk_number(userdevice) in devices.used_disks(db, vm):
        raise ApiError("DEVICE_ALREADY_EXISTS", [userdevice])
    return userdevice


# The record fields VBD.create takes from the client; the server sets the rest.
_TAKEN = (
    "VDI",
    "userdevice",
    "bootable",
    "mode",
    "type",
    "unpluggable",
    "empty",
    "other_config",
    "qos_algorithm_type",
    "qos_algorithm_params",
)
# What VBD.create assumes for a field the client leaves out differs from the declared default
# (""/RO/CD): a read-write disk at the first free device, as xapi_vbd.ml's create resolves
# "autodetect" to a free userdevice.
_CREATE_DEFAULTS: dict[str, Any] = {"userdevice": "autodetect", "mode": "RW", "type": "Disk"}


@implements("VBD.create")
def create(ctx: Context, record: dict[str, Any]) -> str:
    db = ctx.db
    given = {k: v for k, v in record.items() if k in _TAKEN}
    rec = new_record("VBD", **{**_CREATE_DEFAULTS, **given})
    vm = record.get("VM", NULL_REF)
    db.get("VM", vm)
    _check_vdi(db, rec)
    rec["userdevice"] = _resolve_userdevice(db, vm, rec["userdevice"])
    ref = new_ref()
    with db.transaction():
        fields = devices.server_fields(db, "VBD", vm, record)
        db.create("VBD", ref, {**rec, **fields})
        refresh(db, ref)
    return ref


@implements("VBD.destroy")
def destroy(ctx: Context, self_: str) -> None:
    db = ctx.db
    row = db.get("VBD", self_)
    if row["currently_attached"]:
        vm_uuid = db.get("VM", row["VM"])["uuid"]
        raise ApiError(
            "OPERATION_NOT_ALLOWED", [f"VBD '{row['uuid']}' still attached to '{vm_uuid}'"]
        )
    with db.transaction():
        devices.drop_metrics(db, "VBD_metrics", row["metrics"])
        db.destroy("VBD", self_)
        if row["VDI"] != NULL_REF and db.exists("VDI", row["VDI"]):
            refresh_vdi(db, row["VDI"])


def _of_control_domain(ctx: Context, vbd: str) -> bool:
    return bool(ctx.db.get("VM", ctx.db.get("VBD", vbd)["VM"])["is_control_domain"])


@implements("VBD.plug")
async def plug(ctx: Context, self_: str) -> None:
    if _of_control_domain(ctx, self_):
        await dom0.plug(ctx, self_)  # a block device of the host itself
    else:
        await devices.hotplug(ctx, "VBD", self_, "plug")


@implements("VBD.unplug")
async def unplug(ctx: Context, self_: str) -> None:
    if _of_control_domain(ctx, self_):
        await dom0.unplug(ctx, self_)
    else:
        await devices.hotplug(ctx, "VBD", self_, "unplug")


@implements("VBD.unplug_force")
async def unplug_force(ctx: Context, self_: str) -> None:
    if _of_control_domain(ctx, self_):
        await dom0.unplug(ctx, self_)
    else:
        await devices.hotplug(ctx, "VBD", self_, "unplug_force")


async def _live_media(ctx: Context, vbd: str) -> None:
    """Put the VBD's medium as the database now says into its running domain's drive."""
    db = ctx.db
    row = db.get("VBD", vbd)
    hv = hypervisor(ctx)
    if not row["currently_attached"] or hv.backend.vm_info(row["VM"]) is None:
        return
    disk = await attach_disk(ctx.toolstack, disk_spec(db, row))
    with backend_errors():
        await hv.backend.vbd_media(row["VM"], row["userdevice"], disk)


@implements("VBD.insert")
async def insert(ctx: Context, vbd: str, vdi: str) -> None:
    db = ctx.db
    device_lifecycle.assert_operation_valid(db, "VBD", vbd, "insert")
    if not db.get("VDI", vdi)["managed"]:
        raise ApiError("VDI_NOT_MANAGED", [vdi])
    with db.transaction():
        db.update("VBD", vbd, VDI=vdi, empty=False)
        refresh(db, vbd)
    if opens_disks(ctx.toolstack):
        await _live_media(ctx, vbd)


@implements("VBD.eject")
async def eject(ctx: Context, vbd: str) -> None:
    db = ctx.db
    row = db.get("VBD", vbd)
    device_lifecycle.assert_operation_valid(db, "VBD", vbd, "eject")
    old = row["VDI"]
    with db.transaction():
        db.update("VBD", vbd, VDI=NULL_REF, empty=True)
        refresh(db, vbd)
        if db.exists("VDI", old):
            refresh_vdi(db, old)
    if opens_disks(ctx.toolstack):
        await _live_media(ctx, vbd)


@implements("VBD.set_mode")
def set_mode(ctx: Context, self_: str, value: str) -> None:
    row = ctx.db.get("VBD", self_)
    if row["type"] == "CD" and value != "RO":
        raise ApiError("VBD_CDS_MUST_BE_READONLY", [])
    with ctx.db.transaction() as db:
        db.set("VBD", self_, "mode", value)


@implements("VBD.assert_attachable")
def assert_attachable(ctx: Context, self_: str) -> None:
    row = ctx.db.get("VBD", self_)
    if row["VDI"] != NULL_REF:
        vdi = ctx.db.get("VDI", row["VDI"])
        if vdi["missing"]:
            raise ApiError("VDI_MISSING", [vdi["SR"], row["VDI"]])
