"""HA at run time on a pool whose database is in etcd: each host's daemon, and the master's
recovery of the hosts it loses.

Every host armed for HA runs an :class:`~xenstack.ha.daemon.HaDaemon` with

- its liveness lease: the key ``/xenstack/db/<pool>/ha/live/<host uuid>`` under an etcd
  lease of ``timeout`` seconds (etcd is the statefile);
- a network heartbeat to every other host (the hidden ``host.xenstack_ha_heartbeat``, over
  TLS with the pool secret);
- its fence: every domain of this host hard-stopped (journaled), then the toolstack stops
  answering: the process exits (with the simulator, whose domains live in it, that is the
  host being gone). On a host whose domains outlive the toolstack (QEMU) the daemon is a
  process of its own (:mod:`.ha_external`): it renews the lease and fences by killing the
  host's QEMUs and serve, so that a killed serve never lets the lease expire under guests
  that still run; serve then only hears heartbeats and, on the master, watches.

The master also watches the liveness keys. A host whose key has expired and whose heartbeat
it no longer hears (a host that lost etcd but is still heard keeps its VMs: HA degraded) is
declared dead: its VMs are marked halted, and the protected ones (``restart``, then
``best-effort``, by ``order``, waiting each one's ``start_delay``) are started on the
surviving hosts by the planner's placement. What does not fit is left halted and the pool
reports ``ha_overcommitted``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
from typing import TYPE_CHECKING, Any

import orjson
from etcd3aio.kv import prefix_range_end

from ...core.context import Context
from ...db.etcd import ROOT, EtcdPersistence, Lease
from ...errors import ApiError
from ...ha.daemon import HaConfig, HaDaemon
from ...idl.types import NULL_REF
from ..registry import internal
from . import ha_external, ha_plan, membership
from .peer import Peer
from .pool import the_pool

if TYPE_CHECKING:
    from ...core.context import Services

log = logging.getLogger(__name__)

ARMED_KEY = "ha_armed"  # host meta: the configuration this host is armed with (JSON)
HEARTBEAT = "host.xenstack_ha_heartbeat"
ARM = "host.xenstack_ha_arm"
DISARM = "host.xenstack_ha_disarm"


def runtime(ts: Services) -> HaRuntime | None:
    found = getattr(ts, "ha", None)
    return found if isinstance(found, HaRuntime) else None


class HaRuntime:
    """This host's HA: its daemon, and on the master the watch over the others."""

    def __init__(self, ts: Services, persistence: EtcdPersistence, armed: dict[str, Any]):
        self.ts = ts
        self.persistence = persistence
        self.armed = armed
        self.timeout = float(armed["timeout"])
        self.me = str(armed["me"])
        self.secret = str(armed["secret"])
        self.peers = {u: Peer.of(w) for u, w in armed["peers"].items() if u != self.me}
        key = f"{ROOT}/db/{armed['pool_db']}/ha/live/"
        self.live_prefix = key
        self.lease = Lease(persistence.etcd, key + self.me, math.ceil(self.timeout))
        self.daemon = HaDaemon(
            HaConfig(self.timeout, sorted(self.peers)), self._renew, self._ping, self._fence
        )
        self.started = time.monotonic()
        self.no_restarts_until = 0.0
        self._watch: asyncio.Task[None] | None = None
        self.recovered: list[str] = []
        self.external = ha_external.outlives(ts)  # the daemon is a process of its own
        self.daemon_pid = 0

    # ---- the daemon's collaborators ------------------------------------------------------

    async def _renew(self) -> bool:
        return await asyncio.to_thread(self._renew_sync)

    def _renew_sync(self) -> bool:
        if self.lease.lease_id and self.lease.renew() > 0:
            return True
        # no lease yet, or it expired: take a new one (we were either heard all along, or
        # fenced before it expired)
        grant = self.persistence.etcd.run(
            self.persistence.etcd.client.lease.grant(self.lease.ttl),  # type: ignore[union-attr]
            5,
        )
        self.lease.lease_id = int(grant.ID)
        self.persistence.etcd.run(
            self.persistence.etcd.kv.put(self.lease.key, self.me, lease=self.lease.lease_id), 5
        )
        return True

    async def _ping(self, peer: str) -> bool:
        await self.peers[peer].call(HEARTBEAT, self.secret, self.me, timeout=self.timeout / 4)
        return True

    async def _fence(self) -> None:
        fence_domains(self.ts)  # nothing may wait for etcd here: it is unreachable
        log.error("HA: fenced; this host stops serving")
        os._exit(75)  # the host is gone as far as the pool is concerned

    # ---- life --------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the daemon (a process of its own: waited for off the event loop, which
        goes on answering) and, for the master, the watch."""
        if self.external:
            self.daemon_pid = await asyncio.to_thread(ha_external.arm, self.ts, self)
        else:
            self.daemon.start()
        self._watch = asyncio.create_task(self._watch_loop())

    async def retire(self) -> None:
        """Replaced by a runtime armed afresh: this one's loops end (an external daemon
        goes on, re-configured by its successor)."""
        self.daemon.fenced = True  # its loop ends at its next round
        await self.daemon.stop()
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        for peer in self.peers.values():
            await peer.close()

    async def stop(self) -> None:
        await self.retire()
        if self.external:  # the daemon resigns its own lease
            await asyncio.to_thread(ha_external.disarm, self.ts)
        else:
            await asyncio.to_thread(self.lease.resign)

    async def _watch_loop(self) -> None:
        while True:
            await asyncio.sleep(self.timeout / 4)
            if self.ts.master_address:
                continue  # a member: the master watches
            try:
                await self.check()
            except Exception:
                log.exception("HA: the liveness check failed")

    async def check(self) -> None:
        """Declare dead, and recover, every host that is neither live in etcd nor heard."""
        if time.monotonic() - self.started < self.timeout / 2:
            return  # heartbeats are still arriving
        reply = await asyncio.to_thread(
            self.persistence.etcd.run,
            self.persistence.etcd.kv.get(self.live_prefix, prefix_range_end(self.live_prefix)),
            5,
        )
        live = {kv.key.decode()[len(self.live_prefix) :] for kv in reply.kvs}
        db = self.ts.db
        for host, row in list(db.table("host").rows.items()):
            uuid = row["uuid"]
            metrics = db.table("host_metrics").rows.get(row["metrics"])
            dead = metrics is not None and not metrics["live"]
            if uuid == self.me:
                continue
            if uuid in live:
                if dead:  # a host back after it was declared dead: live again, nothing else
                    with db.transaction():
                        db.set("host_metrics", row["metrics"], "live", True)
                    await db.durable()
                continue
            if self.daemon.sees(uuid) or dead:
                continue
            await self.recover(host)

    async def recover(self, host: str) -> None:
        """``host`` is dead: its VMs halted, the protected ones started elsewhere."""
        log.warning("HA: host %s is dead; restarting its protected VMs", host)
        db = self.ts.db
        lost = mark_dead(self.ts, host)
        await db.durable()
        order = sorted(
            (
                vm
                for vm in lost
                if db.get("VM", vm)["ha_restart_priority"] in ("restart", "best-effort")
            ),
            key=lambda vm: _restart_key(db.get("VM", vm)),
        )
        while time.monotonic() < self.no_restarts_until:
            await asyncio.sleep(0.1)
        ctx = Context(self.ts, "", method="VM.start")
        for vm in order:
            try:
                await ctx.invoke_and_wait("VM.start", vm, False, False)
                self.recovered.append(vm)
            except ApiError as exc:
                log.warning("HA: %s not restarted: %s", vm, exc)
            delay = int(db.get("VM", vm)["start_delay"] or 0)
            if delay > 0:
                await asyncio.sleep(delay)
        update_plan(self.ts)
        await db.durable()


def _restart_key(vm: dict[str, Any]) -> tuple[int, int]:
    return (0 if vm["ha_restart_priority"] == "restart" else 1, int(vm["order"] or 0))


def mark_dead(ts: Services, host: str) -> list[str]:
    """The host is not live and nothing runs on it any more: its guests' refs."""
    db = ts.db
    lost = []
    with db.transaction():
        row = db.get("host", host)
        if db.exists("host_metrics", row["metrics"]):
            db.set("host_metrics", row["metrics"], "live", False)
        for vm in list(row["resident_VMs"]):
            vm_row = db.get("VM", vm)
            if vm_row["is_control_domain"]:
                continue
            db.update("VM", vm, power_state="Halted", resident_on=NULL_REF, domid=-1)
            lost.append(vm)
    # a member's toolstack that comes back has forgotten the host: tell it again at first use
    ts.hypervisor.known_hosts.discard(host)
    backend = ts.hypervisor.backend
    forget = getattr(backend, "forget_domains", None)
    if forget is not None:
        forget(host)  # a member's toolstack: its domains went with it
    for vm in lost:  # a host of this process (a simulated pool): its domains go now
        if backend.vm_info(vm) is not None:
            backend.vm_reset(vm)
    return lost


def update_plan(ts: Services) -> None:
    db = ts.db
    pool = the_pool(db)
    row = db.get("pool", pool)
    if not row["ha_enabled"]:
        return
    n = ha_plan.max_failures(db)
    with db.transaction():
        db.update(
            "pool",
            pool,
            ha_plan_exists_for=n,
            ha_overcommitted=n < int(row["ha_host_failures_to_tolerate"]),
        )


def fence_domains(ts: Services) -> None:
    """Hard-stop every domain this host's own backend runs (journaled)."""
    backend = ts.hypervisor.backend
    chain = [backend]
    while hasattr(chain[-1], "local"):
        chain.append(chain[-1].local)
    for b in chain:
        if hasattr(b, "stop_all"):
            b.stop_all("fence")
    own = chain[-1]
    for h in own.host_ids():
        for dom in own.host_domains(h):
            own.vm_reset(dom.vm_id)


# ---- arming ------------------------------------------------------------------------------


def arm_config(ts: Services, timeout: float) -> dict[str, Any]:
    """The configuration every host is armed with (the master's view of the pool)."""
    persistence = ts.persistence
    me = ts.db.get("host", ts.this_host)["uuid"]
    return {
        "timeout": timeout,
        "pool_db": str(getattr(persistence, "namespace", "")),
        "peers": membership.members(persistence),
        "secret": membership.pool_secret(persistence),
        "me": me,
    }


async def start_armed(ts: Services, armed: dict[str, Any]) -> HaRuntime:
    persistence = ts.persistence
    if not isinstance(persistence, EtcdPersistence):
        raise ApiError("HA_HEARTBEAT_DAEMON_STARTUP_FAILED", [])
    old = runtime(ts)
    rt = HaRuntime(ts, persistence, armed)
    ts.ha = rt  # type: ignore[attr-defined]
    if old is not None:
        await old.retire()
    persistence.set_meta(ARMED_KEY, orjson.dumps(armed).decode())
    await rt.start()
    return rt


async def disarm(ts: Services) -> None:
    rt = runtime(ts)
    ts.persistence.set_meta(ARMED_KEY, "")
    if rt is not None:
        ts.ha = None  # type: ignore[attr-defined]
        await rt.stop()


def resume(ts: Services) -> asyncio.Task[None] | None:
    """At start: re-arm as this host was (after a restart, a promotion).

    A member re-arms only after ``timeout``: what it ran died with its process, and the
    master must first declare it dead and restart its protected VMs elsewhere; it then
    comes back as a live host with nothing to restart (no restart storm). Not so where
    the HA daemon is a process that survived: its guests still run, and it kept the lease;
    serve re-attaches to it at once."""
    raw = ts.persistence.get_meta(ARMED_KEY)
    if not raw or not isinstance(ts.persistence, EtcdPersistence):
        return None
    armed = orjson.loads(raw)
    me = ts.db.table("host").rows.get(ts.this_host)
    if me is not None:
        armed["me"] = me["uuid"]
    if not ts.master_address or (ha_external.outlives(ts) and ha_external.running(ts)):
        return asyncio.create_task(_arm_later(ts, armed, 0))
    return asyncio.create_task(_arm_later(ts, armed, float(armed["timeout"]) * 1.5))


async def _arm_later(ts: Services, armed: dict[str, Any], delay: float) -> None:
    await asyncio.sleep(delay)
    if ts.persistence.get_meta(ARMED_KEY):  # not disarmed meanwhile
        await start_armed(ts, armed)


def _check_secret(ts: Services, secret: str) -> None:
    membership.check_secret(ts.persistence, secret)


@internal(HEARTBEAT, "string pool_secret, string host", roles="")
def heartbeat(ctx: Context, pool_secret: str, host: str) -> None:
    _check_secret(ctx.toolstack, pool_secret)
    rt = runtime(ctx.toolstack)
    if rt is not None:
        rt.daemon.heard(host)


@internal(ARM, "string pool_secret, string configuration", roles="")
async def arm(ctx: Context, pool_secret: str, configuration: str) -> None:
    """On a member: arm for HA with the master's configuration (its own uuid filled in)."""
    ts = ctx.toolstack
    _check_secret(ts, pool_secret)
    armed = orjson.loads(configuration)
    armed["me"] = ts.db.get("host", ts.this_host)["uuid"]
    armed["pool_db"] = ts.persistence.get_meta("pool_db") or armed["pool_db"]
    await start_armed(ts, armed)


@internal(DISARM, "string pool_secret", roles="")
async def disarm_member(ctx: Context, pool_secret: str) -> None:
    _check_secret(ctx.toolstack, pool_secret)
    await disarm(ctx.toolstack)
