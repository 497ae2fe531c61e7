"""On a pool member: the NBD exports of the pool's disks that this host's domains open.

A master starting (or moving, or rebooting) a domain on a member names each disk on the
pool's shared SR by its VHD file (``DiskSpec.vhd``), not by an export of its own: the
member's NBD server opens the chain, as each XenServer host's tapdisk opens a shared VDI
itself. The member has no row for that VDI, so the export is made from the file
(:meth:`StorageService.attach_file`) under the VDI's uuid (the file's name) and reached with
the attach token, which only this host's backend is given. The master is trusted to name
files (it holds the pool secret); the name must still look like a VHD of an SR.

An export lives while a domain of this host's backend uses it (or a migration holds it):
after every batch of the master's operations :func:`release_unused` stops the others, their
writes made durable.
"""

from __future__ import annotations

import os
import re
import weakref
from dataclasses import replace
from typing import Any

from ...errors import ApiError
from ...xenops.interface import Backend, DomainSpec

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


_HELD: weakref.WeakKeyDictionary[Any, dict[str, set[str]]] = weakref.WeakKeyDictionary()


def _held(ts: Any) -> dict[str, set[str]]:
    """VM id -> the keys (VDI uuids) of the exports its domain opens, on this member."""
    return _HELD.setdefault(ts, {})


def key_of(vhd: str) -> str:
    """The VDI uuid a shared SR's VHD file is named after; INVALID_VALUE for anything else."""
    name = os.path.basename(vhd)
    key = name.removesuffix(".vhd")
    if not os.path.isabs(vhd) or not name.endswith(".vhd") or not _UUID.match(key):
        raise ApiError("INVALID_VALUE", ["vhd", vhd[:80]])
    if not os.path.isfile(vhd):
        raise ApiError("VDI_MISSING", ["", key])
    return key


async def localise(ts: Any, spec: DomainSpec) -> DomainSpec:
    """``spec`` with each disk the master named by file exported here."""
    disks = []
    for disk in spec.disks:
        if disk.vhd and not disk.empty:
            key = key_of(disk.vhd)
            sock, export = await ts.storage.attach_file(key, disk.vhd, disk.mode == "RW")
            _held(ts).setdefault(spec.vm_id, set()).add(key)
            disk = replace(disk, nbd_socket=sock, export=export)
        disks.append(disk)
    return replace(spec, disks=tuple(disks))


async def release_unused(ts: Any, backend: Backend) -> None:
    """Stop the exports no domain (or saved image) of ``backend`` uses any more."""
    held = _held(ts)
    for vm in [v for v in held if backend.vm_info(v) is None and not backend.vm_has_image(v)]:
        keys = held.pop(vm)
        in_use = set().union(*held.values()) if held else set()
        for key in keys - in_use:
            await ts.storage.detach(key)
