"""A simulated guest agent: some time after a VM boots, its guest metrics appear.

The delay is ``Hypervisor.guest_agent_delay`` (env ``XENSTACK_GUEST_AGENT_DELAY``, default one
second). The agent reports the OS (from the VM's template hints), PV drivers that are up to
date, the features that let XAPI ask the guest to shut down, reboot and suspend, and one IPv4
address per VIF: ``10.<network index>.<hi>.<lo>``, where the network index is the network's
position among networks and ``hi.lo`` the VIF's position on its network (plus ten).
"""

from __future__ import annotations

import asyncio
from typing import Any

from ...core.ids import new_ref, new_uuid, now
from ...db.store import Database
from ..host.hypervisor import Hypervisor

PV_DRIVERS_VERSION = {"major": "9", "minor": "4", "micro": "0", "build": "100"}
FEATURES = {
    "feature-shutdown": "1",
    "feature-poweroff": "1",
    "feature-reboot": "1",
    "feature-suspend": "1",
    "feature-vcpu-hotplug": "1",
    "feature-balloon": "1",
    "has-vendor-device": "0",
    "platform-feature-multiprocessor-suspend": "1",
}


def schedule(hv: Hypervisor, vm_ref: str, domid: int) -> None:
    """Report guest metrics for the VM's domain ``domid`` after the configured delay."""
    cancel(hv, vm_ref)
    loop = asyncio.get_running_loop()
    hv.agent_timers[vm_ref] = loop.call_later(
        max(0.0, hv.guest_agent_delay), _report, hv, vm_ref, domid
    )


def cancel(hv: Hypervisor, vm_ref: str) -> None:
    timer = hv.agent_timers.pop(vm_ref, None)
    if timer is not None:
        timer.cancel()


def _report(hv: Hypervisor, vm_ref: str, domid: int) -> None:
    hv.agent_timers.pop(vm_ref, None)
    db = hv.toolstack.db
    vm = db.table("VM").rows.get(vm_ref)
    if vm is None or vm["domid"] != domid or vm["power_state"] not in ("Running", "Paused"):
        return  # the domain this agent ran in is gone
    with db.transaction():
        write_guest_metrics(db, vm_ref)


def write_guest_metrics(db: Database, vm_ref: str) -> str:
    """Create or refresh the VM's VM_guest_metrics; return its ref."""
    vm = db.get("VM", vm_ref)
    record: dict[str, Any] = {
        "os_version": os_version(vm),
        "PV_drivers_version": dict(PV_DRIVERS_VERSION),
        "PV_drivers_up_to_date": True,
        "PV_drivers_detected": True,
        "memory": {},
        "disks": {},
        "networks": networks(db, vm),
        "other": dict(FEATURES),
        "last_updated": now(),
        "live": True,
        "can_use_hotplug_vbd": "yes",
        "can_use_hotplug_vif": "yes",
    }
    ref = vm["guest_metrics"]
    if db.exists("VM_guest_metrics", ref):
        db.update("VM_guest_metrics", ref, **record)
        return str(ref)
    ref = new_ref()
    db.create("VM_guest_metrics", ref, {"uuid": new_uuid(), **record})
    db.set("VM", vm_ref, "guest_metrics", ref)
    return str(ref)


def os_version(vm: dict[str, Any]) -> dict[str, str]:
    """What the guest says it runs, from the hints its template left."""
    other, platform = vm["other_config"], vm["platform"]
    hint = (
        vm["reference_label"]
        or other.get("os-distro")
        or other.get("install_distro")
        or other.get("install-distro")
        or ("windows" if platform.get("viridian") == "true" else "linux")
    ).lower()
    if "win" in hint:
        return {"distro": "windows", "name": "Microsoft Windows", "major": "10", "minor": "0"}
    distro = hint.split("-")[0].replace("like", "") or "linux"
    major = "".join(ch for ch in hint.split("-")[-1] if ch.isdigit()) or "1"
    return {
        "distro": distro,
        "name": f"{distro.capitalize()} {major}",
        "major": major,
        "minor": "0",
        "uname": "6.1.0-xenstack-amd64",
    }


def networks(db: Database, vm: dict[str, Any]) -> dict[str, str]:
    """``{"<device>/ip": ..., "<device>/ipv4/0": ...}`` for each VIF of the VM."""
    out: dict[str, str] = {}
    vifs = db.table("VIF").rows
    for vif_ref in vm["VIFs"]:
        vif = vifs.get(vif_ref)
        if vif is None or not db.exists("network", vif["network"]):
            continue
        ip = address(db, vif["network"], vif_ref)
        device = vif["device"]
        out[f"{device}/ip"] = ip
        out[f"{device}/ipv4/0"] = ip
    return out


def address(db: Database, network_ref: str, vif_ref: str) -> str:
    index = list(db.table("network").rows).index(network_ref) % 256
    members = db.get("network", network_ref)["VIFs"]
    host = (members.index(vif_ref) if vif_ref in members else len(members)) + 10
    return f"10.{index}.{(host >> 8) & 0xFF}.{host & 0xFF}"
