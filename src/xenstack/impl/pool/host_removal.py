"""Removing a host and everything that is only its own from the pool database.

What goes: the host, its metrics and CPUs, its control domains (with their metrics, consoles
and devices), its PIFs (with their metrics and the VLANs, bonds and tunnels built on them), its
PBDs, the SRs that only it sees (with their VDIs and the VBDs that use them) and every other row
that names the host (crashdumps, patches, PCIs, PGPUs, PUSBs, features, certificates...).
Pool-wide objects stay; references to the host from what stays (VM affinity, tasks, sessions,
the pool's default SRs) are cleared or moved to the master. Call it inside a transaction.
"""

from __future__ import annotations

from ...db.store import Database
from ...idl.model import CLASSES
from ...idl.types import NULL_REF

# Rows of these classes name a host in their ``host`` field and belong to it alone.
_OWNED_BY_HOST = tuple(
    name
    for name, cdef in CLASSES.items()
    if "host" in cdef.fields
    and cdef.fields["host"].type.kind == "ref"
    and cdef.fields["host"].type.name == "host"
    and name not in ("PIF", "PBD")
)
_POOL_SR_FIELDS = ("default_SR", "suspend_image_SR", "crash_dump_SR")


def remove_host(db: Database, host: str, master: str) -> list[str]:
    """Remove ``host`` and what only it owns; return the SRs that went (their refs)."""
    for vm in [v for v, r in db.table("VM").rows.items() if r["is_control_domain"]]:
        if db.get("VM", vm)["resident_on"] == host:
            destroy_vm_rows(db, vm)
    _clear_references(db, host, master)
    gone_srs = _remove_storage(db, host)
    _remove_network(db, host)
    for cls in _OWNED_BY_HOST:
        for ref in db.find(cls, host=host):
            db.destroy(cls, ref)
    metrics = db.get("host", host)["metrics"]
    db.destroy("host", host)
    if db.exists("host_metrics", metrics):
        db.destroy("host_metrics", metrics)
    return gone_srs


def destroy_vm_rows(db: Database, vm: str) -> None:
    """A VM (a control domain, here) with its metrics, consoles and devices."""
    row = db.get("VM", vm)
    for cls in ("VBD", "VIF"):
        for dev in list(row[f"{cls}s"]):
            _destroy_device(db, cls, dev)
    for console in list(row["consoles"]):
        db.destroy("console", console)
    for cls, ref in (("VM_metrics", row["metrics"]), ("VM_guest_metrics", row["guest_metrics"])):
        if ref != NULL_REF and db.exists(cls, ref):
            db.destroy(cls, ref)
    db.destroy("VM", vm)


def _destroy_device(db: Database, cls: str, ref: str) -> None:
    metrics = db.get(cls, ref).get("metrics", NULL_REF)
    db.destroy(cls, ref)
    if metrics != NULL_REF and db.exists(f"{cls}_metrics", metrics):
        db.destroy(f"{cls}_metrics", metrics)


def _clear_references(db: Database, host: str, master: str) -> None:
    for vm, row in list(db.table("VM").rows.items()):
        for field in ("affinity", "scheduled_to_be_resident_on", "resident_on"):
            if row[field] == host:
                db.set("VM", vm, field, NULL_REF)
    for task in db.find("task", resident_on=host):
        db.set("task", task, "resident_on", master)
    for session in db.find("session", this_host=host):
        db.set("session", session, "this_host", master)


def _remove_storage(db: Database, host: str) -> list[str]:
    """The host's PBDs, and the SRs no other host sees, with their VDIs."""
    gone = []
    for pbd in list(db.get("host", host)["PBDs"]):
        sr = db.get("PBD", pbd)["SR"]
        db.destroy("PBD", pbd)
        if db.exists("SR", sr) and not db.get("SR", sr)["PBDs"] and not db.get("SR", sr)["shared"]:
            _destroy_sr(db, sr)
            gone.append(sr)
    return gone


def _destroy_sr(db: Database, sr: str) -> None:
    for vdi in list(db.get("SR", sr)["VDIs"]):
        for vbd in list(db.get("VDI", vdi)["VBDs"]):
            _destroy_device(db, "VBD", vbd)
        db.destroy("VDI", vdi)
    for pool, row in list(db.table("pool").rows.items()):
        for field in _POOL_SR_FIELDS:
            if row[field] == sr:
                db.set("pool", pool, field, NULL_REF)
    db.destroy("SR", sr)


def _remove_network(db: Database, host: str) -> None:
    """The host's PIFs and metrics, and the VLANs, bonds and tunnels made of them."""
    pifs = set(db.get("host", host)["PIFs"])
    for cls, fields in (
        ("VLAN", ("tagged_PIF", "untagged_PIF")),
        ("Bond", ("master",)),
        ("tunnel", ("access_PIF", "transport_PIF")),
    ):
        for ref, row in list(db.table(cls).rows.items()):
            if any(row[f] in pifs for f in fields):
                db.destroy(cls, ref)
    for pif in pifs:
        metrics = db.get("PIF", pif)["metrics"]
        db.destroy("PIF", pif)
        if metrics != NULL_REF and db.exists("PIF_metrics", metrics):
            db.destroy("PIF_metrics", metrics)
