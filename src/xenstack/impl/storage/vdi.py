"""VDIs on the simulated SRs: create, destroy, clone, snapshot, resize, copy, and accounting.

A VDI here is a database row with sizes. On thin-provisioned SRs (ext, nfs, file) a new VDI
takes only its VHD metadata; on thick ones (lvm) it takes its whole virtual size. Every change
recomputes the SR's ``physical_utilisation`` and ``virtual_allocation``.
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
from .sr_backend import backend_error, file_sr, sr_driver
from .sr_usage import assert_plugged, assert_space, refresh_usage
from .vdi_rows import (
    _derived_fields,
    _destroy_row,
    assert_op,
    attached_vbds,
    initial_usage,
    make_vdi,
    round_size,
    vhd_overhead,
)


def _constructor_fields(record: dict[str, Any]) -> dict[str, Any]:
    fields = CLASSES["VDI"].fields
    return {k: v for k, v in record.items() if k in fields and fields[k].in_constructor}


def create(ctx: Context, record: dict[str, Any]) -> str:
    """A new VDI (its file made, for a file SR); :func:`create_recorded` is the message."""
    db = ctx.db
    sr = record.get("SR", NULL_REF)
    db.get("SR", sr)
    sm.assert_supports(db, sr, "vdi_create")
    if db.get("SR", sr)["is_tools_sr"]:
        raise ApiError("SR_OPERATION_NOT_SUPPORTED", [sr])
    assert_plugged(db, sr)
    fields = _constructor_fields(record)
    fields.pop("uuid", None)
    drv = sr_driver(db, sr)
    if drv is not None:
        db.assert_writable()  # a file made now could not be recorded
        return str(vdi_files.create(db, sr, drv, fields))
    return make_vdi(db, sr, fields)


@implements("VDI.create")
async def create_recorded(ctx: Context, record: dict[str, Any]) -> str:
    """VDI.create: a file-backed VDI is answered once its row is durable, or undone."""
    ref = create(ctx, record)
    if sr_driver(ctx.db, ctx.db.get("VDI", ref)["SR"]) is None:
        return ref
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
    """A file-backed VDI's row goes first, durably; only then its file (see the module doc
    of vdi_files): a failure to record leaves both."""
    db = ctx.db
    row = db.get("VDI", self_)
    assert_plugged(db, row["SR"])
    if not row["managed"]:
        raise ApiError("VDI_NOT_MANAGED", [self_])
    if attached_vbds(db, self_):
        raise ApiError("VDI_IN_USE", [self_, "destroy"])
    assert_op(db, self_, "destroy")
    drv = sr_driver(db, row["SR"])
    if drv is not None:
        async with exclusive(ctx, self_):
            db.assert_writable()
            removed = _destroy_row(db, self_)
            await recorded_removal(db, removed)
            try:
                vdi_files.delete_location(drv, row["location"])
            except BaseException:
                db.revive(removed)
                raise
            with db.transaction():
                refresh_usage(db, row["SR"])  # the file is gone only now
        ctx.toolstack.storage.kick_gc()
        return
    _destroy_row(db, self_)


@implements("VDI.forget")
def forget(ctx: Context, vdi: str) -> None:
    if attached_vbds(ctx.db, vdi):
        raise ApiError("VDI_IN_USE", [vdi, "forget"])
    _destroy_row(ctx.db, vdi)


def _new_leaf(db: Database, vdi: str, sr: str, extra: dict[str, Any]) -> str:
    """A VDI sharing ``vdi``'s contents: thin on thin SRs, full size on thick ones."""
    row = db.get("VDI", vdi)
    fields = _derived_fields(row) | {"virtual_size": row["virtual_size"]} | extra
    return make_vdi(db, sr, fields)


@implements("VDI.clone")
async def clone(ctx: Context, vdi: str, driver_params: dict[str, str]) -> str:
    db = ctx.db
    row = db.get("VDI", vdi)
    assert_plugged(db, row["SR"])
    assert_op(db, vdi, "clone")
    if file_sr(db, row["SR"]) is not None:
        db.assert_writable()
        async with exclusive(ctx, vdi):
            new = vdi_files.snapshot(db, vdi, {})
        return str(await vdi_files.recorded(ctx, new))
    return _new_leaf(db, vdi, row["SR"], {})


@implements("VDI.snapshot")
async def snapshot(ctx: Context, vdi: str, driver_params: dict[str, str]) -> str:
    db = ctx.db
    row = db.get("VDI", vdi)
    assert_plugged(db, row["SR"])
    assert_op(db, vdi, "snapshot")
    extra = {"is_a_snapshot": True, "snapshot_of": vdi, "snapshot_time": now()}
    if file_sr(db, row["SR"]) is not None:
        db.assert_writable()
        async with exclusive(ctx, vdi):
            new = vdi_files.snapshot(db, vdi, extra)
        return str(await vdi_files.recorded(ctx, new))
    return _new_leaf(db, vdi, row["SR"], extra)


async def _resize(ctx: Context, vdi: str, size: int, op: str) -> None:
    db = ctx.db
    row = db.get("VDI", vdi)
    assert_plugged(db, row["SR"])
    if op == "resize" and attached_vbds(db, vdi):
        raise ApiError("VDI_IN_USE", [vdi, op])
    assert_op(db, vdi, "resize")
    sr_type = db.get("SR", row["SR"])["type"]
    new_size = round_size(sr_type, size)
    if new_size < row["virtual_size"]:
        raise ApiError(
            "SR_BACKEND_FAILURE_79", ["", "VDI Invalid size [shrinking not allowed]", ""]
        )
    if sr_driver(db, row["SR"]) is not None:
        async with exclusive(ctx, vdi):
            vdi_files.resize(db, vdi, new_size)
        return
    grown = new_size - row["virtual_size"]
    extra = (
        grown
        if not sm.driver(sr_type).thin
        else vhd_overhead(new_size) - vhd_overhead(row["virtual_size"])
    )
    assert_space(db, row["SR"], extra)
    with db.transaction():
        db.update(
            "VDI",
            vdi,
            virtual_size=new_size,
            physical_utilisation=row["physical_utilisation"] + extra,
        )
        refresh_usage(db, row["SR"])


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
    if file_sr(db, sr) is not None:
        return str(await vdi_files.copy(ctx, vdi, sr))
    written = row["physical_utilisation"]
    usage = max(written, initial_usage(db.get("SR", sr)["type"], row["virtual_size"]))
    fields = _derived_fields(row) | {"virtual_size": row["virtual_size"]}
    return make_vdi(db, sr, fields, usage=usage)


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
    drv = sr_driver(db, sr)
    if drv is not None:
        info = _introduced(drv, location)
        fields["virtual_size"] = info.virtual_size
        return make_vdi(db, sr, fields, usage=info.physical_utilisation)
    return make_vdi(db, sr, fields, usage=physical_utilisation)


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
    if file_sr(ctx.db, ctx.db.get("VDI", vdi)["SR"]) is None:
        return []
    return [await ctx.toolstack.storage.nbd_info(vdi, ctx.session)]
