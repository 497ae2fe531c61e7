"""A running VM's consoles: ``console`` objects, and the opener of ``CONNECT /console``.

While the backend gives a domain an RFB console (the qemu backend's VNC socket), its VM has
one ``console`` object, protocol ``rfb``, location ``https://<host address>/console?ref=
<console ref>``, as XAPI shows it; it goes when the domain does. :func:`open_console` finds
the stream for ``CONNECT /console?ref=...`` (or ``?uuid=...``) once the route's check has
passed (``api/rbac.py``): HANDLE_INVALID for an unknown console, VM_BAD_POWER_STATE for a VM
with no domain.
"""

from __future__ import annotations

from typing import Any

from ...core.ids import new_ref, new_uuid
from ...core.objects import new_record
from ...errors import ApiError


def sync(toolstack: Any, vm: str) -> None:
    """Make the VM's console objects match its domain (in a transaction)."""
    db = toolstack.db
    if not db.exists("VM", vm):
        return
    row = db.get("VM", vm)
    path = toolstack.hypervisor.backend.console(vm)
    mine = [c for c in row["consoles"] if db.exists("console", c)]
    with db.transaction():
        if not path:
            for ref in mine:
                db.destroy("console", ref)
            return
        host = db.table("host").rows.get(row["resident_on"]) or {}
        address = host.get("address", "127.0.0.1")
        for c in mine:
            if db.get("console", c)["protocol"] == "rfb":  # after a migration: the new host
                db.set("console", c, "location", f"https://{address}/console?ref={c}")
                return
        ref = new_ref()
        location = f"https://{address}/console?ref={ref}"
        db.create("console", ref, new_record("console", uuid=new_uuid(), protocol="rfb",
                                             location=location, VM=vm))  # fmt: skip


async def open_console(toolstack: Any, query: dict[str, str]) -> str:
    """The Unix socket of the console ``query`` names."""
    db = toolstack.db
    ref = query.get("ref") or db.table("console").by_uuid.get(query.get("uuid", ""), "")
    if not ref or not db.exists("console", ref):
        raise ApiError("HANDLE_INVALID", ["console", ref or query.get("uuid", "")])
    vm = db.get("console", ref)["VM"]
    path = toolstack.hypervisor.backend.console(vm)
    if not path:
        power = db.get("VM", vm)["power_state"] if db.exists("VM", vm) else "Halted"
        raise ApiError("VM_BAD_POWER_STATE", [vm, "Running", power])
    return str(path)
