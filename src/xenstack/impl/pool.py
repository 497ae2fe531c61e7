"""Pool-level operations of the simulated pool: master handover and recovery.

All hosts live in this one process, so a handover needs no two-phase commit: the pool's
``master`` field moves, and "recovering" the slaves means finding the hosts that answer (every
live host but the master).
"""

from __future__ import annotations

from ..api.context import Context
from ..db.store import Database
from ..errors import ApiError
from .registry import implements
from .vm_placement import host_is_live


def the_pool(db: Database) -> str:
    return next(iter(db.table("pool").rows))


@implements("pool.designate_new_master")
async def designate_new_master(ctx: Context, host: str) -> None:
    db = ctx.db
    db.get("host", host)
    pool = the_pool(db)
    if db.get("pool", pool)["master"] == host:
        return
    if db.get("pool", pool)["ha_enabled"]:
        raise ApiError("HA_IS_ENABLED", [])
    await db.durable()  # what sync_database does before the handover
    with db.transaction():
        db.set("pool", pool, "master", host)


@implements("pool.recover_slaves")
def recover_slaves(ctx: Context) -> list[str]:
    """Point every live slave at the current master; return those that were recovered."""
    db = ctx.db
    master = db.get("pool", the_pool(db))["master"]
    return [h for h in db.refs("host") if h != master and host_is_live(db, h)]


@implements("pool.sync_database")
async def sync_database(ctx: Context) -> None:
    await ctx.db.durable()


@implements("pool.emergency_transition_to_master")
def emergency_transition_to_master(ctx: Context) -> None:
    """The host this toolstack runs becomes the master."""
    db = ctx.db
    if ctx.this_host and db.exists("host", ctx.this_host):
        with db.transaction():
            db.set("pool", the_pool(db), "master", ctx.this_host)


@implements("pool.emergency_reset_master")
def emergency_reset_master(ctx: Context, master_address: str) -> None:
    db = ctx.db
    for host, row in db.table("host").rows.items():
        if row["address"] == master_address:
            with db.transaction():
                db.set("pool", the_pool(db), "master", host)
            return
