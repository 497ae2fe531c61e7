"""Making room on a host by ballooning its guests down (XAPI's squeezer, in miniature).

A VM may start (or resume) on a host whose free memory is short of what it needs when the
host's other guests can give the difference back by ballooning down to their dynamic
minimum. :func:`making_room` squeezes just enough guests for the new domain, lets the caller
build it, then lets every squeezed guest grow again within its dynamic range, whether the
build worked or not. What each guest holds afterwards is recorded in its VM_metrics.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from ...db.store import Database
from ..host.hypervisor import Hypervisor, backend_errors
from .metrics import record_domain


async def _squeeze(hv: Hypervisor, db: Database, host: str, needed: int) -> list[str]:
    """Balloon guests down, largest surplus first, until ``needed`` bytes are free."""
    squeezed: list[str] = []
    vms = db.table("VM").rows
    domains = hv.backend.host_domains(hv.host(db, host))
    surplus = {
        d.vm_id: d.memory_actual - int(vms[d.vm_id]["memory_dynamic_min"])
        for d in domains
        if d.vm_id in vms and not vms[d.vm_id]["is_control_domain"]
    }
    for vm_ref in sorted(surplus, key=lambda v: -surplus[v]):
        if hv.memory_free(db, host) >= needed:
            break
        if surplus[vm_ref] <= 0:
            continue
        low = int(vms[vm_ref]["memory_dynamic_min"])
        with backend_errors():
            await hv.backend.vm_set_memory_dynamic_range(vm_ref, low, low)
        squeezed.append(vm_ref)
    return squeezed


async def _release(hv: Hypervisor, db: Database, host: str, squeezed: list[str]) -> None:
    """Let the squeezed guests take back what is free, within their dynamic range."""
    for vm_ref in squeezed:
        if hv.backend.vm_info(vm_ref) is None or not db.exists("VM", vm_ref):
            continue
        vm = db.get("VM", vm_ref)
        with backend_errors():
            info = await hv.backend.vm_set_memory_dynamic_range(
                vm_ref, int(vm["memory_dynamic_min"]), int(vm["memory_dynamic_max"])
            )
        with db.transaction():
            record_domain(db, vm_ref, info, started=False)
    with db.transaction():
        hv.sync_memory(db, host)


@asynccontextmanager
async def making_room(hv: Hypervisor, db: Database, host: str, needed: int) -> AsyncIterator[None]:
    """Free ``needed`` bytes on ``host`` for the body, squeezing guests if need be."""
    squeezed: list[str] = []
    if hv.memory_free(db, host) < needed:
        squeezed = await _squeeze(hv, db, host, needed)
    try:
        yield
    finally:
        if squeezed:
            await _release(hv, db, host, squeezed)
