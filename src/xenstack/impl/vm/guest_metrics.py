"""VM_guest_metrics, derived from what a guest's agent wrote to XenStore.

Both backends share this path: the simulator's agents and a real guest's agent channel write
their keys into the host's XenStore as their domain; a dom0 watch on ``/local/domain``
(:func:`watch`) sees the change and :func:`from_xenstore` reads the domain's subtree with
XAPI's rules (``xapi_guest_agent.ml``): ``data/os_*`` the OS version, ``attr/PVAddons/*``
the PV drivers, ``data/meminfo_*`` the memory (KiB), ``attr/vif/<n>/ipv4/<i>`` the networks
(``<n>/ipv4/<i>``, and ``<n>/ip`` for the first), ``control/feature-*`` and the others in
``other``. The row is made the first time and refreshed after; nothing is recorded for a
domain the database no longer shows (halted, rebooted into a new domain, gone) or whose
guest has written nothing yet. :func:`record` keeps a backend's :class:`GuestReport` the same
way, for a backend that reports without XenStore.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ...core.clock import Clock
from ...core.ids import new_ref, new_uuid
from ...db.store import Database
from ...xenops.interface import GuestReport
from ...xenstore import Connection, XenStore, XsError

LIVE_STATES = ("Running", "Paused")
OS_KEYS = {"os_name": "name", "os_uname": "uname", "os_distro": "distro",
           "os_majorver": "major", "os_minorver": "minor"}  # fmt: skip
PV_KEYS = {"MajorVersion": "major", "MinorVersion": "minor", "MicroVersion": "micro",
           "BuildVersion": "build"}  # fmt: skip
OTHER = ("feature-shutdown", "feature-poweroff", "feature-reboot", "feature-suspend",
         "feature-vcpu-hotplug", "feature-balloon", "has-vendor-device",
         "platform-feature-multiprocessor-suspend",
         "platform-feature-xs_reset_watches")  # fmt: skip
AGENT_DIRS = ("data", "attr", "control")


def record(db: Database, clock: Clock, report: GuestReport) -> str | None:
    """Keep ``report`` in its VM's guest metrics (in a transaction); return their ref, or
    None when the report is about a domain that is gone."""
    vm = db.table("VM").rows.get(report.vm_id)
    if vm is None or vm["domid"] != report.domid or vm["power_state"] not in LIVE_STATES:
        return None
    with db.transaction():
        return write(db, report.vm_id, fields(report, clock))


def fields(report: GuestReport, clock: Clock) -> dict[str, Any]:
    """The VM_guest_metrics fields a report fills."""
    return _fields(
        report.os_version, report.pv_drivers_version, {}, report.networks, report.features, clock
    )


def _fields(
    os_version: dict[str, str],
    pv: dict[str, str],
    memory: dict[str, str],
    networks: dict[str, str],
    other: dict[str, str],
    clock: Clock,
) -> dict[str, Any]:
    return {
        "os_version": dict(os_version),
        "PV_drivers_version": dict(pv),
        "PV_drivers_up_to_date": bool(pv),
        "PV_drivers_detected": bool(pv),
        "memory": dict(memory),
        "disks": {},
        "networks": dict(networks),
        "other": dict(other),
        "last_updated": clock.now(),
        "live": True,
        "can_use_hotplug_vbd": "yes" if pv else "unspecified",
        "can_use_hotplug_vif": "yes" if pv else "unspecified",
    }


def write(db: Database, vm_ref: str, record_fields: dict[str, Any]) -> str:
    """Create or refresh the VM's VM_guest_metrics with ``record_fields``; return its ref."""
    ref = db.get("VM", vm_ref)["guest_metrics"]
    if db.exists("VM_guest_metrics", ref):
        db.update("VM_guest_metrics", ref, **record_fields)
        return str(ref)
    ref = new_ref()
    db.create("VM_guest_metrics", ref, {"uuid": new_uuid(), **record_fields})
    db.set("VM", vm_ref, "guest_metrics", ref)
    return str(ref)


# ---- from XenStore ---------------------------------------------------------------------


def _read(xs: Connection, path: str) -> str | None:
    try:
        return xs.read(path).decode(errors="replace")
    except XsError:
        return None


def _children(xs: Connection, path: str) -> list[str]:
    try:
        return xs.directory(path)
    except XsError:
        return []


def _prefixed(xs: Connection, path: str, names: dict[str, str]) -> dict[str, str]:
    out = {}
    for key, name in names.items():
        value = _read(xs, f"{path}/{key}")
        if value is not None:
            out[name] = value
    return out


def _networks(xs: Connection, home: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for device in _children(xs, f"{home}/attr/vif"):
        for family in ("ipv4", "ipv6"):
            base = f"{home}/attr/vif/{device}/{family}"
            for index in sorted(_children(xs, base), key=lambda s: (len(s), s)):
                value = _read(xs, f"{base}/{index}")
                if value is None:
                    continue
                out[f"{device}/{family}/{index}"] = value
                if family == "ipv4" and f"{device}/ip" not in out:
                    out[f"{device}/ip"] = value
    return out


def from_xenstore(db: Database, clock: Clock, xs: Connection, host: str, domid: int) -> None:
    """Derive the guest metrics of the VM whose domain ``domid`` runs on ``host``."""
    home = f"/local/domain/{domid}"
    vm_path = _read(xs, f"{home}/vm")
    if not vm_path:
        return
    try:
        vm = db.by_uuid("VM", vm_path.rsplit("/", 1)[-1])
    except Exception:  # the VM went away: nothing to record
        return
    row = db.get("VM", vm)
    if row["domid"] != domid or row["resident_on"] != host or row["power_state"] not in LIVE_STATES:
        return
    os_version = _prefixed(xs, f"{home}/data", OS_KEYS)
    pv = _prefixed(xs, f"{home}/attr/PVAddons", PV_KEYS)
    if not os_version and not pv:
        return  # the agent has said nothing yet
    memory = _prefixed(xs, f"{home}/data", {"meminfo_total": "total", "meminfo_free": "free"})
    other = _prefixed(xs, f"{home}/control", {k: k for k in OTHER})
    networks = _networks(xs, home)
    with db.transaction():
        write(db, vm, _fields(os_version, pv, memory, networks, other, clock))


def watch(db: Database, clock: Clock, store: XenStore, host: str) -> Connection:
    """Keep the guest metrics of ``host``'s domains derived from its XenStore: a dom0 watch on
    ``/local/domain``, each changed domain read once per turn of the event loop."""
    due: set[int] = set()

    def flush() -> None:
        for domid in sorted(due):
            from_xenstore(db, clock, store.dom0, host, domid)
        due.clear()

    def seen(path: str, token: str) -> None:
        parts = path.split("/")  # "", local, domain, <domid>, <dir>, ...
        if len(parts) < 6 or not parts[3].isdigit() or parts[4] not in AGENT_DIRS:
            return
        first = not due
        due.add(int(parts[3]))
        if first:
            try:
                asyncio.get_running_loop().call_soon(flush)
            except RuntimeError:  # no loop (a direct call): derive at once
                flush()

    conn = store.connect(0, seen)
    conn.watch("/local/domain", "guest-metrics")
    return conn
