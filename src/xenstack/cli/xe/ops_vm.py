"""VM commands: install, power operations, clones and snapshots, CDs, disks, VIFs."""

from __future__ import annotations

import contextlib
import re

from .client import XenApiError
from .context import Ctx
from .generic import parse_bytes, printable
from .ops_common import host_by_name_or_id, pool_ref, print_uuid, vm_op
from .output import CliError
from .records import kind_for_class
from .registry import command

TYPE_CHECKING = False  # typing is not imported at run time: start-up speed matters
if TYPE_CHECKING:
    from typing import Any

    from .select import Row

S = "standard vm"


@command("vm-start", optn="force on paused", flags=S, help="Start the selected VMs.")
def vm_start(ctx: Ctx) -> None:
    force, paused, on = ctx.flag("force"), ctx.flag("paused"), ctx.get("on")

    def op(row: Row) -> None:
        if on is not None:
            ctx.call("VM.start_on", row[0], host_by_name_or_id(ctx, on), paused, force)
        else:
            ctx.call("VM.start", row[0], paused, force)

    vm_op(ctx, op, ["on", "paused", "progress"], control=True)


def _power(name: str, clean: str, hard: str, help: str) -> None:
    @command(name, optn="force", flags=S, help=help)
    def run(ctx: Ctx) -> None:
        method = hard if ctx.flag("force") else clean
        vm_op(ctx, lambda row: ctx.call(method, row[0]), ["progress"])


_power(
    "vm-shutdown",
    "VM.clean_shutdown",
    "VM.hard_shutdown",
    "Shut down the selected VMs (--force powers them off at once).",
)
_power(
    "vm-reboot",
    "VM.clean_reboot",
    "VM.hard_reboot",
    "Reboot the selected VMs (--force resets them at once).",
)


def _simple(name: str, method: str, help: str) -> None:
    @command(name, flags=S, help=help)
    def run(ctx: Ctx) -> None:
        vm_op(ctx, lambda row: ctx.call(method, row[0]), ["progress"])


_simple("vm-suspend", "VM.suspend", "Suspend the selected VMs to disk.")
_simple("vm-pause", "VM.pause", "Pause the selected running VMs.")
_simple("vm-unpause", "VM.unpause", "Unpause the selected paused VMs.")


@command("vm-resume", optn="force on", flags=S, help="Resume the selected suspended VMs.")
def vm_resume(ctx: Ctx) -> None:
    force, on = ctx.flag("force"), ctx.get("on")

    def op(row: Row) -> None:
        if on is not None:
            ctx.call("VM.resume_on", row[0], host_by_name_or_id(ctx, on), False, force)
        else:
            ctx.call("VM.resume", row[0], False, force)

    vm_op(ctx, op, ["on", "progress"])


def _copy_like(name: str, reqd: str, optn: str, help: str) -> None:
    @command(name, reqd=reqd, optn=optn, flags=S, help=help)
    def run(ctx: Ctx) -> None:
        label = ctx.req("new-name-label")
        desc = ctx.get("new-name-description")

        def op(row: Row) -> None:
            if name == "vm-copy" and ctx.get("sr-uuid"):
                sr = ctx.ref_by_uuid("SR", ctx.req("sr-uuid"))
                new = ctx.call("VM.copy", row[0], label, sr)
            elif name == "vm-copy":
                new = ctx.call("VM.copy", row[0], label, "OpaqueRef:NULL")
            elif name == "vm-snapshot" and ctx.get("ignore-vdi-uuids"):
                vdis = [ctx.ref_by_uuid("VDI", u) for u in ctx.req("ignore-vdi-uuids").split(",")]
                new = ctx.call("VM.snapshot", row[0], label, vdis)
            else:
                method = {"vm-clone": "VM.clone", "vm-snapshot": "VM.snapshot",
                          "vm-checkpoint": "VM.checkpoint"}[name]  # fmt: skip
                new = ctx.call(method, row[0], label)
            if desc is not None:
                ctx.call("VM.set_name_description", new, desc)
            print_uuid(ctx, "VM", new)

        vm_op(
            ctx,
            op,
            ["new-name-label", "new-name-description", "sr-uuid", "ignore-vdi-uuids"],
            templates=name in ("vm-clone", "vm-copy"),
        )


_copy_like(
    "vm-clone",
    "new-name-label",
    "new-name-description",
    "Clone a VM (fast copy sharing disks where the storage allows).",
)
_copy_like(
    "vm-copy",
    "new-name-label",
    "new-name-description sr-uuid",
    "Copy a VM, with full copies of its disks (to sr-uuid if given).",
)
_copy_like(
    "vm-snapshot",
    "new-name-label",
    "new-name-description ignore-vdi-uuids",
    "Take a disk snapshot of a VM.",
)
_copy_like(
    "vm-checkpoint",
    "new-name-label",
    "new-name-description",
    "Take a checkpoint (disks and memory) of a VM.",
)


@command(
    "vm-install",
    reqd="new-name-label",
    optn="sr-name-label sr-uuid template template-uuid template-name template-name-label "
    "copy-bios-strings-from",
    flags="standard",
    help="Install a new VM from a template; prints the new VM's uuid.",
)
def vm_install(ctx: Ctx) -> None:
    template = _find_template(ctx)
    trec = ctx.call("VM.get_record", template)
    if not trec.get("is_a_template"):
        raise CliError("Can only install from templates")
    sr = _install_sr(ctx, trec)
    label = ctx.req("new-name-label")
    new = ctx.call("VM.copy", template, label, sr) if sr else ctx.call("VM.clone", template, label)
    try:
        ctx.call("VM.set_name_description", new, "Installed via xe CLI")
        _rewrite_disks(ctx, new, trec, sr)
        ctx.call("VM.provision", new)
        if ctx.get("copy-bios-strings-from"):
            host = ctx.ref_by_uuid("host", ctx.req("copy-bios-strings-from"))
            ctx.call("VM.copy_bios_strings", new, host)
    except BaseException:
        with contextlib.suppress(XenApiError):
            ctx.call("VM.destroy", new)
        raise
    print_uuid(ctx, "VM", new)


def _find_template(ctx: Ctx) -> str:
    if ctx.get("template-uuid"):
        try:
            return ctx.ref_by_uuid("VM", ctx.req("template-uuid"))
        except XenApiError:
            raise CliError("Cannot find template") from None
    name = ctx.get("template-name-label") or ctx.get("template-name") or ctx.get("template")
    if name is None:
        raise CliError(
            "Specify the template with template-uuid, template-name, "
            "template-name-label or template"
        )
    rows = ctx.call("VM.get_all_records").items()
    found = [
        ref
        for ref, rec in rows
        if rec.get("is_a_template")
        and not rec.get("is_control_domain")
        and name in (rec.get("name_label"), rec.get("uuid"))
    ]
    if not found:
        raise CliError("No templates matched")
    if len(found) > 1:
        raise CliError("More than one matching template found")
    return str(found[0])


def _install_sr(ctx: Ctx, trec: dict[str, Any]) -> str:
    if ctx.get("sr-uuid"):
        return ctx.ref_by_uuid("SR", ctx.req("sr-uuid"))
    if ctx.get("sr-name-label"):
        srs = ctx.call("SR.get_by_name_label", ctx.req("sr-name-label"))
        if not srs:
            raise CliError("No SR with that name-label found")
        if len(srs) > 1:
            raise CliError("Multiple SRs with that name-label found")
        return str(srs[0])
    return ""


def _rewrite_disks(ctx: Ctx, vm: str, trec: dict[str, Any], sr: str) -> None:
    """Point the template's disk provisioning at the chosen (or default) SR."""
    disks = (trec.get("other_config") or {}).get("disks")
    if not disks:
        return
    sr_ref = sr or ctx.call("pool.get_default_SR", pool_ref(ctx))
    if sr_ref in ("", "OpaqueRef:NULL"):
        raise CliError("No default SR is set on the pool; give sr-uuid or sr-name-label.")
    sr_uuid = ctx.uuid_of("SR", sr_ref)
    text = re.sub(r'sr="[^"]*"', f'sr="{sr_uuid}"', disks)
    ctx.call("VM.remove_from_other_config", vm, "disks")
    ctx.call("VM.add_to_other_config", vm, "disks", text)


@command(
    "vm-uninstall",
    optn="force",
    flags=S,
    help="Destroy the selected VMs and the disks only they use.",
)
def vm_uninstall(ctx: Ctx) -> None:
    def op(row: Row) -> None:
        ref, rec = row
        vdis = []
        for vbd in rec.get("VBDs") or []:
            vbd_rec = ctx.call("VBD.get_record", vbd)
            if vbd_rec.get("type") == "Disk" and vbd_rec.get("VDI") != "OpaqueRef:NULL":
                vdis.append(vbd_rec["VDI"])
        if rec.get("power_state") != "Halted":
            ctx.call("VM.hard_shutdown", ref)
        ctx.call("VM.destroy", ref)
        for vdi in vdis:
            with contextlib.suppress(XenApiError):
                ctx.call("VDI.destroy", vdi)

    vm_op(ctx, op)


@command("vm-destroy", reqd="uuid", flags="hidden", help="Remove a VM record (not its disks).")
def vm_destroy(ctx: Ctx) -> None:
    ctx.call("VM.destroy", ctx.ref_by_uuid("VM", ctx.req("uuid")))


@command(
    "vm-create",
    reqd="name-label",
    optn="name-description",
    flags="hidden",
    help="Create an empty VM record; prints its uuid.",
)
def vm_create(ctx: Ctx) -> None:
    rec = {
        "name_label": ctx.req("name-label"),
        "name_description": ctx.get("name-description", "") or "",
    }
    print_uuid(ctx, "VM", ctx.call("VM.create", rec))


@command(
    "vm-migrate",
    optn="live host host-uuid remote-master remote-username remote-password "
    "remote-network force copy compress vif: vdi:",
    flags=S,
    help="Move the selected VMs to another host of the pool.",
)
def vm_migrate(ctx: Ctx) -> None:
    if ctx.get("remote-master"):
        raise CliError("Cross-pool migration is not supported by this toolstack yet")
    name = ctx.get("host") or ctx.get("host-uuid")
    if name is None:
        raise CliError("Specify the destination with host= or host-uuid=")
    host = host_by_name_or_id(ctx, name)
    options = {"live": "true" if ctx.flag("live") else "false"}
    vm_op(
        ctx,
        lambda row: ctx.call("VM.pool_migrate", row[0], host, options),
        ["live", "host", "host-uuid", "force", "copy", "compress"],
    )


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
    "vm-disk-add",
    reqd="disk-size device",
    optn="sr-uuid",
    flags=S,
    help="Create a new disk and attach it to the selected VMs.",
)
def vm_disk_add(ctx: Ctx) -> None:
    size = parse_bytes("disk-size", ctx.req("disk-size"))
    device = ctx.req("device")
    sr = (
        ctx.ref_by_uuid("SR", ctx.req("sr-uuid"))
        if ctx.get("sr-uuid")
        else ctx.call("pool.get_default_SR", pool_ref(ctx))
    )

    def op(row: Row) -> None:
        vm_rec = row[1]
        vdi = ctx.call("VDI.create", {
            "name_label": f"{vm_rec.get('name_label')} disk", "name_description": "Created by xe",
            "SR": sr, "virtual_size": size, "type": "user", "sharable": False,
            "read_only": False, "other_config": {}, "xenstore_data": {}, "sm_config": {},
            "tags": []})  # fmt: skip
        vbd = ctx.call("VBD.create", _vbd_record(row[0], vdi, device, "RW", "Disk"))
        if vm_rec.get("power_state") == "Running":
            ctx.call("VBD.plug", vbd)

    vm_op(ctx, op, ["sr-uuid", "device", "disk-size"])


def _vbd_record(vm: str, vdi: str, device: str, mode: str, kind: str) -> dict[str, Any]:
    return {
        "VM": vm,
        "VDI": vdi,
        "userdevice": device,
        "bootable": False,
        "mode": mode,
        "type": kind,
        "unpluggable": True,
        "empty": vdi == "OpaqueRef:NULL",
        "other_config": {},
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


@command("vm-vif-list", flags=S, help="List the virtual network interfaces of the selected VMs.")
def vm_vif_list(ctx: Ctx) -> None:
    kind = kind_for_class("VIF")
    wanted = ctx.get("params")
    cols = (
        ["uuid", "device", "MAC", "network-uuid", "network-name-label", "vm-name-label"]
        if wanted is None
        else ([] if wanted == "all" else wanted.split(","))
    )
    fields = [f for f in kind.fields if not f.hidden and (not cols or f.name in cols)]

    def op(row: Row) -> None:
        vifs = [(v, ctx.call("VIF.get_record", v)) for v in row[1].get("VIFs") or []]
        ctx.res.refs_needed(fields, [rec for _, rec in vifs])
        ctx.printer.table([printable(ctx.res, fields, ref, rec, True) for ref, rec in vifs])

    ctx.params.append(("multiple", "true"))
    vm_op(ctx, op, ["params"])


@command(
    "snapshot-revert",
    optn="uuid snapshot-uuid",
    flags="standard",
    help="Revert a VM to the state of one of its snapshots.",
)
def snapshot_revert(ctx: Ctx) -> None:
    uuid = ctx.get("snapshot-uuid") or ctx.get("uuid")
    if uuid is None:
        raise CliError("Specify the snapshot with snapshot-uuid=")
    ctx.call("VM.revert", ctx.ref_by_uuid("VM", uuid))


def _snapshot_remove(name: str, key: str, help: str) -> None:
    @command(name, optn=f"uuid {key} force", flags="standard", help=help)
    def run(ctx: Ctx) -> None:
        uuid = ctx.get(key) or ctx.get("uuid")
        if uuid is None:
            raise CliError(f"Specify the object with {key}=")
        ref = ctx.ref_by_uuid("VM", uuid)
        rec = ctx.call("VM.get_record", ref)
        ctx.params.append(("uuid", uuid))
        vm_op(
            ctx,
            lambda row: _destroy_with_disks(ctx, row),
            ["uuid", key],
            templates=bool(rec.get("is_a_template")),
        )


def _destroy_with_disks(ctx: Ctx, row: Row) -> None:
    vdis = []
    for vbd in row[1].get("VBDs") or []:
        vrec = ctx.call("VBD.get_record", vbd)
        if vrec.get("type") == "Disk" and vrec.get("VDI") != "OpaqueRef:NULL":
            vdis.append(vrec["VDI"])
    ctx.call("VM.destroy", row[0])
    for vdi in vdis:
        with contextlib.suppress(XenApiError):
            ctx.call("VDI.destroy", vdi)


_snapshot_remove("snapshot-uninstall", "snapshot-uuid", "Destroy a snapshot and its disks.")
_snapshot_remove("template-uninstall", "template-uuid", "Destroy a template and its disks.")
