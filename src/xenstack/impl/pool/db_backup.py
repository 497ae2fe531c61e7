"""A member's backup copy of the pool's database, as XAPI's slaves keep one.

On a pool whose database is the master's own (no etcd), ``pool.sync_database`` pushes the
whole database to every member toolstack (XAPI's master has each slave take a backup), and
the member keeps it in ``<state>/pool-db-backup.json`` (0600) with the generation it was
taken at, so that a new master could be made from it. A member that does not answer is
skipped (logged): the sync is of what can be reached. On etcd the pool's database is one
copy every host reads already: nothing is pushed. Sessions are not copied (XAPI does not
persist them). Restoring a master from the copy is not done here.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from ...db.etcd import EtcdPersistence
from ...errors import ApiError
from ..registry import internal
from . import membership, recovery
from .peer import Peer
from .remote import Unreachable

if TYPE_CHECKING:
    from ...core.context import Context

log = logging.getLogger(__name__)

BACKUP = "host.xenstack_db_backup"
FILE = "pool-db-backup.json"
NOT_COPIED = ("session",)


def snapshot(ctx: Context) -> dict[str, Any]:
    """The database as a document: its generation and every row."""
    db = ctx.db
    rows = [
        [cls, ref, dict(row)]
        for cls, table in db.tables.items()
        if cls not in NOT_COPIED
        for ref, row in table.rows.items()
    ]
    return {"generation": ctx.toolstack.persistence.generation(), "rows": rows}


async def push(ctx: Context) -> list[str]:
    """Give every member toolstack a copy of the database; the uuids of those that took it."""
    ts = ctx.toolstack
    if isinstance(ts.persistence, EtcdPersistence) or recovery.is_separate_member(ts):
        return []
    me = ctx.db.get("host", ts.this_host)["uuid"] if ts.this_host else ""
    others = {u: w for u, w in membership.members(ts.persistence).items() if u != me}
    if not others:
        return []
    body = orjson.dumps(snapshot(ctx), option=orjson.OPT_NON_STR_KEYS).decode()
    secret = membership.pool_secret(ts.persistence)
    took = []
    for uuid, where in others.items():
        peer = Peer.of(where)
        try:
            await peer.call(BACKUP, secret, body, timeout=30.0)
            took.append(uuid)
        except (Unreachable, ApiError) as exc:
            log.warning("pool.sync_database: member %s has no fresh copy: %s", uuid, exc)
        finally:
            await peer.close()
    return took


def backup_path(state_dir: Path) -> Path:
    return state_dir / FILE


@internal(BACKUP, "string pool_secret, string database", roles="")
def take_backup(ctx: Context, pool_secret: str, database: str) -> None:
    """On a member: keep the master's copy of the pool's database (atomically, 0600)."""
    ts = ctx.toolstack
    membership.check_secret(ts.persistence, pool_secret)
    if not recovery.is_separate_member(ts) or ts.state_dir is None:
        raise ApiError("INTERNAL_ERROR", ["this host keeps no copy of another's database"])
    final = backup_path(Path(ts.state_dir))
    tmp = final.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(database)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, final)
