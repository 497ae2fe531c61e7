"""Helpers shared by the operation commands: per-object loops and task waiting."""

from __future__ import annotations

from .client import XenApiError
from .context import Ctx
from .output import CliError, MultipleFailure
from .select import one_or_many, select, select_vms

TYPE_CHECKING = False  # typing is not imported at run time: start-up speed matters
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

    from .select import Row

    Op = Callable[[Row], Any]


def do_multiple(ctx: Ctx, op: Op, rows: list[Row]) -> list[Any]:
    """Run ``op`` on each row; failures are reported together, as ``--multiple`` does."""
    if len(rows) == 1:
        return [op(rows[0])]
    results, failures = [], []
    for row in rows:
        try:
            results.append(op(row))
        except XenApiError as err:
            from .report import server_error

            text = server_error(ctx.client, err).rstrip("\n")
            failures.append((str(row[1].get("uuid")), text))
        except CliError as err:
            failures.append((str(row[1].get("uuid")), str(err)))
    if failures:
        raise MultipleFailure(failures)
    return results


def vm_op(
    ctx: Ctx,
    op: Op,
    ignore: Iterable[str] = (),
    multiple: bool = True,
    control: bool = False,
    templates: bool = False,
) -> list[Any]:
    rows = select_vms(ctx, ignore, templates=templates, control=control)
    return do_multiple(ctx, op, one_or_many(ctx, rows, "VMs", multiple))


def host_op(ctx: Ctx, op: Op, ignore: Iterable[str] = (), multiple: bool = True) -> list[Any]:
    rows = select(ctx, "host", "host", ignore)
    return do_multiple(ctx, op, one_or_many(ctx, rows, "hosts", multiple))


def host_by_name_or_id(ctx: Ctx, name: str) -> str:
    for ref, rec in ctx.call("host.get_all_records").items():
        if name in (rec.get("uuid"), rec.get("name_label"), rec.get("hostname")):
            return str(ref)
    raise CliError(f"Host {name} not found")


def pool_ref(ctx: Ctx) -> str:
    pools = ctx.call("pool.get_all")
    if not pools:
        raise CliError("No pool found")
    return str(pools[0])


def print_uuid(ctx: Ctx, cls: str, ref: str) -> None:
    ctx.printer.lines([ctx.uuid_of(cls, ref)])


def snapshot_ref(ctx: Ctx) -> str:
    """The snapshot ``snapshot-uuid=`` (or ``uuid=``) names; other VMs are refused."""
    uuid = ctx.get("snapshot-uuid") or ctx.get("uuid")
    if uuid is None:
        raise CliError("Required parameter not found: snapshot-uuid or uuid.")
    return _vm_kind(ctx, uuid, "is_a_snapshot", "snapshot")


def template_ref(ctx: Ctx) -> str:
    """The template ``template-uuid=`` names; other VMs are refused."""
    return _vm_kind(ctx, ctx.req("template-uuid"), "is_a_template", "template")


def _vm_kind(ctx: Ctx, uuid: str, flag: str, what: str) -> str:
    ref = ctx.ref_by_uuid("VM", uuid)
    if not ctx.call(f"VM.get_{flag}", ref):
        raise CliError(
            f"This operation can only be performed on a VM {what}. {uuid} is not a VM {what}."
        )
    return ref
