"""VBDs of the control domain: a VDI plugged into dom0 is a real block device there.

A VBD of this host's control domain is not a backend domain's disk: it is attached to the
machine the toolstack runs on, through the toolstack's dom0 disks
(:class:`xenstack.storage.dom0_attach.Dom0Disks`, made by the composition root): the VDI's
NBD export opened by ``qemu-storage-daemon``, exported over FUSE as a file, on a loop
device. ``VBD.device`` is then that device's name (``loop3``), so ``/dev/<device>`` is it,
as on XenServer; a read-only VBD is a read-only device. An ISO is its file on a read-only
loop device.

Where there is nothing to open, as in the simulator (a sizes-only SR, no state directory),
or for the control domain of another host of a simulated pool, a plug only records the VBD
attached under its ``xvd*`` name, as before: no device appears. Where there is something to
open but this machine cannot make devices (not root, no ``qemu-storage-daemon``, no
``/dev/fuse``), the plug fails with ``SR_BACKEND_FAILURE`` and changes nothing.

The devices do not outlive the toolstack: :func:`release_all` removes them when it stops,
and :func:`repair` removes what a killed toolstack left when it starts again; both record
the VBDs as detached.
"""

from __future__ import annotations

from typing import Any

from ...core.context import Context
from ...db.store import Database
from ...errors import ApiError
from ...idl.types import NULL_REF
from ...storage.dom0_attach import Dom0AttachError, Dom0Disks
from ...storage.sr import IsoSr
from ..host.specs import disk_spec
from ..storage.sr_backend import driver_of, drivers
from . import devices

LIVE = ("Running", "Paused")


def is_local_dom0(toolstack: Any, vm_ref: str) -> bool:
    """Whether ``vm_ref`` is the control domain of the host this toolstack runs on."""
    db: Database = toolstack.db
    host = db.table("host").rows.get(toolstack.this_host)
    return bool(host and host["control_domain"] == vm_ref)


def _disks(toolstack: Any) -> Dom0Disks | None:
    disks = getattr(toolstack, "dom0_disks", None)
    return disks if isinstance(disks, Dom0Disks) else None


def _backing(toolstack: Any, row: dict[str, Any]) -> str:
    """What the VBD's VDI opens as: "iso:<path>", "nbd", or "" (nothing to open)."""
    db: Database = toolstack.db
    spec = disk_spec(db, row)
    if spec.empty or _disks(toolstack) is None:
        return ""
    vdi = db.get("VDI", spec.vdi_id)
    drv = driver_of(drivers(toolstack), db, db.get("SR", vdi["SR"]))
    if isinstance(drv, IsoSr):
        return "iso:" + drv.path(vdi["location"])
    return "nbd" if toolstack.storage.can_attach(spec.vdi_id) else ""


def _failure(ref: str, exc: Dom0AttachError) -> ApiError:
    if exc.timeout:
        return ApiError("DEVICE_ATTACH_TIMEOUT", ["VBD", ref])
    return ApiError("SR_BACKEND_FAILURE", ["dom0_attach", "", exc.reason])


async def plug(ctx: Context, ref: str) -> None:
    """Attach the VBD's VDI to dom0 as a block device and record it (``device``: its name)."""
    toolstack, db = ctx.toolstack, ctx.db
    row = db.get("VBD", ref)
    backing = _backing(toolstack, row) if is_local_dom0(toolstack, row["VM"]) else ""
    disks = _disks(toolstack)
    if not backing or disks is None:
        devices.set_attached(db, "VBD", ref, True)  # nothing to open: recorded only
        return
    spec = disk_spec(db, row)
    try:
        if backing.startswith("iso:"):
            name = await disks.attach_file(row["uuid"], backing[4:])
        else:
            name = await _attach_export(toolstack, disks, ref, row, spec.mode == "RW")
    except Dom0AttachError as exc:
        raise _failure(ref, exc) from exc
    devices.set_attached(db, "VBD", ref, True, device=name)


async def _attach_export(
    toolstack: Any, disks: Dom0Disks, ref: str, row: dict[str, Any], writable: bool
) -> str:
    if reason := disks.missing():  # refused before the export starts: nothing changes
        raise Dom0AttachError(reason)
    vdi = toolstack.db.get("VDI", row["VDI"])
    vdi_uuid = vdi["uuid"]
    sock, export = await toolstack.storage.attach(row["VDI"], writable)
    # the export writes only a writable VDI's leaf (a snapshot's is exported read-only)
    writable = writable and not (vdi["read_only"] or vdi["is_a_snapshot"])
    try:
        return await disks.attach(row["uuid"], sock, export, writable)
    except BaseException:
        if not _export_used(toolstack.db, row["VDI"], ref):
            await toolstack.storage.detach(vdi_uuid)
        raise


def _export_used(db: Database, vdi: str, but: str) -> bool:
    """Whether a VBD other than ``but`` has ``vdi`` attached to a live domain."""
    vbds, vms = db.table("VBD").rows, db.table("VM").rows
    for ref in db.get("VDI", vdi)["VBDs"] if db.exists("VDI", vdi) else []:
        row = vbds.get(ref)
        if ref == but or row is None or not row["currently_attached"]:
            continue
        vm = vms.get(row["VM"])
        if vm is not None and vm["power_state"] in LIVE:
            return True
    return False


async def unplug(ctx: Context, ref: str) -> None:
    """Remove the VBD's dom0 device (its writes flushed into the VDI) and record it."""
    await _release(ctx.toolstack, ref)
    devices.set_attached(ctx.db, "VBD", ref, False)


async def _release(toolstack: Any, ref: str) -> None:
    db: Database = toolstack.db
    row = db.get("VBD", ref)
    disks = _disks(toolstack)
    if disks is not None and row["uuid"] in disks.attached():
        await disks.detach(row["uuid"])
    vdi = row["VDI"]
    if vdi != NULL_REF and db.exists("VDI", vdi) and not _export_used(db, vdi, ref):
        await toolstack.storage.detach(db.get("VDI", vdi)["uuid"])


def _dom0_vbds(toolstack: Any) -> list[str]:
    db: Database = toolstack.db
    host = db.table("host").rows.get(toolstack.this_host)
    dom0 = db.table("VM").rows.get(host["control_domain"]) if host else None
    return [v for v in (dom0["VBDs"] if dom0 else []) if db.exists("VBD", v)]


async def release_all(toolstack: Any) -> None:
    """At stop: every dom0 device removed, its VBD recorded detached."""
    disks = _disks(toolstack)
    if disks is None:
        return
    by_uuid = {toolstack.db.get("VBD", v)["uuid"]: v for v in _dom0_vbds(toolstack)}
    for key in disks.attached():
        vbd = by_uuid.get(key)
        if vbd is not None:
            await _release(toolstack, vbd)
            devices.set_attached(toolstack.db, "VBD", vbd, False)
    await disks.detach_all()


async def repair(toolstack: Any) -> None:
    """At start: what a killed toolstack left (devices, daemons, mounts) removed, and the
    VBDs that had a device recorded detached (their device is gone)."""
    disks = _disks(toolstack)
    if disks is None:
        return
    left = set(await disks.detach_all())
    db: Database = toolstack.db
    for vbd in _dom0_vbds(toolstack):
        row = db.get("VBD", vbd)
        if row["uuid"] in left and row["currently_attached"]:
            devices.set_attached(db, "VBD", vbd, False)
