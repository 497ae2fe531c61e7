"""VM copies and moves: vm-clone/-copy/-snapshot/-checkpoint, snapshot-revert, vm-migrate."""

from __future__ import annotations

from .context import Ctx
from .ops_common import host_by_name_or_id, print_uuid, snapshot_ref, vm_op
from .output import CliError
from .registry import command

TYPE_CHECKING = False  # typing is not imported at run time: start-up speed matters
if TYPE_CHECKING:
    from typing import Any

    from .select import Row

S = "standard vm"
NULL = "OpaqueRef:NULL"
COPY_PARAMS = ["new-name-label", "new-name-description", "sr-uuid", "ignore-vdi-uuids"]


def _copy_call(ctx: Ctx, name: str, vm: str, label: str) -> Any:
    """Make the copy ``name`` asks for of ``vm``; returns the new VM's reference."""
    if name == "vm-copy":
        sr = ctx.ref_by_uuid("SR", ctx.req("sr-uuid")) if ctx.get("sr-uuid") else NULL
        return ctx.call("VM.copy", vm, label, sr)
    if name == "vm-snapshot":
        uuids = (ctx.get("ignore-vdi-uuids") or "").split(",")
        return ctx.call("VM.snapshot", vm, label, [ctx.ref_by_uuid("VDI", u) for u in uuids if u])
    method = "VM.clone" if name == "vm-clone" else "VM.checkpoint"
    return ctx.call(method, vm, label)


def _copy_like(name: str, optn: str, help: str) -> None:
    @command(name, reqd="new-name-label", optn=optn, flags=S, help=help)
    def run(ctx: Ctx) -> None:
        label = ctx.req("new-name-label")
        desc = ctx.get("new-name-description")

        def op(row: Row) -> None:
            new = _copy_call(ctx, name, row[0], label)
            if desc is not None:
                ctx.call("VM.set_name_description", new, desc)
            print_uuid(ctx, "VM", new)

        vm_op(ctx, op, COPY_PARAMS, templates=name in ("vm-clone", "vm-copy"))


_copy_like(
    "vm-clone",
    "new-name-description",
    "Clone a VM (fast copy sharing disks where the storage allows).",
)
_copy_like(
    "vm-copy",
    "new-name-description sr-uuid",
    "Copy a VM, with full copies of its disks (to sr-uuid if given).",
)
_copy_like(
    "vm-snapshot",
    "new-name-description ignore-vdi-uuids",
    "Take a disk snapshot of a VM.",
)
_copy_like(
    "vm-checkpoint",
    "new-name-description",
    "Take a checkpoint (disks and memory) of a VM.",
)


@command(
    "snapshot-revert",
    optn="uuid snapshot-uuid",
    flags="standard",
    help="Revert a VM to the state of one of its snapshots.",
)
def snapshot_revert(ctx: Ctx) -> None:
    ctx.call("VM.revert", snapshot_ref(ctx))


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
