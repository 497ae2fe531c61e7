"""Adoption: a restarted toolstack takes back the QEMU domains still running (their run
directories say which), or cleans up after those that are gone."""

from __future__ import annotations

import contextlib
import os
from typing import Protocol

from ..interface import DomainInfo, DomainSpec, XenopsError
from . import process
from .cmdline import RunDir
from .domain import Domain, load
from .qmp import Monitor


class Adopter(Protocol):
    """What adoption needs of :class:`.backend.QemuBackend`."""

    domains: dict[str, Domain]
    root: str
    _next_domid: int

    def grant(self, socket_path: str) -> None: ...

    def _qmp(self, dom: Domain) -> Monitor: ...

    async def _attach(self, dom: Domain) -> None: ...

    async def _destroy(self, dom: Domain) -> None: ...


async def adopt(
    backend: Adopter, host_id: str, spec: DomainSpec, info: DomainInfo
) -> DomainInfo | None:
    """Take back the domain of ``spec`` if its QEMU still runs; else clean up after it."""
    if spec.vm_id in backend.domains:
        return backend.domains[spec.vm_id].info()
    found = _find_run(backend, spec)
    if found is None:
        return None
    if found.pid == 0:
        await backend._destroy(found)
        return None
    backend.domains[spec.vm_id] = found
    backend._next_domid = max(backend._next_domid, found.domid + 1)
    for disk in spec.disks:  # a restarted toolstack made its NBD sockets anew
        backend.grant(disk.nbd_socket)
    try:
        await backend._attach(found)
        status = await backend._qmp(found).execute("query-status")
    except XenopsError:
        await backend._destroy(found)
        return None
    found.state = "running" if status.get("running") else "paused"
    with contextlib.suppress(XenopsError):
        balloon = await backend._qmp(found).execute("query-balloon")
        found.memory_actual = int(balloon["actual"])
    return found.info()


def _find_run(backend: Adopter, spec: DomainSpec) -> Domain | None:
    if not os.path.isdir(backend.root):
        return None
    for name in sorted(os.listdir(backend.root)):
        dom = load(RunDir(os.path.join(backend.root, name)))
        if dom is not None and dom.vm_id == spec.vm_id:
            dom.pid = process.read_pid(dom.run.pidfile, dom.run.path) or 0
            return dom
    return None


def recorded(root: str) -> list[Domain]:
    """Every domain recorded under ``root`` (its QEMU may be gone): what a toolstack with
    no database rows for them (a pool member) adopts from."""
    if not os.path.isdir(root):
        return []
    found = (load(RunDir(os.path.join(root, name))) for name in sorted(os.listdir(root)))
    return [dom for dom in found if dom is not None]
