"""VM device listings: vm-disk-list and vm-cd-list (a VBD block, then its VDI block)."""

from __future__ import annotations

from .context import Ctx
from .generic import printable
from .ops_common import vm_op
from .records import Field, RecordKind, kind_for_class
from .registry import command

TYPE_CHECKING = False  # typing is not imported at run time: start-up speed matters
if TYPE_CHECKING:
    from typing import Any

    from .select import Row

S = "standard vm"
NULL = "OpaqueRef:NULL"
VDI_COLUMNS = ("uuid", "name-label", "virtual-size", "sr-name-label")


def pick_fields(kind: RecordKind, wanted: str | None, default: tuple[str, ...]) -> list[Field]:
    """The visible fields ``wanted`` names (``all`` for every one), in record order."""
    names = list(default) if wanted is None else ([] if wanted == "all" else wanted.split(","))
    visible = [f for f in kind.fields if not f.hidden]
    return visible if not names else [f for f in visible if f.name in names]


def _device_list(ctx: Ctx, cd: bool) -> None:
    vbd_kind, vdi_kind = kind_for_class("VBD"), kind_for_class("VDI")
    vbd_default = ("uuid", "vm-name-label", "userdevice") + (("empty",) if cd else ())
    vbd_fields = pick_fields(vbd_kind, ctx.get("vbd-params"), vbd_default)
    vdi_fields = pick_fields(vdi_kind, ctx.get("vdi-params"), VDI_COLUMNS)
    wanted_type, label = ("CD", "CD") if cd else ("Disk", "Disk")

    def op(row: Row) -> None:
        vbds = [(v, ctx.call("VBD.get_record", v)) for v in row[1].get("VBDs") or []]
        vbds = [(v, rec) for v, rec in vbds if rec.get("type") == wanted_type]
        ctx.res.refs_needed(vbd_fields, [rec for _, rec in vbds])
        for n, (vbd, vbd_rec) in enumerate(vbds):
            ctx.printer.message(f"{label} {n} VBD:")
            ctx.printer.table([printable(ctx.res, vbd_fields, vbd, vbd_rec, False)])
            vdi = str(vbd_rec.get("VDI", NULL))
            if vbd_rec.get("empty") or vdi == NULL:
                continue
            vdi_rec: dict[str, Any] = ctx.call("VDI.get_record", vdi)
            ctx.res.refs_needed(vdi_fields, [vdi_rec])
            ctx.printer.message(f"{label} {n} VDI:")
            ctx.printer.table([printable(ctx.res, vdi_fields, vdi, vdi_rec, False)])

    vm_op(ctx, op, ["vbd-params", "vdi-params"])


@command(
    "vm-disk-list",
    optn="vbd-params vdi-params",
    flags=S,
    help="List the disks of the selected VMs: each VBD, then its VDI "
    "(vbd-params= and vdi-params= pick the fields, 'all' for every one).",
)
def vm_disk_list(ctx: Ctx) -> None:
    _device_list(ctx, cd=False)


@command(
    "vm-cd-list",
    optn="vbd-params vdi-params",
    flags=S,
    help="List the CD drives of the selected VMs and the ISOs in them "
    "(vbd-params= and vdi-params= pick the fields, 'all' for every one).",
)
def vm_cd_list(ctx: Ctx) -> None:
    _device_list(ctx, cd=True)
