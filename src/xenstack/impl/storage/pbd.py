"""PBDs: the link between an SR and a host, attached (plugged) or not."""

from __future__ import annotations

from typing import Any

from ...core.context import Context
from ...db.store import Database
from ...errors import ApiError
from ...storage.sr import FileSr
from ...storage.sr.gc import recover_sr
from ..registry import implements
from .sr import new_pbd
from .sr_backend import backend_error, driver_of, drivers, plug_backend, storage_root
from .sr_usage import refresh_usage
from .vdi_files import scan_files


@implements("PBD.create")
def create(ctx: Context, record: dict[str, Any]) -> str:
    db = ctx.db
    host, sr = record.get("host", ""), record.get("SR", "")
    db.get("host", host)
    for pbd in db.get("SR", sr)["PBDs"]:
        if db.get("PBD", pbd)["host"] == host:
            raise ApiError("PBD_EXISTS", [sr, host, pbd])
    with db.transaction():
        config, other = record.get("device_config", {}), record.get("other_config", {})
        return new_pbd(db, host, sr, config, attached=False, other_config=other)


@implements("PBD.destroy")
def destroy(ctx: Context, self_: str) -> None:
    if ctx.db.get("PBD", self_)["currently_attached"]:
        raise ApiError("OPERATION_NOT_ALLOWED", ["PBD is currently attached"])
    with ctx.db.transaction() as db:
        db.destroy("PBD", self_)


@implements("PBD.plug")
def plug(ctx: Context, self_: str) -> None:
    """Attach the SR on the PBD's host: its driver (from the PBD's device_config when that
    names the storage), then a scan so the VDIs found there get rows."""
    db = ctx.db
    row = db.get("PBD", self_)
    if row["currently_attached"]:
        return
    sr_row = db.get("SR", row["SR"])
    backend = plug_backend(storage_root(ctx.toolstack), sr_row, row["device_config"])
    registry = drivers(ctx.toolstack)
    drv = driver_of(registry, db, sr_row, backend or None)
    try:
        drv.attach()
        if isinstance(drv, FileSr) and not _attached_elsewhere(db, row["SR"]):
            recover_sr(drv)  # nothing uses the SR yet: what a crash left can be repaired
    except Exception as exc:
        raise backend_error(exc) from None
    with db.transaction():
        if backend:
            db.set("SR", row["SR"], "sm_config", sr_row["sm_config"] | backend)
        scan_files(registry, db, row["SR"])
        refresh_usage(registry, db, row["SR"])
        db.set("PBD", self_, "currently_attached", True)


def _attached_elsewhere(db: Database, sr: str) -> bool:
    """Is the SR plugged on some host already (a shared SR), so that it may be in use?"""
    return any(db.get("PBD", p)["currently_attached"] for p in db.get("SR", sr)["PBDs"])


def _vdis_in_use_on(ctx: Context, pbd: str) -> list[str]:
    """The SR's VDIs attached to VMs resident on the PBD's host."""
    db = ctx.db
    row = db.get("PBD", pbd)
    used = []
    for vdi in db.get("SR", row["SR"])["VDIs"]:
        for vbd in db.get("VDI", vdi)["VBDs"]:
            vbd_row = db.get("VBD", vbd)
            vm = db.tables["VM"].rows.get(vbd_row["VM"])
            if vbd_row["currently_attached"] and vm and vm["resident_on"] == row["host"]:
                used.append(vdi)
                break
    return used


@implements("PBD.unplug")
async def unplug(ctx: Context, self_: str) -> None:
    if not ctx.db.get("PBD", self_)["currently_attached"]:
        return
    in_use = _vdis_in_use_on(ctx, self_)
    if in_use:
        raise ApiError("VDI_IN_USE", in_use)
    db = ctx.db
    sr = db.get("PBD", self_)["SR"]
    if driver_of(drivers(ctx.toolstack), db, db.get("SR", sr)).holds_data:  # exports end too
        for vdi in db.get("SR", sr)["VDIs"]:
            await ctx.toolstack.storage.stop_nbd(db.get("VDI", vdi)["uuid"])
    with db.transaction():
        db.set("PBD", self_, "currently_attached", False)


@implements("PBD.set_device_config")
def set_device_config(ctx: Context, self_: str, value: dict[str, str]) -> None:
    with ctx.db.transaction() as db:
        db.set("PBD", self_, "device_config", value)
