"""The master changing the chain of a disk a member's running domain writes.

A snapshot, clone or checkpoint turns a VDI's leaf into a parent and gives the VDI a fresh
leaf of the same name (:mod:`..storage.vdi_files`). The master's own export of that disk is
stopped and restarted on the new chain around the change (``service.exclusive``); a
member's export of the same file (:mod:`.member_disks`) must do the same, or it would go on
writing into what is now the snapshot's content. :class:`MemberExports`, the master's
``StorageService.elsewhere`` once it has member toolstacks, tells each member whose domain
has the disk plugged to stop its export (its writes made durable: ``export_stop``) before
the change and to open the chain afresh (``export_start``) after it; meanwhile QEMU's NBD
client waits and reconnects, as across a toolstack restart.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from ...errors import ApiError
from ...xenops.interface import XenopsError
from ..host.specs import attach_disk, disk_spec

if TYPE_CHECKING:
    from ...core.context import Services

User = tuple[str, str, bool]  # member host, the disk's VHD file, writable


class Members(Protocol):
    """What this needs of :class:`.remote_backend.PoolBackend`."""

    def is_remote(self, host_id: str) -> bool: ...

    async def on_member(self, host_id: str, name: str, *args: Any) -> Any: ...


class MemberExports:
    def __init__(self, ts: Services, pool: Members) -> None:
        self.ts, self.pool = ts, pool

    async def users(self, vdi: str) -> list[User]:
        """The member hosts whose running domains have ``vdi`` plugged, with its file."""
        db, found = self.ts.db, set()
        for ref in db.get("VDI", vdi)["VBDs"] if db.exists("VDI", vdi) else []:
            vbd = db.table("VBD").rows.get(ref)
            vm = db.table("VM").rows.get(vbd["VM"]) if vbd is not None else None
            if vbd is None or vm is None or not vbd["currently_attached"]:
                continue
            live = vm["power_state"] in ("Running", "Paused")
            if live and self.pool.is_remote(vm["resident_on"]):
                disk = await attach_disk(self.ts, disk_spec(db, vbd), member=True)
                if disk.vhd:
                    found.add((vm["resident_on"], disk.vhd, disk.mode == "RW"))
        return sorted(found)

    async def close(self, vdi: str) -> list[User]:
        """Stop the members' exports of ``vdi``; those to :meth:`reopen` afterwards."""
        users = await self.users(vdi)
        for n, (host, vhd, _) in enumerate(users):
            try:
                await self.pool.on_member(host, "export_stop", vhd)
            except XenopsError as exc:  # the chain must not change under its writer
                await self.reopen(users[:n])
                # xapi: ocaml/xapi/message_forwarding.ml passes 2
                raise ApiError("OTHER_OPERATION_IN_PROGRESS", ["VDI", vdi]) from exc
        return users

    async def reopen(self, users: list[User]) -> None:
        """Open the chains :meth:`close` stopped afresh (a member that does not answer
        now opens it when its domain next starts: its guest's I/O waits meanwhile)."""
        for host, vhd, writable in users:
            try:
                await self.pool.on_member(host, "export_start", vhd, writable)
            except XenopsError:
                continue
