"""pool.recover_slaves and pool.emergency_reset_master between toolstacks of their own.

As XAPI does, ``pool.recover_slaves`` on the master tells every other host of the pool to
follow it (XAPI calls each slave's ``pool.emergency_reset_master`` with its own address) and
answers the hosts that took it. A member that is a toolstack of its own is told over TLS with
the pool secret (the hidden ``host.xenstack_recover``): it follows the master's address from
then on (its ``HOST_IS_SLAVE`` names it). One that does not answer is not recovered.

``pool.emergency_reset_master`` called on such a member (with a local session, as an
emergency call) makes it follow the address given, as a XAPI slave re-points itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...errors import ApiError
from ..registry import internal
from . import membership
from .peer import Peer
from .remote import ServiceFailed, Unreachable

if TYPE_CHECKING:
    from ...core.context import Context, Services

RECOVER = "host.xenstack_recover"


def own_address(ts: Services) -> str:
    """Where this toolstack's pool members reach its XenAPI: ``address:port``."""
    row = ts.db.table("host").rows.get(ts.this_host)
    address = row["address"] if row else "127.0.0.1"
    port = ts.server.ports.get("http", 0) if ts.server is not None else 0
    return f"{address}:{port}"


def follow(ts: Services, address: str) -> None:
    """This member follows the master at ``address`` from now on."""
    ts.master_address = address
    ts.persistence.set_meta(membership.MASTER_KEY, address)


def is_separate_member(ts: Services) -> bool:
    """Whether this toolstack is a member of another toolstack's pool."""
    return bool(ts.master_address)


async def recover_members(ctx: Context, hosts: list[str]) -> list[str]:
    """Tell each of ``hosts`` that runs a toolstack of its own to follow this master; the
    hosts that answered."""
    ts = ctx.toolstack
    where = membership.members(ts.persistence)
    secret = membership.pool_secret(ts.persistence)
    address = own_address(ts)
    recovered = []
    for host in hosts:
        entry = where.get(ctx.db.get("host", host)["uuid"])
        if entry is None:
            continue
        peer = Peer.of(entry)
        try:
            await peer.call(RECOVER, secret, address, timeout=10.0)
        except (Unreachable, ServiceFailed, ApiError):
            continue  # down, or not a member of ours: not recovered
        finally:
            await peer.close()
        recovered.append(host)
    return recovered


@internal(RECOVER, "string pool_secret, string master_address", roles="")
def recover(ctx: Context, pool_secret: str, master_address: str) -> None:
    """On a member: follow the master at ``master_address``."""
    ts = ctx.toolstack
    membership.check_secret(ts.persistence, pool_secret)
    if not is_separate_member(ts):
        raise ApiError("INTERNAL_ERROR", ["this host is not a member of another host's pool"])
    follow(ts, master_address)
