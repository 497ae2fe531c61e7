"""VM commands: power operations, bare records and VIF listing.

The other VM families live beside this module: disks and CDs in ``ops_vm_disks``, copies,
snapshots and migration in ``ops_vm_copy``, install and uninstall in ``ops_vm_install``.
"""

from __future__ import annotations

from .context import Ctx
from .generic import printable
from .ops_common import host_by_name_or_id, print_uuid, vm_op
from .records import kind_for_class
from .registry import command

TYPE_CHECKING = False  # typing is not imported at run time: start-up speed matters
if TYPE_CHECKING:
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
    "vm-vif-list",
    optn="params",
    flags=S,
    help="List the virtual network interfaces of the selected VMs (params= picks the fields, "
    "'all' for every one).",
)
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
