"""The HA messages of pool, host and VM, with XAPI's checks and errors.

``pool.enable_ha`` records the configuration (``timeout`` in seconds, XenServer's default
60), picks the statefile (a shared SR given or found, else, on etcd, etcd itself:
``etcd:<database>`` in ``ha_statefiles``) and, on etcd, arms every host's daemon
(:mod:`.ha_runtime`). A pool simulated in one process has no host that can fail alone: HA
is recorded there and the plan computed, with no daemon.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson

from ...core.context import Context
from ...db.etcd import EtcdPersistence
from ...errors import ApiError
from ..registry import field_setter, implements
from . import ha_plan, ha_runtime, membership
from .peer import Peer
from .pool import the_pool
from .remote import Unreachable

DEFAULT_TIMEOUT = 60.0
ARM_WAIT = 20.0  # seconds a member that does not answer is waited for


def _pool(ctx: Context) -> tuple[str, dict[str, Any]]:
    pool = the_pool(ctx.db)
    return pool, ctx.db.get("pool", pool)


def _statefile(ctx: Context, heartbeat_srs: list[str]) -> list[str]:
    db = ctx.db
    for sr in heartbeat_srs:
        if not db.get("SR", sr)["shared"]:
            raise ApiError("HA_CONSTRAINT_VIOLATION_SR_NOT_SHARED", [sr])
    if heartbeat_srs:
        return [f"sr:{db.get('SR', sr)['uuid']}" for sr in heartbeat_srs]
    for row in db.table("SR").rows.values():
        if row["shared"] and row["content_type"] != "iso" and not row["is_tools_sr"]:
            return [f"sr:{row['uuid']}"]
    persistence = ctx.toolstack.persistence
    if isinstance(persistence, EtcdPersistence):
        return [f"etcd:{persistence.namespace}"]
    raise ApiError("HA_HOST_CANNOT_ACCESS_STATEFILE", [])


def _timeout(configuration: dict[str, str]) -> float:
    raw = configuration.get("timeout", "")
    if not raw:
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        raise ApiError("INVALID_VALUE", ["timeout", raw]) from None
    if value < 2:
        raise ApiError("INVALID_VALUE", ["timeout", raw])
    return value


@implements("pool.enable_ha")
async def enable_ha(ctx: Context, heartbeat_srs: list[str], configuration: dict[str, str]) -> None:
    db, ts = ctx.db, ctx.toolstack
    pool, row = _pool(ctx)
    if row["ha_enabled"]:
        raise ApiError("HA_IS_ENABLED", [])
    timeout = _timeout(configuration)
    statefiles = _statefile(ctx, heartbeat_srs)
    if isinstance(ts.persistence, EtcdPersistence):
        await _arm_all(ctx, timeout)
    elif membership.members(ts.persistence):
        raise ApiError("HA_HEARTBEAT_DAEMON_STARTUP_FAILED", [])  # no lease store
    with db.transaction():
        db.update(
            "pool",
            pool,
            ha_enabled=True,
            ha_configuration=dict(configuration),
            ha_statefiles=statefiles,
            ha_cluster_stack="xenstack-etcd",
        )
        for host in db.refs("host"):
            db.update("host", host, ha_statefiles=statefiles, ha_network_peers=db.refs("host"))
    ha_runtime.update_plan(ts)


async def _arm_all(ctx: Context, timeout: float) -> None:
    """Arm this host and every member; a member that cannot be reached fails the enable."""
    ts = ctx.toolstack
    armed = ha_runtime.arm_config(ts, timeout)
    dead = {ctx.db.get("host", h)["uuid"] for h in ctx.db.refs("host")} - {
        ctx.db.get("host", h)["uuid"] for h in ha_plan.live_hosts(ctx.db)
    }
    # hosts known dead are armed when they come back, not waited for
    peers = {u: w for u, w in armed["peers"].items() if u != armed["me"] and u not in dead}
    unreached = []
    for uuid, where in peers.items():
        if not await _arm_one(Peer.of(where), armed):
            unreached.append(uuid)
    if unreached:
        await _disarm_all(ctx)
        everyone = ",".join(sorted([armed["me"], *peers]))
        raise ApiError("HA_HOST_CANNOT_SEE_PEERS", [armed["me"], everyone, ",".join(unreached)])
    await ha_runtime.start_armed(ts, armed)


async def _arm_one(peer: Peer, armed: dict[str, Any]) -> bool:
    """Arm one member, waiting a little for one that is restarting (after a handover)."""
    deadline = time.monotonic() + ARM_WAIT
    try:
        while True:
            try:
                await peer.call(ha_runtime.ARM, armed["secret"], orjson.dumps(armed).decode())
                return True
            except Unreachable:
                if time.monotonic() > deadline:
                    return False
                await asyncio.sleep(0.2)
    finally:
        await peer.close()


async def _disarm_all(ctx: Context) -> None:
    ts = ctx.toolstack
    persistence = ts.persistence
    secret = membership.pool_secret(persistence)
    me = ctx.db.get("host", ts.this_host)["uuid"]
    for uuid, where in membership.members(persistence).items():
        if uuid == me:
            continue
        peer = Peer.of(where)
        try:
            await peer.call(ha_runtime.DISARM, secret)
        except (Unreachable, ApiError):
            pass  # a dead member is disarmed when it comes back (the pool's HA is off)
        finally:
            await peer.close()
    await ha_runtime.disarm(ts)


@implements("pool.disable_ha")
async def disable_ha(ctx: Context) -> None:
    db = ctx.db
    pool, row = _pool(ctx)
    if not row["ha_enabled"]:
        raise ApiError("HA_NOT_ENABLED", [])
    if isinstance(ctx.toolstack.persistence, EtcdPersistence):
        await _disarm_all(ctx)
    with db.transaction():
        db.update(
            "pool", pool, ha_enabled=False, ha_statefiles=[], ha_plan_exists_for=0,
            ha_overcommitted=False,
        )  # fmt: skip
        for host in db.refs("host"):
            db.update("host", host, ha_statefiles=[], ha_network_peers=[])


@implements("pool.set_ha_host_failures_to_tolerate")
def set_ha_host_failures_to_tolerate(ctx: Context, self_: str, value: int) -> None:
    db = ctx.db
    if value < 0:
        raise ApiError("INVALID_VALUE", ["ha_host_failures_to_tolerate", str(value)])
    row = db.get("pool", self_)
    if row["ha_enabled"] and not row["ha_allow_overcommit"] and value > ha_plan.max_failures(db):
        raise ApiError("HA_OPERATION_WOULD_BREAK_FAILOVER_PLAN", [])
    with db.transaction():
        db.set("pool", self_, "ha_host_failures_to_tolerate", value)
    ha_runtime.update_plan(ctx.toolstack)


@implements("pool.ha_compute_max_host_failures_to_tolerate")
def ha_compute_max_host_failures_to_tolerate(ctx: Context) -> int:
    return ha_plan.max_failures(ctx.db)


@implements("pool.ha_compute_hypothetical_max_host_failures_to_tolerate")
def ha_compute_hypothetical_max_host_failures_to_tolerate(
    ctx: Context, configuration: dict[str, str]
) -> int:
    for vm, priority in configuration.items():
        if priority not in ha_plan.PRIORITIES:
            raise ApiError("INVALID_VALUE", ["ha_restart_priority", priority])
        if not ctx.db.exists("VM", vm):
            raise ApiError("HANDLE_INVALID", ["VM", vm])
    return ha_plan.max_failures(ctx.db, dict(configuration))


@implements("pool.ha_failover_plan_exists")
def ha_failover_plan_exists(ctx: Context, n: int) -> bool:
    return ha_plan.plan_exists(ctx.db, n)


@implements("pool.ha_compute_vm_failover_plan")
def ha_compute_vm_failover_plan(
    ctx: Context, failed_hosts: list[str], failed_vms: list[str]
) -> dict[str, dict[str, str]]:
    return ha_plan.vm_failover_plan(ctx.db, failed_hosts, failed_vms)


@implements("pool.ha_prevent_restarts_for")
def ha_prevent_restarts_for(ctx: Context, seconds: int) -> None:
    if not _pool(ctx)[1]["ha_enabled"]:
        raise ApiError("HA_NOT_ENABLED", [])
    rt = ha_runtime.runtime(ctx.toolstack)
    if rt is not None:
        rt.no_restarts_until = time.monotonic() + max(0, seconds)


@implements("host.emergency_ha_disable")
async def emergency_ha_disable(ctx: Context, soft: bool) -> None:
    """On this host alone (an emergency call a member answers): stop its HA daemon."""
    rt = ha_runtime.runtime(ctx.toolstack)
    if rt is None and not soft:
        raise ApiError("HA_NOT_ENABLED", [])
    await ha_runtime.disarm(ctx.toolstack)


@implements("VM.set_ha_restart_priority")
def set_ha_restart_priority(ctx: Context, self_: str, value: str) -> None:
    db = ctx.db
    if value not in ha_plan.PRIORITIES:
        raise ApiError("INVALID_VALUE", ["ha_restart_priority", value])
    _, pool = _pool(ctx)
    if pool["ha_enabled"] and value == ha_plan.PROTECTED and not pool["ha_allow_overcommit"]:
        wanted = int(pool["ha_host_failures_to_tolerate"])
        if ha_plan.max_failures(db, {self_: value}) < wanted:
            raise ApiError("HA_OPERATION_WOULD_BREAK_FAILOVER_PLAN", [])
    with db.transaction():
        db.set("VM", self_, "ha_restart_priority", value)
    ha_runtime.update_plan(ctx.toolstack)


implements("VM.set_order")(field_setter("VM", "order"))
implements("VM.set_start_delay")(field_setter("VM", "start_delay"))


@implements("host.declare_dead")
async def declare_dead(ctx: Context, host: str) -> None:
    """The administrator says ``host`` is dead: not live, its VMs halted (none restarted
    here: HA's recovery does that for a host it lost). Not for this host, nor one that is
    heard or holds its HA liveness key."""
    ts = ctx.toolstack
    if host == ctx.this_host:
        raise ApiError("HOST_IS_LIVE", [host])
    rt = ha_runtime.runtime(ts)
    if rt is not None and rt.daemon.sees(ctx.db.get("host", host)["uuid"]):
        raise ApiError("HOST_IS_LIVE", [host])
    ha_runtime.mark_dead(ts, host)
    ha_runtime.update_plan(ts)
