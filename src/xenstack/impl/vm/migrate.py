"""Moving a running VM between the hosts of the pool: VM.pool_migrate.

The backend moves the domain (memory, VCPUs, devices) and gives it a new domid on the target;
the VM keeps its guest metrics. Both hosts' free memory is brought up to date.
"""

from __future__ import annotations

from ...core.context import Context
from ...db.store import Database
from ..host.hypervisor import Hypervisor, backend_errors, hypervisor
from ..host.specs import attach_disks, domain_spec
from ..registry import implements
from . import consoles, xenstore_nodes
from .metrics import record_domain
from .placement import assert_can_boot_here


async def move(ctx: Context, hv: Hypervisor, db: Database, vm: str, host: str) -> None:
    """Migrate the VM's domain to ``host`` (the operation is already marked)."""
    source = db.get("VM", vm)["resident_on"]
    assert_can_boot_here(hv, db, vm, host)
    # the same exports, or for a member the files it exports itself
    spec = await attach_disks(ctx.toolstack, domain_spec(db, vm), host, source)
    with backend_errors():
        info = await hv.backend.vm_migrate(vm, hv.host(db, host), spec)
    xenstore_nodes.destroy(ctx, vm)
    with db.transaction():
        record_domain(db, vm, info, started=False, clock=ctx.toolstack.clock)
        hv.sync_memory(db, source)
        hv.sync_memory(db, host)
    xenstore_nodes.create(ctx, vm, host, info.domid)
    consoles.sync(ctx.toolstack, vm)


@implements("VM.pool_migrate")
async def pool_migrate(ctx: Context, vm: str, host: str, options: dict[str, str]) -> None:
    """Move the domain (``options:force`` relaxes the policy layer's checks of the VM)."""
    await move(ctx, hypervisor(ctx), ctx.db, vm, host)
