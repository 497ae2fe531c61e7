"""The policy layer (``api/forwarding.py``): what a message marks, and where its work is done.

Over the wire: an Async operation is in ``current_operations`` (under its task) while it runs
and gone afterwards, success or failure; VM.revert marks the snapshot and its VM; the
Forwarder is asked for the right host and, when it answers a route, the call goes there
instead of to the local server function.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from vmkit import GIB, add_hosts, disk_record, local_sr, master, set_delays, vbd_record, wait_for

from xenstack.api import forwarding
from xenstack.api.forwarding import LOCAL, POLICY, Forwarder, Guard, Rule
from xenstack.idl.model import ENUMS, message
from xenstack.impl.operations import TABLES
from xenstack.testing import RunningPool, failure, halted_vm, simulated_pool


@pytest.fixture(scope="module")
def pool() -> Iterator[RunningPool]:
    with simulated_pool() as running:
        yield running


def _settled(x: Any, task: str) -> str:
    wait_for(lambda: x.task.get_status(task) != "pending")
    return str(x.task.get_status(task))


def test_async_operation_marked_while_it_runs(pool: RunningPool, x: Any) -> None:
    vm = halted_vm(x)
    x.VM.start(vm, False, False)
    set_delays(pool, clean_shutdown=0.4)
    try:
        task = x.Async.VM.clean_shutdown(vm)
        wait_for(lambda: x.VM.get_current_operations(vm))
        assert x.VM.get_current_operations(vm) == {task: "clean_shutdown"}
        assert "clean_shutdown" not in x.VM.get_allowed_operations(vm)
        assert _settled(x, task) == "success"
    finally:
        set_delays(pool, clean_shutdown=0.0)
    assert x.VM.get_current_operations(vm) == {}
    assert "start" in x.VM.get_allowed_operations(vm)


def test_failed_async_operation_is_unmarked(x: Any) -> None:
    vm = halted_vm(x, memory=1024 * GIB)  # marked "start", then fails: no host has the memory
    task = x.Async.VM.start(vm, False, False)
    assert _settled(x, task) == "failure"
    assert x.task.get_error_info(task)[0] == "HOST_NOT_ENOUGH_FREE_MEMORY"
    assert x.VM.get_current_operations(vm) == {}
    assert "start" in x.VM.get_allowed_operations(vm)


def test_failed_sync_operation_is_unmarked(x: Any) -> None:
    vm = halted_vm(x)
    before = x.VM.get_allowed_operations(vm)
    assert failure(x.VM.set_VCPUs_max, vm, "0")[0] == "INVALID_VALUE"  # marked changing_VCPUs
    assert x.VM.get_current_operations(vm) == {}
    assert x.VM.get_allowed_operations(vm) == before


def test_revert_marks_the_snapshot_and_its_vm(pool: RunningPool, x: Any) -> None:
    vm = halted_vm(x)
    x.VM.start(vm, False, False)
    snap = x.VM.snapshot(vm, "s", [])
    set_delays(pool, hard_shutdown=0.4)  # revert stops the running VM first
    try:
        task = x.Async.VM.revert(snap)
        wait_for(lambda: x.VM.get_current_operations(vm))
        assert x.VM.get_current_operations(snap) == {task: "revert"}
        assert x.VM.get_current_operations(vm) == {task: "reverting"}
        assert _settled(x, task) == "success"
    finally:
        set_delays(pool, hard_shutdown=0.0)
    assert x.VM.get_current_operations(snap) == {} == x.VM.get_current_operations(vm)


def test_evacuation_migrates_through_the_policy(
    pool: RunningPool, x: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """host.evacuate's migrations are VM.pool_migrate calls: each is routed and marked."""
    h1 = add_hosts(pool, 1)[0]
    vm = halted_vm(x, name="evacuee")
    x.VM.start_on(vm, h1, False, False)
    seen: list[tuple[str, str]] = []

    def route(self: Forwarder, ctx: Any, host: str) -> Any:
        seen.append((ctx.method, host))
        return LOCAL

    monkeypatch.setattr(Forwarder, "route", route)
    x.host.evacuate(h1, "OpaqueRef:NULL", 0)
    assert ("host.evacuate", h1) in seen and ("VM.pool_migrate", h1) in seen
    assert x.VM.get_resident_on(vm) == master(x) and x.VM.get_current_operations(vm) == {}
    x.VM.hard_shutdown(vm)


def test_forwarder_gets_the_work_host(x: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The host asked is the VM's resident_on; a route answered replaces the local call."""
    vm = halted_vm(x, name="forwarded")
    x.VM.start(vm, False, False)
    calls: list[tuple[str, list[Any], dict[str, str]]] = []

    def route(self: Forwarder, ctx: Any, host: str) -> Any:
        if ctx.method != "VM.clean_shutdown":
            return LOCAL

        async def remote(method: str, values: list[Any]) -> None:
            current = dict(ctx.db.get("VM", values[0])["current_operations"])
            calls.append((method, values, current | {"host": host}))

        return remote

    monkeypatch.setattr(Forwarder, "route", route)
    x.VM.clean_shutdown(vm)
    [(method, values, seen)] = calls
    assert (method, values) == ("VM.clean_shutdown", [vm])
    assert seen["host"] == x.VM.get_resident_on(vm) and "clean_shutdown" in seen.values()
    assert x.VM.get_power_state(vm) == "Running"  # the local server function did not run
    assert x.VM.get_current_operations(vm) == {}
    monkeypatch.undo()
    x.VM.hard_shutdown(vm)


def test_impl_calls_disk_messages_through_the_policy(
    pool: RunningPool, x: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """VM.clone copies its disk with a VDI.clone through the dispatcher: a rule given to
    VDI.clone applies to that call as to one from the wire."""
    assert pool.toolstack is not None
    table = pool.toolstack.dispatcher.table
    entry = table["VDI.clone"]  # a rule that marks nothing: the call is only routed
    monkeypatch.setattr(entry, "fn", Guard(entry.msg, Rule(), Forwarder()).wrap(entry.fn))
    seen: list[str] = []

    def route(self: Forwarder, ctx: Any, host: str) -> Any:
        seen.append(ctx.method)
        return LOCAL

    monkeypatch.setattr(Forwarder, "route", route)
    vm = halted_vm(x, name="with-disk")
    x.VBD.create(vbd_record(vm, x.VDI.create(disk_record(local_sr(x)))))
    clone = x.VM.clone(vm, "cloned")
    assert seen == ["VM.clone", "VDI.clone"]
    (vbd,) = x.VM.get_VBDs(clone)
    assert x.VDI.get_name_label(x.VBD.get_VDI(vbd)) == "disk"


def test_policy_table_names_real_messages_and_operations() -> None:
    """Every rule's message, parameters and operations exist in the declaration."""
    for name, rule in POLICY.items():
        msg = message(name)
        assert msg is not None, name
        forwarding.Guard(msg, rule, Forwarder())  # resolves every parameter name
        for mark in rule.marks:
            assert mark.cls in TABLES, name
            enum = f"{mark.cls.lower()}_operations"
            assert mark.op in ENUMS[enum], (name, mark.op)
