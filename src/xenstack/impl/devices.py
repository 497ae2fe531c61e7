"""What VBDs and VIFs share: device numbers, power-state checks, metrics rows."""

from __future__ import annotations

import re

from ..api.accessors import new_ref, new_uuid
from ..api.tasks import now
from ..db.store import Database
from ..errors import ApiError

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


def assert_running(db: Database, vm: str) -> None:
    """Hotplug needs a running VM: VM_BAD_POWER_STATE [vm, running, actual]."""
    state = db.get("VM", vm)["power_state"]
    if state != "Running":
        raise ApiError("VM_BAD_POWER_STATE", [vm, "running", state.lower()])


def assert_not_suspended(db: Database, vm: str) -> None:
    if db.get("VM", vm)["power_state"] == "Suspended":
        raise ApiError("VM_BAD_POWER_STATE", [vm, "halted, running", "suspended"])


def new_metrics(db: Database, cls: str) -> str:
    """A VBD_metrics or VIF_metrics row with zero I/O."""
    ref = new_ref()
    db.create(cls, ref, {"uuid": new_uuid(), "last_updated": now()})
    return ref


def touch_metrics(db: Database, cls: str, ref: str) -> None:
    if db.exists(cls, ref):
        db.update(cls, ref, io_read_kbs=0.0, io_write_kbs=0.0, last_updated=now())


def drop_metrics(db: Database, cls: str, ref: str) -> None:
    if db.exists(cls, ref):
        db.destroy(cls, ref)
