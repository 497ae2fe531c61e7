"""VDIs through their SR's driver: the VDI messages call the driver, then record the result.

Rows follow the driver: a VDI's ``location`` is its file's uuid, its sizes are what the
driver reports (read from the file, or worked out by the sizes-only driver), and so is the
SR's usage. A failure of the driver leaves no row behind, and a
failure to record leaves no file behind: a new VDI is answered only once its row is durable
(:func:`recorded`, which undoes it otherwise), and a VDI's file is deleted only once the
removal of its row is durable (``vdi.destroy``).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from ...core.context import Context
from ...core.ids import new_uuid, now
from ...db.store import Database
from ...errors import ApiError
from ...storage.sr import FileSr, SrDriver, SrDriverError, SrDrivers, VdiInfo
from ...storage.vhd import VhdImage
from ...storage.vhd.importer import copy_image
from . import base_copies
from .sr_backend import UUID_RE, backend_error, drivers, file_sr, sr_driver
from .sr_usage import record_usage
from .vdi_rows import _derived_fields, _destroy_row, make_vdi, round_size, with_parent


def _call(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except ApiError:
        raise
    except Exception as exc:
        raise backend_error(exc) from None


def scan_files(registry: SrDrivers, db: Database, sr: str) -> None:
    """Make the SR's rows match its files: add found VDIs (hidden nodes as base copies:
    ``base_copies``), refresh sizes, drop vanished ones.

    A sizes-only SR has no files: its rows are all there is, and stay as they are."""
    drv = sr_driver(registry, db, sr)
    if not drv.holds_data:
        return
    found = {v.location: v for v in _call(drv.scan)}
    rows = {db.get("VDI", v)["location"]: v for v in db.get("SR", sr)["VDIs"]}
    for location, ref in rows.items():
        info = found.get(location)
        if info is None:
            if not db.get("VDI", ref)["VBDs"]:
                db.destroy("VDI", ref)
            continue
        db.update(
            "VDI",
            ref,
            virtual_size=info.virtual_size,
            physical_utilisation=info.physical_utilisation,
        )
        _set_parent(db, ref, info)
    for location, info in found.items():
        if location in rows:
            continue
        if info.hidden and isinstance(drv, FileSr):
            base_copies.add(registry, db, sr, drv, info)
        else:
            _add_found(registry, db, sr, info, drv)


def _set_parent(db: Database, vdi: str, info: VdiInfo) -> None:
    current = db.get("VDI", vdi)["sm_config"]
    wanted = with_parent(current, info)
    if wanted != current:
        db.set("VDI", vdi, "sm_config", wanted)


def refresh_parents(registry: SrDrivers, db: Database, sr: str, *, merged: bool = True) -> None:
    """After a GC pass: the rows of the base copies it removed go, and every VDI's parent
    is read again (``merged``: the GC merged nodes of the SR's trees)."""
    drv = sr_driver(registry, db, sr)
    if not isinstance(drv, FileSr):
        return
    base_copies.refresh(registry, db, sr, drv, merged=merged)
    for vdi in db.get("SR", sr)["VDIs"]:
        with contextlib.suppress(Exception):  # a VDI whose file went: the next scan drops it
            _set_parent(db, vdi, drv.info(db.get("VDI", vdi)["location"]))


def _set_sizes(db: Database, vdi: str, info: VdiInfo) -> None:
    db.update("VDI", vdi, virtual_size=info.virtual_size)
    db.update("VDI", vdi, physical_utilisation=info.physical_utilisation)


def _add_found(registry: SrDrivers, db: Database, sr: str, info: VdiInfo, drv: SrDriver) -> None:
    known = db.table("VDI").by_uuid
    vdi_uuid = info.uuid if UUID_RE.match(info.uuid) and info.uuid not in known else new_uuid()
    fields = {
        "uuid": vdi_uuid,
        "location": info.location,
        "name_label": info.location if drv.read_only else "",
        "type": "user",
        "read_only": info.read_only,
        "sharable": info.read_only,
    }
    fields |= {"virtual_size": info.virtual_size, "sm_config": with_parent({}, info)}
    make_vdi(registry, db, sr, fields, usage=info.physical_utilisation, check_space=False)


def create(
    registry: SrDrivers, db: Database, sr: str, drv: SrDriver, fields: dict[str, Any]
) -> str:
    """A new, empty VDI (the driver checks its size: SR_BACKEND_FAILURE_79)."""
    size = round_size(db.get("SR", sr)["type"], int(fields.get("virtual_size", 0)))
    vdi_uuid = new_uuid()
    info: VdiInfo = _call(drv.create, vdi_uuid, size)
    return _record(registry, db, sr, drv, fields | {"uuid": vdi_uuid}, info)


def _record(
    registry: SrDrivers,
    db: Database,
    sr: str,
    drv: SrDriver,
    fields: dict[str, Any],
    info: VdiInfo,
) -> str:
    """Insert the row of a VDI whose file exists; remove the file if that fails."""
    sm_config = with_parent(fields.get("sm_config", {}), info)
    fields = fields | {"location": info.location, "virtual_size": info.virtual_size}
    fields["sm_config"] = sm_config
    try:
        return make_vdi(registry, db, sr, fields, usage=info.physical_utilisation)
    except BaseException:
        drv.delete(info.uuid)
        raise


def snapshot(registry: SrDrivers, db: Database, vdi: str, extra: dict[str, Any]) -> str:
    """Clone or snapshot: what the driver makes (on a file SR, differencing children over a
    new hidden base, in constant time), recorded."""
    row = db.get("VDI", vdi)
    drv = sr_driver(registry, db, row["SR"])
    new = new_uuid()
    info: VdiInfo = _call(drv.snapshot, row["location"], new)
    fields = _derived_fields(row) | {"uuid": new, "virtual_size": row["virtual_size"]} | extra
    ref = _record(registry, db, row["SR"], drv, fields, info)
    _refresh_row(db, vdi, drv)
    if isinstance(drv, FileSr):  # the new base both leaves differ from: a base copy
        _call(base_copies.record, registry, db, row["SR"], drv, info.parent)
    return ref


def _refresh_row(db: Database, vdi: str, drv: SrDriver) -> None:
    info: VdiInfo = _call(drv.info, db.get("VDI", vdi)["location"])
    with db.transaction():
        db.update(
            "VDI",
            vdi,
            virtual_size=info.virtual_size,
            physical_utilisation=info.physical_utilisation,
        )
        _set_parent(db, vdi, info)
        record_usage(db, db.get("VDI", vdi)["SR"], drv)


def resize(registry: SrDrivers, db: Database, vdi: str, size: int) -> None:
    row = db.get("VDI", vdi)
    drv = sr_driver(registry, db, row["SR"])
    _call(drv.resize, row["location"], size)
    _refresh_row(db, vdi, drv)


def delete_location(drv: SrDriver, location: str) -> None:
    _call(drv.delete, location)


def kept_as_base(registry: SrDrivers, db: Database, sr: str, drv: SrDriver, location: str) -> None:
    """A destroyed VDI that other nodes still read through stays as a hidden node (see
    :meth:`FileSr.delete`): it gets its base copy row."""
    if isinstance(drv, FileSr) and drv.is_hidden(location):
        with contextlib.suppress(SrDriverError):
            base_copies.record(registry, db, sr, drv, location)


async def recorded(ctx: Context, vdi: str) -> str:
    """``vdi``, new, once its row is durable; if the disk refuses the row, the VDI (row and
    file) is undone and the error raised: no file is left that no record names."""
    db = ctx.db
    try:
        await db.durable()
    except ApiError:
        if db.exists("VDI", vdi):
            row = db.get("VDI", vdi)
            registry = drivers(ctx.toolstack)
            drv = sr_driver(registry, db, row["SR"])
            _destroy_row(registry, db, vdi)
            with contextlib.suppress(Exception):
                drv.delete(row["location"])
            ctx.toolstack.storage.kick_gc()  # a snapshot's new base may now fold back
        raise
    return vdi


async def copy(ctx: Context, vdi: str, sr: str) -> str:
    """A full copy of ``vdi`` (flattened) as a new VDI on the file SR ``sr``."""
    db, registry = ctx.db, drivers(ctx.toolstack)
    row = db.get("VDI", vdi)
    dest = file_sr(registry, db, sr)
    assert dest is not None
    src = file_sr(registry, db, row["SR"])
    new = new_uuid()
    if src is None:
        info = _call(dest.create, new, row["virtual_size"])
    else:
        source = src.path(row["location"])
        ctx.toolstack.storage.busy.add(row["location"])
        try:
            info = await asyncio.to_thread(_call, dest.copy_from, source, new)
        finally:
            ctx.toolstack.storage.busy.discard(row["location"])
    fields = _derived_fields(row) | {"uuid": new}
    return _record(registry, db, sr, dest, fields, info)


async def copy_into(ctx: Context, vdi: str, into_vdi: str) -> None:
    """Make the file-backed ``into_vdi`` read like ``vdi`` (VDI_IN_USE while it is busy).

    Either side may be a simulated VDI: its contents are zeros then.
    """
    db, registry = ctx.db, drivers(ctx.toolstack)
    src_row, dest_row = db.get("VDI", vdi), db.get("VDI", into_vdi)
    dest = file_sr(registry, db, dest_row["SR"])
    if dest is None:
        return  # a simulated VDI holds no data to overwrite
    busy = ctx.toolstack.storage.busy
    if not busy.try_claim([dest_row["location"]]):
        raise ApiError("VDI_IN_USE", [into_vdi, "copy"])
    try:
        src = file_sr(registry, db, src_row["SR"])
        with busy.holding(src_row["location"]) if src is not None else contextlib.nullcontext():
            source = src.path(src_row["location"]) if src is not None else None
            await asyncio.to_thread(_call, _copy_file, source, dest.path(dest_row["location"]))
    finally:
        busy.discard(dest_row["location"])
    _refresh_row(db, into_vdi, dest)


def _copy_file(source: str | None, dest: str) -> None:
    """Copy the chain at ``source`` into the leaf at ``dest`` (None: all zeros)."""
    with VhdImage.open(dest) as dest_image:
        if source is None:
            size, block_size = dest_image.virtual_size, dest_image.block_size
            for block in dest_image.allocated_blocks():
                offset = block * block_size
                dest_image.write(offset, bytes(min(block_size, size - offset)))
        else:
            with VhdImage.open(source, writable=False) as src_image:
                copy_image(src_image, dest_image)
        dest_image.flush()


def snapshot_fields(vdi: str) -> dict[str, Any]:
    return {"is_a_snapshot": True, "snapshot_of": vdi, "snapshot_time": now()}


def vdi_path(registry: SrDrivers, db: Database, vdi: str) -> tuple[FileSr, str] | None:
    """(driver, file path) of a VHD-backed VDI, or None for other VDIs."""
    row = db.get("VDI", vdi)
    drv = file_sr(registry, db, row["SR"])
    if drv is None:
        return None
    return drv, drv.path(row["location"])
