"""Host, pool, task, event and message commands."""

from __future__ import annotations

import time

from .client import Client, ConnectError, XenApiError
from .context import STDPARAMS, Ctx
from .ops_common import host_op
from .output import CliError
from .records import kind_for_class, render
from .registry import command

H = "host"

TYPE_CHECKING = False  # typing is not imported at run time: start-up speed matters
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from .select import Row


@command(
    "host-evacuate",
    optn="network-uuid batch-size",
    flags=H,
    help="Move every running VM off the selected host.",
)
def host_evacuate(ctx: Ctx) -> None:
    host_op(
        ctx,
        lambda row: ctx.call("host.evacuate", row[0]),
        ["network-uuid", "batch-size"],
        multiple=False,
    )


@command(
    "host-disable",
    optn="auto-enable",
    flags=H,
    help="Stop new VMs from starting on the selected hosts.",
)
def host_disable(ctx: Ctx) -> None:
    host_op(ctx, lambda row: ctx.call("host.disable", row[0]), ["auto-enable"])


def _host_simple(name: str, method: str, help: str) -> None:
    @command(name, flags=H, help=help)
    def run(ctx: Ctx) -> None:
        host_op(ctx, lambda row: ctx.call(method, row[0]))


_host_simple("host-enable", "host.enable", "Allow VMs to start on the selected hosts again.")
_host_simple("host-reboot", "host.reboot", "Reboot the selected (disabled) hosts.")
_host_simple("host-shutdown", "host.shutdown", "Power off the selected (disabled) hosts.")
_host_simple("host-power-on", "host.power_on", "Power on the selected hosts.")


@command(
    "host-call-plugin",
    reqd="host-uuid plugin fn",
    optn="args:",
    help="Run a function of a host plug-in and print what it returns.",
)
def host_call_plugin(ctx: Ctx) -> None:
    host = ctx.ref_by_uuid("host", ctx.req("host-uuid"))
    result = ctx.call(
        "host.call_plugin", host, ctx.req("plugin"), ctx.req("fn"), ctx.map_param("args")
    )
    ctx.printer.lines([str(result)])


@command(
    "pool-join",
    reqd="master-address master-username master-password",
    optn="force",
    help="Make this host a member of the pool of another master.",
)
def pool_join(ctx: Ctx) -> None:
    method = "pool.join_force" if ctx.flag("force") else "pool.join"
    try:
        ctx.call(
            method,
            ctx.req("master-address"),
            ctx.req("master-username"),
            ctx.req("master-password"),
        )
    except XenApiError as err:
        if err.code != "JOINING_HOST_CONNECTION_FAILED":
            raise
        ctx.printer.lines(
            [
                "The master could not be reached (connection refused).",
                "Check that its toolstack runs and that this host can reach it.",
            ]
        )
        return
    ctx.printer.lines(["This host's toolstack will restart and join the pool shortly."])


@command(
    "pool-eject",
    reqd="host-uuid",
    optn="force",
    help="Remove a host from the pool (its local VMs and data are lost).",
)
def pool_eject(ctx: Ctx) -> None:
    host = ctx.ref_by_uuid("host", ctx.req("host-uuid"))
    if not ctx.flag("force") and not _eject_confirmed(ctx, host):
        return
    ctx.call("pool.eject", host)
    ctx.printer.lines(["The host was ejected; it will restart as a pool of its own."])


def _eject_confirmed(ctx: Ctx, host: str) -> bool:
    """Warn that the host's local SRs are reset, list the disks that go, and ask."""
    from .ops_vm_install import user_says_yes

    doomed = []
    for pbd in ctx.call("host.get_PBDs", host):
        sr = ctx.call("PBD.get_SR", pbd)
        seen_by = {ctx.call("PBD.get_host", p) for p in ctx.call("SR.get_PBDs", sr)}
        if seen_by <= {host}:
            doomed += [
                f"VDI: {ctx.call('VDI.get_uuid', v)} ({ctx.call('VDI.get_name_label', v)})"
                for v in ctx.call("SR.get_VDIs", sr)
            ]
    ctx.printer.lines(
        [
            "WARNING: the host's local SRs are reset when it leaves the pool:",
            "the data on them is lost.",
        ]
    )
    if doomed:
        ctx.printer.lines(["These VDIs will be destroyed:", *doomed])
    return user_says_yes(ctx)


@command(
    "pool-designate-new-master",
    reqd="host-uuid",
    optn="safe",
    help="Hand the master role to another host of the pool. With --safe (xenstack's), first "
    "disable HA, eject ISOs and sync the database, then wait for every member and enable HA "
    "again, undoing what was done if a step fails (as 'xenstack pool handover').",
)
def pool_designate_new_master(ctx: Ctx) -> None:
    host = ctx.ref_by_uuid("host", ctx.req("host-uuid"))
    if not ctx.flag("safe"):
        ctx.call("pool.designate_new_master", host)
        return
    from ..handover import run

    if run(_handover_call(ctx.client), lambda where: _handover_session(ctx, where), host):
        raise CliError("the handover failed; what it had done was undone")


@command("pool-sync-database", help="Copy the pool database to every member now.")
def pool_sync_database(ctx: Ctx) -> None:
    ctx.call("pool.sync_database")


@command(
    "pool-recover-slaves",
    help="Point members that run in emergency mode at this master; prints the hosts recovered.",
)
def pool_recover_slaves(ctx: Ctx) -> None:
    hosts = ctx.call("pool.recover_slaves")
    ctx.printer.lines([ctx.uuid_of("host", h) for h in hosts])


@command(
    "pool-emergency-transition-to-master",
    optn="force",
    help="Make this member the master when the old master is lost.",
)
def pool_emergency_transition_to_master(ctx: Ctx) -> None:
    ctx.call("pool.emergency_transition_to_master")
    ctx.printer.lines(["This host's toolstack will restart as the pool master shortly."])


@command(
    "pool-emergency-reset-master",
    reqd="master-address",
    help="Tell a member in emergency mode the address of its new master.",
)
def pool_emergency_reset_master(ctx: Ctx) -> None:
    ctx.call("pool.emergency_reset_master", ctx.req("master-address"))
    ctx.printer.lines(["This host's toolstack will restart and contact the new master."])


@command(
    "pool-ha-enable",
    optn="heartbeat-sr-uuids ha-config:",
    help="Turn on high availability, with heartbeats on the given SRs.",
)
def pool_ha_enable(ctx: Ctx) -> None:
    uuids = [u for u in (ctx.get("heartbeat-sr-uuids") or "").split(",") if u]
    srs = [ctx.ref_by_uuid("SR", u) for u in uuids]
    ctx.call("pool.enable_ha", srs, ctx.map_param("ha-config"))


@command("pool-ha-disable", help="Turn off high availability.")
def pool_ha_disable(ctx: Ctx) -> None:
    ctx.call("pool.disable_ha")


@command("task-cancel", reqd="uuid", help="Ask a running task to stop.")
def task_cancel(ctx: Ctx) -> None:
    ctx.call("task.cancel", ctx.ref_by_uuid("task", ctx.req("uuid")))


EVENT_CLASSES = {"vm": "VM", "vdi": "VDI", "sr": "SR", "host": "host", "network": "network",
                 "vif": "VIF", "pif": "PIF", "vbd": "VBD", "pbd": "PBD", "pool": "pool",
                 "task": "task", "subject": "subject", "role": "role", "secret": "secret",
                 "vmss": "VMSS"}  # fmt: skip


@command(
    "event-wait",
    reqd="class",
    optn="timeout",
    help="Wait until an object of the class matches every field=value given "
    "(field=/=value: differs).",
)
def event_wait(ctx: Ctx) -> None:
    name = ctx.req("class")
    api_class = EVENT_CLASSES.get(name)
    if api_class is None:
        raise CliError(f"Cli listening for class '{name}' not currently implemented")
    conds = [(k, v) for k, v in ctx.params if k not in STDPARAMS and k not in ("class", "timeout")]
    timeout = float(ctx.get("timeout") or "0") or None
    deadline = None if timeout is None else time.monotonic() + timeout
    token = ""
    while True:
        if _any_matches(ctx, api_class, conds):
            return
        left = 30.0 if deadline is None else deadline - time.monotonic()
        if left <= 0:
            raise CliError("Timed out waiting for the condition")
        batch = ctx.call("event.from", [api_class.lower()], token, min(left, 30.0))
        token = batch.get("token", token)


def _any_matches(ctx: Ctx, api_class: str, conds: list[tuple[str, str]]) -> bool:
    kind = kind_for_class(api_class)
    rows: list[Row] = list(ctx.call(f"{api_class}.get_all_records").items())
    fields = [kind.field(k) for k, _ in conds]
    for (k, _), f in zip(conds, fields, strict=True):
        if f is None:
            raise CliError(f"key missing: {k}")
    ctx.res.cache.clear()
    ctx.res.whole.clear()
    ctx.res.refs_needed([f for f in fields if f], (r for _, r in rows))
    for ref, rec in rows:
        ok = True
        for (_, want), f in zip(conds, fields, strict=True):
            assert f is not None
            got = render(ctx.res, f, ref, rec)
            ok = ok and (got != want[2:] if want.startswith("/=") else got == want)
        if ok:
            return True
    return False


@command(
    "message-create",
    reqd="name priority body",
    optn="vm-uuid host-uuid sr-uuid pool-uuid",
    help="Create a message about an object.",
)
def message_create(ctx: Ctx) -> None:
    keys = (("vm-uuid", "VM"), ("pool-uuid", "Pool"), ("sr-uuid", "SR"), ("host-uuid", "Host"))
    targets = [(cls, ctx.get(key)) for key, cls in keys if ctx.get(key) is not None]
    if not targets:
        raise CliError("Need one of: vm-uuid, host-uuid, sr-uuid or pool-uuid")
    cls, uuid = targets[0]
    try:
        priority = int(ctx.req("priority"))
    except ValueError:
        raise CliError("Priority field should be an integer") from None
    ctx.call("message.create", ctx.req("name"), priority, cls, uuid, ctx.req("body"))


def _handover_call(client: Client) -> Callable[..., Any]:
    """xe's connection as the handover's session (XenAPI errors as its Failure)."""
    from ..handover import Failure

    def call(method: str, *args: Any) -> Any:
        try:
            return client.call(method, *args)
        except XenApiError as err:
            raise Failure([err.code, *err.params]) from err
        except ConnectError as err:
            raise OSError(str(err)) from err

    return call


def _handover_session(ctx: Ctx, where: str | None) -> Callable[..., Any]:
    """A new session on the first server (``where`` None) or on ``host:port``."""
    from ..handover import Failure

    old = ctx.client
    host, _, port = (where or "").rpartition(":")
    fresh = Client(host, int(port), None) if where else Client(old.host, old.port, old.unix_path)
    try:
        fresh.login(*ctx.credentials)
    except XenApiError as err:
        raise Failure([err.code, *err.params]) from err
    except ConnectError as err:
        raise OSError(str(err)) from err
    return _handover_call(fresh)
