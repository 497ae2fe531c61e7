"""What the metrics collector (``xenstack.rrd``) samples, read from the database and backend,
and the ``*_metrics`` records kept current from what it measured.

:class:`DbFeed` lists the hosts (CPUs, memory as the hypervisor accounts it, PIF devices),
the running and paused VMs with their backend counters (``Backend.vm_stats``) and device
names, and the SRs' sizes. :func:`record_rates` writes a tick's rates into ``VM_metrics``
(``VCPUs_utilisation``, ``memory_actual``), ``host_cpu.utilisation``, ``host_metrics``,
``VIF_metrics``, ``VBD_metrics`` and ``PIF_metrics`` (``io_read_kbs``/``io_write_kbs``) in
one transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ...db.store import Database
from ...rrd.collector import HostView, Rates, SrView, VmView
from ..devices.devices import disk_name, disk_number

if TYPE_CHECKING:
    from .hypervisor import Hypervisor

LIVE = ("Running", "Paused")
KIB = 1024.0


class DbFeed:
    """The collector's view of one toolstack."""

    def __init__(
        self, db: Database, hypervisor: Hypervisor, this_host: Callable[[], str], local: bool
    ) -> None:
        self.db = db
        self.hypervisor = hypervisor
        self.this_host = this_host  # the ref of the host this toolstack runs on
        self.local = local  # this host's figures come from /proc (a real backend)

    async def refresh(self) -> None:
        await self.hypervisor.backend.refresh_stats()

    def hosts(self) -> list[HostView]:
        db = self.db
        views = []
        pifs: dict[str, list[str]] = {}
        for pif in db.table("PIF").rows.values():
            if pif["physical"]:
                pifs.setdefault(pif["host"], []).append(pif["device"])
        for ref, host in db.table("host").rows.items():
            metrics = db.table("host_metrics").rows.get(host["metrics"])
            total = int(metrics["memory_total"]) if metrics else 0
            try:
                free = self.hypervisor.memory_free(db, ref)
            except Exception:  # a host the backend cannot account for: what the row says
                free = int(metrics["memory_free"]) if metrics else 0
            cpus = int(host["cpu_info"].get("cpu_count", "1") or "1")
            local = self.local and ref == self.this_host()
            views.append(HostView(host["uuid"], cpus, total, free, tuple(pifs.get(ref, ())), local))
        return views

    def vms(self) -> list[VmView]:
        db = self.db
        hosts = db.table("host").rows
        backend = self.hypervisor.backend
        views = []
        for ref, vm in db.table("VM").rows.items():
            if vm["power_state"] not in LIVE or vm["is_control_domain"]:
                continue
            host = hosts.get(vm["resident_on"])
            stats = backend.vm_stats(ref)
            if host is None or stats is None:
                continue
            disks, disk_srs = self._disks(vm)
            vifs = {
                r["device"]: r["device"] for r in map(db.table("VIF").rows.get, vm["VIFs"]) if r
            }
            views.append(VmView(vm["uuid"], host["uuid"], stats, disks, vifs, disk_srs))
        return views

    def _disks(self, vm: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
        db = self.db
        names: dict[str, str] = {}
        srs: dict[str, str] = {}
        for vbd in map(db.table("VBD").rows.get, vm["VBDs"]):
            if vbd is None:
                continue
            number = disk_number(vbd["userdevice"])
            name = vbd["device"] or (disk_name(number) if number is not None else vbd["userdevice"])
            names[vbd["userdevice"]] = name
            vdi = db.table("VDI").rows.get(vbd["VDI"])
            sr = db.table("SR").rows.get(vdi["SR"]) if vdi else None
            if sr is not None:
                srs[name] = sr["uuid"]
        return names, srs

    def srs(self) -> list[SrView]:
        return [
            SrView(
                sr["uuid"],
                sr["physical_size"],
                sr["physical_utilisation"],
                sr["virtual_allocation"],
            )
            for sr in self.db.table("SR").rows.values()
        ]


def record_rates(db: Database, now: Any, rates: Rates, vifs: bool = True) -> None:
    """Write a tick's rates into the metrics records (``now``: the XenAPI date to stamp);
    ``vifs`` False leaves VIF_metrics to a real switch, whose port counters write them."""
    if not rates.vms and not rates.hosts:
        return
    by_uuid = {
        vm["uuid"]: (ref, vm) for ref, vm in db.table("VM").rows.items() if vm["uuid"] in rates.vms
    }
    with db.transaction():
        for uuid, vm_rates in rates.vms.items():
            if uuid in by_uuid and vm_rates:
                _record_vm(db, now, by_uuid[uuid][1], vm_rates, vifs)
        hosts = {h["uuid"]: (ref, h) for ref, h in db.table("host").rows.items()}
        for uuid, host_rates in rates.hosts.items():
            if uuid in hosts and host_rates:
                _record_host(db, now, *hosts[uuid], host_rates)


def _record_vm(
    db: Database, now: Any, vm: dict[str, Any], rates: dict[str, float], vifs: bool = True
) -> None:
    metrics = vm["metrics"]
    if db.exists("VM_metrics", metrics):
        cpus = {str(i): round(rates.get(f"cpu{i}", 0.0), 4) for i in range(vm_cpus(rates))}
        db.update("VM_metrics", metrics, VCPUs_utilisation=cpus, last_updated=now)
    for vif in map(db.table("VIF").rows.get, vm["VIFs"] if vifs else ()):
        if vif is not None and db.exists("VIF_metrics", vif["metrics"]):
            rx, tx = (
                rates.get(f"vif_{vif['device']}_rx", 0.0),
                rates.get(f"vif_{vif['device']}_tx", 0.0),
            )
            db.update(
                "VIF_metrics",
                vif["metrics"],
                io_read_kbs=rx / KIB,
                io_write_kbs=tx / KIB,
                last_updated=now,
            )
    for vbd in map(db.table("VBD").rows.get, vm["VBDs"]):
        if vbd is not None and db.exists("VBD_metrics", vbd["metrics"]):
            name = vbd["device"] or vbd["userdevice"]
            read, write = rates.get(f"vbd_{name}_read", 0.0), rates.get(f"vbd_{name}_write", 0.0)
            db.update(
                "VBD_metrics",
                vbd["metrics"],
                io_read_kbs=read / KIB,
                io_write_kbs=write / KIB,
                last_updated=now,
            )


def vm_cpus(rates: dict[str, float]) -> int:
    count = 0
    while f"cpu{count}" in rates:
        count += 1
    return count


def _record_host(
    db: Database, now: Any, ref: str, host: dict[str, Any], rates: dict[str, float]
) -> None:
    if db.exists("host_metrics", host["metrics"]):
        db.set("host_metrics", host["metrics"], "last_updated", now)
    for cpu_ref in host["host_CPUs"]:
        cpu = db.table("host_cpu").rows.get(cpu_ref)
        if cpu is not None and f"cpu{cpu['number']}" in rates:
            db.set("host_cpu", cpu_ref, "utilisation", round(rates[f"cpu{cpu['number']}"], 4))
    for pif_ref in host["PIFs"]:
        pif = db.table("PIF").rows.get(pif_ref)
        if pif is None or not db.exists("PIF_metrics", pif["metrics"]):
            continue
        rx, tx = (
            rates.get(f"pif_{pif['device']}_rx", 0.0),
            rates.get(f"pif_{pif['device']}_tx", 0.0),
        )
        db.update(
            "PIF_metrics",
            pif["metrics"],
            io_read_kbs=rx / KIB,
            io_write_kbs=tx / KIB,
            last_updated=now,
        )
