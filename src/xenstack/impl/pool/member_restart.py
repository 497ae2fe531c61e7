"""A pool member's toolstack restarted under its running guests (``kill -9``, an upgrade).

The member has no database rows for the pool's VMs, so the adoption the database drives
(:func:`..vm.domains.adopt`) finds nothing to take back. What it needs it kept itself:

- the hosts the master gave its backend (``host_add``, kept by
  :func:`.member_disks.remember_hosts`), given to the backend again;
- each domain's record in its run directory (the QEMU backend's ``domain.json``): the spec
  as this host localised it, each disk named by its VHD file (``DiskSpec.vhd``). The disks
  still plugged are exported again under the same Unix socket and attach token (QEMU's NBD
  client reconnects there within its ``reconnect-delay``) and the domain is adopted, all
  before anything is served (:func:`readopt`);
- which VMs its backend holds a suspend image of (:func:`.member_disks.remember_images`):
  the memory is in the suspend VDI, so a VM suspended here resumes here after the restart.

Then the member tells its master where it listens now (:func:`announce`: the hidden
``pool.xenstack_member_restarted``, with the pool secret), since a member started with
``--https-port 0`` gets a new port. The master records it (:mod:`.membership`), its
:class:`.remote_backend.PoolBackend` reaches the member there and asks what it runs, and the
member host's ``other_config:agent_start_time`` becomes the member's start time, as a XAPI
slave's start records it in the pool's database.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ...errors import ApiError
from ...xenops.interface import Backend, DomainInfo, DomainSpec
from ..registry import internal
from . import member_disks, membership
from .join import member_record, record_member
from .peer import Peer
from .remote import Unreachable, url_of
from .remote_backend import attach_members

if TYPE_CHECKING:
    from ...core.context import Context, Services

RESTARTED = "pool.xenstack_member_restarted"
START_TIME = "agent_start_time"  # the host's other_config key XAPI's start sets
ANNOUNCE_TRIES = 12  # about ten minutes of a master that does not answer
ANNOUNCE_TIMEOUT = 20.0  # the master asks this member what it runs before it answers

log = logging.getLogger(__name__)


def _own(backend: Backend) -> Any:
    """The backend that keeps records of its domains (under its wrappers), or None."""
    while not hasattr(backend, "recorded_domains") and hasattr(backend, "local"):
        backend = backend.local
    return backend if hasattr(backend, "recorded_domains") else None


async def readopt(ts: Services) -> None:
    """On a member: take back the domains its backend recorded, their disks exported."""
    if not ts.master_address:
        return
    backend = ts.hypervisor.backend
    for host in member_disks.kept_hosts(ts.persistence):
        backend.host_add(host)
    own = _own(backend)
    if own is None:
        return
    images = getattr(own, "images", None)  # QEMU's: the VMs it resumes from their VDIs
    if isinstance(images, set):
        images.update(member_disks.kept_images(ts.persistence))
    disks = member_disks.MemberDisks(ts, backend)
    for host_id, spec, plugged in own.recorded_domains():
        try:
            await _readopt(ts, disks, host_id, spec, plugged)
        except Exception:
            log.exception("taking back the domain of VM %s failed", spec.vm_id)


async def _readopt(
    ts: Services,
    disks: member_disks.MemberDisks,
    host_id: str,
    spec: DomainSpec,
    plugged: tuple[str, ...],
) -> None:
    held: dict[str, str] = {}
    opened, storage = [], disks.ts.storage  # the StorageService (member_disks)
    for disk in spec.disks:
        if disk.vhd and not disk.empty and disk.device in plugged:
            key = member_disks.key_of(disk.vhd)
            sock, export = await storage.attach_file(key, disk.vhd, disk.mode == "RW")
            held[disk.device] = key
            disk = replace(disk, nbd_socket=sock, export=export)
        opened.append(disk)
    disks.held[spec.vm_id] = held
    spec = replace(spec, disks=tuple(opened))
    info = DomainInfo(spec.vm_id, host_id, 0, "running", spec.domain_type, 0, 0, spec.vcpus, 0.0)
    if await ts.hypervisor.backend.adopt(host_id, spec, info) is None:
        await disks.release_unused()  # its QEMU is gone: so are its exports


def start_time(ts: Services) -> str:
    """This toolstack's start, as ``other_config:agent_start_time`` holds it."""
    return str(ts.clock.now())


async def announce(ts: Services, started: str) -> None:
    """On a member: tell the master where this toolstack listens now (retried, waiting
    longer each time, while the master does not answer)."""
    record = {**member_record(ts), START_TIME: started}
    secret = membership.pool_secret(ts.persistence)
    where = urlsplit(url_of(ts.master_address))
    master = Peer(where.hostname or "127.0.0.1", where.port or 80)  # aiohttp: cancellable
    try:
        for attempt in range(ANNOUNCE_TRIES):
            try:
                await master.call(RESTARTED, secret, record, timeout=ANNOUNCE_TIMEOUT)
                return
            except Unreachable:
                await asyncio.sleep(min(60.0, 2.0**attempt))
            except ApiError as exc:
                log.warning("the master did not take this member's address: %s", exc)
                return
    finally:
        await master.close()


@internal(RESTARTED, "string pool_secret, (string -> string) map member", roles="")
async def member_restarted(ctx: Context, pool_secret: str, member: dict[str, str]) -> None:
    """On the master: member ``member`` (a record as at join) listens there now."""
    ts = ctx.toolstack
    membership.check_secret(ts.persistence, pool_secret)
    if ts.master_address:
        raise ApiError("HOST_IS_SLAVE", [ts.master_address])
    uuid = str(member.get("uuid", ""))
    found = ctx.db.find("host", uuid=uuid)
    if not found or uuid not in membership.members(ts.persistence):
        raise ApiError("HOST_UNKNOWN_TO_MASTER", [uuid])
    if not all(isinstance(member.get(f), str) for f in ("address", "port")):
        raise ApiError("INVALID_VALUE", ["member", uuid])
    record_member(ts, member)
    pool = attach_members(ts)
    if pool is not None and not await pool.repoint(found[0]):
        return  # not reached where it says: it is told again when it announces again
    started = str(member.get(START_TIME, ""))
    if started:
        with ctx.db.transaction() as db:
            other = dict(db.get("host", found[0])["other_config"])
            db.set("host", found[0], "other_config", {**other, START_TIME: started})
