"""The lifecycle tables cover the declaration: every operation of the class's operations enum
and every power state, so a new operation or state in the IDL cannot go unhandled."""

from __future__ import annotations

import pytest

from xenstack.idl.model import ENUMS
from xenstack.impl.devices.lifecycle import TABLES as DEVICE_TABLES
from xenstack.impl.operations import TABLES as MARKABLE
from xenstack.impl.vm.lifecycle_table import (
    ALL_STATES,
    ALLOWABLE_OPS,
    IGNORED_OPS,
    POWER_STATES,
)


def test_vm_table_has_every_declared_operation() -> None:
    declared = set(ENUMS["vm_operations"])
    assert set(POWER_STATES) == declared
    assert declared >= IGNORED_OPS
    assert set(ALLOWABLE_OPS) | IGNORED_OPS == declared
    assert len(ALLOWABLE_OPS) == len(set(ALLOWABLE_OPS))


def test_vm_table_knows_every_power_state() -> None:
    assert sorted(ALL_STATES) == sorted(ENUMS["vm_power_state"])
    for op, states in POWER_STATES.items():
        assert set(states) <= set(ALL_STATES), op
        assert len(states) == len(set(states)), op
    # every state is reachable by some operation's table row, and each allows something
    for state in ALL_STATES:
        assert any(state in POWER_STATES[op] for op in ALLOWABLE_OPS), state


@pytest.mark.parametrize("cls", sorted(DEVICE_TABLES))
def test_device_tables_have_every_declared_operation(cls: str) -> None:
    _, ops = DEVICE_TABLES[cls]
    assert sorted(ops) == sorted(ENUMS[f"{cls.lower()}_operations"])
    assert len(ops) == len(set(ops))


def test_every_markable_class_has_a_table() -> None:
    """The classes the policy layer can mark are exactly those with a lifecycle table."""
    assert set(MARKABLE) == {"VM", *DEVICE_TABLES}
