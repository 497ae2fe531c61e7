"""VM disk and CD commands: vm-disk-add/-remove, vm-cd-add/-remove/-insert/-eject."""

from __future__ import annotations

import contextlib

from .client import XenApiError
from .context import Ctx
from .generic import parse_bytes
from .ops_common import pool_ref, vm_op
from .output import CliError
from .registry import command

TYPE_CHECKING = False  # typing is not imported at run time: start-up speed matters
if TYPE_CHECKING:
    from typing import Any

    from .select import Row

S = "standard vm"
NULL = "OpaqueRef:NULL"
CREATED_BY = "Created by xe"


def _cd_vbds(ctx: Ctx, rec: dict[str, Any], empty: bool | None = None) -> list[str]:
    out = []
    for vbd in rec.get("VBDs") or []:
        vrec = ctx.call("VBD.get_record", vbd)
        if vrec.get("type") == "CD" and (empty is None or vrec.get("empty") == empty):
            out.append(str(vbd))
    return out


@command("vm-cd-eject", flags=S, help="Eject the CD from the selected VMs' drives.")
def vm_cd_eject(ctx: Ctx) -> None:
    def op(row: Row) -> None:
        cds = _cd_vbds(ctx, row[1])
        if not cds:
            raise CliError("No CDs found")
        if len(cds) > 1:
            raise CliError("Two or more CDs found. Please use vbd-eject")
        ctx.call("VBD.eject", cds[0])

    vm_op(ctx, op)


def _iso_vdis(ctx: Ctx, name: str) -> list[str]:
    out = []
    for vdi in ctx.call("VDI.get_by_name_label", name):
        sr = ctx.call("VDI.get_SR", vdi)
        if ctx.call("SR.get_content_type", sr) == "iso":
            out.append(str(vdi))
    return out


@command(
    "vm-cd-insert",
    reqd="cd-name",
    flags=S,
    help="Insert an ISO into the selected VMs' empty CD drive.",
)
def vm_cd_insert(ctx: Ctx) -> None:
    name = ctx.req("cd-name")
    vdis = _iso_vdis(ctx, name)
    if not vdis:
        raise CliError(f"CD {name} not found")
    if len(vdis) > 1:
        raise CliError(f"Multiple CDs named {name} found. Please use vbd-insert and specify uuids")

    def op(row: Row) -> None:
        cds = _cd_vbds(ctx, row[1], empty=True)
        if not cds:
            raise XenApiError("VM_NO_EMPTY_CD_VBD", [row[0]])
        if len(cds) > 1:
            raise CliError("Two or more empty CD devices found. Please use vbd-insert")
        ctx.call("VBD.insert", cds[0], vdis[0])

    vm_op(ctx, op, ["cd-name"])


@command(
    "vm-cd-add",
    reqd="cd-name device",
    flags=S,
    help="Add a CD drive holding the named ISO to the selected VMs, at a device position "
    "taken from the VM's allowed-VBD-devices.",
)
def vm_cd_add(ctx: Ctx) -> None:
    name, device = ctx.req("cd-name"), ctx.req("device")
    vdis = _iso_vdis(ctx, name)
    if not vdis:
        raise CliError(f"CD {name} not found!")

    def op(row: Row) -> None:
        vbd = ctx.call("VBD.create", vbd_record(row[0], vdis[0], device, "RO", "CD"))
        try_plug(ctx, vbd)

    vm_op(ctx, op, ["cd-name", "device", "cd-location"])


@command(
    "vm-cd-remove",
    reqd="cd-name",
    flags=S,
    help="Remove the CD drive holding the named ISO from the selected VMs "
    "(cd-name=<EMPTY> for an empty drive); the ISO itself stays.",
)
def vm_cd_remove(ctx: Ctx) -> None:
    name = ctx.req("cd-name")

    def op(row: Row) -> None:
        for vbd in row[1].get("VBDs") or []:
            if _holds_cd(ctx, str(vbd), name):
                ctx.call("VBD.destroy", vbd)
                return
        raise CliError("Disk not found")

    vm_op(ctx, op, ["cd-name"])


def _holds_cd(ctx: Ctx, vbd: str, name: str) -> bool:
    """Whether ``vbd`` holds the ISO called ``name`` (an empty drive is ``<EMPTY>``)."""
    try:
        vdi = ctx.call("VBD.get_VDI", vbd)
        sr = ctx.call("VDI.get_SR", vdi)
        return bool(
            ctx.call("SR.get_content_type", sr) == "iso"
            and ctx.call("VDI.get_name_label", vdi) == name
        )
    except XenApiError:
        return name == "<EMPTY>"


@command(
    "vm-disk-add",
    reqd="disk-size device",
    optn="sr-uuid",
    flags=S,
    help="Create a new disk and attach it to the selected VMs.",
)
def vm_disk_add(ctx: Ctx) -> None:
    size = parse_bytes("disk-size", ctx.req("disk-size"))
    device = ctx.req("device")
    if ctx.get("sr-uuid"):
        sr = ctx.ref_by_uuid("SR", ctx.req("sr-uuid"))
    else:
        sr = ctx.call("pool.get_default_SR", pool_ref(ctx))
        if sr == NULL:
            raise CliError("No default Pool SR set; you must specify an SR on the commandline")

    def op(row: Row) -> None:
        vdi = ctx.call("VDI.create", {
            "name_label": CREATED_BY, "name_description": CREATED_BY, "SR": sr,
            "virtual_size": size, "type": "user", "sharable": False, "read_only": False,
            "other_config": {}, "xenstore_data": {}, "tags": [],
            "sm_config": {"vmhint": row[1].get("uuid", "")}})  # fmt: skip
        try:
            vbd = ctx.call("VBD.create", vbd_record(row[0], vdi, device, "RW", "Disk", owner=True))
        except XenApiError:
            ctx.call("VDI.destroy", vdi)
            raise
        try_plug(ctx, vbd)

    vm_op(ctx, op, ["sr-uuid", "device", "disk-size"])


def try_plug(ctx: Ctx, vbd: str) -> None:
    """Hot-plug a new VBD; a VM that is not running (or cannot take it) keeps it unplugged."""
    with contextlib.suppress(XenApiError):
        ctx.call("VBD.plug", vbd)


def vbd_record(
    vm: str, vdi: str, device: str, mode: str, kind: str, owner: bool = False
) -> dict[str, Any]:
    """A complete ``VBD.create`` record; ``owner`` marks a disk vm-uninstall destroys."""
    return {
        "VM": vm,
        "VDI": vdi,
        "userdevice": device,
        "device": "",
        "bootable": False,
        "mode": mode,
        "type": kind,
        "unpluggable": True,
        "empty": vdi == NULL,
        "other_config": {"owner": ""} if owner else {},
        "currently_attached": False,
        "qos_algorithm_type": "",
        "qos_algorithm_params": {},
    }


@command(
    "vm-disk-remove",
    reqd="device",
    flags=S,
    help="Detach and destroy the disk at a device position of the selected VMs.",
)
def vm_disk_remove(ctx: Ctx) -> None:
    device = ctx.req("device")

    def op(row: Row) -> None:
        for vbd in row[1].get("VBDs") or []:
            vrec = ctx.call("VBD.get_record", vbd)
            if vrec.get("userdevice") == device:
                ctx.call("VBD.destroy", vbd)
                ctx.call("VDI.destroy", vrec["VDI"])
                return
        raise CliError("Disk not found")

    vm_op(ctx, op, ["device"])
