"""Where a VM may run: the checks of ``assert_can_boot_here`` and the choice of a host.

A host qualifies when it is live and enabled, sees every SR the VM's disks are on (a plugged
PBD), has a PIF on every external network the VM's VIFs use, has enough CPUs and enough memory
for the VM's dynamic minimum plus overhead: free memory plus what ballooning the other guests
down to their dynamic minimum would reclaim (see :mod:`.squeeze`). Among qualifying hosts
``choose_host`` prefers the VM's affinity, then the host with the most free memory.
"""

from __future__ import annotations

from typing import Any

from ...core.context import Context
from ...db.store import Database
from ...errors import ApiError
from ...idl.types import NULL_REF
from ..host.hypervisor import Hypervisor, domain_type, hypervisor


def start_memory(vm: dict[str, Any]) -> int:
    """Bytes a VM needs to start: its dynamic minimum (static maximum for PV-in-PVH)."""
    main = vm["memory_static_max"] if domain_type(vm) == "pv_in_pvh" else vm["memory_dynamic_min"]
    return int(main + vm["memory_overhead"])


def validate_basic_parameters(vm_ref: str, vm: dict[str, Any]) -> None:
    if vm["VCPUs_max"] < 1:
        raise ApiError("INVALID_VALUE", ["VCPUs_max", vm["VCPUs_max"]])
    if vm["VCPUs_at_startup"] < 1:
        raise ApiError("INVALID_VALUE", ["VCPUs-at-startup", vm["VCPUs_at_startup"]])
    if vm["VCPUs_at_startup"] > vm["VCPUs_max"]:
        raise ApiError(
            "VALUE_NOT_SUPPORTED",
            ["VCPUs-at-startup", vm["VCPUs_at_startup"], "value greater than VCPUs-max"],
        )
    if (
        vm["memory_static_min"] > vm["memory_static_max"]
        or vm["memory_dynamic_min"] > vm["memory_dynamic_max"]
    ):
        # xapi: ocaml/xapi/xapi_vm_helpers.ml passes 0
        raise ApiError("MEMORY_CONSTRAINT_VIOLATION", [])
    if vm["HVM_shadow_multiplier"] < 1.0:
        raise ApiError("INVALID_VALUE", ["HVM_shadow_multiplier", vm["HVM_shadow_multiplier"]])


def host_is_live(db: Database, host_ref: str) -> bool:
    metrics = db.table("host_metrics").rows.get(db.get("host", host_ref)["metrics"])
    return bool(metrics and metrics["live"])


def required_srs(db: Database, vm: dict[str, Any]) -> list[str]:
    vbds, vdis = db.table("VBD").rows, db.table("VDI").rows
    needed = [vbds[v]["VDI"] for v in vm["VBDs"] if v in vbds and not vbds[v]["empty"]]
    if vm["power_state"] == "Suspended" and vm["suspend_VDI"] != NULL_REF:
        needed.append(vm["suspend_VDI"])
    return [vdis[v]["SR"] for v in needed if v in vdis]


def srs_on_host(db: Database, host_ref: str) -> set[str]:
    pbds = db.table("PBD").rows
    return {
        pbds[p]["SR"]
        for p in db.get("host", host_ref)["PBDs"]
        if p in pbds and pbds[p]["currently_attached"]
    }


def reclaimable_memory(hv: Hypervisor, db: Database, host_ref: str) -> int:
    """Bytes ballooning every guest on the host down to its dynamic minimum would free."""
    vms = db.table("VM").rows
    total = 0
    for dom in hv.backend.host_domains(hv.host(db, host_ref)):
        vm = vms.get(dom.vm_id)
        if vm is not None and not vm["is_control_domain"]:
            total += max(0, dom.memory_actual - int(vm["memory_dynamic_min"]))
    return total


def memory_available(hv: Hypervisor, db: Database, host_ref: str) -> int:
    """Free memory with every guest squeezed to its dynamic minimum (XAPI's compression)."""
    return hv.memory_free(db, host_ref) + reclaimable_memory(hv, db, host_ref)


def assert_can_see_networks(db: Database, vm_ref: str, vm: dict[str, Any], host_ref: str) -> None:
    vifs, networks, pifs = db.table("VIF").rows, db.table("network").rows, db.table("PIF").rows
    for vif in vm["VIFs"]:
        net = networks.get(vifs[vif]["network"]) if vif in vifs else None
        if net is None or not net["PIFs"]:
            continue  # an internal network: any host will do
        if not any(p in pifs and pifs[p]["host"] == host_ref for p in net["PIFs"]):
            raise ApiError("VM_REQUIRES_NETWORK", [vm_ref, vifs[vif]["network"]])


def assert_can_boot_here(
    hv: Hypervisor, db: Database, vm_ref: str, host_ref: str, *, check_memory: bool = True
) -> None:
    """Raise the first reason the VM cannot run on the host, as XAPI checks them."""
    vm, host = db.get("VM", vm_ref), db.get("host", host_ref)
    validate_basic_parameters(vm_ref, vm)
    if not host_is_live(db, host_ref):
        raise ApiError("HOST_NOT_LIVE", [])
    if vm["is_control_domain"] and vm["affinity"] not in (NULL_REF, host_ref):
        raise ApiError(
            "OPERATION_NOT_ALLOWED",
            ["Cannot boot a control domain on a host different from its affinity"],
        )
    local = vm["power_state"] == "Running" and vm["resident_on"] == host_ref
    if not vm["is_control_domain"] and not local and not host["enabled"]:
        raise ApiError("HOST_DISABLED", [host_ref])
    visible = srs_on_host(db, host_ref)
    for sr in required_srs(db, vm):
        if sr not in visible:
            raise ApiError("VM_REQUIRES_SR", [vm_ref, sr])
    assert_can_see_networks(db, vm_ref, vm, host_ref)
    if check_memory and not local:
        needed, available = start_memory(vm), memory_available(hv, db, host_ref)
        if available < needed:
            raise ApiError("HOST_NOT_ENOUGH_FREE_MEMORY", [needed, available])
    pcpus = int(host["cpu_info"].get("cpu_count", "0") or "0")
    unrestricted = vm["platform"].get("vcpu-unrestricted", "").lower() in ("1", "true")
    if pcpus and vm["VCPUs_max"] > pcpus and not unrestricted:
        raise ApiError("HOST_NOT_ENOUGH_PCPUS", [vm["VCPUs_max"], pcpus])


def can_boot_here(
    hv: Hypervisor, db: Database, vm_ref: str, host_ref: str, *, check_memory: bool = True
) -> bool:
    try:
        assert_can_boot_here(hv, db, vm_ref, host_ref, check_memory=check_memory)
    except ApiError:
        return False
    return True


def possible_hosts(hv: Hypervisor, db: Database, vm_ref: str) -> list[str]:
    return [h for h in db.refs("host") if can_boot_here(hv, db, vm_ref, h)]


def choose_host(hv: Hypervisor, db: Database, vm_ref: str) -> str:
    """The host a VM.start without a host goes to; NO_HOSTS_AVAILABLE if none qualifies.

    As in XAPI, when no host has the memory, a host that qualifies otherwise is returned, so
    that starting there fails with HOST_NOT_ENOUGH_FREE_MEMORY.
    """
    affinity = db.get("VM", vm_ref)["affinity"]
    if db.exists("host", affinity) and can_boot_here(hv, db, vm_ref, affinity):
        return str(affinity)
    hosts = sorted(db.refs("host"), key=lambda h: -hv.memory_free(db, h))
    for host in hosts:
        if can_boot_here(hv, db, vm_ref, host):
            return host
    for host in hosts:
        if can_boot_here(hv, db, vm_ref, host, check_memory=False):
            return host
    raise ApiError("NO_HOSTS_AVAILABLE", [])


def start_host(ctx: Context, vm_ref: str) -> str:
    """Where a VM.start or VM.resume without a host is placed (the policy layer asks)."""
    return choose_host(hypervisor(ctx), ctx.db, vm_ref)
