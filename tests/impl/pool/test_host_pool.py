"""Several simulated hosts in one process: migration, evacuation, memory, master handover."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from vmkit import GIB, add_hosts, master

from xenstack.testing import RunningPool, failure, halted_vm, simulated_pool

GUEST_AGENT_DELAY = 0.05  # seconds; see conftest.py


@pytest.fixture
def pool() -> Iterator[RunningPool]:
    with simulated_pool() as running:
        add_hosts(running, 2, memory=16 * GIB)
        yield running


def hosts(x: Any) -> list[str]:
    """The master first, then the other hosts in ref order."""
    first = master(x)
    return [first, *sorted(h for h in x.host.get_all() if h != first)]


def test_pool_migrate_moves_domain_and_memory(x: Any) -> None:
    _h0, h1, h2 = hosts(x)
    vm = halted_vm(x, memory=GIB)
    x.VM.start_on(vm, h1, False, False)
    free1, free2 = int(x.host.compute_free_memory(h1)), int(x.host.compute_free_memory(h2))
    domid = x.VM.get_domid(vm)
    x.VM.pool_migrate(vm, h2, {})
    assert x.VM.get_resident_on(vm) == h2 and x.VM.get_domid(vm) != domid
    assert x.VM.get_power_state(vm) == "Running"
    footprint = GIB + int(x.VM.get_memory_overhead(vm))
    assert int(x.host.compute_free_memory(h1)) == free1 + footprint
    assert int(x.host.compute_free_memory(h2)) == free2 - footprint
    assert vm in x.host.get_resident_VMs(h2) and vm not in x.host.get_resident_VMs(h1)
    x.VM.pause(vm)
    assert failure(x.VM.pool_migrate, vm, h1, {}) == ["VM_BAD_POWER_STATE", vm, "running", "paused"]
    x.VM.hard_shutdown(vm)


def test_migrate_refuses_a_full_or_disabled_host(x: Any) -> None:
    h0, h1, h2 = hosts(x)
    big = halted_vm(x, memory=6 * GIB)
    x.VM.start_on(big, h1, False, False)
    other = halted_vm(x, memory=6 * GIB)
    x.VM.start_on(other, h2, False, False)
    err = failure(x.VM.pool_migrate, big, h2, {})
    assert err[0] == "HOST_NOT_ENOUGH_FREE_MEMORY"
    assert x.VM.get_resident_on(big) == h1 and x.VM.get_current_operations(big) == {}
    x.host.disable(h0)
    assert failure(x.VM.pool_migrate, big, h0, {}) == ["HOST_DISABLED", h0]
    x.host.enable(h0)


def test_evacuate(x: Any) -> None:
    h0, h1, h2 = hosts(x)
    vms = [halted_vm(x, name=f"e{i}", memory=GIB) for i in range(3)]
    for vm in vms:
        x.VM.start_on(vm, h1, False, False)
    assert x.host.get_vms_which_prevent_evacuation(h1) == {}
    x.host.disable(h1)
    x.host.evacuate(h1, "OpaqueRef:NULL", "0")
    assert all(x.VM.get_resident_on(vm) in (h0, h2) for vm in vms)
    assert [v for v in x.host.get_resident_VMs(h1) if not x.VM.get_is_control_domain(v)] == []


def test_vms_which_prevent_evacuation(x: Any) -> None:
    _h0, h1, _h2 = hosts(x)
    vm = halted_vm(x, memory=GIB, platform={"nomigrate": "true"})
    x.VM.start_on(vm, h1, False, False)
    reasons = x.host.get_vms_which_prevent_evacuation(h1)
    assert reasons == {vm: ["VM_IS_IMMOBILE", vm]}
    err = failure(x.host.evacuate, h1, "OpaqueRef:NULL", "0")
    assert err == ["CANNOT_EVACUATE_HOST", f"VM_IS_IMMOBILE,{vm}"]
    assert "pool_migrate" not in x.VM.get_allowed_operations(vm)


def test_start_spreads_over_hosts_by_free_memory(x: Any) -> None:
    for i in range(3):
        free = {h: int(x.host.compute_free_memory(h)) for h in hosts(x)}
        vm = halted_vm(x, name=f"s{i}", memory=2 * GIB)
        x.VM.start(vm, False, False)
        assert x.VM.get_resident_on(vm) == max(free, key=lambda h: free[h])
    assert len(x.VM.get_possible_hosts(halted_vm(x, memory=GIB))) == 3


def test_master_handover_and_recover_slaves(x: Any) -> None:
    h0, h1, h2 = hosts(x)
    pool_ref = x.pool.get_all()[0]
    x.pool.designate_new_master(h1)
    assert x.pool.get_master(pool_ref) == h1
    assert sorted(x.pool.recover_slaves()) == sorted([h0, h2])
    x.pool.sync_database()
    x.pool.emergency_transition_to_master()  # this toolstack followed the master to h1
    assert x.pool.get_master(pool_ref) == h1
    assert failure(x.pool.designate_new_master, "OpaqueRef:x") == [
        "HANDLE_INVALID",
        "host",
        "OpaqueRef:x",
    ]


def test_cheap_host_calls(x: Any) -> None:
    h0 = hosts(x)[0]
    assert x.host.get_servertime(h0).value.endswith("Z")
    assert len(x.host.get_server_localtime(h0).value) == 17
    assert int(x.host.compute_free_memory(h0)) > 0
    assert x.host.get_uncooperative_resident_VMs(h0) == []
