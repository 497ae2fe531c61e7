"""Storage repositories: records, accounting and the SR messages.

An SR's ``physical_utilisation`` is what its driver counts (its files, or for a sizes-only SR
the sum of its VDIs' physical usage) and ``virtual_allocation`` the sum of its VDIs' virtual
sizes, kept current by :func:`refresh_usage` after every VDI change.
"""

from __future__ import annotations

import os
from typing import Any
from xml.sax.saxutils import escape

from ...core.context import Context
from ...core.ids import new_ref, new_uuid
from ...core.objects import new_record
from ...db.store import Database
from ...errors import ApiError
from ...idl.types import Record
from ..registry import implements
from . import sm
from .sr_backend import (
    BACKEND_KEYS,
    backend_error,
    choose,
    driver_of,
    drivers,
    probe_directories,
    storage_root,
)
from .sr_usage import assert_plugged, refresh_usage
from .vdi_files import scan_files

GiB = 1 << 30
DEFAULT_SIZE = {"nfs": 2048 * GiB, "iso": 0, "udev": 0}
SIMULATED_SIZE = 100 * GiB


def new_sr(db: Database, **fields: Any) -> str:
    """Create an SR row (no PBDs); ``allowed_operations`` follow its driver."""
    ref = new_ref()
    record = {
        "uuid": new_uuid(),
        "allowed_operations": sm.sr_allowed_operations(fields["type"]),
        **fields,
    }
    if record.get("is_tools_sr"):
        banned = ("vdi_create", "vdi_destroy")
        record["allowed_operations"] = [o for o in record["allowed_operations"] if o not in banned]
    db.create("SR", ref, record)
    return ref


def new_pbd(
    db: Database,
    host: str,
    sr: str,
    device_config: dict[str, str],
    *,
    attached: bool = True,
    other_config: dict[str, str] | None = None,
) -> str:
    """A PBD linking ``sr`` to ``host`` (attached unless said otherwise)."""
    ref = new_ref()
    db.create(
        "PBD",
        ref,
        new_record(
            "PBD",
            uuid=new_uuid(),
            host=host,
            SR=sr,
            device_config=dict(device_config),
            other_config=dict(other_config or {}),
            currently_attached=attached,
        ),
    )
    return ref


@implements("SR.create")
def create(
    ctx: Context,
    host: str,
    device_config: dict[str, str],
    physical_size: int,
    name_label: str,
    name_description: str,
    sr_type: str,
    content_type: str,
    shared: bool,
    sm_config: dict[str, str],
) -> str:
    db = ctx.db
    db.get("host", host)
    sm.driver(sr_type)
    size = physical_size or DEFAULT_SIZE.get(sr_type, SIMULATED_SIZE)
    hosts = db.refs("host") if shared else [host]
    sr_uuid = new_uuid()
    backend = choose(storage_root(ctx.toolstack), sr_type, sr_uuid, device_config)
    registry = drivers(ctx.toolstack)
    planned = {"sm_config": backend, "type": sr_type, "physical_size": size, "VDIs": []}
    drv = driver_of(registry, db, planned)
    try:
        drv.attach()
    except Exception as exc:
        raise backend_error(exc) from None
    with db.transaction():
        sr = new_sr(
            db,
            uuid=sr_uuid,
            name_label=name_label,
            name_description=name_description,
            type=sr_type,
            content_type=content_type,
            shared=shared,
            physical_size=size,
            sm_config=_users(sm_config) | backend,
        )
        for member in hosts:
            new_pbd(db, member, sr, device_config)
        scan_files(registry, db, sr)
    return sr


@implements("SR.make")
def make(ctx: Context, *args: Any) -> str:
    raise ApiError("MESSAGE_DEPRECATED", [])


@implements("SR.introduce")
def introduce(
    ctx: Context,
    uuid: str,
    name_label: str,
    name_description: str,
    sr_type: str,
    content_type: str,
    shared: bool,
    sm_config: dict[str, str],
) -> str:
    sr_type = sr_type.lower()
    if uuid and uuid in ctx.db.table("SR").by_uuid:
        raise ApiError("SR_UUID_EXISTS", [uuid])
    uuid = uuid or new_uuid()
    backend = choose(storage_root(ctx.toolstack), sr_type, uuid, {})
    if backend and not os.path.isdir(backend["xenstack_path"]):
        backend = {}  # nothing of it on disk: a record-only SR, as before
    with ctx.db.transaction() as db:
        return new_sr(
            db,
            uuid=uuid,
            name_label=name_label,
            name_description=name_description,
            type=sr_type,
            content_type=content_type,
            shared=shared,
            physical_size=DEFAULT_SIZE.get(sr_type, SIMULATED_SIZE),
            sm_config=_users(sm_config) | backend,
        )


def _assert_all_pbds_unplugged(db: Database, sr: str) -> None:
    if any(db.get("PBD", p)["currently_attached"] for p in db.get("SR", sr)["PBDs"]):
        raise ApiError("SR_HAS_PBD", [sr])


def _really_forget(db: Database, sr: str) -> list[tuple[str, str, Record]]:
    """Remove the SR's rows (PBDs, VDIs, the SR); return them as Database.revive takes them."""
    row = db.get("SR", sr)
    removed = [("SR", sr, Record(row))]
    removed += [("PBD", p, Record(db.get("PBD", p))) for p in row["PBDs"]]
    removed += [("VDI", v, Record(db.get("VDI", v))) for v in row["VDIs"]]
    with db.transaction():
        for pbd in row["PBDs"]:
            db.destroy("PBD", pbd)
        for vdi in row["VDIs"]:
            db.destroy("VDI", vdi)
        db.destroy("SR", sr)
    return removed


@implements("SR.forget")
def forget(ctx: Context, sr: str) -> None:
    _assert_all_pbds_unplugged(ctx.db, sr)
    _really_forget(ctx.db, sr)


@implements("SR.destroy")
async def destroy(ctx: Context, sr: str) -> None:
    """Forget the SR durably, then remove its own files (never others: see the driver);
    a failure to record leaves the SR and its files as they were."""
    db = ctx.db
    row = db.get("SR", sr)
    if not row["PBDs"]:
        raise ApiError("SR_HAS_NO_PBDS", [sr])
    _assert_all_pbds_unplugged(db, sr)
    if row["other_config"].get("indestructible") == "true":
        raise ApiError("SR_INDESTRUCTIBLE", [sr])
    if any(db.get("VDI", v)["managed"] for v in row["VDIs"]):
        raise ApiError("SR_NOT_EMPTY", [])
    drv = driver_of(drivers(ctx.toolstack), db, row)
    locations = [db.get("VDI", v)["location"] for v in row["VDIs"]]
    db.assert_writable()
    removed = _really_forget(db, sr)
    try:
        await db.durable()
    except ApiError:
        db.revive(removed)
        raise
    drv.detach_and_destroy(row["uuid"], locations)


@implements("SR.scan", "SR.update")
def scan(ctx: Context, sr: str) -> None:
    assert_plugged(ctx.db, sr)
    registry = drivers(ctx.toolstack)
    with ctx.db.transaction() as db:
        scan_files(registry, db, sr)
        refresh_usage(registry, db, sr)


@implements("SR.get_supported_types")
def get_supported_types(ctx: Context) -> list[str]:
    return sorted(sm.DRIVERS)


def _matching_srs(db: Database, sr_type: str, device_config: dict[str, str]) -> list[str]:
    found = []
    for ref, row in db.table("SR").rows.items():
        if row["type"] != sr_type:
            continue
        for pbd in row["PBDs"]:
            config = db.get("PBD", pbd)["device_config"]
            if all(config.get(k) == v for k, v in device_config.items()):
                found.append(ref)
                break
    return found


@implements("SR.probe")
def probe(
    ctx: Context, host: str, device_config: dict[str, str], sr_type: str, sm_config: Any
) -> str:
    """The SRs of this type found behind ``device_config``, as XAPI's SRlist XML."""
    ctx.db.get("host", host)
    sm.driver(sr_type)
    uuids = [ctx.db.get("SR", sr)["uuid"] for sr in _matching_srs(ctx.db, sr_type, device_config)]
    root = storage_root(ctx.toolstack)
    uuids += [u for u in probe_directories(sr_type, device_config, root) if u not in uuids]
    items = "".join(f"<SR><UUID>{escape(u)}</UUID></SR>" for u in uuids)
    return f'<?xml version="1.0" ?><SRlist>{items}</SRlist>'


@implements("SR.probe_ext")
def probe_ext(
    ctx: Context, host: str, device_config: dict[str, str], sr_type: str, sm_config: Any
) -> list[dict[str, Any]]:
    ctx.db.get("host", host)
    sm.driver(sr_type)
    results: list[dict[str, Any]] = []
    for sr in _matching_srs(ctx.db, sr_type, device_config):
        row = ctx.db.get("SR", sr)
        results.append(
            {
                "configuration": dict(device_config),
                "complete": True,
                "sr": _sr_stat(row),
                "extra_info": {},
            }
        )
    return results


def _sr_stat(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "uuid": row["uuid"],
        "name_label": row["name_label"],
        "name_description": row["name_description"],
        "free_space": int(row["physical_size"]) - int(row["physical_utilisation"]),
        "total_space": row["physical_size"],
        "clustered": row["clustered"],
        "health": "healthy",
    }


def _setter(field: str) -> Any:
    def set_field(ctx: Context, sr: str, value: Any) -> None:
        with ctx.db.transaction() as db:
            db.set("SR", sr, field, value)

    return set_field


def _users(sm_config: dict[str, str]) -> dict[str, str]:
    """A caller's sm_config without the keys naming the SR's storage (only xenstack sets
    those: they say which directory the SR's files are in)."""
    return {k: v for k, v in sm_config.items() if k not in BACKEND_KEYS}


def _backend(db: Database, sr: str) -> dict[str, str]:
    return {k: v for k, v in db.get("SR", sr)["sm_config"].items() if k in BACKEND_KEYS}


@implements("SR.set_sm_config")
def set_sm_config(ctx: Context, sr: str, value: dict[str, str]) -> None:
    with ctx.db.transaction() as db:
        db.set("SR", sr, "sm_config", _users(value) | _backend(db, sr))


@implements("SR.add_to_sm_config")
def add_to_sm_config(ctx: Context, sr: str, key: str, value: str) -> None:
    current = ctx.db.get("SR", sr)["sm_config"]
    if key in current:
        raise ApiError("MAP_DUPLICATE_KEY", ["SR", "sm_config", ctx.db.get("SR", sr)["uuid"], key])
    if key not in BACKEND_KEYS:
        with ctx.db.transaction() as db:
            db.set("SR", sr, "sm_config", {**current, key: value})


@implements("SR.remove_from_sm_config")
def remove_from_sm_config(ctx: Context, sr: str, key: str) -> None:
    current = ctx.db.get("SR", sr)["sm_config"]
    if key in current and key not in BACKEND_KEYS:
        with ctx.db.transaction() as db:
            db.set("SR", sr, "sm_config", {k: v for k, v in current.items() if k != key})


implements("SR.set_name_label")(_setter("name_label"))
implements("SR.set_name_description")(_setter("name_description"))
implements("SR.set_shared")(_setter("shared"))
implements("SR.set_physical_size")(_setter("physical_size"))
