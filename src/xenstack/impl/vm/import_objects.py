"""The objects of an imported XVA: the VM, its VDIs on the target SR, its VBDs and VIFs.

Rules as XAPI applies them on a full import: every VM gets a new uuid (the exported one is
kept with ``full_restore``, replacing a halted older VM of that uuid), a fresh MAC seed and
``version`` 0; disks are new VDIs on the target SR (CDs of ISO libraries are looked up by
location, else ejected); networks are matched by name, then bridge (else the first network
of the pool); VIFs get new MACs unless restoring. Each object made is recorded in ``undo``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...core.context import Context
from ...core.ids import new_ref, new_uuid
from ...core.objects import new_record
from ...db.store import Database
from ...errors import ApiError
from ...idl.model import CLASSES
from ...idl.types import NULL_REF
from ...storage.xva_metadata import ExportedObject, Header
from .clone import DEVICE_RUNTIME, RUNTIME_FIELDS, Undo, random_mac
from .vm import memory_overhead

VDI_FIELDS = ("name_label", "name_description", "virtual_size", "type", "sharable", "read_only")
VDI_MAPS = ("other_config", "xenstore_data", "sm_config")


@dataclass
class Plan:
    """Export id -> local ref, the new VMs, and the disks to fill (export id, VDI, size)."""

    table: dict[str, str] = field(default_factory=dict)
    vms: list[str] = field(default_factory=list)
    disks: list[tuple[str, str, int]] = field(default_factory=list)


def _localise(db: Database, cls: str, row: dict[str, Any]) -> dict[str, Any]:
    """References to objects this pool does not have become null (or are dropped)."""
    fields = CLASSES[cls].fields
    for name, value in list(row.items()):
        ty = fields[name].type if name in fields else None
        if ty is None:
            del row[name]
        elif ty.kind == "ref" and not _exists(db, ty.name, value):
            row[name] = NULL_REF
        elif ty.kind == "set" and ty.of is not None and ty.of.kind == "ref":
            row[name] = [v for v in value if _exists(db, ty.of.name, v)]
    return row


def _exists(db: Database, cls: str, ref: Any) -> bool:
    try:
        return type(ref) is str and db.exists(cls, ref)
    except KeyError:
        return False


def _free_uuid(db: Database, cls: str, uuid: Any, keep: bool) -> str:
    if keep and type(uuid) is str and uuid and uuid not in db.table(cls).by_uuid:
        return uuid
    return new_uuid()


def vm_row(record: dict[str, Any], full_restore: bool, task: str | None) -> dict[str, Any]:
    """The new VM's row from the exported record, adjusted as XAPI does on import."""
    derived = CLASSES["VM"].derived
    row = {k: v for k, v in record.items() if k not in RUNTIME_FIELDS and k not in derived}
    other = {k: v for k, v in record.get("other_config", {}).items() if k != "import_task"}
    if not full_restore:
        other["mac_seed"] = new_uuid()
    if task:
        other["import_task"] = task
    row.update(
        other_config=other,
        power_state="Halted",
        domid=-1,
        version=int(record.get("version", 0)) + 1 if full_restore else 0,
        appliance=NULL_REF,
        protection_policy=NULL_REF,
        current_operations={task: "import"} if task else {},
    )
    if {"memory_static_max", "VCPUs_max", "HVM_shadow_multiplier"} <= row.keys():
        row["memory_overhead"] = memory_overhead({"domain_type": "", **row})
    return row


async def _replace_existing(ctx: Context, uuid: str, record: dict[str, Any], force: bool) -> None:
    """A restore over a VM of the same uuid: only a halted, older one (or with force)."""
    db = ctx.db
    old = db.table("VM").by_uuid.get(uuid)
    if old is None:
        return
    state = db.get("VM", old)["power_state"]
    if state != "Halted":
        raise ApiError("VM_BAD_POWER_STATE", [old, "halted", state.lower()])
    have, new = int(db.get("VM", old)["version"]), int(record.get("version", 0))
    if have >= new and not force:
        raise ApiError("VM_TO_IMPORT_IS_NOT_NEWER_VERSION", [old, str(have), str(new)])
    await ctx.invoke_and_wait("VM.destroy", old)


async def _vm(
    ctx: Context, obj: ExportedObject, full_restore: bool, force: bool, plan: Plan, undo: Undo
) -> None:
    db = ctx.db
    record = obj.record
    if full_restore:
        await _replace_existing(ctx, str(record.get("uuid", "")), record, force)
    row = _localise(db, "VM", vm_row(record, full_restore, ctx.task))
    ref = new_ref()
    with db.transaction():
        metrics = new_ref()
        installed = ctx.toolstack.clock.now()
        db.create("VM_metrics", metrics, {"uuid": new_uuid(), "install_time": installed})
        row.update(uuid=_free_uuid(db, "VM", record.get("uuid"), full_restore), metrics=metrics)
        db.create("VM", ref, new_record("VM", **row))
    undo.made.insert(0, ("VM_metrics", metrics))
    undo.made.append(("VM", ref))
    plan.table[obj.id] = ref
    plan.vms.append(ref)


def _iso_vdi(db: Database, location: Any) -> str | None:
    for vdi in db.find("VDI", location=location):
        if db.get("SR", db.get("VDI", vdi)["SR"])["content_type"] == "iso":
            return vdi
    return None


def _is_cd_only(header: Header, vdi_id: str) -> bool:
    vbds = [o for o in header.of_class("VBD") if o.record.get("VDI") == vdi_id]
    return bool(vbds) and all(o.record.get("type") == "CD" for o in vbds)


async def _vdi(
    ctx: Context, header: Header, obj: ExportedObject, sr: str, plan: Plan, undo: Undo
) -> None:
    record = obj.record
    sr_obj = header.find(str(record.get("SR", "")))
    if sr_obj is not None and sr_obj.record.get("content_type") == "iso":
        found = _iso_vdi(ctx.db, record.get("location"))
        if found is not None:
            plan.table[obj.id] = found
        return  # not found: the CD is ejected
    fields: dict[str, Any] = {k: record[k] for k in VDI_FIELDS if k in record}
    fields.update({k: dict(record.get(k, {})) for k in VDI_MAPS})
    fields["tags"] = list(record.get("tags", []))
    fields["sm_config"].pop("import_task", None)
    if ctx.task:
        fields["sm_config"]["import_task"] = ctx.task
    fields["SR"] = sr
    ref = str(await ctx.invoke_and_wait("VDI.create", fields))
    undo.made.append(("VDI", ref))
    plan.table[obj.id] = ref
    if not _is_cd_only(header, obj.id):
        plan.disks.append((obj.id, ref, int(record.get("virtual_size", 0))))


def _network(db: Database, obj: ExportedObject, plan: Plan) -> None:
    record = obj.record
    found = db.by_name("network", str(record.get("name_label", "")))
    if not found and record.get("bridge"):
        found = db.find("network", bridge=record["bridge"])
    if found:
        plan.table[obj.id] = found[0]


def _any_network(db: Database) -> str:
    nets = sorted(
        db.refs("network"),
        key=lambda n: (
            db.get("network", n)["other_config"].get("is_host_internal_management_network")
            == "true"
        ),
    )
    if not nets:
        raise ApiError("IMPORT_ERROR", ["no network to connect the VM's VIFs to"])
    return nets[0]


def _device(ctx: Context, cls: str, obj: ExportedObject, full_restore: bool, **fields: Any) -> str:
    db = ctx.db
    record = obj.record
    derived = CLASSES[cls].derived
    row = {k: v for k, v in record.items() if k not in DEVICE_RUNTIME and k not in derived}
    row.update(fields, currently_attached=False)
    row = _localise(db, cls, row)
    ref = new_ref()
    with db.transaction():
        row["uuid"] = _free_uuid(db, cls, record.get("uuid"), full_restore)
        db.create(cls, ref, new_record(cls, **row))
    return ref


def _owner(plan: Plan, obj: ExportedObject) -> str:
    vm = plan.table.get(str(obj.record.get("VM", "")))
    if vm is None:
        raise ApiError("IMPORT_ERROR_FAILED_TO_FIND_OBJECT", [str(obj.record.get("VM", ""))])
    return vm


def _vbd(ctx: Context, obj: ExportedObject, full_restore: bool, plan: Plan, undo: Undo) -> None:
    vm = _owner(plan, obj)
    vdi = plan.table.get(str(obj.record.get("VDI", "")))
    empty = vdi is None
    if empty and obj.record.get("type") not in ("CD", "Floppy"):
        return  # a disk whose VDI is not in the export cannot be made
    ref = _device(ctx, "VBD", obj, full_restore, VM=vm, VDI=vdi or NULL_REF, empty=empty, device="")
    undo.made.append(("VBD", ref))


def _vif(ctx: Context, obj: ExportedObject, full_restore: bool, plan: Plan, undo: Undo) -> None:
    vm = _owner(plan, obj)
    network = plan.table.get(str(obj.record.get("network", ""))) or _any_network(ctx.db)
    extra: dict[str, Any] = {}
    if not full_restore or not obj.record.get("MAC"):
        extra = {"MAC": random_mac(), "MAC_autogenerated": True}
    ref = _device(ctx, "VIF", obj, full_restore, VM=vm, network=network, **extra)
    undo.made.append(("VIF", ref))


async def make_objects(
    ctx: Context, header: Header, sr: str, full_restore: bool, force: bool, undo: Undo
) -> Plan:
    """Make every object of the export; the plan says what was made and what to fill."""
    plan = Plan()
    for obj in header.of_class("VM"):
        await _vm(ctx, obj, full_restore, force, plan, undo)
    if not plan.vms:
        raise ApiError("IMPORT_ERROR", ["the export holds no VM"])
    for obj in header.of_class("VDI"):
        await _vdi(ctx, header, obj, sr, plan, undo)
    for obj in header.of_class("network"):
        _network(ctx.db, obj, plan)
    for obj in header.of_class("VBD"):
        _vbd(ctx, obj, full_restore, plan, undo)
    for obj in header.of_class("VIF"):
        _vif(ctx, obj, full_restore, plan, undo)
    plan.disks.sort()
    return plan
