"""The master's backend for a pool whose members are toolstacks of their own.

:class:`PoolBackend` is a :class:`~xenstack.xenops.interface.Backend` over the master's own
backend (``local``) and the members' backends, reached over :mod:`.member_link` with the
batches of :mod:`.wire_backend`. An
operation on a host, or on a VM whose domain a host runs, goes to that host: here, or to the
member's toolstack over TLS with the pool secret, which runs it on its own backend (its
simulator, or QEMU on its machine). So ``VM.start_on(member)`` boots the domain on the member,
and every later operation on it (shutdown, pause, device plugs) reaches the member; the master
records the outcome in the pool's database as for a local host.

The synchronous queries of the interface (free memory, a VM's domain) are answered from what
each member reported with its last answer (every answer carries a snapshot of its hosts);
:meth:`refresh` asks all members afresh (at start, and after a member comes back). The
synchronous changes (``host_add``, discarding an image) are queued and sent first with the
member's next batch, in order.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from ...xenops.delegate import DelegatingBackend
from ...xenops.interface import (
    Backend,
    DiskSpec,
    DomainInfo,
    DomainSpec,
    DomainStats,
    HostSpec,
    NicSpec,
    NoSuchDomain,
    Unimplemented,
    UnknownHost,
    XenopsError,
)
from . import membership, moves, xenstore_mirror
from .member_disks import MasterDisks
from .member_exports import MemberExports
from .member_link import MemberLinks, MemberUnreachable, PeerOf, deadline, peers_of
from .wire_backend import domain_info, domain_stats

if TYPE_CHECKING:
    from ...core.context import Services


class PoolBackend(MemberLinks, DelegatingBackend):
    """Routes each call to the backend of the host that must do it: this toolstack's own
    (``local``, by delegation) or a member's, over its link (:class:`.member_link.MemberLinks`).
    A spec sent to a member names its shared-SR disks (and suspend images) by file, which the
    member exports itself (see :mod:`.member_disks`), hot-plugged disks too."""

    def __init__(self, local: Backend, peer_of: PeerOf) -> None:
        DelegatingBackend.__init__(self, local)
        MemberLinks.__init__(self, peer_of)
        # this host's exports in a migration with a member (None: a backend opening no disks)
        self.own_disks: MasterDisks | None = None
        self._moving: dict[str, DomainSpec] = {}  # VM id -> the spec it moves with

    # ---- routing -------------------------------------------------------------------------

    def _holder(self, vm_id: str) -> str | None:
        """The member host whose backend has ``vm_id``'s domain or image (None: here)."""
        if self.local.vm_info(vm_id) is not None or self.local.vm_has_image(vm_id):
            return None
        for host, rem in self.remotes.items():
            if vm_id in rem.domains or vm_id in rem.images:
                return host
        return None

    # ---- HOST ----------------------------------------------------------------------------

    def host_add(self, spec: HostSpec) -> None:
        rem = self.remote(spec.host_id)
        if rem is None:
            self.local.host_add(spec)
            return
        if not rem.memory_free:
            rem.memory_free = spec.memory_total - spec.memory_reserved
        self._queue(spec.host_id, "host_add", spec)

    def host_remove(self, host_id: str) -> None:
        if self.remote(host_id) is None:
            self.local.host_remove(host_id)
        else:
            self.remotes.pop(host_id, None)

    def host_ids(self) -> list[str]:
        return [*self.local.host_ids(), *self.remotes]

    def host_memory_free(self, host_id: str) -> int:
        rem = self.remote(host_id)
        return self.local.host_memory_free(host_id) if rem is None else rem.memory_free

    def host_domains(self, host_id: str) -> list[DomainInfo]:
        rem = self.remote(host_id)
        return self.local.host_domains(host_id) if rem is None else list(rem.domains.values())

    # ---- VM ------------------------------------------------------------------------------

    def vm_info(self, vm_id: str) -> DomainInfo | None:
        info = self.local.vm_info(vm_id)
        if info is not None:
            return info
        for rem in self.remotes.values():
            if vm_id in rem.domains:
                return rem.domains[vm_id]
        return None

    def vm_has_image(self, vm_id: str) -> bool:
        return self.local.vm_has_image(vm_id) or any(
            vm_id in r.images for r in self.remotes.values()
        )

    async def vm_start(self, host_id: str, spec: DomainSpec, paused: bool) -> DomainInfo:
        if self.remote(host_id) is None:
            return await self.local.vm_start(host_id, spec, paused)
        return domain_info(await self._send(host_id, "vm_start", host_id, spec, paused))

    async def _on_vm(self, name: str, vm_id: str, *args: Any) -> Any:
        host = self._holder(vm_id)
        if host is None:
            return await getattr(self.local, name)(vm_id, *args)
        return await self._send(host, name, vm_id, *args)

    async def _info_on_vm(self, name: str, vm_id: str, *args: Any) -> DomainInfo:
        host = self._holder(vm_id)
        if host is None:
            result: DomainInfo = await getattr(self.local, name)(vm_id, *args)
            return result
        return domain_info(await self._send(host, name, vm_id, *args))

    async def vm_shutdown(self, vm_id: str, clean: bool) -> None:
        await self._on_vm("vm_shutdown", vm_id, clean)

    async def vm_reboot(self, vm_id: str, clean: bool, spec: DomainSpec) -> DomainInfo:
        return await self._info_on_vm("vm_reboot", vm_id, clean, spec)

    async def vm_pause(self, vm_id: str) -> DomainInfo:
        return await self._info_on_vm("vm_pause", vm_id)

    async def vm_unpause(self, vm_id: str) -> DomainInfo:
        return await self._info_on_vm("vm_unpause", vm_id)

    async def vm_suspend(self, vm_id: str, image: DiskSpec | None = None) -> int:
        if self._holder(vm_id) is None:
            return await self.local.vm_suspend(vm_id, image)
        return int(await self._on_vm("vm_suspend", vm_id, image))

    async def vm_resume(
        self,
        host_id: str,
        vm_id: str,
        paused: bool,
        spec: DomainSpec | None = None,
        image: DiskSpec | None = None,
    ) -> DomainInfo:
        holder, dest = self._holder(vm_id), self._backend_of(host_id)
        if holder is None and dest is None:
            return await self.local.vm_resume(host_id, vm_id, paused, spec, image)
        if holder is None and not self.local.vm_has_image(vm_id):
            raise NoSuchDomain(vm_id)
        if self._backend_of(holder) != self._backend_of(dest):
            # the image moves to the backend that resumes it (its memory in the suspend VDI,
            # on a shared SR, the destination sees: the policy checked VM_REQUIRES_SR)
            await moves.move_image(self._do, holder, dest, vm_id)
        if dest is None:
            return await self.local.vm_resume(host_id, vm_id, paused, spec, image)
        resumed = await self._send(host_id, "vm_resume", host_id, vm_id, paused, spec, image)
        return domain_info(resumed)

    async def vm_save_image(self, vm_id: str, image_id: str, image: DiskSpec | None = None) -> int:
        if self._holder(vm_id) is None:
            return await self.local.vm_save_image(vm_id, image_id, image)
        return int(await self._on_vm("vm_save_image", vm_id, image_id, image))

    def vm_copy_image(self, image_id: str, vm_id: str) -> None:
        host = self._holder(image_id)
        if host is None:
            self.local.vm_copy_image(image_id, vm_id)
        else:
            self._queue(host, "vm_copy_image", image_id, vm_id)
            self.remotes[host].images.add(vm_id)

    def vm_discard_image(self, vm_id: str) -> None:
        host = self._holder(vm_id)
        if host is None:
            self.local.vm_discard_image(vm_id)
        else:
            self.remotes[host].images.discard(vm_id)
            self._queue(host, "vm_discard_image", vm_id)

    async def vm_migrate(
        self, vm_id: str, host_id: str, spec: DomainSpec | None = None
    ) -> DomainInfo:
        holder, dest = self._holder(vm_id), self._backend_of(host_id)
        if self._backend_of(holder) == dest:  # within one backend
            if dest is None:
                return await self.local.vm_migrate(vm_id, host_id, spec)
            return domain_info(await self._send(dest, "vm_migrate", vm_id, host_id))
        info = self.vm_info(vm_id)
        if info is None:
            raise NoSuchDomain(vm_id)
        if spec is None:
            raise Unimplemented("vm_migrate between toolstacks without the domain's spec")
        self._moving[vm_id] = spec  # the master's own side hands its chains over by it
        try:
            return await moves.migrate(self._do, holder, info.host_id, dest, host_id, info, spec)
        finally:
            self._moving.pop(vm_id, None)

    def _backend_of(self, host_id: str | None) -> str | None:
        """The member host that stands for ``host_id``'s backend (None: this toolstack's):
        hosts a member toolstack runs together share one backend."""
        rem = None if host_id is None else self.remote(host_id)
        if rem is None:
            return None
        return next(h for h, r in self.remotes.items() if r.peer.url == rem.peer.url)

    async def _do(self, host: str | None, name: str, *args: Any) -> Any:
        """Backend operation ``name`` on ``host``'s backend (None: this toolstack's own)."""
        if host is not None:
            return await self._send(host, name, *args, timeout=deadline(name))
        disks = self.own_disks if name.startswith("vm_migrate") else None
        if disks is None:
            result = getattr(self.local, name)(*args)
            return await result if inspect.isawaitable(result) else result
        vm = args[1].vm_id if name == "vm_migrate_receive" else str(args[0])
        spec = self._moving.get(vm)
        args = tuple(await disks.around(name, list(args), spec))
        ok = False
        try:
            result = getattr(self.local, name)(*args)
            result = await result if inspect.isawaitable(result) else result
            ok = True
            return result
        finally:
            await disks.after(name, vm, spec, ok)

    async def vm_set_vcpus(self, vm_id: str, vcpus: int) -> DomainInfo:
        return await self._info_on_vm("vm_set_vcpus", vm_id, vcpus)

    async def vm_set_memory_dynamic_range(self, vm_id: str, low: int, high: int) -> DomainInfo:
        return await self._info_on_vm("vm_set_memory_dynamic_range", vm_id, low, high)

    def vm_reset(self, vm_id: str) -> None:
        host = self._holder(vm_id)
        if host is None:
            self.local.vm_reset(vm_id)
            return
        rem = self.remotes[host]
        rem.domains.pop(vm_id, None)
        rem.images.discard(vm_id)
        self._queue(host, "vm_reset", vm_id)

    def mirror_xenstore(
        self, host_id: str, domid: int, tops: list[str], nodes: list[list[Any]] | None
    ) -> None:
        """Give member ``host_id``'s own XenStore a domain's nodes (None: remove them);
        sent with its next batch (:mod:`.xenstore_mirror`)."""
        if self.remote(host_id) is not None:
            self._queue(host_id, "xenstore_nodes", domid, tops, nodes)

    def forget_domains(self, host_id: str) -> None:
        """A dead member's domains are gone (it was fenced or lost): forget them here."""
        rem = self.remotes.get(host_id)
        if rem is not None:
            rem.domains.clear()

    async def vm_send_trigger(self, vm_id: str, trigger: str) -> None:
        await self._on_vm("vm_send_trigger", vm_id, trigger)

    # ---- metrics ------------------------------------------------------------------------

    def vm_stats(self, vm_id: str) -> DomainStats | None:
        """The counters of a domain here, or of one a member runs as it last reported them
        (the master records every VM's metrics, as XAPI's master keeps every archive)."""
        stats = self.local.vm_stats(vm_id)
        if stats is not None:
            return stats
        for rem in self.remotes.values():
            if vm_id in rem.domains:
                return rem.stats.get(vm_id)
        return None

    async def refresh_stats(self) -> None:
        """This host's counters, and every member's, asked afresh (one call a member); a
        member that does not answer has none until it does."""
        await self.local.refresh_stats()
        asked: dict[str, dict[str, DomainStats]] = {}
        for host, rem in list(self.remotes.items()):
            if rem.peer.url not in asked:
                try:
                    raw = await self._send(host, "refresh_stats")
                    asked[rem.peer.url] = {vm: domain_stats(doc) for vm, doc in raw.items()}
                except XenopsError:
                    asked[rem.peer.url] = {}
            rem.stats = asked[rem.peer.url]

    # ---- VBD / VIF ----------------------------------------------------------------------

    async def vbd_plug(self, vm_id: str, device: str, disk: DiskSpec | None = None) -> None:
        """A member's domain gets the disk named by file (the member exports it)."""
        if self._holder(vm_id) is None:
            await self.local.vbd_plug(vm_id, device, disk)
        else:
            await self._on_vm("vbd_plug", vm_id, device, disk)

    async def vbd_unplug(self, vm_id: str, device: str) -> None:
        await self._on_vm("vbd_unplug", vm_id, device)

    async def vif_plug(self, vm_id: str, device: str, nic: NicSpec | None = None) -> None:
        if self._holder(vm_id) is None:
            await self.local.vif_plug(vm_id, device, nic)
        else:
            await self._on_vm("vif_plug", vm_id, device, nic)

    async def vif_unplug(self, vm_id: str, device: str) -> None:
        await self._on_vm("vif_unplug", vm_id, device)


__all__ = ["MemberUnreachable", "NoSuchDomain", "PoolBackend", "UnknownHost"]


def attach_members(ts: Services) -> PoolBackend | None:
    """Route the work of the pool's member toolstacks to them: wrap the toolstack's backend
    in a :class:`PoolBackend` once it has members (idempotent); the PoolBackend, if any."""
    hv = ts.hypervisor
    if isinstance(hv.backend, PoolBackend):
        return hv.backend
    if not membership.members(ts.persistence) or ts.master_address:
        return None
    pool = PoolBackend(hv.backend, peers_of(ts))
    if hv.backend.capabilities.opens_disks:
        pool.own_disks = MasterDisks(ts, hv.backend)
        storage: Any = ts.storage  # the StorageService
        storage.elsewhere = MemberExports(ts, pool)

    def agent_nodes(host: str, found: dict[str, Any]) -> None:
        if ts.db.exists("host", host):
            xenstore_mirror.take_agent_nodes(ts.xenstore(host), found)

    pool.on_agent_nodes = agent_nodes
    for host in ts.db.refs("host"):
        if pool.remote(host) is None:
            continue
        # adopted from the database at start, but the member's own backend runs them
        if host in pool.local.host_ids():
            for dom in pool.local.host_domains(host):
                pool.local.vm_reset(dom.vm_id)
            pool.local.host_remove(host)
        hv.known_hosts.discard(host)
    hv.backend = pool
    return pool
