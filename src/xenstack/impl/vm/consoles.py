"""A running VM's consoles, as XAPI keeps them: an ``rfb`` (VNC) console while the VM has a
domain, reached through its host's ``/console?uuid=`` handler; none once it has halted or
been suspended. Clients (XenCenter, Xen Orchestra, nova's ``get_vnc_console``) read
``VM.consoles`` and each console's ``location``."""

from __future__ import annotations

from ...core.ids import new_ref, new_uuid
from ...core.objects import new_record
from ...db.store import Database


def open_consoles(db: Database, vm: str, host: str) -> None:
    """Give the VM (now running on ``host``) its rfb console, located on that host."""
    address = db.get("host", host)["address"]
    for ref in db.get("VM", vm)["consoles"]:
        row = db.get("console", ref)
        if row["protocol"] == "rfb":
            db.set("console", ref, "location", f"https://{address}/console?uuid={row['uuid']}")
            return
    uuid = new_uuid()
    location = f"https://{address}/console?uuid={uuid}"
    db.create(
        "console",
        new_ref(),
        new_record("console", uuid=uuid, protocol="rfb", location=location, VM=vm),
    )


def close_consoles(db: Database, vm: str) -> None:
    """The VM has no domain: its consoles go."""
    for ref in list(db.get("VM", vm)["consoles"]):
        db.destroy("console", ref)
