"""Marking operations on objects: the mechanics the policy layer (``api.forwarding``) calls.

An operation in progress is an entry ``task -> op`` in the object's ``current_operations``;
while it is there, the object's lifecycle table refuses what may not run beside it
(OTHER_OPERATION_IN_PROGRESS), and ``allowed_operations`` shows what is left. The tables are
the VM's (:mod:`.vm.lifecycle`) and the devices' (:mod:`.devices.lifecycle`).
"""

from __future__ import annotations

from collections.abc import Callable

from ..db.store import Database
from .devices import lifecycle as device_lifecycle
from .vm import lifecycle as vm_lifecycle

Check = Callable[[Database, str, str, bool], None]
Refresh = Callable[[Database, str], None]


def _device(cls: str) -> tuple[Check, Refresh]:
    def check(db: Database, ref: str, op: str, strict: bool) -> None:
        device_lifecycle.assert_operation_valid(db, cls, ref, op)

    def refresh(db: Database, ref: str) -> None:
        device_lifecycle.refresh(db, cls, ref)

    return check, refresh


#: class -> (raise the error that forbids an operation now, recompute allowed_operations)
TABLES: dict[str, tuple[Check, Refresh]] = {
    "VM": (vm_lifecycle.assert_operation_valid, vm_lifecycle.update_allowed_operations),
    "VBD": _device("VBD"),
    "VIF": _device("VIF"),
}


def begin(db: Database, cls: str, ref: str, op: str, key: str, strict: bool = True) -> None:
    """Check ``op`` against the object's table and mark it as ``key``'s (in a transaction).

    ``strict`` False lets a VM operation past the checks XAPI skips when forced.
    """
    check, refresh = TABLES[cls]
    with db.transaction():
        check(db, ref, op, strict)
        current = db.get(cls, ref)["current_operations"]
        db.set(cls, ref, "current_operations", {**current, key: op})
        refresh(db, ref)


def end(db: Database, cls: str, ref: str, key: str) -> None:
    """Remove ``key``'s operation from the object (if it still exists); refresh what is allowed."""
    if not db.exists(cls, ref):
        return
    _, refresh = TABLES[cls]
    with db.transaction():
        current = db.get(cls, ref)["current_operations"]
        db.set(cls, ref, "current_operations", {t: o for t, o in current.items() if t != key})
        refresh(db, ref)
