"""Host operations of the simulated pool: enable/disable, evacuation, memory, clocks.

Evacuation plans like XAPI's: every user VM resident on the host needs a target among the
other enabled hosts that can boot it and have the memory (bin-packed, largest free first);
the VMs without one are the ones that prevent evacuation, each with its reason.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from ...core.context import Context
from ...db.store import Database
from ...errors import ApiError
from ...idl.types import NULL_REF, DateTime
from ..registry import implements
from ..vm.lifecycle import operation_error
from ..vm.placement import assert_can_boot_here, start_memory
from .hypervisor import Hypervisor, hypervisor

Plan = dict[str, str | list[str]]  # VM -> target host, or the error that stops it


@implements("host.disable")
def disable(ctx: Context, host: str) -> None:
    with ctx.db.transaction() as db:
        db.set("host", host, "enabled", False)


@implements("host.enable")
def enable(ctx: Context, host: str) -> None:
    with ctx.db.transaction() as db:
        db.set("host", host, "enabled", True)


def user_vms(db: Database, host: str) -> list[str]:
    vms = db.table("VM").rows
    return [v for v in db.get("host", host)["resident_VMs"] if not vms[v]["is_control_domain"]]


def evacuation_plan(hv: Hypervisor, db: Database, host: str) -> Plan:
    hosts = db.table("host").rows
    targets = [h for h, row in hosts.items() if row["enabled"] and h != host]
    vms = user_vms(db, host)
    if not targets:
        return {vm: ["NO_HOSTS_AVAILABLE", vm] for vm in vms}
    plan: Plan = {}
    movable = []
    for vm in vms:
        try:
            for target in targets:
                assert_can_boot_here(hv, db, vm, target, check_memory=False)
        except ApiError as err:
            plan[vm] = err.description
            continue
        movable.append(vm)
    for vm in vms:
        blocked = operation_error(db, vm, "pool_migrate", strict=True)
        if blocked is not None:
            plan[vm] = blocked.description
    free = {t: hv.memory_free(db, t) for t in targets}
    rows = db.table("VM").rows
    for vm in sorted(movable, key=lambda v: -start_memory(rows[v])):
        if vm in plan:
            continue
        best = max(free, key=lambda t: free[t])
        need = rows[vm]["memory_dynamic_min"] + rows[vm]["memory_overhead"]
        if free[best] < need:
            plan[vm] = ["HOST_NOT_ENOUGH_FREE_MEMORY", vm]
            continue
        free[best] -= need
        plan[vm] = best
    return plan


def _errors(plan: Plan) -> dict[str, list[str]]:
    return {vm: p for vm, p in plan.items() if isinstance(p, list)}


@implements("host.get_vms_which_prevent_evacuation")
def get_vms_which_prevent_evacuation(ctx: Context, self_: str) -> dict[str, list[str]]:
    return _errors(evacuation_plan(hypervisor(ctx), ctx.db, self_))


@implements("host.assert_can_evacuate")
def assert_can_evacuate(ctx: Context, host: str) -> None:
    errors = _errors(evacuation_plan(hypervisor(ctx), ctx.db, host))
    if errors:
        text = "|".join(",".join(e) for e in errors.values())
        raise ApiError("CANNOT_EVACUATE_HOST", [text])


DEFAULT_EVACUATION_BATCH = 10  # XAPI's evacuation_batch_size default


def assert_migration_network(db: Database, network: str, hosts: set[str]) -> None:
    """Each destination needs a plugged PIF with an IP address on the migration network."""
    for host in sorted(hosts):
        pifs = [
            (ref, pif)
            for ref, pif in db.table("PIF").rows.items()
            if pif["network"] == network and pif["host"] == host
        ]
        if not pifs:
            raise ApiError("PIF_NOT_PRESENT", [host, network])
        ref, pif = pifs[0]
        if not pif["currently_attached"]:
            raise ApiError("REQUIRED_PIF_IS_UNPLUGGED", [ref])
        if not pif["IP"] and not pif["IPv6"]:
            raise ApiError("INTERFACE_HAS_NO_IP", [ref])


@implements("host.evacuate")
async def evacuate(ctx: Context, host: str, network: str, evacuate_batch_size: int) -> None:
    """Migrate every user VM off the host, as planned; fail first if any cannot go.

    ``network`` (unless null) carries the migrations, so every destination must have an IP
    on it; at most ``evacuate_batch_size`` migrations run at once (XAPI's default if <= 0).
    A VM that stopped meanwhile (VM_BAD_POWER_STATE) is not an error.
    """
    db = ctx.db
    if network != NULL_REF:
        db.get("network", network)
    assert_can_evacuate(ctx, host)
    hv = hypervisor(ctx)
    plan = evacuation_plan(hv, db, host)
    if network != NULL_REF:
        assert_migration_network(db, network, {str(t) for t in plan.values()})
    batch = evacuate_batch_size if evacuate_batch_size > 0 else DEFAULT_EVACUATION_BATCH
    limit = asyncio.Semaphore(batch)
    done = 0

    async def migrate(vm: str, target: str) -> None:
        nonlocal done
        async with limit:
            try:  # through the policy layer, as XAPI's evacuation calls VM.pool_migrate
                await ctx.invoke("VM.pool_migrate", vm, target, {})
            except ApiError as err:
                if err.code != "VM_BAD_POWER_STATE":
                    raise
            done += 1
            ctx.toolstack.tasks.progress(ctx.task, done / len(plan))

    results = await asyncio.gather(
        *(migrate(vm, str(t)) for vm, t in plan.items()), return_exceptions=True
    )
    for result in results:
        if isinstance(result, BaseException):
            raise result


@implements("host.compute_free_memory")
def compute_free_memory(ctx: Context, host: str) -> int:
    return hypervisor(ctx).memory_free(ctx.db, host)


@implements("host.compute_memory_overhead")
def compute_memory_overhead(ctx: Context, host: str) -> int:
    return int(ctx.db.get("host", host)["memory_overhead"])


@implements("host.get_servertime")
def get_servertime(ctx: Context, host: str) -> DateTime:
    return ctx.toolstack.clock.now()


@implements("host.get_server_localtime")
def get_server_localtime(ctx: Context, host: str) -> DateTime:
    return DateTime(datetime.now().strftime("%Y%m%dT%H:%M:%S"))


@implements("host.get_uncooperative_resident_VMs")
def get_uncooperative_resident_VMs(ctx: Context, self_: str) -> list[str]:
    return []
