"""Who this host is in a pool: standalone master, master of members, or a member (slave).

Kept in the state's meta table, not the database (XAPI keeps it in ``pool.conf``):

- ``pool_role``: ``slave`` while this host is a member of another master's pool;
  ``master_address`` then holds that master's pool address (see :mod:`.remote`).
- ``pool_secret``: the pool's shared secret. The master makes it when the first member joins
  and hands it over at join; members prove with it that a call comes from their master.
- ``pool_members`` (on the master): JSON, host uuid -> where that member's own toolstack
  listens (``{"address": ..., "port": ...}``), for the members that are separate processes.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any

import orjson

from ...db.persistence import Persistence
from ...errors import ApiError

ROLE_KEY = "pool_role"
MASTER_KEY = "master_address"
SECRET_KEY = "pool_secret"
MEMBERS_KEY = "pool_members"


def pool_secret(persistence: Persistence) -> str:
    """The pool secret, made on first use."""
    secret = persistence.get_meta(SECRET_KEY)
    if not secret:
        secret = secrets.token_urlsafe(32)
        persistence.set_meta(SECRET_KEY, secret)
    return secret


def secret_matches(persistence: Persistence, offered: str) -> bool:
    secret = persistence.get_meta(SECRET_KEY) or ""
    return bool(secret) and hmac.compare_digest(secret.encode(), offered.encode())


def check_secret(persistence: Persistence, offered: str) -> None:
    """Refuse a pool-internal call whose caller does not hold the pool's secret."""
    if not secret_matches(persistence, offered):
        # xapi: ocaml/xapi/xapi_session.ml passes 2
        raise ApiError("SESSION_AUTHENTICATION_FAILED", ["pool secret", "Authentication failure"])


def members(persistence: Persistence) -> dict[str, dict[str, Any]]:
    raw = persistence.get_meta(MEMBERS_KEY)
    found: dict[str, dict[str, Any]] = orjson.loads(raw) if raw else {}
    return found


def set_member(persistence: Persistence, host_uuid: str, where: dict[str, Any] | None) -> None:
    """Record (or, with ``None``, forget) where a member's toolstack listens."""
    known = members(persistence)
    if where is None:
        known.pop(host_uuid, None)
    else:
        known[host_uuid] = where
    persistence.set_meta(MEMBERS_KEY, orjson.dumps(known).decode())


def become_slave(persistence: Persistence, master_address: str, secret: str) -> None:
    persistence.set_meta(SECRET_KEY, secret)
    persistence.set_meta(MASTER_KEY, master_address)
    persistence.set_meta(ROLE_KEY, "slave")


def become_master(persistence: Persistence) -> None:
    """A standalone pool again: no master to follow, a fresh secret made on demand."""
    persistence.set_meta(ROLE_KEY, "master")
    persistence.set_meta(MASTER_KEY, "")
    persistence.set_meta(SECRET_KEY, "")
    persistence.set_meta(MEMBERS_KEY, "{}")
