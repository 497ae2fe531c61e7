"""What a VM row says its domain is: the :class:`DomainSpec` a backend builds from.

:func:`domain_spec` reads the database only (every disk, NIC, the boot method, memory and
vCPUs, platform flags); :func:`attach_disks` then gives each disk what the hypervisor opens:
the VDI's NBD export (started here, :meth:`StorageService.attach`) or, for an ISO, its file.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ...db.store import Database
from ...idl.types import NULL_REF
from ...storage.sr import IsoSr
from ...xenops.interface import BootSpec, DiskSpec, DomainSpec, NicSpec
from ..storage.sr_backend import driver_of, drivers


def domain_type(vm: dict[str, Any]) -> str:
    """The VM's domain type, derived from its boot policy when unspecified."""
    if vm["domain_type"] != "unspecified":
        return str(vm["domain_type"])
    return "hvm" if vm["HVM_boot_policy"] else "pv"


def os_hint(vm: dict[str, Any]) -> str:
    """What the VM's template says its guest runs ("debian-12", "windows"...)."""
    other, platform = vm["other_config"], vm["platform"]
    return str(
        vm["reference_label"]
        or other.get("os-distro")
        or other.get("install_distro")
        or other.get("install-distro")
        or ("windows" if platform.get("viridian") == "true" else "linux")
    )


def disk_spec(db: Database, vbd: dict[str, Any]) -> DiskSpec:
    vdi = vbd["VDI"]
    empty = bool(vbd["empty"]) or vdi == NULL_REF or not db.exists("VDI", vdi)
    return DiskSpec(
        device=str(vbd["userdevice"]),
        vdi_id="" if empty else str(vdi),
        kind="CD" if vbd["type"] == "CD" else "Disk",
        mode="RO" if vbd["mode"] == "RO" or vbd["type"] == "CD" else "RW",
        empty=empty,
        bootable=bool(vbd["bootable"]),
    )


def nic_spec(db: Database, ref: str, vif: dict[str, Any]) -> NicSpec:
    network: dict[str, Any] = db.table("network").rows.get(vif["network"]) or {}
    return NicSpec(
        device=str(vif["device"]),
        vif_id=ref,
        mac=str(vif["MAC"]),
        network_id=str(vif["network"]),
        bridge=str(network.get("bridge", "")),
        mtu=int(vif["MTU"] or network.get("MTU") or 1500),
        locking_mode=str(vif["locking_mode"]),
        other_config=tuple(sorted(vif["other_config"].items())),
    )


def boot_spec(vm: dict[str, Any]) -> BootSpec:
    if vm["PV_kernel"]:
        return BootSpec(
            kernel=str(vm["PV_kernel"]),
            ramdisk=str(vm["PV_ramdisk"]),
            kernel_args=" ".join(a for a in (vm["PV_args"], vm["PV_legacy_args"]) if a),
        )
    params = vm["HVM_boot_params"]
    return BootSpec(firmware=params.get("firmware", "bios"), order=params.get("order", "cd"))


def domain_spec(db: Database, vm_ref: str) -> DomainSpec:
    vm = db.get("VM", vm_ref)
    vbds, vifs = db.table("VBD").rows, db.table("VIF").rows
    vbd_rows = sorted((vbds[v] for v in vm["VBDs"] if v in vbds), key=_userdevice)
    vif_refs = sorted((v for v in vm["VIFs"] if v in vifs), key=lambda v: _num(vifs[v]["device"]))
    return DomainSpec(
        vm_id=vm_ref,
        name=vm["name_label"],
        domain_type=domain_type(vm),
        memory_static_max=vm["memory_static_max"],
        memory_dynamic_min=vm["memory_dynamic_min"],
        memory_dynamic_max=vm["memory_dynamic_max"],
        memory_overhead=vm["memory_overhead"],
        vcpus_max=vm["VCPUs_max"],
        vcpus=vm["VCPUs_at_startup"],
        vbds=tuple(v["userdevice"] for v in vbd_rows),
        vifs=tuple(vifs[v]["device"] for v in vif_refs),
        platform=tuple(sorted(vm["platform"].items())),
        vif_networks=tuple((vifs[v]["device"], vifs[v]["network"]) for v in vif_refs),
        os_hint=os_hint(vm),
        disks=tuple(disk_spec(db, v) for v in vbd_rows),
        nics=tuple(nic_spec(db, v, vifs[v]) for v in vif_refs),
        boot=boot_spec(vm),
        uuid=str(vm["uuid"]),
        xenstore_data=tuple(sorted(vm["xenstore_data"].items())),
    )


def _num(text: str) -> int:
    return int(text) if str(text).isdigit() else 1 << 20


def _userdevice(vbd: dict[str, Any]) -> int:
    return _num(vbd["userdevice"])


async def attach_disk(toolstack: Any, disk: DiskSpec, member: bool = False) -> DiskSpec:
    """``disk`` with what opens it: its NBD export (started now) or its ISO file; for a
    domain a pool ``member`` runs, the VHD file the member exports itself."""
    if disk.empty or not disk.vdi_id:
        return disk
    db, storage = toolstack.db, toolstack.storage
    row = db.get("VDI", disk.vdi_id)
    drv = driver_of(drivers(toolstack), db, db.get("SR", row["SR"]))
    if isinstance(drv, IsoSr):
        return replace(disk, path=drv.path(row["location"]))
    if not storage.can_attach(disk.vdi_id):
        return disk  # a sizes-only SR: nothing to open (the simulator needs nothing)
    if member:  # the member's NBD server opens the chain (the SR is shared: VM_REQUIRES_SR)
        return replace(disk, vhd=drv.path(row["location"]))
    sock, export = await storage.attach(disk.vdi_id, disk.mode == "RW")
    return replace(disk, nbd_socket=sock, export=export)


def run_by_member(toolstack: Any, host: str | None) -> bool:
    """Whether a pool member's own toolstack runs ``host``'s domains (not this one)."""
    is_remote = getattr(toolstack.hypervisor.backend, "is_remote", None)
    return bool(host and is_remote is not None and is_remote(host))


async def attach_disks(
    toolstack: Any, spec: DomainSpec, host: str | None = None, source: str | None = None
) -> DomainSpec:
    """``spec`` with every disk given its export or file (see :func:`attach_disk`) for the
    domain on ``host`` (by default: this toolstack's), for a backend that opens disks;
    ``spec`` itself for one that does not. A domain migrating from a member's ``source``
    has its disks named by file too (this host's exports take the chain over)."""
    if not opens_disks(toolstack):
        return spec
    member = run_by_member(toolstack, host) or run_by_member(toolstack, source)
    disks = tuple([await attach_disk(toolstack, d, member) for d in spec.disks])
    return replace(spec, disks=disks)


def opens_disks(toolstack: Any) -> bool:
    return bool(toolstack.hypervisor.backend.capabilities.opens_disks)


async def detach_disks(toolstack: Any, vm_ref: str) -> None:
    """Stop the exports of the VM's disks that no other live VM uses (after its domain)."""
    if not opens_disks(toolstack):
        return
    db = toolstack.db
    vbds = db.table("VBD").rows
    in_use: set[str] = set()
    for ref, vm in db.table("VM").rows.items():
        if ref != vm_ref and vm["power_state"] in ("Running", "Paused"):
            in_use.update(vbds[v]["VDI"] for v in vm["VBDs"] if v in vbds)
    for v in db.get("VM", vm_ref)["VBDs"] if db.exists("VM", vm_ref) else []:
        vdi = vbds[v]["VDI"] if v in vbds else NULL_REF
        if vdi != NULL_REF and vdi not in in_use and db.exists("VDI", vdi):
            await toolstack.storage.detach(db.get("VDI", vdi)["uuid"])


async def image_disk(
    toolstack: Any, vdi: str, writable: bool, host: str | None = None
) -> DiskSpec | None:
    """A suspend VDI as the backend reads or writes it (None: the backend keeps images);
    for a domain a pool member runs on ``host``, its file (the member exports it)."""
    if not opens_disks(toolstack) or not toolstack.storage.can_attach(vdi):
        return None
    if run_by_member(toolstack, host):
        disk = DiskSpec("suspend", vdi, "Disk", "RW" if writable else "RO")
        return await attach_disk(toolstack, disk, member=True)
    sock, export = await toolstack.storage.attach(vdi, writable)
    return DiskSpec("suspend", vdi, "Disk", "RW" if writable else "RO", False, sock, export)
