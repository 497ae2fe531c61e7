"""The toolstack's side of the hypervisor interface: one backend per toolstack.

The backend holds the domains of every host in the pool; the composition root
(``xenstack.toolstack``) chooses it and makes the toolstack's :class:`Hypervisor` around it
(``hypervisor(ctx)`` finds it). The Hypervisor tells the backend about hosts as they appear in
the database, adopts the domains the database says are running (a toolstack restart does not
kill guests), builds :class:`DomainSpec` from VM rows, and turns backend failures into
XenAPI errors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

from ...core.context import Context
from ...db.store import Database
from ...errors import ApiError
from ...idl.types import NULL_REF
from ...xenops.interface import (
    Backend,
    BootFailed,
    DomainInfo,
    HostSpec,
    MissingPvDrivers,
    OutOfMemory,
    Unimplemented,
    XenopsError,
)
from ...xenops.simulator import SimulatorBackend
from .specs import domain_spec, domain_type, os_hint

__all__ = ["Hypervisor", "backend_errors", "domain_spec", "domain_type", "hypervisor", "os_hint"]

if TYPE_CHECKING:
    from ...core.context import Services

LIVE_STATES = ("Running", "Paused")


class Hypervisor:
    """The backend of one toolstack, and what it has been told of the pool's hosts."""

    def __init__(self, toolstack: Services, backend: Backend, adopt: bool = True) -> None:
        self.toolstack = toolstack
        self.backend = backend
        self.known_hosts: set[str] = set()
        self.adopted: Callable[[DomainInfo], object] | None = None  # told of each adopted
        if adopt:  # a pool's master on etcd adopts once elected (see impl.pool.election)
            self.adopt()

    def adopt(self, only: str | None = None) -> None:
        """Re-adopt the domains the database says run here (after a toolstack restart);
        ``only`` those of that host (a pool member that serves the pool's database)."""
        self._adopt(self.toolstack.db, only)

    @property
    def simulator(self) -> SimulatorBackend | None:
        backend = self.backend
        while not isinstance(backend, SimulatorBackend) and hasattr(backend, "local"):
            backend = backend.local  # a pool's backend, a journal: the backend they wrap
        return backend if isinstance(backend, SimulatorBackend) else None

    def host(self, db: Database, host_ref: str) -> str:
        """Make sure the backend knows the host; return its id (the host ref)."""
        if host_ref not in self.known_hosts:
            host = db.get("host", host_ref)
            metrics = db.table("host_metrics").rows.get(host["metrics"])
            total = metrics["memory_total"] if metrics else 0
            dom0 = db.table("VM").rows.get(host["control_domain"])
            reserved = host["memory_overhead"] + (dom0["memory_static_max"] if dom0 else 0)
            cpus = int(host["cpu_info"].get("cpu_count", "1") or "1")
            self.backend.host_add(HostSpec(host_ref, total, reserved, cpus))
            self.known_hosts.add(host_ref)
        return host_ref

    def memory_free(self, db: Database, host_ref: str) -> int:
        return self.backend.host_memory_free(self.host(db, host_ref))

    def sync_memory(self, db: Database, host_ref: str) -> None:
        """Copy the host's free memory into its host_metrics (inside a transaction)."""
        if host_ref == NULL_REF or not db.exists("host", host_ref):
            return
        metrics = db.get("host", host_ref)["metrics"]
        if db.exists("host_metrics", metrics):
            db.set("host_metrics", metrics, "memory_free", self.memory_free(db, host_ref))

    def _adopt(self, db: Database, only: str | None = None) -> None:
        sim = self.simulator
        if sim is None:
            return
        elsewhere = getattr(self.backend, "is_remote", None)  # a member's own toolstack's
        for ref, vm in db.table("VM").rows.items():
            if vm["is_control_domain"] or (elsewhere and elsewhere(vm["resident_on"])):
                continue
            if only is not None and vm["resident_on"] != only:
                continue
            if vm["power_state"] in LIVE_STATES and db.exists("host", vm["resident_on"]):
                self.host(db, vm["resident_on"])
                info = info_from_row(db, ref, vm)
                sim.restore(info)
                if self.adopted is not None:
                    self.adopted(info)
            elif vm["power_state"] == "Suspended":
                sim.restore_image(info_from_row(db, ref, vm))


def hypervisor(ctx: Context | Services) -> Hypervisor:
    """The toolstack's hypervisor (made by the composition root)."""
    return cast(Hypervisor, (ctx.toolstack if isinstance(ctx, Context) else ctx).hypervisor)


@contextmanager
def backend_errors() -> Iterator[None]:
    """Turn backend failures into the XenAPI errors XAPI gives for them."""
    try:
        yield
    except OutOfMemory as exc:
        raise ApiError("HOST_NOT_ENOUGH_FREE_MEMORY", [exc.needed, exc.available]) from None
    except BootFailed as exc:
        raise ApiError("BOOTLOADER_FAILED", [exc.vm_id, exc.message]) from None
    except MissingPvDrivers as exc:
        raise ApiError("VM_MISSING_PV_DRIVERS", [str(exc)]) from None
    except Unimplemented as exc:
        raise ApiError("NOT_IMPLEMENTED", [exc.operation]) from None
    except XenopsError as exc:
        raise ApiError("INTERNAL_ERROR", [f"xenops: {type(exc).__name__}: {exc}"]) from None


def info_from_row(db: Database, vm_ref: str, vm: dict[str, Any]) -> DomainInfo:
    metrics: dict[str, Any] = db.table("VM_metrics").rows.get(vm["metrics"]) or {}
    spec = domain_spec(db, vm_ref)
    return DomainInfo(
        vm_id=vm_ref,
        host_id=vm["resident_on"],
        domid=max(vm["domid"], 1),
        state="paused" if vm["power_state"] == "Paused" else "running",
        domain_type=spec.domain_type,
        memory_actual=metrics.get("memory_actual") or vm["memory_dynamic_max"],
        memory_overhead=vm["memory_overhead"],
        vcpus=metrics.get("VCPUs_number") or vm["VCPUs_at_startup"],
        start_time=0.0,
        vbds=spec.vbds,
        vifs=spec.vifs,
        platform=dict(vm["platform"]),
        vif_networks=spec.vif_networks,
        os_hint=spec.os_hint,
    )
