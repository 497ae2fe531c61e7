"""VM.provision: a template becomes a VM and gets the disks its ``other_config:disks`` lists.

The ``disks`` entry is XAPI's XML: ``<provision><disk device="0" size="..." sr="<uuid>"
bootable="true" type="system"/></provision>``; an empty ``sr`` means the pool's default SR.
Disks are made with the storage layer's ``VDI.create`` when it has one; a failure removes what
was made.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from ...core.context import Context
from ...core.objects import new_record
from ...db.store import Database
from ...errors import ApiError
from ..registry import HANDLERS, implements
from .clone import Undo, new_device


def parse_disks(xml_text: str) -> list[dict[str, str]]:
    """The ``disks`` entry of a template's other_config: ``<provision><disk .../>...``."""
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError:
        raise ApiError("INVALID_VALUE", ["other_config:disks", xml_text]) from None
    return [dict(disk.attrib) for disk in root.iter("disk")]


async def provision_disks(ctx: Context, vm: str) -> None:
    db = ctx.db
    row = db.get("VM", vm)
    undo = Undo(ctx)
    try:
        for disk in parse_disks(row["other_config"].get("disks", "<provision/>")):
            sr = _provision_sr(db, disk.get("sr", ""))
            record = new_record(
                "VDI",
                name_label=f"{row['name_label']} {disk.get('device', '0')}",
                name_description="Created by template provisioner",
                SR=sr,
                virtual_size=int(disk.get("size", "0")),
                type=disk.get("type", "system"),
                sm_config={"vm_hint": row["uuid"]},
            )
            if "VDI.create" in HANDLERS:
                vdi = str(await ctx.invoke_and_wait("VDI.create", record))
            else:
                vdi = new_device(db, "VDI", record)
            undo.made.append(("VDI", vdi))
            vbd = new_record(
                "VBD",
                userdevice=disk.get("device", "0"),
                bootable=disk.get("bootable") == "true",
                mode="RW",
                type="Disk",
                other_config={"owner": ""},
            )
            undo.made.append(("VBD", new_device(db, "VBD", vbd, VM=vm, VDI=vdi)))
        with db.transaction():
            other = {k: v for k, v in db.get("VM", vm)["other_config"].items() if k != "disks"}
            db.set("VM", vm, "other_config", other)
    except BaseException:
        await undo.rollback()
        raise


def _provision_sr(db: Database, sr_uuid: str) -> str:
    if sr_uuid:
        ref = db.table("SR").by_uuid.get(sr_uuid)
        if ref is None:
            raise ApiError("UUID_INVALID", ["sr", sr_uuid])
        return ref
    for pool in db.table("pool").rows.values():
        if db.exists("SR", pool["default_SR"]):
            return str(pool["default_SR"])
    raise ApiError("UUID_INVALID", ["sr", sr_uuid])


@implements("VM.provision")
async def provision(ctx: Context, vm: str) -> None:
    """Turn a template into a VM and make the disks its ``other_config:disks`` describes."""
    db = ctx.db
    with db.transaction():
        db.set("VM", vm, "is_a_template", False)
    await provision_disks(ctx, vm)
