"""pool.join and pool.join_force: this host becomes a member (a slave) of another pool.

The joining host logs in to the master over the XenAPI, checks that it may join (XAPI's
pre-join checks, the soft ones skipped by ``join_force``), and has the master add it to the
pool database through the hidden ``pool.xenstack_add_member``. Then, best effort as XAPI's
(a failure is logged and the join goes on), it carries its local SRs, their VDIs and its VMs
into the pool's database, uuids kept (:mod:`.carry`, :mod:`.carry_import`). Then it records
that it is a slave: from now on it answers HOST_IS_SLAVE, giving the master's address, to
every call but logout (see the dispatcher). Its own database is left as it was; it is not
read again until the host is ejected, which resets it (see :mod:`.eject`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ...core.context import Context
from ...errors import ApiError
from ..install.bootstrap import create_host
from ..install.storage import use_real_local_storage
from ..registry import implements, internal
from ..storage.sr_backend import drivers
from . import carry, membership
from .pool import the_pool
from .remote import RemoteSession, ServiceFailed, Unreachable
from .remote_backend import attach_members

if TYPE_CHECKING:
    from ...core.context import Services

ADD_MEMBER = "pool.xenstack_add_member"
MEMBER_FIELDS = ("uuid", "hostname", "address", "port")

log = logging.getLogger(__name__)


@implements("pool.join")
async def join(
    ctx: Context, master_address: str, master_username: str, master_password: str
) -> None:
    await _join(ctx, master_address, master_username, master_password, force=False)


@implements("pool.join_force")
async def join_force(
    ctx: Context, master_address: str, master_username: str, master_password: str
) -> None:
    await _join(ctx, master_address, master_username, master_password, force=True)


async def _join(ctx: Context, address: str, username: str, password: str, *, force: bool) -> None:
    try:
        remote = await RemoteSession.login(address, username, password)
        try:
            await _pre_join_checks(ctx, remote, force=force)
            answer = await remote.call(ADD_MEMBER, member_record(ctx.toolstack))
            await _carry(ctx, remote, str(answer["uuid"]))
        finally:
            await remote.logout()
    except ServiceFailed as exc:
        raise ApiError("JOINING_HOST_SERVICE_FAILED", []) from exc
    except Unreachable as exc:
        raise ApiError("JOINING_HOST_CONNECTION_FAILED", []) from exc
    persistence = ctx.toolstack.persistence
    membership.become_slave(persistence, address, str(answer["pool_secret"]))
    # where the pool's database is (etcd) and this host's ref in it, for an election
    persistence.set_meta("pool_db", str(answer.get("pool_db", "")))
    persistence.set_meta("pool_host", str(answer["host"]))
    ctx.toolstack.master_address = address


async def _carry(ctx: Context, remote: RemoteSession, host_uuid: str) -> None:
    """Carry this host's storage and VMs into the pool; as XAPI, a failure is only logged
    (the join goes on, and the VMs the master did not take are not in the pool)."""
    try:
        await remote.call(carry.CARRY_MEMBER, host_uuid, carry.export(ctx))
    except Exception:
        log.exception("importing this host's objects into the master failed; joining anyway")


def member_record(ts: Services) -> dict[str, str]:
    """Where this toolstack listens, as its master keeps it (:func:`record_member`)."""
    me = ts.db.get("host", ts.this_host)
    server = ts.server
    port = server.ports.get("http", 0) if server is not None else 0
    record = {
        "uuid": me["uuid"],
        "hostname": me["hostname"] or me["name_label"],
        "address": me["address"],
        "port": str(port),
    }
    tls_port = server.ports.get("https", 0) if server is not None else 0
    cert = ts.state_dir / "tls" / "xapi-ssl.pem" if ts.state_dir is not None else None
    if tls_port and cert is not None and cert.exists():
        # the master pins this certificate for its calls to this member's backend
        record |= {"tls_port": str(tls_port), "certificate": cert.read_text()}
    return record


async def _pre_join_checks(ctx: Context, remote: RemoteSession, *, force: bool) -> None:
    """XAPI's checks, in its order, on what this host and the master's pool hold."""
    db, here = ctx.db, ctx.this_host
    me = db.get("host", here)
    pools: dict[str, Any] = await remote.call("pool.get_all_records")
    pool = next(iter(pools.values()))
    master = await remote.call("host.get_record", pool["master"])
    if not any(db.get("PIF", p)["management"] for p in me["PIFs"]):
        raise ApiError("HOST_STILL_BOOTING", [])
    if db.get("pool", the_pool(db))["ha_enabled"] or pool["ha_enabled"]:
        raise ApiError("HA_IS_ENABLED", [])
    if master["uuid"] == me["uuid"]:
        alone = len(db.refs("host")) == 1
        why = "Host cannot become slave of itself" if alone else "Host is already part of a pool"
        raise ApiError("OPERATION_NOT_ALLOWED", [why])
    _check_alone(ctx)
    _check_versions(me, master, pool, force=force)
    _check_objects(ctx)
    if (me["external_auth_type"], me["external_auth_service_name"].lower()) != (
        master["external_auth_type"],
        master["external_auth_service_name"].lower(),
    ):
        raise ApiError("POOL_JOINING_EXTERNAL_AUTH_MISMATCH", [])
    _check_api(me, master)


def _check_alone(ctx: Context) -> None:
    db = ctx.db
    if len(db.refs("host")) > 1:
        raise ApiError("JOINING_HOST_CANNOT_BE_MASTER_OF_OTHER_HOSTS", [])
    guests = [r for r in db.table("VM").rows.values() if not r["is_control_domain"]]
    if any(r["power_state"] == "Running" for r in guests):
        raise ApiError("JOINING_HOST_CANNOT_HAVE_RUNNING_VMS", [])
    if any(r["current_operations"] for r in db.table("VM").rows.values()):
        raise ApiError("JOINING_HOST_CANNOT_HAVE_VMS_WITH_CURRENT_OPERATIONS", [])


def _check_versions(me: Any, master: Any, pool: Any, *, force: bool) -> None:
    """Same platform (always); same software and CPU vendor (unless forced)."""
    mine, theirs = me["software_version"], master["software_version"]
    if _platform(mine) != _platform(theirs):
        raise ApiError("HOSTS_NOT_COMPATIBLE", [])
    if force:
        return
    if _software(mine) != _software(theirs):
        raise ApiError("HOSTS_NOT_HOMOGENEOUS", ["Software version differs"])
    if me["cpu_info"].get("vendor") != pool["cpu_info"].get("vendor"):
        raise ApiError("HOSTS_NOT_HOMOGENEOUS", ["CPUs differ"])


def _brand(sw: dict[str, str]) -> str:
    """What tells product lines apart: the brand, else the platform name."""
    return sw.get("product_brand") or sw.get("platform_name", "")


def _platform(sw: dict[str, str]) -> tuple[str, str]:
    return sw.get("platform_version", ""), _brand(sw)


def _software(sw: dict[str, str]) -> tuple[str, str, str]:
    """What must match unless forced (as in XAPI, not the build number)."""
    return sw.get("xapi", ""), _brand(sw), sw.get("git_id", "")


def _check_objects(ctx: Context) -> None:
    db = ctx.db
    if any(r["shared"] and not r["is_tools_sr"] for r in db.table("SR").rows.values()):
        raise ApiError("JOINING_HOST_CANNOT_CONTAIN_SHARED_SRS", [])
    if db.refs("Bond"):
        raise ApiError("POOL_JOINING_HOST_HAS_BONDS", [])
    if db.refs("tunnel"):
        raise ApiError("POOL_JOINING_HOST_HAS_TUNNELS", [])
    if db.refs("network_sriov"):
        raise ApiError("POOL_JOINING_HOST_HAS_NETWORK_SRIOVS", [])
    for vlan in db.table("VLAN").rows.values():
        if not db.get("PIF", vlan["untagged_PIF"])["management"]:
            raise ApiError("POOL_JOINING_HOST_HAS_NON_MANAGEMENT_VLANS", [])


def _check_api(me: Any, master: Any) -> None:
    mine = f"{me['API_version_major']}.{me['API_version_minor']}"
    theirs = f"{master['API_version_major']}.{master['API_version_minor']}"
    if mine != theirs:
        raise ApiError("POOL_JOINING_HOST_MUST_HAVE_SAME_API_VERSION", [mine, theirs])
    schema, master_schema = (h["software_version"].get("db_schema", "") for h in (me, master))
    if not schema or schema != master_schema:
        raise ApiError("POOL_JOINING_HOST_MUST_HAVE_SAME_DB_SCHEMA", [schema, master_schema])


@internal(
    ADD_MEMBER,
    "session ref session_id, (string -> string) map member",
    "(string -> string) map",
)
def add_member(ctx: Context, member: dict[str, str]) -> dict[str, str]:
    """On the master: add a joining host (a complete host, as a fresh install has) to the
    pool; return its ref and uuid and the pool secret. A host already known is returned."""
    ts = ctx.toolstack
    if ts.master_address:
        raise ApiError("HOST_IS_SLAVE", [ts.master_address])
    missing = [f for f in MEMBER_FIELDS if f not in member]
    if missing:
        raise ApiError("INVALID_VALUE", ["member", missing[0]])
    db = ctx.db
    known = db.find("host", uuid=member["uuid"])
    host = known[0] if known else _create_member(ctx, member)
    if record_member(ts, member):
        # the master is a toolstack of its own too, for the master elected after it
        mine = member_record(ts)
        if mine["uuid"] not in membership.members(ts.persistence):
            record_member(ts, mine)
        attach_members(ts)
    secret = membership.pool_secret(ts.persistence)
    pool_db = str(getattr(ts.persistence, "namespace", ""))
    uuid = db.get("host", host)["uuid"]
    return {"host": host, "uuid": uuid, "pool_secret": secret, "pool_db": pool_db}


def record_member(ts: Services, member: dict[str, str]) -> bool:
    """Keep where a member's toolstack listens (and its pinned certificate)."""
    port = int(member["port"]) if member["port"].isdigit() else 0
    if not port:
        return False
    where: dict[str, str | int] = {"address": member["address"], "port": port}
    if member.get("tls_port", "").isdigit() and member.get("certificate"):
        where |= {"tls_port": int(member["tls_port"]), "certificate": member["certificate"]}
    membership.set_member(ts.persistence, member["uuid"], where)
    return True


def _create_member(ctx: Context, member: dict[str, str]) -> str:
    db, ts = ctx.db, ctx.toolstack
    with db.transaction():
        host = create_host(db, member["hostname"], member["address"])
        db.update("host", host, uuid=member["uuid"], hostname=member["hostname"])
        if ts.persistence.get_meta("storage") == "file" and ts.state_dir is not None:
            use_real_local_storage(db, str(ts.state_dir), drivers(ts))
    return host
