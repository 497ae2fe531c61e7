"""Stateless helpers over a :class:`~xenstack_nova.session.XenAPISession`: finding an
instance's VM, building VMs, disks and their VBDs, power transitions that nova expects to be
idempotent, waiting for the guest agent."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import XenAPI
from nova import exception
from nova.compute import power_state

from .session import XenAPISession, failure_code

MiB = 1 << 20
GiB = 1 << 30

# nova's power states of XenAPI's VM.power_state
POWER_STATES = {
    "Running": power_state.RUNNING,
    "Halted": power_state.SHUTDOWN,
    "Paused": power_state.PAUSED,
    "Suspended": power_state.SUSPENDED,
    "Crashed": power_state.CRASHED,
}

# other_config keys the driver tags its objects with
NOVA_UUID = "nova_uuid"
NOVA_DISK = "nova_disk_type"  # root, ephemeral, swap, config_drive, rescue
NOVA_VOLUME = "nova_volume_id"  # VDIs that are volumes: never destroyed with the VM
RESCUE_SUFFIX = "-rescue"
ORIG_SUFFIX = "-orig"


def lookup(session: XenAPISession, name_label: str) -> str | None:
    """The VM (not template, not snapshot) named ``name_label``, or None."""
    for ref in session.call("VM.get_by_name_label", name_label):
        rec = session.call("VM.get_record", ref)
        if not rec["is_a_template"] and not rec["is_a_snapshot"]:
            return str(ref)
    return None


def instance_vm(session: XenAPISession, instance: Any, suffix: str = "") -> str:
    """The VM of ``instance``; InstanceNotFound if there is none."""
    ref = lookup(session, instance.name + suffix)
    if ref is None:
        raise exception.InstanceNotFound(instance_id=instance.uuid)
    return ref


def power(session: XenAPISession, vm: str) -> str:
    return str(session.call("VM.get_power_state", vm))


def wait_power(session: XenAPISession, vm: str, states: tuple[str, ...], timeout: float) -> str:
    """Wait (polling) until the VM is in one of ``states``; return the state reached."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        state = power(session, vm)
        if state in states or time.monotonic() >= deadline:
            return state
        time.sleep(delay)
        delay = min(delay * 2, 1.0)


def make_vm(session: XenAPISession, instance: Any, name_label: str, flavor: Any) -> str:
    """A halted HVM VM for ``instance`` with the flavor's memory and vCPUs."""
    mem = str(int(flavor.memory_mb) * MiB)
    vcpus = str(int(flavor.vcpus))
    record = {
        "name_label": name_label,
        "name_description": f"nova instance {instance.uuid}",
        "user_version": "0",
        "is_a_template": False,
        "memory_static_max": mem,
        "memory_dynamic_max": mem,
        "memory_dynamic_min": mem,
        "memory_static_min": mem,
        "VCPUs_max": vcpus,
        "VCPUs_at_startup": vcpus,
        "VCPUs_params": {},
        "actions_after_shutdown": "destroy",
        "actions_after_reboot": "restart",
        "actions_after_crash": "destroy",
        "PV_bootloader": "",
        "PV_kernel": "",
        "PV_ramdisk": "",
        "PV_args": "",
        "PV_bootloader_args": "",
        "PV_legacy_args": "",
        "HVM_boot_policy": "BIOS order",
        "HVM_boot_params": {"order": "dc"},
        "platform": {"acpi": "1", "apic": "true", "pae": "true", "viridian": "false"},
        "affinity": "",
        "recommendations": "",
        "other_config": {NOVA_UUID: instance.uuid},
    }
    return str(session.call("VM.create", record))


def make_vdi(
    session: XenAPISession,
    sr: str,
    name: str,
    size: int,
    disk_type: str,
    other: dict[str, str] | None = None,
) -> str:
    """A blank VDI of ``size`` bytes in ``sr``."""
    record = {
        "name_label": name,
        "name_description": disk_type,
        "SR": sr,
        "virtual_size": str(size),
        "type": "user",
        "sharable": False,
        "read_only": False,
        "other_config": {NOVA_DISK: disk_type, **(other or {})},
        "sm_config": {},
        "xenstore_data": {},
        "tags": [],
    }
    return str(session.call("VDI.create", record))


def make_vbd(
    session: XenAPISession,
    vm: str,
    vdi: str | None,
    userdevice: int | str,
    bootable: bool = False,
    vbd_type: str = "Disk",
    read_only: bool = False,
) -> str:
    record = {
        "VM": vm,
        "VDI": vdi or "OpaqueRef:NULL",
        "userdevice": str(userdevice),
        "bootable": bootable,
        "mode": "RO" if read_only else "RW",
        "type": vbd_type,
        "empty": vdi is None,
        "unpluggable": True,
        "other_config": {},
        "qos_algorithm_type": "",
        "qos_algorithm_params": {},
    }
    return str(session.call("VBD.create", record))


def free_userdevice(session: XenAPISession, vm: str) -> str:
    allowed = session.call("VM.get_allowed_VBD_devices", vm)
    if not allowed:
        raise exception.TooManyDiskDevices(maximum=16)
    return str(sorted(allowed, key=int)[0])


def vm_disks(session: XenAPISession, vm: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(VBD, VDI, VDI record) of each disk of the VM, by userdevice."""
    out = []
    for vbd in session.call("VM.get_VBDs", vm):
        rec = session.call("VBD.get_record", vbd)
        if rec["type"] != "Disk" or rec["VDI"] == "OpaqueRef:NULL":
            continue
        with ignore("HANDLE_INVALID"):
            out.append((vbd, rec["VDI"], session.call("VDI.get_record", rec["VDI"])))
    out.sort(key=lambda t: int(session.call("VBD.get_userdevice", t[0]) or 0))
    return out


def root_vdi(session: XenAPISession, vm: str) -> str:
    for vbd in session.call("VM.get_VBDs", vm):
        rec = session.call("VBD.get_record", vbd)
        if rec["userdevice"] == "0" and rec["VDI"] != "OpaqueRef:NULL":
            return str(rec["VDI"])
    raise exception.NovaException(f"VM {vm} has no root disk")


class ignore:
    """``with ignore("VM_BAD_POWER_STATE"):`` swallows XenAPI failures with those codes."""

    def __init__(self, *codes: str) -> None:
        self.codes = codes

    def __enter__(self) -> None:
        return None

    def __exit__(self, etype: Any, exc: BaseException | None, tb: Any) -> bool:
        return exc is not None and failure_code(exc) in self.codes


def hard_shutdown(session: XenAPISession, vm: str) -> None:
    state = power(session, vm)
    if state == "Halted":
        return
    if state == "Suspended":
        with ignore("VM_BAD_POWER_STATE"):
            session.call("VM.hard_shutdown", vm)
        return
    with ignore("VM_BAD_POWER_STATE"):
        session.call("VM.hard_shutdown", vm)


def clean_shutdown(session: XenAPISession, vm: str, timeout: float, interval: float) -> bool:
    """Ask the guest to shut down, again every ``interval`` s, for up to ``timeout`` s; True
    once it is halted."""
    deadline = time.monotonic() + timeout
    while True:
        if power(session, vm) == "Halted":
            return True
        try:
            session.call("VM.clean_shutdown", vm)
            return True
        except XenAPI.Failure as exc:
            if failure_code(exc) not in (
                "VM_LACKS_FEATURE",
                "OTHER_OPERATION_IN_PROGRESS",
                "VM_BAD_POWER_STATE",
            ):
                raise
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(max(interval, 0.1), left))


def start(session: XenAPISession, vm: str, host: str, paused: bool = False) -> None:
    state = power(session, vm)
    if state == "Running":
        return
    if state == "Paused":
        session.call("VM.unpause", vm)
        return
    if state == "Suspended":
        session.call("VM.resume_on", vm, host, False, False)
        return
    session.call("VM.start_on", vm, host, paused, False)


def wait_agent(session: XenAPISession, vm: str, timeout: float) -> dict[str, Any] | None:
    """The VM's guest metrics once its agent has reported (PV drivers up), or None."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        ref = session.call("VM.get_guest_metrics", vm)
        if ref != "OpaqueRef:NULL":
            with ignore("HANDLE_INVALID"):
                rec: dict[str, Any] = session.call("VM_guest_metrics.get_record", ref)
                if rec.get("PV_drivers_version"):
                    return rec
        if time.monotonic() >= deadline:
            return None
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


def destroy_vdis(session: XenAPISession, vdis: list[str]) -> None:
    for vdi in vdis:
        with ignore("HANDLE_INVALID"):
            session.call("VDI.destroy", vdi)


def destroy_vm(session: XenAPISession, vm: str, destroy_disks: bool) -> None:
    """Halt and destroy ``vm`` and its snapshots; with ``destroy_disks`` its VDIs too,
    except volumes and disks another VM also uses (the root a rescue VM borrows)."""
    hard_shutdown(session, vm)
    vdis = []
    if destroy_disks:
        mine = set(session.call("VM.get_VBDs", vm))
        for _vbd, vdi, rec in vm_disks(session, vm):
            if NOVA_VOLUME in rec["other_config"]:
                continue
            if not set(rec["VBDs"]) <= mine:  # also another VM's disk (a rescue VM's)
                continue
            vdis.append(vdi)
    for snap in session.call("VM.get_snapshots", vm):
        with ignore("HANDLE_INVALID"):
            snap_vdis = [vdi for _vbd, vdi, _r in vm_disks(session, snap)]
            session.call("VM.destroy", snap)
            destroy_vdis(session, snap_vdis)
    session.call("VM.destroy", vm)
    destroy_vdis(session, vdis)


def retry(fn: Callable[[], Any], codes: tuple[str, ...], timeout: float) -> Any:
    """Call ``fn`` until it stops failing with one of ``codes`` or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        try:
            return fn()
        except XenAPI.Failure as exc:
            if failure_code(exc) not in codes or time.monotonic() >= deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 1.0)
