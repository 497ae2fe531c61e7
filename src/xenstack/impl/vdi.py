"""VDIs on the simulated SRs: create, destroy, clone, snapshot, resize, copy, and accounting.

A VDI here is a database row with sizes. On thin-provisioned SRs (ext, nfs, file) a new VDI
takes only its VHD metadata; on thick ones (lvm) it takes its whole virtual size. Every change
recomputes the SR's ``physical_utilisation`` and ``virtual_allocation``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..api.accessors import new_ref, new_uuid
from ..api.context import Context
from ..api.tasks import now
from ..db.store import Database
from ..errors import ApiError
from ..idl.model import CLASSES
from ..idl.types import NULL_REF, Record
from ..storage.sr import FileSr, SrDriver, SrDriverError, VdiInfo
from ..storage.sr.driver import ERR_NO_VDI
from . import sm
from .registry import implements
from .sr import assert_plugged, assert_space, refresh_usage
from .sr_backend import backend_error, file_sr, sr_driver
from .storage_service import exclusive

if TYPE_CHECKING:
    from types import ModuleType


def _files() -> ModuleType:
    from . import vdi_files  # builds on this module

    return vdi_files


MiB = 1 << 20
VHD_BLOCK = 2 * MiB
SIZE_ROUNDED = {"ext", "nfs", "lvm", "file"}  # VHD-based drivers round to whole blocks

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


def vhd_overhead(size: int) -> int:
    """The space a fresh dynamic VHD takes: footer, header and block table."""
    bat = ((size + VHD_BLOCK - 1) // VHD_BLOCK) * 4
    return 3 * 512 + 1024 + ((bat + 511) // 512) * 512


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


def _invalid_size() -> ApiError:
    return ApiError("SR_BACKEND_FAILURE_79", ["", "VDI Invalid size", ""])


def make_vdi(
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
    record = {
        "uuid": new_uuid(),
        "location": "",
        "managed": True,
        **fields,
        "SR": sr,
        "virtual_size": size,
        "physical_utilisation": physical,
    }
    if not record["location"]:
        record["location"] = record["uuid"]
    with db.transaction():
        db.create("VDI", ref, record)
        refresh_allowed(db, ref)
        refresh_usage(db, sr)
    return ref


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
        return str(_files().create(db, sr, drv, fields))
    return make_vdi(db, sr, fields)


@implements("VDI.create")
async def create_recorded(ctx: Context, record: dict[str, Any]) -> str:
    """VDI.create: a file-backed VDI is answered once its row is durable, or undone."""
    ref = create(ctx, record)
    if sr_driver(ctx.db, ctx.db.get("VDI", ref)["SR"]) is None:
        return ref
    return str(await _files().recorded(ctx, ref))


def _destroy_row(db: Database, vdi: str) -> list[tuple[str, str, Record]]:
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
            refresh_usage(db, sr)
    return removed


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
                _files().delete_location(drv, row["location"])
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


def _derived_fields(row: dict[str, Any]) -> dict[str, Any]:
    keep = ("name_label", "name_description", "type", "sharable", "other_config", "sm_config")
    return {k: row[k] for k in keep} | {"read_only": False, "xenstore_data": {}}


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
            new = _files().snapshot(db, vdi, {})
        return str(await _files().recorded(ctx, new))
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
            new = _files().snapshot(db, vdi, extra)
        return str(await _files().recorded(ctx, new))
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
            _files().resize(db, vdi, new_size)
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
        await _files().copy_into(ctx, vdi, into_vdi)
        return into_vdi
    db.get("SR", sr)
    sm.assert_supports(db, sr, "vdi_create")
    assert_plugged(db, sr)
    if file_sr(db, sr) is not None:
        return str(await _files().copy(ctx, vdi, sr))
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
    db.get("SR", sr)
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
    ctx.db.get("VDI", vdi)
    if file_sr(ctx.db, ctx.db.get("VDI", vdi)["SR"]) is None:
        return []
    return [await ctx.toolstack.storage.nbd_info(vdi, ctx.session)]
