"""The VM lifecycle table: which power states allow each operation, which operations may run
together, and the errors that name them. :mod:`.checks` and :mod:`.lifecycle` build on
it.
"""

from __future__ import annotations

from typing import Any

from ...db.store import Database
from ...errors import ApiError
from ...idl.model import ENUMS

HALTED, PAUSED, RUNNING, SUSPENDED = "Halted", "Paused", "Running", "Suspended"
ALL_STATES = (HALTED, PAUSED, SUSPENDED, RUNNING)

#: operation -> the power states that allow it (XAPI's order: it shows in error messages).
POWER_STATES: dict[str, tuple[str, ...]] = {
    "import": (),
    **dict.fromkeys(
        (
            "changing_shadow_memory",
            "changing_NVRAM",
            "make_into_template",
            "provision",
            "start",
            "start_on",
            "create_vtpm",
        ),
        (HALTED,),
    ),
    "unpause": (PAUSED,),
    **dict.fromkeys(("csvm", "resume", "resume_on"), (SUSPENDED,)),
    **dict.fromkeys(
        (
            "awaiting_memory_live",
            "call_plugin",
            "clean_reboot",
            "clean_shutdown",
            "changing_memory_live",
            "changing_shadow_memory_live",
            "changing_VCPUs_live",
            "data_source_op",
            "pause",
            "pool_migrate",
            "send_sysrq",
            "send_trigger",
            "snapshot_with_quiesce",
            "suspend",
        ),
        (RUNNING,),
    ),
    "changing_dynamic_range": (HALTED, RUNNING),
    **dict.fromkeys(("create_template", "destroy", "export"), (HALTED, SUSPENDED)),
    "hard_reboot": (PAUSED, RUNNING),
    **dict.fromkeys(
        ("checkpoint", "get_boot_record", "shutdown", "hard_shutdown"),
        (PAUSED, SUSPENDED, RUNNING),
    ),
    "migrate_send": (HALTED, SUSPENDED, RUNNING),
    **dict.fromkeys(
        (
            "assert_operation_valid",
            "metadata_export",
            "power_state_reset",
            "revert",
            "reverting",
            "snapshot",
            "update_allowed_operations",
            "query_services",
        ),
        ALL_STATES,
    ),
    # the ones that depend on the VM are filled in by allowed_power_states
    **dict.fromkeys(
        ("changing_VCPUs", "changing_static_range", "changing_memory_limits"), (HALTED,)
    ),
    **dict.fromkeys(("clone", "copy"), (HALTED,)),
}
CONTROL_DOMAIN_LIVE = frozenset(
    {"changing_VCPUs", "changing_static_range", "changing_memory_limits"}
)

#: what a template may still do (destroy too, unless it is a default template)
TEMPLATE_OPS = frozenset(
    {
        "changing_dynamic_range",
        "changing_static_range",
        "changing_memory_limits",
        "changing_shadow_memory",
        "changing_VCPUs",
        "changing_NVRAM",
        "clone",
        "copy",
        "export",
        "metadata_export",
        "provision",
    }
)
SNAPSHOT_OPS = frozenset(
    {"revert", "clone", "copy", "export", "destroy", "hard_shutdown", "metadata_export"}
)
#: what a control domain may do
CONTROL_DOMAIN_OPS = frozenset(
    {
        "data_source_op",
        "changing_memory_live",
        "awaiting_memory_live",
        "metadata_export",
        "changing_dynamic_range",
        "changing_memory_limits",
        "changing_static_range",
        "start",
        "start_on",
        "changing_VCPUs",
        "destroy",
    }
)
#: never listed in allowed_operations
IGNORED_OPS = frozenset(
    {
        "create_template",
        "power_state_reset",
        "csvm",
        "get_boot_record",
        "send_sysrq",
        "send_trigger",
        "query_services",
        "shutdown",
        "call_plugin",
        "changing_memory_live",
        "awaiting_memory_live",
        "changing_memory_limits",
        "changing_shadow_memory_live",
        "changing_VCPUs",
        "assert_operation_valid",
        "data_source_op",
        "update_allowed_operations",
        "import",
        "reverting",
    }
)
ALLOWABLE_OPS = tuple(op for op in reversed(ENUMS["vm_operations"]) if op not in IGNORED_OPS)
SUSPEND_LIKE = frozenset({"suspend", "checkpoint", "pool_migrate", "migrate_send"})
_OP_NAMES = {"assert_operation_valid": "assertoperationvalid", "data_source_op": "data_sources_op"}
_UNNAMED = frozenset(
    {"changing_VCPUs", "changing_memory_limits", "query_services", "create_template"}
)


def op_name(op: str) -> str:
    """How XAPI spells an operation inside error parameters."""
    if op in _UNNAMED:
        return "(unknown operation)"
    return _OP_NAMES.get(op, op)


def is_true(value: str | None) -> bool:
    return value is not None and (value == "1" or value.lower() == "true")


def allowed_power_states(db: Database, vm: dict[str, Any], op: str) -> tuple[str, ...]:
    states = POWER_STATES[op]
    if op in CONTROL_DOMAIN_LIVE and vm["is_control_domain"]:
        return (HALTED, RUNNING)
    if op in ("clone", "copy") and (vm["is_a_snapshot"] or _clone_suspended(db)):
        return (HALTED, SUSPENDED)
    return states


def _clone_suspended(db: Database) -> bool:
    return any(
        row["other_config"].get("allow_clone_suspended_vm") == "true"
        for row in db.table("pool").rows.values()
    )


def bad_power_state(
    vm_ref: str, expected: tuple[str, ...], actual: str, sep: str = ", "
) -> ApiError:
    return ApiError(
        "VM_BAD_POWER_STATE",
        [vm_ref, sep.join(s.lower() for s in expected), actual.lower()],
    )


def concurrent_ok(op: str, current: list[str]) -> bool:
    """Whether ``op`` may start while ``current`` operations run (power state aside)."""
    for group in (("clone", "copy", "export"), ("snapshot", "checkpoint"), ("get_boot_record",)):
        if op in group and all(c in group for c in current):
            return True
    if op == "hard_shutdown":
        return "hard_shutdown" not in current
    if op == "hard_reboot":
        return not any(c in ("hard_shutdown", "hard_reboot") for c in current)
    pairs = {
        (("snapshot_with_quiesce",), "snapshot"),
        (("migrate_send",), "metadata_export"),
        (("migrate_send",), "clean_shutdown"),
        (("migrate_send",), "clean_reboot"),
    }
    return (tuple(current), op) in pairs


def in_progress_error(vm_ref: str, current_ops: dict[str, str]) -> ApiError:
    items = list(current_ops.items())
    if len(items) == 1:
        task, op = items[0]
        return ApiError("OTHER_OPERATION_IN_PROGRESS", ["VM", vm_ref, op_name(op), task])
    tasks = "{" + ",".join(t for t, _ in items) + "}"
    ops = "{" + ",".join(op_name(o) for _, o in items) + "}"
    return ApiError("OTHER_OPERATION_IN_PROGRESS", ["VM", vm_ref, ops, tasks])
