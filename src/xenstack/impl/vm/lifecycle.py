"""The VM lifecycle's operations, from one table (:mod:`xenstack.impl.vm.lifecycle_table`):
which power states allow each operation, and what else forbids it. ``allowed_operations``,
``assert_operation_valid`` and every VM operation's precondition check derive from
:func:`operation_error`, the way XAPI's lifecycle module does.

The checks (in :mod:`xenstack.impl.vm.checks`) run in XAPI's order and the first failure
wins: blocked operations, power state, operations in progress, template and snapshot rules,
mobility, control domains, guest features, and device restrictions.
"""

from __future__ import annotations

from ...db.store import Database
from ...errors import ApiError
from ..devices.lifecycle import refresh_vm_devices
from .checks import Facts, first_error
from .lifecycle_table import ALLOWABLE_OPS


def operation_error(db: Database, vm_ref: str, op: str, strict: bool = True) -> ApiError | None:
    """The error that forbids ``op`` on the VM now, or None if it is allowed."""
    return first_error(Facts.gather(db, vm_ref), op, strict)


def assert_operation_valid(db: Database, vm_ref: str, op: str, strict: bool = True) -> None:
    err = operation_error(db, vm_ref, op, strict)
    if err is not None:
        raise err


def allowed_operations(db: Database, vm_ref: str) -> list[str]:
    facts = Facts.gather(db, vm_ref)
    return [op for op in ALLOWABLE_OPS if first_error(facts, op, True) is None]


def update_allowed_operations(db: Database, vm_ref: str) -> None:
    """Recompute the VM's and its devices' ``allowed_operations`` (in the caller's transaction)."""
    with db.transaction():
        db.set("VM", vm_ref, "allowed_operations", allowed_operations(db, vm_ref))
        refresh_vm_devices(db, vm_ref)
