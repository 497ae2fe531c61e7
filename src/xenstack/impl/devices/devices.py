"""What VBDs and VIFs share: device numbers, metrics rows, operation marks, hotplug."""

from __future__ import annotations

import re
from typing import Any

from ...core.context import Context
from ...core.ids import new_ref, new_uuid, now
from ...db.store import Database
from ...xenops.interface import DomainInfo
from ..host.hypervisor import backend_errors, hypervisor
from ..host.specs import attach_disk, disk_spec, nic_spec, opens_disks, run_by_member
from . import lifecycle as device_lifecycle

_NAMED = re.compile(r"^(xvd|hd|sd)([a-z]+)(\d*)$")
MAX_VBD_DEVICE = 254
MAX_VIF_DEVICE = 15


def disk_number(userdevice: str) -> int | None:
    """The disk a device string names (``"1"``, ``"xvdb"``, ``"hdb"`` are all disk 1)."""
    if userdevice.isdigit():
        return int(userdevice)
    match = _NAMED.match(userdevice)
    if match is None:
        return None
    number = 0
    for letter in match.group(2):
        number = number * 26 + (ord(letter) - ord("a") + 1)
    return number - 1


def disk_name(number: int) -> str:
    """``xvda`` for disk 0, ``xvdz`` for 25, ``xvdaa`` for 26."""
    letters = ""
    n = number + 1
    while n:
        n, rem = divmod(n - 1, 26)
        letters = chr(ord("a") + rem) + letters
    return f"xvd{letters}"


def used_disks(db: Database, vm: str) -> set[int]:
    used = set()
    for vbd in db.get("VM", vm)["VBDs"]:
        row = db.get("VBD", vbd)
        for name in (row["userdevice"], row["device"]):
            number = disk_number(name)
            if number is not None:
                used.add(number)
    return used


def free_vbd_devices(db: Database, vm: str) -> list[str]:
    limit = MAX_VBD_DEVICE + (1 if db.get("VM", vm)["is_control_domain"] else 0)
    used = used_disks(db, vm)
    return [str(n) for n in range(limit + 1) if n not in used]


def free_vif_devices(db: Database, vm: str) -> list[str]:
    used = {db.get("VIF", v)["device"] for v in db.get("VM", vm)["VIFs"]}
    return [str(n) for n in range(MAX_VIF_DEVICE + 1) if str(n) not in used]


def new_metrics(db: Database, cls: str) -> str:
    """A VBD_metrics or VIF_metrics row with zero I/O."""
    ref = new_ref()
    db.create(cls, ref, {"uuid": new_uuid(), "last_updated": now()})
    return ref


def server_fields(db: Database, cls: str, vm: str, record: dict[str, Any]) -> dict[str, Any]:
    """The fields the server sets on a new VBD or VIF (``cls``) of ``vm``.

    A new uuid, the VM, a new metrics row, and ``currently_attached`` as ``record`` asks only
    when the VM is suspended (its saved domain holds the device). Call inside the transaction
    that creates the device row.
    """
    suspended = db.get("VM", vm)["power_state"] == "Suspended"
    return {
        "uuid": new_uuid(),
        "VM": vm,
        "currently_attached": bool(suspended and record.get("currently_attached")),
        "metrics": new_metrics(db, f"{cls}_metrics"),
    }


def touch_metrics(db: Database, cls: str, ref: str) -> None:
    if db.exists(cls, ref):
        db.update(cls, ref, io_read_kbs=0.0, io_write_kbs=0.0, last_updated=now())


def drop_metrics(db: Database, cls: str, ref: str) -> None:
    if db.exists(cls, ref):
        db.destroy(cls, ref)


# ---- hotplug: what VBD.plug/unplug and VIF.plug/unplug share -----------------------------


def backend_device(cls: str, row: dict[str, Any]) -> str:
    """The name the backend knows a device by (as in :func:`hypervisor.domain_spec`)."""
    return str(row["userdevice"] if cls == "VBD" else row["device"])


def set_attached(db: Database, cls: str, ref: str, attached: bool, device: str = "") -> None:
    """Record that the device is (or is no longer) attached to its VM's domain; a VBD's
    ``device`` is ``device`` when given (a dom0 block device's name), else its ``xvd*``."""
    row = db.get(cls, ref)
    fields: dict[str, Any] = {"currently_attached": attached}
    if cls == "VBD":
        number = disk_number(row["userdevice"])
        named = disk_name(number) if number is not None else row["userdevice"]
        fields["device"] = device or named
    with db.transaction():
        db.update(cls, ref, **fields)
        touch_metrics(db, f"{cls}_metrics", row["metrics"])
        device_lifecycle.refresh(db, cls, ref)


async def hotplug(ctx: Context, cls: str, ref: str, op: str) -> None:
    """Plug or unplug a device of a running VM through the backend, then record it (the
    policy layer has checked and marked ``op`` on the device)."""
    db = ctx.db
    attach = op == "plug"
    row = db.get(cls, ref)
    hv = hypervisor(ctx)
    action = f"{cls.lower()}_{'plug' if attach else 'unplug'}"
    args: list[Any] = [row["VM"], backend_device(cls, row)]
    if attach:
        args.append(await device_spec(ctx, cls, ref))
    with backend_errors():
        await getattr(hv.backend, action)(*args)
    set_attached(db, cls, ref, attach)
    if cls == "VBD" and not attach and opens_disks(ctx.toolstack) and db.exists("VDI", row["VDI"]):
        await ctx.toolstack.storage.detach(db.get("VDI", row["VDI"])["uuid"])


async def device_spec(ctx: Context, cls: str, ref: str) -> Any:
    """What the backend plugs for the VBD (opened: its export) or VIF (its port)."""
    row = ctx.db.get(cls, ref)
    if cls == "VIF":
        return nic_spec(ctx.db, ref, row)
    member = run_by_member(ctx.toolstack, ctx.db.get("VM", row["VM"])["resident_on"])
    return await attach_disk(ctx.toolstack, disk_spec(ctx.db, row), member)  # by file there


async def sync_hotplug(ctx: Context, vm_ref: str, info: DomainInfo) -> None:
    """Make a resumed domain's devices those the database says are attached.

    A device created with ``currently_attached`` while the VM was suspended is plugged (its
    disk opened or its port described, as a hot-plug does); one unplugged or destroyed
    meanwhile is unplugged.
    """
    db, backend = ctx.db, hypervisor(ctx).backend
    vm = db.get("VM", vm_ref)
    for cls, refs, present in (("VBD", vm["VBDs"], info.vbds), ("VIF", vm["VIFs"], info.vifs)):
        wanted = {
            backend_device(cls, db.get(cls, r)): r
            for r in refs
            if db.exists(cls, r) and db.get(cls, r)["currently_attached"]
        }
        plug = getattr(backend, f"{cls.lower()}_plug")
        unplug = getattr(backend, f"{cls.lower()}_unplug")
        with backend_errors():
            for device in sorted(set(wanted) - set(present)):
                await plug(vm_ref, device, await device_spec(ctx, cls, wanted[device]))
            for device in sorted(set(present) - set(wanted)):
                await unplug(vm_ref, device)
