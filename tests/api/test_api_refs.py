"""Dispatch checks ``Ref`` parameters against the declaration, and records come from it too.

A ref parameter declared of class C given something that is not a live C answers
``HANDLE_INVALID [C, ref]`` before the server function runs (an Async call's in its task);
the parameters XAPI lets be NULL pass. ``new_record`` fills every declared default.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from vmkit import master, wait_for

from xenstack.api.dispatch import build_table, ref_params
from xenstack.api.nullable import NULL_ALLOWED
from xenstack.core.objects import new_record
from xenstack.idl.model import CLASSES, message
from xenstack.idl.types import NULL_REF
from xenstack.impl.registry import HANDLERS
from xenstack.testing import RunningPool, failure, halted_vm, simulated_pool

BOGUS = "OpaqueRef:00000000-0000-0000-0000-000000000001"


@pytest.fixture(scope="module")
def pool() -> Iterator[RunningPool]:
    with simulated_pool() as running:
        yield running


def test_a_dead_ref_is_handle_invalid_with_the_declared_class(x: Any) -> None:
    # these server functions never read the row: only dispatch can refuse the ref
    assert failure(x.VM.get_cooperative, BOGUS) == ["HANDLE_INVALID", "VM", BOGUS]
    assert failure(x.host.get_servertime, NULL_REF) == ["HANDLE_INVALID", "host", NULL_REF]
    vm = halted_vm(x)
    assert failure(x.VM.start_on, vm, BOGUS, False, False) == ["HANDLE_INVALID", "host", BOGUS]
    assert x.VM.get_current_operations(vm) == {}


def test_a_ref_of_another_class_is_handle_invalid(x: Any) -> None:
    host, vm = master(x), halted_vm(x)
    assert failure(x.VM.get_cooperative, host) == ["HANDLE_INVALID", "VM", host]
    assert failure(x.host.disable, vm) == ["HANDLE_INVALID", "host", vm]
    assert failure(x.VM.hard_shutdown, host) == ["HANDLE_INVALID", "VM", host]


def test_an_async_call_reports_the_bad_ref_in_its_task(x: Any) -> None:
    task = x.Async.VM.get_cooperative(BOGUS)
    wait_for(lambda: x.task.get_status(task) != "pending")
    assert x.task.get_error_info(task) == ["HANDLE_INVALID", "VM", BOGUS]


def test_null_where_xapi_allows_it(x: Any) -> None:
    """VM.copy with a null SR copies in place: dispatch lets the null through."""
    vm = halted_vm(x)
    copy = x.VM.copy(vm, "copied", NULL_REF)
    assert x.VM.get_name_label(copy) == "copied"
    x.VM.destroy(copy)


def test_the_checked_parameters() -> None:
    """Every ref parameter of an implemented explicit message is checked unless it is null-able;
    the generic field messages check only their ``self``."""
    table = build_table()
    start_on = table["VM.start_on"]
    assert start_on.refs == ((0, "VM"), (1, "host"))
    assert table["VM.copy"].refs == ((0, "VM"),)  # sr may be null
    assert table["VM.set_affinity"].refs == ((0, "VM"),)  # the value may be null
    for wire_name, param in NULL_ALLOWED:
        msg = message(wire_name)
        assert msg is not None and param in [p.name for p in msg.params], wire_name
    for name in HANDLERS:
        msg = message(name)
        assert msg is not None
        decl = msg.params[1:] if msg.takes_session else msg.params
        expected = {
            i
            for i, p in enumerate(decl)
            if p.type.kind == "ref" and (name, p.name) not in NULL_ALLOWED and not msg.implicit
        }
        assert msg.implicit or {i for i, _ in ref_params(msg)} == expected, name


def test_new_record_fills_every_declared_default() -> None:
    vdi = new_record("VDI", name_label="disk", virtual_size=5)
    assert set(vdi) == set(CLASSES["VDI"].fields)
    assert vdi["name_label"] == "disk" and vdi["virtual_size"] == 5
    assert vdi["other_config"] == {} and vdi["SR"] == NULL_REF and vdi["type"] == "system"
    other = new_record("VDI")
    other["other_config"]["k"] = "v"  # each record gets its own maps
    assert new_record("VDI")["other_config"] == {}
    with pytest.raises(ValueError, match="VDI declares no field sharable_x"):
        new_record("VDI", sharable_x=True)
