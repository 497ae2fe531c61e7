"""The VDI messages: create, destroy, clone, snapshot, resize, copy, introduce, and setters.

Every SR has a driver (``storage.sr``: files, or sizes only), and create, destroy, clone,
snapshot and resize take one path whatever the driver: it does the work (a file, or the
sizes arithmetic: on thin-provisioned SRs a new VDI takes only its VHD metadata, on thick
ones its whole virtual size as well), the row records it, and every change recomputes the
SR's ``physical_utilisation`` and ``virtual_allocation``. A new VDI is answered once its row
is durable, and a destroyed one's storage is released only once its removal is.
"""

from __future__ import annotations

from typing import Any

from ...core.context import Context
from ...core.ids import new_uuid, now
from ...db.store import Database
from ...errors import ApiError
from ...idl.model import CLASSES
from ...idl.types import NULL_REF, Record
from ...storage.sr import FileSr, SrDriver, SrDriverError, VdiInfo
from ...storage.sr.driver import ERR_NO_VDI
from ..registry import implements
from . import sm, vdi_files
from .service import exclusive
from .sr_backend import backend_error, drivers, file_sr, sr_driver
from .sr_usage import assert_plugged, refresh_usage
from .vdi_rows import (
    _derived_fields,
    _destroy_row,
    assert_managed,
    assert_op,
    attached_vbds,
    initial_usage,
    make_vdi,
    round_size,
)


def _constructor_fields(record: dict[str, Any]) -> dict[str, Any]:
    fields = CLASSES["VDI"].fields
    return {k: v for k, v in record.items() if k in fields and fields[k].in_constructor}


def create(ctx: Context, record: dict[str, Any]) -> str:
    """A new VDI, made by its SR's driver; :func:`create_recorded` is the message."""
    db = ctx.db
    sr = record.get("SR", NULL_REF)
    db.get("SR", sr)
    sm.assert_supports(db, sr, "vdi_create")
    if db.get("SR", sr)["is_tools_sr"]:
        raise ApiError("SR_OPERATION_NOT_SUPPORTED", [sr])
    assert_plugged(db, sr)
    fields = _constructor_fields(record)
    fields.pop("uuid", None)
    registry = drivers(ctx.toolstack)
    drv = sr_driver(registry, db, sr)
    db.assert_writable()  # a file made now could not be recorded
    return str(vdi_files.create(registry, db, sr, drv, fields))


@implements("VDI.create")
async def create_recorded(ctx: Context, record: dict[str, Any]) -> str:
    """VDI.create: the VDI is answered once its row is durable, or undone."""
    ref = create(ctx, record)
    return str(await vdi_files.recorded(ctx, ref))


async def recorded_removal(db: Database, removed: list[tuple[str, str, Record]]) -> None:
    """Wait until a removal is durable; if the disk refuses it, put the rows back and raise,
    so nothing on storage is deleted that the records still hold."""
    try:
        await db.durable()
    except ApiError:
        db.revive(removed)
        raise


@implements("VDI.destroy")
async def destroy(ctx: Context, self_: str) -> None:
    """The VDI's row goes first, durably; only then its storage (see the module doc of
    vdi_files): a failure to record leaves both."""
    db = ctx.db
    row = db.get("VDI", self_)
    assert_plugged(db, row["SR"])
    assert_managed(db, self_)
    if attached_vbds(db, self_):
        raise ApiError("VDI_IN_USE", [self_, "destroy"])
    assert_op(db, self_, "destroy")
    registry = drivers(ctx.toolstack)
    drv = sr_driver(registry, db, row["SR"])
    async with exclusive(ctx, self_):
        db.assert_writable()
        removed = _destroy_row(registry, db, self_)
        await recorded_removal(db, removed)
        try:
            vdi_files.delete_location(drv, row["location"])
        except BaseException:
            db.revive(removed)
            raise
        with db.transaction():
            refresh_usage(registry, db, row["SR"])  # the file is gone only now
            vdi_files.kept_as_base(registry, db, row["SR"], drv, row["location"])
    if drv.holds_data:
        ctx.toolstack.storage.kick_gc()  # its base may now be collected


@implements("VDI.forget")
def forget(ctx: Context, vdi: str) -> None:
    if attached_vbds(ctx.db, vdi):
        raise ApiError("VDI_IN_USE", [vdi, "forget"])
    _destroy_row(drivers(ctx.toolstack), ctx.db, vdi)


async def _new_leaf(ctx: Context, vdi: str, extra: dict[str, Any]) -> str:
    """Clone or snapshot ``vdi`` on its SR (its driver decides how), answered once durable."""
    db = ctx.db
    db.assert_writable()
    async with exclusive(ctx, vdi):
        new = vdi_files.snapshot(drivers(ctx.toolstack), db, vdi, extra)
    return str(await vdi_files.recorded(ctx, new))


@implements("VDI.clone")
async def clone(ctx: Context, vdi: str, driver_params: dict[str, str]) -> str:
    db = ctx.db
    row = db.get("VDI", vdi)
    assert_plugged(db, row["SR"])
    assert_managed(db, vdi)
    assert_op(db, vdi, "clone")
    return await _new_leaf(ctx, vdi, {})


@implements("VDI.snapshot")
async def snapshot(ctx: Context, vdi: str, driver_params: dict[str, str]) -> str:
    db = ctx.db
    row = db.get("VDI", vdi)
    assert_plugged(db, row["SR"])
    assert_managed(db, vdi)
    assert_op(db, vdi, "snapshot")
    extra = {"is_a_snapshot": True, "snapshot_of": vdi, "snapshot_time": now()}
    return await _new_leaf(ctx, vdi, extra)


async def _resize(ctx: Context, vdi: str, size: int, op: str) -> None:
    db = ctx.db
    row = db.get("VDI", vdi)
    assert_plugged(db, row["SR"])
    assert_managed(db, vdi)
    if op == "resize" and attached_vbds(db, vdi):
        raise ApiError("VDI_IN_USE", [vdi, op])
    assert_op(db, vdi, "resize")
    sr_type = db.get("SR", row["SR"])["type"]
    new_size = round_size(sr_type, size)
    if new_size < row["virtual_size"]:
        raise ApiError(
            "SR_BACKEND_FAILURE_79", ["", "VDI Invalid size [shrinking not allowed]", ""]
        )
    async with exclusive(ctx, vdi):
        vdi_files.resize(drivers(ctx.toolstack), db, vdi, new_size)


@implements("VDI.resize")
async def resize(ctx: Context, vdi: str, size: int) -> None:
    await _resize(ctx, vdi, size, "resize")


@implements("VDI.resize_online")
async def resize_online(ctx: Context, vdi: str, size: int) -> None:
    await _resize(ctx, vdi, size, "resize_online")


@implements("VDI.copy")
async def copy(ctx: Context, vdi: str, sr: str, base_vdi: str, into_vdi: str) -> str:
    """Copy a VDI's contents to a new VDI on ``sr``, or into an existing one."""
    db = ctx.db
    assert_managed(db, vdi)
    row = db.get("VDI", vdi)
    rw_attached = [v for v in attached_vbds(db, vdi) if db.get("VBD", v)["mode"] == "RW"]
    if rw_attached:
        raise ApiError("VDI_IN_USE", [vdi, "copy"])
    if into_vdi != NULL_REF:
        target = db.get("VDI", into_vdi)
        if target["virtual_size"] < row["virtual_size"]:
            raise ApiError("VDI_TOO_SMALL", [into_vdi, row["virtual_size"]])
        if into_vdi == vdi:
            return into_vdi
        await vdi_files.copy_into(ctx, vdi, into_vdi)
        return into_vdi
    sm.assert_supports(db, sr, "vdi_create")
    assert_plugged(db, sr)
    registry = drivers(ctx.toolstack)
    if file_sr(registry, db, sr) is not None:
        return str(await vdi_files.copy(ctx, vdi, sr))
    # a copy onto an SR without VHD files takes what the source has written (or what a new
    # VDI takes there, if more): it keeps sizes, not the data
    written = row["physical_utilisation"]
    usage = max(written, initial_usage(db.get("SR", sr)["type"], row["virtual_size"]))
    fields = _derived_fields(row) | {"virtual_size": row["virtual_size"]}
    return make_vdi(registry, db, sr, fields, usage=usage)


@implements("VDI.introduce")
def introduce(
    ctx: Context,
    uuid: str,
    name_label: str,
    name_description: str,
    sr: str,
    vdi_type: str,
    sharable: bool,
    read_only: bool,
    other_config: dict[str, str],
    location: str,
    xenstore_data: dict[str, str],
    sm_config: dict[str, str],
    managed: bool,
    virtual_size: int,
    physical_utilisation: int,
    metadata_of_pool: str,
    is_a_snapshot: bool,
    snapshot_time: str,
    snapshot_of: str,
) -> str:
    db = ctx.db
    if uuid and uuid in db.table("VDI").by_uuid:
        raise ApiError("UUID_INVALID", ["VDI", uuid])
    fields = {
        "uuid": uuid or new_uuid(),
        "name_label": name_label,
        "name_description": name_description,
        "type": vdi_type,
        "sharable": sharable,
        "read_only": read_only,
        "other_config": other_config,
        "location": location,
        "xenstore_data": xenstore_data,
        "sm_config": sm_config,
        "managed": managed,
        "virtual_size": virtual_size,
        "is_a_snapshot": is_a_snapshot,
        "snapshot_time": snapshot_time,
        "snapshot_of": snapshot_of,
    }
    for other in db.get("SR", sr)["VDIs"]:  # two records of one file: a destroy kills both
        if location and db.get("VDI", other)["location"] == location:
            raise ApiError("LOCATION_NOT_UNIQUE", [sr, location])
    registry = drivers(ctx.toolstack)
    drv = sr_driver(registry, db, sr)
    if drv.holds_data:  # the file decides the sizes; a sizes-only SR takes the caller's
        info = _introduced(drv, location)
        fields["virtual_size"] = info.virtual_size
        return make_vdi(registry, db, sr, fields, usage=info.physical_utilisation)
    return make_vdi(registry, db, sr, fields, usage=physical_utilisation)


def _introduced(drv: SrDriver, location: str) -> VdiInfo:
    """The file an introduced VDI names: one of the SR's own visible VDIs, nothing else
    (SR_BACKEND_FAILURE_46 for a path, ``..``, a symlink out, a hidden base)."""
    try:
        info = drv.info(location)
        if isinstance(drv, FileSr) and drv.is_hidden(location):
            raise SrDriverError(
                ERR_NO_VDI, f"The VDI is not available [opterr={location} is hidden]"
            )
    except Exception as exc:
        raise backend_error(exc) from None
    return info


@implements("VDI.update")
def update(ctx: Context, vdi: str) -> None:
    assert_plugged(ctx.db, ctx.db.get("VDI", vdi)["SR"])


def _setter(field: str) -> Any:
    def set_field(ctx: Context, vdi: str, value: Any) -> None:
        with ctx.db.transaction() as db:
            db.set("VDI", vdi, field, value)

    return set_field


for _field in ("name_label", "name_description", "read_only", "sharable", "allow_caching"):
    implements(f"VDI.set_{_field}")(_setter(_field))


@implements("VDI.set_on_boot")
def set_on_boot(ctx: Context, vdi: str, value: str) -> None:
    assert_op(ctx.db, vdi, "set_on_boot")
    with ctx.db.transaction() as db:
        db.set("VDI", vdi, "on_boot", value)


@implements("VDI.enable_cbt", "VDI.disable_cbt")
def set_cbt(ctx: Context, vdi: str) -> None:
    assert_op(ctx.db, vdi, "enable_cbt")
    with ctx.db.transaction() as db:
        db.set("VDI", vdi, "cbt_enabled", ctx.method == "VDI.enable_cbt")


@implements("VDI.get_nbd_info")
async def get_nbd_info(ctx: Context, vdi: str) -> list[dict[str, Any]]:
    """Where the NBD server exporting this VDI listens (none for simulated VDIs), and the
    export name to ask for: it carries the caller's session, as XAPI's does."""
    if file_sr(drivers(ctx.toolstack), ctx.db, ctx.db.get("VDI", vdi)["SR"]) is None:
        return []  # no VHD file to export (a sizes-only VDI has no data, an ISO no VHD)
    return [await ctx.toolstack.storage.nbd_info(vdi, ctx.session)]
