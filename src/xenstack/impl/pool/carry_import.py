"""On the master: take in what a joining host carried (:mod:`.carry`), keeping its uuids.

As XAPI's ``create_or_get_*_on_master`` and its metadata import with ``restore``: an object
the pool has already (same uuid; the tools SR; a physical network of the same bridge) is
used as it is; the member's fresh Local storage (and DVD drives), made when it was added and
still empty, becomes the joiner's SR (its uuid and its directory, so the disks are the files
the joiner wrote); anything else is made, with the joiner's ref where it is free. VMs come
in halted (a suspended one suspended, with its suspend VDI: its image stays in the joiner's
backend, which resumes it), not resident anywhere, with their uuids, MACs, snapshots and
affinity (the joiner's host is the member here); a VM whose uuid the pool has already is
left alone, with its devices. All in one transaction: a bad document changes nothing (and
the joiner, as XAPI's does, logs it and stays joined).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from ...core.context import Context
from ...core.ids import new_ref, new_uuid
from ...core.objects import new_record
from ...core.validate import coerce
from ...db.store import Database
from ...errors import ApiError
from ...idl.model import CLASSES
from ...idl.types import NULL_REF, remap_refs
from ..registry import internal
from ..storage.sr_backend import drivers
from ..storage.sr_usage import refresh_usage
from ..storage.vdi_rows import refresh_allowed
from ..vm.lifecycle import update_allowed_operations
from .carry import CARRY_MEMBER

ORDER = ("SR", "PBD", "VDI", "network", "VM", "VBD", "VIF")
SR_FIELDS = ("uuid", "name_label", "name_description", "other_config", "sm_config", "physical_size")


@dataclass
class _Plan:
    """Joiner ref -> master ref, and which joiner objects are to be made or rewritten."""

    table: dict[str, str]
    make: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    rewrite: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (SR ref, record)


@internal(CARRY_MEMBER, "session ref session_id, string host_uuid, string metadata")
def carry_member(ctx: Context, host_uuid: str, metadata: str) -> None:
    ts = ctx.toolstack
    if ts.master_address:
        raise ApiError("HOST_IS_SLAVE", [ts.master_address])
    db = ctx.db
    host = db.by_uuid("host", host_uuid)
    joiner_host, objects = _parse(metadata)
    plan = _Plan({joiner_host: host})
    with db.transaction():
        for cls in ORDER:
            for ref, record in objects.get(cls, []):
                _map(db, host, plan, cls, ref, record)
        made = [_make(ctx, plan, cls, ref, record) for cls, ref, record in plan.make]
        for sr, record in plan.rewrite:
            db.update("SR", sr, **{k: record[k] for k in SR_FIELDS if k in record})
        _link(db, made)
        _refresh(ctx, [(c, plan.table[r]) for c, r, _ in plan.make], [s for s, _ in plan.rewrite])


def _parse(metadata: str) -> tuple[str, dict[str, list[tuple[str, dict[str, Any]]]]]:
    try:
        doc = orjson.loads(metadata)
    except orjson.JSONDecodeError:
        raise ApiError("INVALID_VALUE", ["metadata", "not JSON"]) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("objects"), list):
        raise ApiError("INVALID_VALUE", ["metadata", "no objects"])
    found: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for obj in doc["objects"]:
        if not (isinstance(obj, list) and len(obj) == 3 and obj[0] in ORDER):
            raise ApiError("INVALID_VALUE", ["metadata", str(obj)[:80]])
        cls, ref, raw = obj
        if not isinstance(ref, str) or not isinstance(raw, dict):
            raise ApiError("INVALID_VALUE", ["metadata", str(obj)[:80]])
        found.setdefault(cls, []).append((ref, _typed(cls, raw)))
    return str(doc.get("host", "")), found


def _typed(cls: str, raw: dict[str, Any]) -> dict[str, Any]:
    """Declared, stored fields in their types; anything else dropped."""
    cdef = CLASSES[cls]
    out: dict[str, Any] = {}
    for name, value in raw.items():
        fdef = cdef.fields.get(name)
        if fdef is None or name in cdef.derived:
            continue
        try:
            out[name] = coerce(fdef.type, value, name)
        except ApiError:
            continue
    return out


# ---- which joiner object is which master object ---------------------------------------


def _map(db: Database, host: str, plan: _Plan, cls: str, ref: str, record: dict[str, Any]) -> None:
    found = _existing(db, host, plan, cls, record)
    if found is not None:
        plan.table[ref] = found
        return
    if cls == "SR":
        fresh = _fresh_sr(db, host, plan, record)
        if fresh is not None:
            plan.table[ref] = fresh
            plan.rewrite.append((fresh, record))
            return
    if not _wanted(db, plan, cls, record):
        return
    # the joiner's ref where it is free: its backend knows a suspended VM's image by it
    plan.table[ref] = ref if ref.startswith("OpaqueRef:") and not db.exists(cls, ref) else new_ref()
    plan.make.append((cls, ref, record))


def _existing(db: Database, host: str, plan: _Plan, cls: str, record: dict[str, Any]) -> str | None:
    by_uuid = db.table(cls).by_uuid.get(str(record.get("uuid", "")))
    if by_uuid is not None and cls in ("SR", "VDI", "VM", "PBD"):
        return by_uuid
    if cls == "SR" and record.get("is_tools_sr"):
        return next((r for r, row in db.table("SR").rows.items() if row["is_tools_sr"]), None)
    if cls == "PBD":  # the PBD of an SR that became the member's fresh one
        sr = plan.table.get(str(record.get("SR", "")))
        if any(sr == s for s, _ in plan.rewrite):
            return str(db.get("SR", str(sr))["PBDs"][0])
    if cls == "network" and record.get("bridge"):
        return next(iter(db.find("network", bridge=record["bridge"])), None)
    if cls == "VDI" and _carried_sr(plan, record) is None:
        return _iso_vdi(db, record.get("location"))
    return None


def _fresh_sr(db: Database, host: str, plan: _Plan, record: dict[str, Any]) -> str | None:
    """The member's SR of that type made when it was added, still empty, not yet taken."""
    taken = set(plan.table.values())
    for pbd in db.get("host", host)["PBDs"]:
        sr = db.get("PBD", pbd)["SR"]
        row = db.get("SR", sr)
        same = (row["type"], row["shared"], row["VDIs"]) == (record.get("type"), False, [])
        if same and sr not in taken and len(row["PBDs"]) == 1:
            return str(sr)
    return None


def _carried_sr(plan: _Plan, record: dict[str, Any]) -> str | None:
    """The SR a VDI is carried with (made or rewritten on the master), if any."""
    sr = plan.table.get(str(record.get("SR", "")))
    made = {plan.table[r] for c, r, _ in plan.make if c == "SR"}
    return sr if sr in made or any(sr == s for s, _ in plan.rewrite) else None


def _iso_vdi(db: Database, location: Any) -> str | None:
    for vdi in db.find("VDI", location=location):
        if db.get("SR", db.get("VDI", vdi)["SR"])["content_type"] == "iso":
            return vdi
    return None


def _wanted(db: Database, plan: _Plan, cls: str, record: dict[str, Any]) -> bool:
    """Made on the master: a VDI on a carried SR; devices of a VM that is made."""
    if cls == "VDI":
        return _carried_sr(plan, record) is not None
    if cls in ("VBD", "VIF"):
        vm = str(record.get("VM", ""))
        if not any(c == "VM" and r == vm for c, r, _ in plan.make):
            return False
        # a disk whose VDI the pool has not cannot be made; a CD is left empty
        return cls == "VIF" or record.get("VDI") in plan.table or record.get("type") != "Disk"
    if cls == "PBD":
        return _carried_sr(plan, {"SR": record.get("SR")}) is not None
    return True


# ---- making the rows ------------------------------------------------------------------


def _remap_field(plan: _Plan, cls: str, name: str, value: Any) -> Any:
    return remap_refs(CLASSES[cls].fields[name].type, value, plan.table)


_RUNTIME: dict[str, dict[str, Any]] = {
    "VM": {
        "resident_on": NULL_REF,
        "scheduled_to_be_resident_on": NULL_REF,
        "domid": -1,
        "guest_metrics": NULL_REF,
        "current_operations": {},
    },
    "VBD": {"currently_attached": False, "current_operations": {}, "metrics": NULL_REF},
    "VIF": {"currently_attached": False, "current_operations": {}, "metrics": NULL_REF},
    "VDI": {"current_operations": {}},
    "SR": {"current_operations": {}, "shared": False},
    "PBD": {"currently_attached": True},
}


def _make(
    ctx: Context, plan: _Plan, cls: str, ref: str, record: dict[str, Any]
) -> tuple[str, str, dict[str, Any]]:
    """Create the row, its relations left for :func:`_link`; (cls, ref, those relations)."""
    db, cdef = ctx.db, CLASSES[cls]
    row = {k: _remap_field(plan, cls, k, v) for k, v in record.items()}
    row |= _RUNTIME.get(cls, {})
    uuid = str(record.get("uuid", ""))
    row["uuid"] = uuid if uuid and uuid not in db.table(cls).by_uuid else new_uuid()
    if cls == "VM":
        metrics = new_ref()
        installed = ctx.toolstack.clock.now()
        db.create("VM_metrics", metrics, {"uuid": new_uuid(), "install_time": installed})
        row["metrics"] = metrics
        # suspended stays suspended with its image's VDI (the image is in the joiner's
        # backend, which resumes it); anything else comes in halted
        image = row.get("suspend_VDI", NULL_REF)
        suspended = record.get("power_state") == "Suspended" and image != NULL_REF
        row["power_state"] = "Suspended" if suspended else "Halted"
        row["suspend_VDI"] = image if suspended else NULL_REF
    elif cls == "VBD" and row.get("VDI", NULL_REF) == NULL_REF:
        row["empty"] = True
    links = {k: row.pop(k) for k in list(row) if k in cdef.relations}
    target = plan.table[ref]
    db.create(cls, target, new_record(cls, **row))
    return cls, target, links


def _link(db: Database, made: list[tuple[str, str, dict[str, Any]]]) -> None:
    """Set the relations once every row exists, so that both sides are kept."""
    for cls, ref, links in made:
        for name, value in links.items():
            if value != NULL_REF:
                db.set(cls, ref, name, value)


def _refresh(ctx: Context, made: list[tuple[str, str]], rewritten: list[str]) -> None:
    db = ctx.db
    for cls, ref in made:
        if cls == "VM":
            update_allowed_operations(db, ref)
        elif cls == "VDI":
            refresh_allowed(db, ref)
    srs = {ref for cls, ref in made if cls == "SR"} | set(rewritten)
    for sr in sorted(srs):
        refresh_usage(drivers(ctx.toolstack), db, sr)
