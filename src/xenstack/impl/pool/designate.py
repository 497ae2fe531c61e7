"""pool.designate_new_master between toolstacks of their own, on etcd: two phases.

As XAPI's ``propose_new_master`` / ``commit_new_master`` / ``abort_new_master``: the master
first asks the designated member whether it can take over (it follows this master and
reaches etcd); then it names it in the database's ``designated`` key (no other member
campaigns while it is there), tells it to take over, gives up its own master key and
follows the new master from a restart. The member campaigns, wins, restarts on the pool's
database and names itself master. A refused proposal changes nothing; a failed commit
removes the designation again.
"""

from __future__ import annotations

import asyncio
import contextlib

from ...core.context import Context
from ...db.etcd import EtcdPersistence
from ...errors import ApiError
from ..registry import internal
from . import membership
from .peer import Peer
from .remote import Unreachable

PROPOSE = "host.xenstack_propose_master"
COMMIT = "host.xenstack_commit_master"


def separate(ctx: Context, host: str) -> bool:
    """Whether ``host`` is a toolstack of its own on a pool kept in etcd."""
    ts = ctx.toolstack
    uuid = ctx.db.get("host", host)["uuid"]
    return isinstance(ts.persistence, EtcdPersistence) and uuid in membership.members(
        ts.persistence
    )


async def hand_over(ctx: Context, host: str) -> None:
    ts = ctx.toolstack
    persistence = ts.persistence
    assert isinstance(persistence, EtcdPersistence)
    where = membership.members(persistence)[ctx.db.get("host", host)["uuid"]]
    secret = membership.pool_secret(persistence)
    peer = Peer.of(where)
    try:
        try:
            await peer.call(PROPOSE, secret)
        except Unreachable as exc:
            raise ApiError("HOST_OFFLINE", [host]) from exc
        key = persistence.prefix + "designated"
        uuid = ctx.db.get("host", host)["uuid"]
        await asyncio.to_thread(persistence.etcd.run, persistence.etcd.kv.put(key, uuid), 5)
        try:
            await peer.call(COMMIT, secret)
        except (Unreachable, ApiError):
            with contextlib.suppress(Exception):
                await asyncio.to_thread(persistence.etcd.run, persistence.etcd.kv.delete(key), 5)
            raise
    finally:
        await peer.close()
    agent = getattr(ts, "election", None)
    address = f"{where['address']}:{where['port']}"
    if agent is not None:
        # answer the call first, then give the key up and follow the new master
        asyncio.get_running_loop().call_later(0.2, _later, agent, address)


_RUNNING: set[asyncio.Future[None]] = set()


def _later(agent: object, address: str) -> None:
    hand = getattr(agent, "hand_over", None)
    if hand is not None:
        job = asyncio.ensure_future(hand(address))
        _RUNNING.add(job)
        job.add_done_callback(_RUNNING.discard)


def _check(ctx: Context, secret: str) -> None:
    ts = ctx.toolstack
    membership.check_secret(ts.persistence, secret)
    if not ts.master_address or not isinstance(ts.persistence, EtcdPersistence):
        raise ApiError("HA_ABORT_NEW_MASTER", ["this host is not a member on etcd"])


@internal(PROPOSE, "string pool_secret", roles="")
def propose(ctx: Context, pool_secret: str) -> None:
    """On the designated member: can it take over? (It follows a master, on etcd.)"""
    _check(ctx, pool_secret)
    persistence = ctx.toolstack.persistence
    assert isinstance(persistence, EtcdPersistence)
    if not persistence.get_meta("pool_db"):
        raise ApiError("HA_ABORT_NEW_MASTER", ["this host does not know the pool's database"])


@internal(COMMIT, "string pool_secret", roles="")
def commit(ctx: Context, pool_secret: str) -> None:
    """On the designated member: campaign as soon as the master's key is free."""
    _check(ctx, pool_secret)
