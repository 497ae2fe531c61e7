"""Pool-level operations: master handover and recovery (across toolstacks: :mod:`.designate`,
:mod:`.recovery`).

All hosts live in this one process, so a handover needs no two-phase commit: the pool's
``master`` field moves, and "recovering" the slaves means finding the hosts that answer (every
live host but the master).
"""

from __future__ import annotations

from ...core.context import Context
from ...db.store import Database
from ...errors import ApiError
from ..registry import implements
from ..vm.placement import host_is_live
from . import db_backup, membership, recovery
from .designate import hand_over, separate


def the_pool(db: Database) -> str:
    return next(iter(db.table("pool").rows))


def move_master(ctx: Context, host: str) -> None:
    """Make ``host`` the pool's master; this toolstack (every host of the pool) follows it.

    The toolstack's ``this_host`` is the host it answers as, so sessions and tasks made from
    now on belong to the new master, and open sessions that belonged to the old one move
    with it: ``session.get_this_host`` and ``pool.get_master`` agree.
    """
    db, toolstack = ctx.db, ctx.toolstack
    pool = the_pool(db)
    old = db.get("pool", pool)["master"]
    with db.transaction():
        db.set("pool", pool, "master", host)
        for session, row in list(db.table("session").rows.items()):
            if row["this_host"] in (old, toolstack.this_host) and row["this_host"] != host:
                db.set("session", session, "this_host", host)
    toolstack.this_host = host
    toolstack.persistence.set_meta("this_host", host)


@implements("pool.designate_new_master")
async def designate_new_master(ctx: Context, host: str) -> None:
    db = ctx.db
    pool = the_pool(db)
    if db.get("pool", pool)["master"] == host:
        return
    if db.get("pool", pool)["ha_enabled"]:
        raise ApiError("HA_IS_ENABLED", [])
    if not host_is_live(db, host):
        raise ApiError("HOST_OFFLINE", [host])
    await db.durable()  # what sync_database does before the handover
    if separate(ctx, host):
        await hand_over(ctx, host)
        return
    move_master(ctx, host)


@implements("pool.recover_slaves")
async def recover_slaves(ctx: Context) -> list[str]:
    """Point every slave at the current master; return those that were recovered: members
    that are toolstacks of their own once they answered (:mod:`.recovery`), hosts of this
    toolstack when they are live."""
    db = ctx.db
    master = db.get("pool", the_pool(db))["master"]
    separate = membership.members(ctx.toolstack.persistence)
    others = [h for h in db.refs("host") if h != master]
    remote = [h for h in others if db.get("host", h)["uuid"] in separate]
    here = [h for h in others if h not in remote and host_is_live(db, h)]
    return here + await recovery.recover_members(ctx, remote)


@implements("pool.sync_database")
async def sync_database(ctx: Context) -> None:
    """Every acknowledged write durable; without etcd, a copy on every member too."""
    await ctx.db.durable()
    await db_backup.push(ctx)


@implements("pool.emergency_transition_to_master")
def emergency_transition_to_master(ctx: Context) -> None:
    """The host this toolstack answers as becomes the master (a no-op if it is already)."""
    db = ctx.db
    here = ctx.this_host
    if here and db.exists("host", here) and db.get("pool", the_pool(db))["master"] != here:
        move_master(ctx, here)


@implements("pool.emergency_reset_master")
def emergency_reset_master(ctx: Context, master_address: str) -> None:
    """Follow the master at ``master_address``: the host of the pool with that address.

    In one process every host already shares the master's database, so this only moves the
    master (and ``this_host``) to that host; an address no host has changes nothing, as a
    slave pointed at an unreachable master would simply keep waiting. A member that is a
    toolstack of its own follows ``master_address`` from now on.
    """
    if recovery.is_separate_member(ctx.toolstack):
        recovery.follow(ctx.toolstack, master_address)
        return
    db = ctx.db
    for host, row in db.table("host").rows.items():
        if row["address"] == master_address:
            if db.get("pool", the_pool(db))["master"] != host:
                move_master(ctx, host)
            return
