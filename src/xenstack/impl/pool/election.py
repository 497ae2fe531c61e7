"""Who is the pool's master, decided through etcd (hosts served with ``--etcd``).

The master holds its database's ``master`` key under a lease (:class:`~xenstack.db.etcd.Lease`)
and renews it every quarter of its TTL (sooner again after a failed renewal); its writes are
conditional on holding it, so a master that lost it can write nothing more. A member watches
the pool's key: while it is held, the member answers HOST_IS_SLAVE with the holder's address
(clients follow the new master); when the lease has expired (the master died, or lost etcd),
every member campaigns, and the one that takes the key becomes the master. It restarts its
toolstack on the pool's database (its own backend's domains are re-adopted from it, as after
any restart), names itself the pool's master in it, and carries on; the others follow it. The
restart is in the same process (``xenstack serve`` builds a new toolstack; its modules are
loaded already), so a takeover costs a database load, not an interpreter's start-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import orjson

from ...db.etcd import ROOT, EtcdPersistence, Lease, LeaseCarrier, renew_pause
from .pool import the_pool

if TYPE_CHECKING:
    from ...core.context import Services

log = logging.getLogger(__name__)

LEASE_KEY = "master_lease"

# the master key won by this process, kept alive across the toolstack's restart to lead
_carried: list[LeaseCarrier] = []


def _carry(carrier: LeaseCarrier) -> None:
    _drop_carried()
    _carried.append(carrier)


def _drop_carried() -> None:
    while _carried:
        _carried.pop().stop()


class MasterAgent:
    """Runs beside a toolstack whose persistence is etcd: leads, or follows and campaigns."""

    def __init__(
        self,
        ts: Services,
        persistence: EtcdPersistence,
        ttl: float,
        restart: Callable[[], object],
    ) -> None:
        self.ts = ts
        self.persistence = persistence
        self.ttl = max(2, round(ttl))
        self.restart = restart
        self.leading = False
        self.took_over_at = 0.0
        self._lease: Lease | None = None
        self._armed = False

    def _value(self) -> str:
        ts = self.ts
        port = ts.server.ports.get("http", 0) if ts.server is not None else 0
        row = ts.db.table("host").rows.get(ts.this_host)
        address = row["address"] if row else "127.0.0.1"
        uuid = row["uuid"] if row else ""
        return orjson.dumps({"uuid": uuid, "address": f"{address}:{port}"}).decode()

    async def run(self) -> None:
        if self.ts.master_address:
            await self._follow()
        else:
            await self._lead()

    async def _call(self, fn: Callable[..., object], *args: object) -> object:
        return await asyncio.to_thread(fn, *args)

    # ---- the master --------------------------------------------------------------------

    async def _lead(self) -> None:
        p = self.persistence
        lease = self._lease = Lease(p.etcd, p.master_key, self.ttl)
        stored = int(p.get_meta(LEASE_KEY) or 0)
        while not await asyncio.to_thread(lease.campaign, self._value(), stored):
            held = await asyncio.to_thread(lease.holder)
            if held is not None and _uuid(held[0]) != self._uuid():
                _drop_carried()
                await self._demote(_address(held[0]))
                return
            await asyncio.sleep(self.ttl / 4)
        _drop_carried()  # renewed here from now on
        p.fence = lease.revision
        await asyncio.to_thread(p.set_meta, LEASE_KEY, str(lease.lease_id))
        self.leading = True
        self.ts.hypervisor.adopt()  # this database is ours: its domains here are ours
        await self._take_over()
        self._rearm()  # HA only once this host is named master: its recovery acts as one
        await self._hold(lease)

    async def _hold(self, lease: Lease) -> None:
        """Renew the master key until it is lost (campaign again) or this host joins a pool.

        A renewal that fails (etcd unreachable or without quorum: writes fail meanwhile, as
        they cannot reach a quorum either; reads go on) is tried again soon rather than a
        whole period later: on a loaded machine two slow keep-alives in a row would otherwise
        let the lease expire under a master that is well.
        """
        p = self.persistence
        failed = False
        while True:
            await asyncio.sleep(renew_pause(self.ttl, failed))
            if self.ts.master_address:  # this host joined a pool: follow its master now
                await asyncio.to_thread(lease.resign)
                p.fence, self.leading = 0, False
                await self._follow()
                return
            try:
                left = await asyncio.to_thread(lease.renew)
            except Exception as exc:
                log.warning("master lease not renewed: %s", exc)
                failed = True
                continue
            failed = False
            if left == 0:
                log.error("the master lease has expired: campaigning again")
                self.leading = False
                self.restart()
                return

    async def _take_over(self) -> None:
        """Name this host the master in the pool's database (after an election)."""
        ts = self.ts
        db = ts.db
        if not db.exists("host", ts.this_host):
            return
        pool = the_pool(db)
        if db.get("pool", pool)["master"] != ts.this_host:
            with db.transaction():
                db.set("pool", pool, "master", ts.this_host)
            await db.durable()
            p = self.persistence
            await asyncio.to_thread(p.etcd.run, p.etcd.kv.delete(p.prefix + "designated"), 5)
            self.took_over_at = time.time()
            log.warning("this host is the pool's master now")

    async def _demote(self, address: str) -> None:
        """Another host holds the key of the database we served: follow it."""
        log.warning("another host is the master (%s): following it", address)
        p = self.persistence
        p.set_meta("pool_db", p.namespace)
        p.set_meta("pool_host", self.ts.this_host)
        p.set_meta("pool_role", "slave")
        p.set_meta("master_address", address)
        self.restart()

    async def hand_over(self, address: str) -> None:
        """Give the master key up for the designated host (it campaigns alone), and follow
        it from a restart."""
        p = self.persistence
        self.leading = False
        if self._lease is not None:
            await asyncio.to_thread(self._lease.resign)
        p.fence = 0
        await self._demote(address)

    def _rearm(self) -> None:
        if not self._armed:
            self._armed = True
            rearm = getattr(self.ts, "rearm", None)
            if rearm is not None:
                rearm()

    def _uuid(self) -> str:
        return _uuid(self._value())

    # ---- a member ----------------------------------------------------------------------

    async def _follow(self) -> None:
        p = self.persistence
        pool_db = p.get_meta("pool_db")
        self.ts.hypervisor.adopt(self.ts.this_host)  # a member runs its own host's alone
        self._rearm()
        if not pool_db:
            return  # joined without etcd: nothing to watch
        lease = Lease(p.etcd, f"{ROOT}/db/{pool_db}/master", self.ttl)
        while True:
            # campaign soon after expiry: etcd revokes an expired lease within its 0.5 s
            # tick, and a failover is the lease plus what it takes to notice and take over
            await asyncio.sleep(max(0.1, self.ttl / 25))
            try:
                held = await asyncio.to_thread(lease.holder)
            except Exception as exc:
                log.warning("cannot read the pool's master key: %s", exc)
                continue
            if held is not None:
                self._follow_address(_address(held[0]))
                continue
            if not await asyncio.to_thread(self._may_campaign, pool_db):
                continue
            with contextlib.suppress(Exception):
                if await asyncio.to_thread(lease.campaign, self._value()):
                    _carry(LeaseCarrier(p.urls, lease.lease_id, self.ttl))
                    await asyncio.to_thread(self._promote, lease)
                    self.restart()
                    return

    def _may_campaign(self, pool_db: str) -> bool:
        """Not while another host is designated the next master (a handover)."""
        reply = self.persistence.etcd.run(
            self.persistence.etcd.kv.get(f"{ROOT}/db/{pool_db}/designated"), 5
        )
        if not reply.kvs:
            return True
        return bool(reply.kvs[0].value.decode() == self._uuid())

    def _follow_address(self, address: str) -> None:
        ts = self.ts
        if address and address != ts.master_address:
            ts.master_address = address
            self.persistence.set_meta("master_address", address)

    def _promote(self, lease: Lease) -> None:
        p = self.persistence
        pool_host = p.get_meta("pool_host") or ""
        p.set_meta("this_host", pool_host)
        p.set_meta("master_address", "")
        p.set_meta("pool_role", "master")
        p.set_meta("serve_db", p.get_meta("pool_db") or "")
        p.set_meta(LEASE_KEY, str(lease.lease_id))


def _uuid(value: str) -> str:
    with contextlib.suppress(orjson.JSONDecodeError):
        return str(orjson.loads(value).get("uuid", ""))
    return ""


def _address(value: str) -> str:
    with contextlib.suppress(orjson.JSONDecodeError):
        return str(orjson.loads(value).get("address", ""))
    return ""
