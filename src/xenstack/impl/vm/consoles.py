"""A running VM's consoles: ``console`` objects, and the opener of ``CONNECT /console``.

As XAPI keeps them: while the VM has a domain it has one ``console`` object, protocol ``rfb``,
located on its host (``https://<host address>/console?uuid=<console uuid>``; after a migration,
the new host); it goes when the domain does (halted, suspended). Clients (XenCenter, Xen
Orchestra, nova's ``get_vnc_console``) read ``VM.consoles`` and each console's ``location``.
:func:`open_console` finds the stream for ``CONNECT /console?ref=...`` (or ``?uuid=...``)
once the route's check has passed (``api/rbac.py``): HANDLE_INVALID for an unknown console,
VM_BAD_POWER_STATE for a VM with no domain; a domain whose backend serves no RFB (the
simulator's) cannot be connected to.
"""

from __future__ import annotations

from typing import Any

from ...core.ids import new_ref, new_uuid
from ...core.objects import new_record
from ...db.store import Database
from ...errors import ApiError


def sync(toolstack: Any, vm: str) -> None:
    """Make the VM's console objects match its domain (in a transaction)."""
    db = toolstack.db
    if not db.exists("VM", vm):
        return
    with db.transaction():
        if toolstack.hypervisor.backend.vm_info(vm) is None:
            close_consoles(db, vm)
        else:
            open_consoles(db, vm, db.get("VM", vm)["resident_on"])


def open_consoles(db: Database, vm: str, host: str) -> None:
    """Give the VM (now running on ``host``) its rfb console, located on that host."""
    row: dict[str, Any] = db.table("host").rows.get(host) or {}
    address = row.get("address", "127.0.0.1")
    for ref in db.get("VM", vm)["consoles"]:
        console = db.get("console", ref)
        if console["protocol"] == "rfb":  # after a migration: the new host
            db.set("console", ref, "location", _location(address, console["uuid"]))
            return
    uuid = new_uuid()
    record = new_record(
        "console", uuid=uuid, protocol="rfb", location=_location(address, uuid), VM=vm
    )
    db.create("console", new_ref(), record)


def close_consoles(db: Database, vm: str) -> None:
    """The VM has no domain: its consoles go."""
    for ref in list(db.get("VM", vm)["consoles"]):
        db.destroy("console", ref)


def _location(address: str, uuid: str) -> str:
    return f"https://{address}/console?uuid={uuid}"


async def open_console(toolstack: Any, query: dict[str, str]) -> str:
    """The Unix socket of the console ``query`` names."""
    db = toolstack.db
    ref = query.get("ref") or db.table("console").by_uuid.get(query.get("uuid", ""), "")
    if not ref or not db.exists("console", ref):
        raise ApiError("HANDLE_INVALID", ["console", ref or query.get("uuid", "")])
    vm = db.get("console", ref)["VM"]
    backend = toolstack.hypervisor.backend
    if backend.vm_info(vm) is None:
        power = db.get("VM", vm)["power_state"] if db.exists("VM", vm) else "Halted"
        raise ApiError("VM_BAD_POWER_STATE", [vm, "Running", power])
    path = backend.console(vm)
    if not path:
        raise ApiError("INTERNAL_ERROR", [f"the {backend.capabilities.name} domain has no RFB"])
    return str(path)
