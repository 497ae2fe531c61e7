"""On a pool member: the NBD exports of the pool's disks that this host's domains open.

A master starting (or moving, or rebooting) a domain on a member names each disk on the
pool's shared SR by its VHD file (``DiskSpec.vhd``), not by an export of its own: the
member's NBD server opens the chain, as each XenServer host's tapdisk opens a shared VDI
itself. The member has no row for that VDI, so the export is made from the file
(:meth:`StorageService.attach_file`) under the VDI's uuid (the file's name) and reached with
the attach token, which only this host's backend is given. The master is trusted to name
files (it holds the pool secret); the name must still look like a VHD of an SR.

A live migration's destination opens the chain read-only while the source's host still
writes it (``vm_migrate_receive``), and for writing, afresh, just before the domain runs
(``vm_migrate_finish``): by then the source's export is closed, its writes durable.

An export lives while a domain of this host's backend uses it (or a migration prepares
one): after every batch of the master's operations :meth:`MemberDisks.release_unused` stops
the others, their writes made durable (so a migration's source lets the chain go as soon
as it has sent the domain).

The master's own host does the same for a migration to or from a member
(:class:`MasterDisks`, driven by :class:`.remote_backend.PoolBackend`): coming in, its
exports open the chain deferred and take it over before the domain runs; going out, they
are stopped as soon as the domain was sent (before the member takes the chain over).
"""

from __future__ import annotations

import os
import re
import weakref
from dataclasses import replace
from typing import Any

import orjson

from ...db.persistence import Persistence
from ...errors import ApiError
from ...xenops.interface import Backend, DiskSpec, DomainSpec, HostSpec
from ..host.specs import run_by_member

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# per toolstack: VM id -> {device: the key (VDI uuid) of the export it opens here}
_HELD: weakref.WeakKeyDictionary[Any, dict[str, dict[str, str]]] = weakref.WeakKeyDictionary()
HOSTS_KEY = "pool_member_hosts"  # meta: the HostSpecs the master gave this backend
IMAGES_KEY = "pool_member_images"  # meta: the VMs whose suspend images this backend holds


def key_of(vhd: str) -> str:
    """The VDI uuid a shared SR's VHD file is named after; INVALID_VALUE for anything else."""
    name = os.path.basename(vhd)
    key = name.removesuffix(".vhd")
    if not os.path.isabs(vhd) or not name.endswith(".vhd") or not _UUID.match(key):
        raise ApiError("INVALID_VALUE", ["vhd", vhd[:80]])
    if not os.path.isfile(vhd):
        raise ApiError("VDI_MISSING", ["", key])
    return key


class MemberDisks:
    """The hooks :func:`.wire_backend.run_batch` calls around a member's backend."""

    def __init__(self, ts: Any, backend: Backend) -> None:
        self.ts, self.backend = ts, backend
        self.held = _HELD.setdefault(ts, {})
        self.images: set[str] = set()  # suspend images exported for this batch only
        self.plugged: set[tuple[str, str]] = set()  # (VM, device) hot-plugged in this batch

    async def localise_image(self, disk: DiskSpec) -> DiskSpec:
        """A suspend (or checkpoint) image the master named by file, exported here while
        the batch writes or reads it (the image is whole once the operation returns)."""
        if not disk.vhd:
            return disk
        key = key_of(disk.vhd)
        sock, export = await self.ts.storage.attach_file(key, disk.vhd, disk.mode == "RW")
        self.images.add(key)
        return replace(disk, nbd_socket=sock, export=export)

    async def localise(self, op: str, spec: DomainSpec) -> DomainSpec:
        """``spec`` with each disk the master named by file exported here."""
        deferred = op == "vm_migrate_receive"
        disks = []
        for disk in spec.disks:
            if disk.vhd and not disk.empty:
                key = key_of(disk.vhd)
                writable = disk.mode == "RW"
                sock, export = await self.ts.storage.attach_file(key, disk.vhd, writable, deferred)
                self.held.setdefault(spec.vm_id, {})[disk.device] = key
                disk = replace(disk, nbd_socket=sock, export=export)
            disks.append(disk)
        return replace(spec, disks=tuple(disks))

    async def localise_plug(self, vm: str, disk: DiskSpec) -> DiskSpec:
        """A disk hot-plugged into ``vm``'s running domain here, exported while it stays
        plugged (:meth:`done` stops it once unplugged)."""
        if not disk.vhd or disk.empty:
            return disk
        key = key_of(disk.vhd)
        sock, export = await self.ts.storage.attach_file(key, disk.vhd, disk.mode == "RW")
        mine = self.held.setdefault(vm, {})
        if disk.device not in mine:
            self.plugged.add((vm, disk.device))
        mine[disk.device] = key
        return replace(disk, nbd_socket=sock, export=export)

    async def done(self, op: str, values: list[Any], ok: bool) -> None:
        """After ``op`` ran (``ok``) or failed: an unplugged disk (or one whose plug failed)
        lets its export go, unless another disk of a domain here still opens it."""
        if (op == "vbd_unplug" and ok) or (op == "vbd_plug" and not ok):
            vm, device = str(values[0]), str(values[1])
            if ok or (vm, device) in self.plugged:
                await self.drop(vm, device)
        self.plugged.clear()

    async def export(self, op: str, values: list[Any]) -> None:
        """The master changes the chain of the VHD file ``values[0]``: ``export_stop``
        ends its export here (writes made durable), ``export_start`` opens it afresh."""
        key = key_of(str(values[0]))
        if op == "export_stop":
            await self.ts.storage.stop_nbd(key)  # still attached: QEMU reconnects to it
        elif any(key in d.values() for d in self.held.values()):
            await self.ts.storage.attach_file(key, str(values[0]), bool(values[1]))

    async def drop(self, vm: str, device: str) -> None:
        """``vm``'s disk ``device`` no longer opens its export here: stop it if unused."""
        key = self.held.get(vm, {}).pop(device, None)
        if key is not None and not any(key in d.values() for d in self.held.values()):
            await self.ts.storage.detach(key)

    def used_by_others(self, vm: str) -> set[str]:
        """The keys of disks other domains here open outside :attr:`held` (on a member,
        none: every disk of its domains is held)."""
        return set()

    async def before(self, op: str, values: list[Any]) -> None:
        """A migrated domain is about to run here: its disks opened for writing."""
        if op == "vm_migrate_finish":
            for key in sorted(set(self.held.get(str(values[0]), {}).values())):
                await self.ts.storage.take_over(key)

    async def release_unused(self) -> None:
        """Stop the exports no domain (or saved image, or migration) here uses any more."""
        held, backend = self.held, self.backend

        for key in sorted(self.images):
            await self.ts.storage.detach(key)  # the image written (flushed) or read
        self.images.clear()
        keeps = not backend.capabilities.opens_disks  # a backend's own images need disks

        def unused(vm: str) -> bool:
            return (
                backend.vm_info(vm) is None
                and not (keeps and backend.vm_has_image(vm))
                and not backend.vm_migrating_in(vm)
            )

        for vm in [v for v in held if unused(v)]:
            keys = set(held.pop(vm).values())
            in_use = {k for d in held.values() for k in d.values()} | self.used_by_others(vm)
            for key in keys - in_use:
                await self.ts.storage.detach(key)


def remember_hosts(persistence: Persistence, ops: list[list[Any]]) -> None:
    """Keep the hosts the master gives this backend (``host_add`` among ``ops``): a
    restarted member gives them to its backend again (:mod:`.member_restart`)."""
    added = [args[0] for name, args in ops if name == "host_add" and args]
    if not added:
        return
    known = _kept(persistence)
    known.update({str(doc["host_id"]): doc for doc in added if isinstance(doc, dict)})
    persistence.set_meta(HOSTS_KEY, orjson.dumps(known).decode())


def remember_images(persistence: Persistence, images: list[str]) -> None:
    """Keep which VMs this backend holds a suspend image of (the memory is in a VDI, the
    master's): a restarted member holds them again."""
    if sorted(images) != kept_images(persistence):
        persistence.set_meta(IMAGES_KEY, orjson.dumps(sorted(images)).decode())


def kept_images(persistence: Persistence) -> list[str]:
    raw = persistence.get_meta(IMAGES_KEY)
    found = orjson.loads(raw) if raw else []
    return sorted(str(v) for v in found) if isinstance(found, list) else []


def kept_hosts(persistence: Persistence) -> list[HostSpec]:
    """The hosts :func:`remember_hosts` kept (those it cannot read again left out)."""
    found = []
    for doc in _kept(persistence).values():
        try:
            found.append(HostSpec(**doc))
        except TypeError:
            continue
    return found


def _kept(persistence: Persistence) -> dict[str, Any]:
    raw = persistence.get_meta(HOSTS_KEY)
    known = orjson.loads(raw) if raw else {}
    return known if isinstance(known, dict) else {}


def file_keys(disks: tuple[DiskSpec, ...]) -> list[str]:
    """The VDI uuids of the disks named by file (the shared SR's VHDs)."""
    return sorted({key_of(d.vhd) for d in disks if d.vhd and not d.empty})


class MasterDisks(MemberDisks):
    """The master's own host as a migration's destination or source with a member."""

    async def around(self, op: str, args: list[Any], spec: DomainSpec | None) -> list[Any]:
        """The arguments of the master's own migration step ``op``, its disks ready."""
        if op == "vm_migrate_receive":
            return [args[0], await self.localise(op, args[1]), *args[2:]]
        await self.before(op, args)
        return args

    async def after(self, op: str, vm: str, spec: DomainSpec | None, ok: bool) -> None:
        """Once step ``op`` ran (``ok``) or failed: a sent domain lets its chains go (the
        source paused, its disks flushed), a received one keeps its exports as its own."""
        if op == "vm_migrate_send" and ok and spec is not None:
            for key in sorted(set(file_keys(spec.disks)) - self.used_by_others(vm)):
                await self.ts.storage.detach(key)
        elif op == "vm_migrate_finish" and ok:
            self.held.pop(vm, None)  # the domain's now: detached as any of this host's
        elif op in ("vm_migrate_abort", "vm_migrate_finish"):
            await self.release_unused()

    def used_by_others(self, vm: str) -> set[str]:
        """The VDI uuids the master's other live domains on its own hosts have (a disk
        two of them read, say): their exports stay when ``vm``'s go."""
        db = self.ts.db
        vbds, vdis = db.table("VBD").rows, db.table("VDI").rows
        found: set[str] = set()
        for ref, row in db.table("VM").rows.items():
            if ref == vm or row["power_state"] not in ("Running", "Paused"):
                continue
            if run_by_member(self.ts, row["resident_on"]):
                continue
            refs = (vbds[v]["VDI"] for v in row["VBDs"] if v in vbds)
            found.update(vdis[r]["uuid"] for r in refs if r in vdis)
        return found
