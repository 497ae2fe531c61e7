"""Installing and uninstalling: vm-install, vm-uninstall, snapshot- and template-uninstall."""

from __future__ import annotations

import contextlib
import re
import sys

from .client import XenApiError
from .context import Ctx
from .ops_common import pool_ref, print_uuid, snapshot_ref, template_ref
from .output import CliError
from .registry import command
from .select import one_or_many, select_vms

TYPE_CHECKING = False  # typing is not imported at run time: start-up speed matters
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

NULL = "OpaqueRef:NULL"


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
    sr = _install_sr(ctx)
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
            "Template must be specified by parameter 'template-uuid', "
            "'template-name', 'template-name-label' or 'template'"
        )
    found = [
        ref
        for ref, rec in ctx.call("VM.get_all_records").items()
        if rec.get("is_a_template")
        and not rec.get("is_control_domain")
        and name in (rec.get("name_label"), rec.get("uuid"))
    ]
    if not found:
        raise CliError("No templates matched")
    if len(found) > 1:
        raise CliError("More than one matching template found")
    return str(found[0])


def _install_sr(ctx: Ctx) -> str:
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
    if sr_ref in ("", NULL):
        raise CliError("No default SR is set on the pool; give sr-uuid or sr-name-label.")
    sr_uuid = ctx.uuid_of("SR", sr_ref)
    text = re.sub(r'sr="[^"]*"', f'sr="{sr_uuid}"', disks)
    ctx.call("VM.remove_from_other_config", vm, "disks")
    ctx.call("VM.add_to_other_config", vm, "disks", text)


def _owned_vdis(ctx: Ctx, vm_rec: dict[str, Any]) -> list[str]:
    """The disks a VM owns (its VBD says ``owner``): uninstalling the VM destroys them."""
    vdis = []
    for vbd in vm_rec.get("VBDs") or []:
        with contextlib.suppress(XenApiError):
            vbd_rec = ctx.call("VBD.get_record", vbd)
            if "owner" in (vbd_rec.get("other_config") or {}):
                ctx.call("VDI.get_uuid", vbd_rec["VDI"])  # the disk still exists
                vdis.append(str(vbd_rec["VDI"]))
    return vdis


def _vdi_line(ctx: Ctx, vdi: str) -> str:
    rec = ctx.call("VDI.get_record", vdi)
    shared = " ** WARNING: disk is shared by other VMs" if len(rec.get("VBDs") or []) > 1 else ""
    return f"VDI: {rec.get('uuid')} ({rec.get('name_label')}) {shared}"


def _plan(ctx: Ctx, vm: str) -> tuple[list[str], Callable[[], None]]:
    """What uninstalling ``vm`` destroys (as lines to show) and the function that does it."""
    rec = ctx.call("VM.get_record", vm)
    vdis = _owned_vdis(ctx, rec)
    suspend = str(rec.get("suspend_VDI") or NULL)
    if suspend != NULL:
        try:
            ctx.call("VDI.get_uuid", suspend)
        except XenApiError:
            suspend = NULL
    lines = [f"VM : {rec.get('uuid')} ({rec.get('name_label')})"]
    lines += [_vdi_line(ctx, v) for v in vdis + ([suspend] if suspend != NULL else [])]

    def destroy() -> None:
        if ctx.call("VM.get_power_state", vm) != "Halted":
            ctx.call("VM.hard_shutdown", vm)
        ctx.call("VM.destroy", vm)
        for vdi in vdis:
            ctx.call("VDI.destroy", vdi)
        if suspend != NULL:
            with contextlib.suppress(XenApiError):
                ctx.call("VDI.destroy", suspend)

    return lines, destroy


def _uninstall(ctx: Ctx, vms: list[str]) -> None:
    """List what goes, ask (unless --force), then destroy the VMs and the disks they own."""
    plans = [_plan(ctx, vm) for vm in vms]
    ctx.printer.lines(["The following items are about to be destroyed"])
    ctx.printer.lines([line for lines, _ in plans for line in lines])
    if not ctx.flag("force") and not user_says_yes(ctx):
        return
    for _, destroy in plans:
        destroy()
    ctx.printer.lines(["All objects destroyed"])


def user_says_yes(ctx: Ctx) -> bool:
    """Ask on the terminal, as xe does before destroying things without ``--force``."""
    ctx.printer.lines(["Type 'yes' to continue"])
    ctx.printer.flush_partial()
    answer = sys.stdin.readline().strip()
    if answer.lower() == "yes":
        return True
    ctx.printer.lines([f"Aborted (you typed: '{answer}')"])
    return False


@command(
    "vm-uninstall",
    optn="force",
    flags="standard vm",
    help="Destroy the selected VMs, their snapshots and the disks they own.",
)
def vm_uninstall(ctx: Ctx) -> None:
    rows = one_or_many(ctx, select_vms(ctx, ["force"]), "VMs")
    vms = [ref for ref, _ in rows]
    snapshots = [str(s) for _, rec in rows for s in rec.get("snapshots") or []]
    _uninstall(ctx, vms + snapshots)


@command(
    "snapshot-uninstall",
    optn="uuid snapshot-uuid force",
    flags="standard",
    help="Destroy a snapshot and the disks it owns.",
)
def snapshot_uninstall(ctx: Ctx) -> None:
    _uninstall(ctx, [snapshot_ref(ctx)])


@command(
    "template-uninstall",
    reqd="template-uuid",
    optn="force",
    flags="standard",
    help="Destroy a template and the disks it owns.",
)
def template_uninstall(ctx: Ctx) -> None:
    _uninstall(ctx, [template_ref(ctx)])
