"""VDI rows and their accounting: sizes, the operations a VDI allows now, a new VDI's row.

Below the VDI messages (``vdi``) and the file-backed VDIs (``vdi_files``), which both build
rows this way.
"""

from __future__ import annotations

from typing import Any

from ...core.ids import new_ref, new_uuid
from ...core.objects import new_record
from ...db.store import Database
from ...errors import ApiError
from ...idl.types import Record
from ...storage.sr import SrDrivers, VdiInfo
from ...storage.sr.sizes import VHD_BLOCK, vhd_overhead
from . import sm
from .sr_backend import SIZE_ROUNDED
from .sr_usage import assert_space, refresh_usage

#: the sm_config key naming the VHD node a VDI's leaf differs from (SM's, as XAPI shows it)
VHD_PARENT = "vhd-parent"

#: vdi operation -> the SM feature it needs
_VDI_OP_FEATURE = {
    "clone": "VDI_CLONE",
    "snapshot": "VDI_SNAPSHOT",
    "resize": "VDI_RESIZE",
    "destroy": "VDI_DELETE",
    "update": "VDI_UPDATE",
    "generate_config": "VDI_GENERATE_CONFIG",
    "mirror": "VDI_MIRROR",
    "enable_cbt": "VDI_CONFIG_CBT",
    "disable_cbt": "VDI_CONFIG_CBT",
    "data_destroy": "VDI_CONFIG_CBT",
    "list_changed_blocks": "VDI_CONFIG_CBT",
    "set_on_boot": "VDI_RESET_ON_BOOT",
}


_ALWAYS = ("copy", "forget")


#: operations a VDI attached to a running VM still allows
_LIVE = frozenset(
    {"snapshot", "clone", "mirror", "enable_cbt", "disable_cbt", "list_changed_blocks"}
)


def with_parent(sm_config: dict[str, str], info: VdiInfo) -> dict[str, str]:
    """``sm_config`` naming the VHD the VDI's leaf differs from, as SM's ``vhd-parent``."""
    rest = {k: v for k, v in sm_config.items() if k != VHD_PARENT}
    return rest | ({VHD_PARENT: info.parent} if info.parent else {})


def round_size(sr_type: str, size: int) -> int:
    if sr_type in SIZE_ROUNDED:
        return ((size + VHD_BLOCK - 1) // VHD_BLOCK) * VHD_BLOCK
    return size


def initial_usage(sr_type: str, size: int) -> int:
    """Physical space a new VDI of ``size`` bytes takes on an SR of this type."""
    drv = sm.DRIVERS.get(sr_type)
    if drv is not None and not drv.thin:
        return size + vhd_overhead(size)
    if sr_type in SIZE_ROUNDED:
        return vhd_overhead(size)
    return size


def attached_vbds(db: Database, vdi: str) -> list[str]:
    return [v for v in db.get("VDI", vdi)["VBDs"] if db.get("VBD", v)["currently_attached"]]


def allowed_operations(db: Database, vdi: str) -> list[str]:
    """The VDI operations its SR's driver offers, less those an attached VDI forbids."""
    row = db.get("VDI", vdi)
    sr = db.tables["SR"].rows.get(row["SR"])
    drv = sm.DRIVERS.get(sr["type"]) if sr else None
    ops = [op for op, f in _VDI_OP_FEATURE.items() if drv is not None and drv.has(f)]
    ops += list(_ALWAYS)
    if sr is not None and sr["is_tools_sr"]:
        ops = [op for op in ops if op not in ("destroy", "clone", "snapshot", "resize")]
    attached = attached_vbds(db, vdi)
    if attached:
        rw = any(db.get("VBD", v)["mode"] == "RW" for v in attached)
        ops = [op for op in ops if op in _LIVE or (op == "copy" and not rw)]
    return ops


def refresh_allowed(db: Database, vdi: str) -> None:
    if db.exists("VDI", vdi):
        db.set("VDI", vdi, "allowed_operations", allowed_operations(db, vdi))


def assert_op(db: Database, vdi: str, op: str) -> None:
    """Raise VDI_IN_USE / SR_OPERATION_NOT_SUPPORTED if ``op`` is not allowed now."""
    row = db.get("VDI", vdi)
    feature = _VDI_OP_FEATURE.get(op)
    drv = sm.DRIVERS.get(db.get("SR", row["SR"])["type"])
    if feature is not None and (drv is None or not drv.has(feature)):
        raise ApiError("SR_OPERATION_NOT_SUPPORTED", [row["SR"]])
    if op not in allowed_operations(db, vdi) and attached_vbds(db, vdi):
        raise ApiError("VDI_IN_USE", [vdi, op])


def assert_managed(db: Database, vdi: str) -> None:
    """VDI_NOT_MANAGED for a VDI no client may change (a base copy), as XAPI answers."""
    if not db.get("VDI", vdi)["managed"]:
        raise ApiError("VDI_NOT_MANAGED", [vdi])


def _invalid_size() -> ApiError:
    return ApiError("SR_BACKEND_FAILURE_79", ["", "VDI Invalid size", ""])


def make_vdi(
    registry: SrDrivers,
    db: Database,
    sr: str,
    fields: dict[str, Any],
    *,
    usage: int | None = None,
    check_space: bool = True,
) -> str:
    """Insert a VDI on ``sr`` after checking space; update the SR's accounting."""
    sr_type = db.get("SR", sr)["type"]
    size = round_size(sr_type, int(fields.get("virtual_size", 0)))
    if size < 0:
        raise _invalid_size()
    physical = initial_usage(sr_type, size) if usage is None else usage
    if check_space:
        assert_space(db, sr, physical)
    ref = new_ref()
    given = {"uuid": new_uuid(), "managed": True, **fields, "SR": sr, "virtual_size": size}
    record = new_record("VDI", **given, physical_utilisation=physical)
    if not record["location"]:
        record["location"] = record["uuid"]
    with db.transaction():
        db.create("VDI", ref, record)
        refresh_allowed(db, ref)
        refresh_usage(registry, db, sr)
    return ref


def _destroy_row(registry: SrDrivers, db: Database, vdi: str) -> list[tuple[str, str, Record]]:
    """Remove a VDI, the VBDs that point at it, and update the SR; return the rows removed,
    as :meth:`Database.revive` takes them."""
    sr = db.get("VDI", vdi)["SR"]
    removed = [("VDI", vdi, Record(db.get("VDI", vdi)))]
    with db.transaction():
        for vbd in db.get("VDI", vdi)["VBDs"]:
            removed.append(("VBD", vbd, Record(db.get("VBD", vbd))))
            metrics = db.get("VBD", vbd)["metrics"]
            if db.exists("VBD_metrics", metrics):
                removed.append(("VBD_metrics", metrics, Record(db.get("VBD_metrics", metrics))))
                db.destroy("VBD_metrics", metrics)
            db.destroy("VBD", vbd)
        db.destroy("VDI", vdi)
        if db.exists("SR", sr):
            refresh_usage(registry, db, sr)
    return removed


def _derived_fields(row: dict[str, Any]) -> dict[str, Any]:
    keep = ("name_label", "name_description", "type", "sharable", "other_config", "sm_config")
    return {k: row[k] for k in keep} | {"read_only": False, "xenstore_data": {}}
