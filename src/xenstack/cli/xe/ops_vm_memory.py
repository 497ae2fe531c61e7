"""VM resource commands: memory ranges and targets, live VCPUs, power-state reset."""

from __future__ import annotations

from .context import Ctx
from .generic import parse_bytes
from .ops_common import vm_op
from .output import CliError
from .registry import command

NO_FORCE = (
    "This operation is dangerous and may cause data loss. This operation must be forced "
    "(use --force)."
)


def _memory(
    name: str, method: str, keys: str, help: str, templates: bool = True, pair: bool = False
) -> None:
    """Register a command that passes its size parameters, in order, to ``method``.

    ``pair`` repeats the single size (a target is a dynamic range of one value).
    """

    @command(name, reqd=keys, flags="vm", help=help)
    def run(ctx: Ctx) -> None:
        sizes = [parse_bytes(k, ctx.req(k)) for k in keys.split()]
        if pair:
            sizes = sizes * 2
        vm_op(
            ctx,
            lambda row: ctx.call(method, row[0], *sizes),
            keys.split(),
            templates=templates,
            control=True,
        )


_memory(
    "vm-memory-limits-set",
    "VM.set_memory_limits",
    "static-min static-max dynamic-min dynamic-max",
    "Set all four memory limits of the selected VMs at once (sizes like 512MiB or bytes).",
)
_memory(
    "vm-memory-set",
    "VM.set_memory",
    "memory",
    "Give the selected VMs this much memory: every memory limit but static-min becomes it.",
)
_memory(
    "vm-memory-static-range-set",
    "VM.set_memory_static_range",
    "min max",
    "Set the static memory range of halted VMs; it must contain the dynamic range.",
)
_memory(
    "vm-memory-dynamic-range-set",
    "VM.set_memory_dynamic_range",
    "min max",
    "Set the dynamic memory range of the selected VMs, within their static range.",
)
_memory(
    "vm-memory-target-set",
    "VM.set_memory_dynamic_range",
    "target",
    "Set the memory target of halted or running VMs (a dynamic range of one value).",
    templates=False,
    pair=True,
)


@command(
    "vm-vcpu-hotplug",
    reqd="new-vcpus",
    flags="vm",
    help="Change the number of VCPUs of running VMs, up to their VCPUs-max.",
)
def vm_vcpu_hotplug(ctx: Ctx) -> None:
    try:
        count = int(ctx.req("new-vcpus"))
    except ValueError:
        raise CliError("Failed to parse parameter 'new-vcpus': expecting an integer") from None
    vm_op(ctx, lambda row: ctx.call("VM.set_VCPUs_number_live", row[0], count), ["new-vcpus"])


@command(
    "vm-reset-powerstate",
    optn="force",
    flags="standard vm",
    help="Mark the selected VMs halted in the database only, to recover VMs of a dead host "
    "that will not come back. Dangerous: the VMs must truly not be running anywhere; "
    "needs --force.",
)
def vm_reset_powerstate(ctx: Ctx) -> None:
    if not ctx.flag("force"):
        raise CliError(NO_FORCE)
    vm_op(ctx, lambda row: ctx.call("VM.power_state_reset", row[0]))
