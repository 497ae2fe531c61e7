"""Base copies: the VDI records of a file SR's hidden VHD nodes, as XenServer's VHD SRs keep them.

A snapshot or a clone leaves the VDI's former contents in a hidden, read-only node that both
leaves differ from (``storage.sr.filesr``). As SM does on its VHD SRs, that node is a VDI
record: ``name_label`` "base copy", ``managed`` false, ``read_only`` true, no VBDs,
``sm_config`` holding ``vhd-blocks`` (the blocks its file holds, as SM's GC records them:
base64 of the zlib-compressed bitmap) and ``vhd-parent`` when it differs from a node of its
own. Its uuid and location are the node's, so a child's ``vhd-parent`` names it
(``VDI.get_by_uuid``). Clients filter on ``managed``; what would change or attach it answers
VDI_NOT_MANAGED (``vdi.py``, the VBD rules).

The rows follow the files: one is made with each snapshot or clone, SR.scan makes those
missing (a row forgotten, a database restored), and after each GC pass the rows of nodes the
GC deleted or coalesced go (:func:`refresh`). Sizes-only SRs keep no chains: they have none.
"""

from __future__ import annotations

import base64
import contextlib
import zlib
from typing import Any

from ...db.store import Database
from ...storage.sr import FileSr, SrDriverError, SrDrivers, VdiInfo
from .sr_backend import UUID_RE
from .vdi_rows import _destroy_row, make_vdi, with_parent

NAME = "base copy"
VHD_BLOCKS = "vhd-blocks"


def vhd_blocks(drv: FileSr, node: str) -> str:
    """SM's ``vhd-blocks`` of a node: its block bitmap, zlib-compressed, in base64."""
    return base64.b64encode(zlib.compress(drv.block_bitmap(node))).decode("ascii")


def _fields(db: Database, drv: FileSr, info: VdiInfo) -> dict[str, Any]:
    known = db.table("VDI").by_uuid
    usable = UUID_RE.match(info.uuid) and info.uuid not in known
    fields: dict[str, Any] = {
        "location": info.location,
        "name_label": NAME,
        "type": "user",
        "read_only": True,
        "managed": False,
        "virtual_size": info.virtual_size,
        "sm_config": with_parent({VHD_BLOCKS: vhd_blocks(drv, info.uuid)}, info),
    }
    return fields | ({"uuid": info.uuid} if usable else {})


def add(registry: SrDrivers, db: Database, sr: str, drv: FileSr, info: VdiInfo) -> str:
    """The row of the hidden node ``info`` (found by a scan, or just made)."""
    fields = _fields(db, drv, info)
    return make_vdi(registry, db, sr, fields, usage=info.physical_utilisation, check_space=False)


def record(registry: SrDrivers, db: Database, sr: str, drv: FileSr, node: str) -> None:
    """Give the hidden node ``node`` its row, unless it has one (a snapshot's new base)."""
    if not node or any(db.get("VDI", v)["location"] == node for v in db.get("SR", sr)["VDIs"]):
        return
    info = drv.info(node)
    if info.hidden:
        add(registry, db, sr, drv, info)


def refresh(registry: SrDrivers, db: Database, sr: str, drv: FileSr, *, merged: bool) -> None:
    """After a GC pass: the rows of base copies whose node is gone go; when the GC merged
    nodes (``merged``), the others' ``vhd-blocks`` are read again (a child coalesced into a
    base copy gave it blocks)."""
    for vdi in list(db.get("SR", sr)["VDIs"]):
        row = db.get("VDI", vdi)
        if row["managed"] or row["VBDs"]:
            continue
        try:
            info = drv.info(row["location"])
        except SrDriverError:
            _destroy_row(registry, db, vdi)  # deleted, or coalesced into its parent
            continue
        except Exception:
            continue  # unreadable now (being merged): the next pass looks again
        if merged and info.hidden:
            with contextlib.suppress(Exception):  # unreadable now: the next pass tries again
                blocks = vhd_blocks(drv, row["location"])
                if row["sm_config"].get(VHD_BLOCKS) != blocks:
                    db.set("VDI", vdi, "sm_config", row["sm_config"] | {VHD_BLOCKS: blocks})
