"""pool.eject: a host leaves the pool and starts again as a pool of its own.

On the master, the host and everything only it owns leave the database in one transaction
(:func:`~xenstack.impl.pool.host_removal.remove_host`). A host that joined from a toolstack of its
own (a separate ``xenstack serve``) is first told to leave, through the hidden
``pool.xenstack_leave`` authenticated by the pool secret: as XAPI resets an ejected host's
database, it clears its database and starts afresh as a standalone pool, keeping its users
(and so its root password); the VDIs of its local SRs are lost, as xe warns. A host of a
simulated pool (``--hosts N``) has no toolstack of its own: ejecting it removes its objects.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from ...core.context import Context
from ...errors import ApiError
from ...idl.model import CLASSES
from ..install.bootstrap import create_pool
from ..install.storage import use_real_local_storage
from ..registry import implements, internal
from ..storage.sr_backend import drivers
from . import membership
from .host_removal import remove_host
from .pool import the_pool
from .remote import Unreachable, address_with_port, call

if TYPE_CHECKING:
    from ...core.context import Services

log = logging.getLogger(__name__)

LEAVE = "pool.xenstack_leave"


@implements("pool.eject")
async def eject(ctx: Context, host: str) -> None:
    db, ts = ctx.db, ctx.toolstack
    uuid = db.get("host", host)["uuid"]
    _assert_ejectable(ctx, host)
    where = membership.members(ts.persistence).get(uuid)
    if where is not None:
        await _tell_member(ts, str(where["address"]), int(where["port"]))
        _assert_ejectable(ctx, host)  # nothing started there meanwhile
    with db.transaction():
        remove_host(db, host, db.get("pool", the_pool(db))["master"])
    membership.set_member(ts.persistence, uuid, None)


def _assert_ejectable(ctx: Context, host: str) -> None:
    """Not with HA on, never the master, and only with no guest running there."""
    db = ctx.db
    pool = db.get("pool", the_pool(db))
    if pool["ha_enabled"]:
        raise ApiError("HA_IS_ENABLED", [])
    if host == pool["master"]:
        raise ApiError("INTERNAL_ERROR", ["Xapi_pool.Cannot_eject_master"])
    for vm in db.get("host", host)["resident_VMs"]:
        vm_row = db.get("VM", vm)
        if not vm_row["is_control_domain"] and vm_row["power_state"] != "Halted":
            raise ApiError("OPERATION_NOT_ALLOWED", ["VM resident on host"])


async def _tell_member(ts: Services, address: str, port: int) -> None:
    """Ask the member's own toolstack to leave; one that cannot be reached is gone already."""
    secret = membership.pool_secret(ts.persistence)
    try:
        await call(address_with_port(address, port), LEAVE, secret)
    except Unreachable as exc:
        log.warning("ejected host at %s:%s could not be told: %s", address, port, exc)


@internal(LEAVE, "string pool_secret", roles="")
async def leave(ctx: Context, pool_secret: str) -> None:
    """On an ejected member: leave slave mode and start afresh as a standalone pool."""
    ts = ctx.toolstack
    if not ts.master_address:
        return  # in no pool: nothing to leave
    membership.check_secret(ts.persistence, pool_secret)
    persistence = ts.persistence
    if getattr(persistence, "namespace", None) == persistence.get_meta("pool_db"):
        # a former master on etcd serves the pool's own database: resetting it would wipe
        # the pool's (not done yet: it needs a database of its own first)
        raise ApiError("OPERATION_NOT_ALLOWED", ["this host serves the pool's database"])
    await reset_standalone(ts)


async def reset_standalone(ts: Services) -> None:
    """Clear the database and bootstrap a fresh pool of one host, with the old host's name
    and address; users and the storage mode stay."""
    db = ts.db
    old = db.get("host", ts.this_host) if db.exists("host", ts.this_host) else None
    label = old["name_label"] if old else None
    address = old["address"] if old else "127.0.0.1"
    local_dirs = _local_sr_dirs(ts)
    with db.transaction():
        for cls in CLASSES:
            for ref in list(db.table(cls).rows):
                db.destroy(cls, ref)
    for ref in list(ts.auth.sessions):
        ts.auth.close(ref)
    for path in local_dirs:
        shutil.rmtree(path, ignore_errors=True)
    membership.become_master(ts.persistence)
    ts.master_address = ""
    ts.this_host = create_pool(db, label, address)
    if ts.persistence.get_meta("storage") == "file" and ts.state_dir is not None:
        with db.transaction():
            use_real_local_storage(db, str(ts.state_dir), drivers(ts))
    ts.persistence.set_meta("this_host", ts.this_host)
    await db.durable()


def _local_sr_dirs(ts: Services) -> list[Path]:
    """The directories of this host's unshared file SRs inside its state directory."""
    if ts.state_dir is None:
        return []
    root = ts.state_dir.resolve()
    found = []
    for row in ts.db.table("SR").rows.values():
        path = row["sm_config"].get("xenstack_path")
        if path and not row["shared"] and Path(path).resolve().is_relative_to(root):
            found.append(Path(path))
    return found
