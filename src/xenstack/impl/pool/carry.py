"""What a joining host carries into the pool: its local storage and its VMs' metadata.

XAPI's joiner, once the master has added it, pushes its non-VM objects to the master (its
local SRs with their PBDs and VDIs, its networks: ``create_or_get_*_on_master``) and then
exports its VMs' metadata to the master, which imports it keeping the uuids (a restore).
xenstack does both in one document sent through the hidden ``pool.xenstack_carry_member``
(:mod:`.carry_import` is the master's side). The document is JSON::

    {"host": <joiner's host ref>, "objects": [[class, ref, record], ...]}

with each record as the joiner stores it (declared fields, the derived lists left out) and
the joiner's own refs, which the master maps to refs of its own. Carried: the SRs only this
host sees (its Local storage keeps its uuid and its files' directory, so the master finds
the disks where the joiner wrote them), their PBDs and VDIs, every VM but the control domain
and the default templates (snapshots and custom templates too), their VBDs and VIFs and the
VIFs' networks; a VBD's VDI on an SR not carried (an ISO library's) goes as a record for the
master to find its own copy of (by uuid, else by location), not to make.
"""

from __future__ import annotations

from typing import Any

import orjson

from ...core.context import Context
from ...db.store import Database
from ...idl.model import CLASSES

CARRY_MEMBER = "pool.xenstack_carry_member"


def _record(db: Database, cls: str, ref: str) -> dict[str, Any]:
    row = db.get(cls, ref)
    cdef = CLASSES[cls]
    return {k: v for k, v in row.items() if k in cdef.fields and k not in cdef.derived}


def local_srs(db: Database, host: str) -> list[str]:
    """The SRs only ``host`` sees (the shared ones are the pool's, not carried)."""
    return sorted(
        {
            db.get("PBD", p)["SR"]
            for p in db.get("host", host)["PBDs"]
            if db.exists("SR", db.get("PBD", p)["SR"])
            and not db.get("SR", db.get("PBD", p)["SR"])["shared"]
        }
    )


def carried_vms(db: Database) -> list[str]:
    """Every VM but control domains and default templates, originals before snapshots."""
    vms = [
        ref
        for ref, row in db.table("VM").rows.items()
        if not row["is_control_domain"]
        and not row["is_default_template"]
        and row["other_config"].get("default_template") != "true"
    ]
    return sorted(vms, key=lambda v: bool(db.get("VM", v)["is_a_snapshot"]))


def export(ctx: Context) -> str:
    """The joiner's document for the master (see the module's docstring)."""
    db, here = ctx.db, ctx.this_host
    objects: list[list[Any]] = []

    def add(cls: str, ref: str) -> None:
        objects.append([cls, ref, _record(db, cls, ref)])

    for sr in local_srs(db, here):
        add("SR", sr)
        for pbd in db.get("SR", sr)["PBDs"]:
            add("PBD", pbd)
        for vdi in db.get("SR", sr)["VDIs"]:
            add("VDI", vdi)
    carried = {ref for cls, ref, _ in objects if cls == "VDI"}
    networks: set[str] = set()
    for vm in carried_vms(db):
        add("VM", vm)
        row = db.get("VM", vm)
        for vbd in row["VBDs"]:
            add("VBD", vbd)
            vdi = db.get("VBD", vbd)["VDI"]
            if vdi not in carried and db.exists("VDI", vdi):
                carried.add(vdi)
                add("VDI", vdi)  # on a pool-wide SR (an ISO): the master looks it up
        for vif in row["VIFs"]:
            add("VIF", vif)
            networks.add(db.get("VIF", vif)["network"])
    for net in sorted(n for n in networks if db.exists("network", n)):
        add("network", net)
    return orjson.dumps({"host": here, "objects": objects}).decode()
