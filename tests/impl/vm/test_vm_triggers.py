"""VM.send_trigger over the wire on a simulated pool: an NMI reaches the backend of a running
VM (the simulator records it); XAPI's errors for a VM that is not Running, for a name ``xl
trigger`` does not know, for a trigger the backend cannot send, and for a role below
pool-admin; and a refused call changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import XenAPI

from xenstack.testing import RunningPool, halted_vm, simulated_pool, user
from xenstack.xenops.simulator import SimulatorBackend


@pytest.fixture(scope="module")
def pool() -> Iterator[RunningPool]:
    with simulated_pool(guest_agent_delay=0) as running:
        yield running


def _simulator(ts: Any) -> SimulatorBackend:
    backend = ts.hypervisor.backend
    while not isinstance(backend, SimulatorBackend):  # under the pool's wrappers
        backend = backend.local
    return backend


def _sent(pool: RunningPool) -> list[tuple[str, int, str]]:
    return list(pool.call(lambda ts: list(_simulator(ts).triggers)))


def _failure(call: Any, *args: Any) -> list[str]:
    with pytest.raises(XenAPI.Failure) as info:
        call(*args)
    return [str(d) for d in info.value.details]


def test_an_nmi_reaches_the_running_domain(pool: RunningPool, x: Any) -> None:
    vm = halted_vm(x, "n3-nmi")
    x.VM.start(vm, False, False)
    before = _sent(pool)
    x.VM.send_trigger(vm, "nmi")
    assert _sent(pool)[len(before) :] == [(vm, int(x.VM.get_domid(vm)), "nmi")]
    assert x.VM.get_power_state(vm) == "Running"
    assert x.VM.get_current_operations(vm) == {}
    x.VM.hard_shutdown(vm)


def test_only_a_running_vm_takes_a_trigger(pool: RunningPool, x: Any) -> None:
    vm = halted_vm(x, "n3-halted")
    before = _sent(pool)
    assert _failure(x.VM.send_trigger, vm, "nmi") == [
        "VM_BAD_POWER_STATE",
        vm,
        "running",
        "halted",
    ]
    x.VM.start(vm, True, False)
    assert _failure(x.VM.send_trigger, vm, "nmi") == [
        "VM_BAD_POWER_STATE",
        vm,
        "running",
        "paused",
    ]
    assert _sent(pool) == before
    x.VM.hard_shutdown(vm)


def test_unknown_and_unsent_triggers(pool: RunningPool, x: Any) -> None:
    vm = halted_vm(x, "n3-names")
    x.VM.start(vm, False, False)
    before = _sent(pool)
    assert _failure(x.VM.send_trigger, vm, "bogus") == ["INVALID_VALUE", "trigger", "bogus"]
    # a name xl knows that a simulated guest has nothing to act on: as XAPI answers for all
    assert _failure(x.VM.send_trigger, vm, "sleep") == ["NOT_IMPLEMENTED", "send_trigger"]
    assert _sent(pool) == before
    assert x.VM.get_current_operations(vm) == {}
    x.VM.hard_shutdown(vm)


def test_pool_admin_only(pool: RunningPool, x: Any) -> None:
    vm = halted_vm(x, "n3-rbac")
    x.VM.start(vm, False, False)
    operator = user(pool, "n3-vm-admin", "vm-admin")
    try:
        details = _failure(operator.xenapi.VM.send_trigger, vm, "nmi")
    finally:
        operator.xenapi.session.logout()
    assert details[0] == "RBAC_PERMISSION_DENIED"
    assert details[1].lower() == "vm.send_trigger"
    x.VM.hard_shutdown(vm)
