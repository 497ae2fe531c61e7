"""Random VM operations over the wire, every answer checked against the lifecycle table.

The table below is written from XAPI's lifecycle rules independently of the server's own; the
state machine keeps a model power state per VM and predicts, for each call, either success
and the next state or VM_BAD_POWER_STATE with XAPI's wording. After every step each VM's
``allowed_operations`` must be exactly what the table allows in its state.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import XenAPI
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from vmkit import set_delays, wait_for

from xenstack.testing import RunningPool, halted_vm, simulated_pool

H, P, R, S = "Halted", "Paused", "Running", "Suspended"
#: operation -> (allowed states in XAPI's order, state afterwards)
TABLE: dict[str, tuple[tuple[str, ...], str | None]] = {
    "start": ((H,), R),
    "start_paused": ((H,), P),
    "clean_shutdown": ((R,), H),
    "hard_shutdown": ((P, S, R), H),
    "shutdown": ((P, S, R), H),
    "clean_reboot": ((R,), R),
    "hard_reboot": ((P, R), R),
    "pause": ((R,), P),
    "unpause": ((P,), R),
    "suspend": ((R,), S),
    "resume": ((S,), R),
    "resume_paused": ((S,), P),
    "snapshot": ((H, P, S, R), None),
    "checkpoint": ((P, S, R), None),
    "clone": ((H,), None),
}
#: A plain PV VM's allowed_operations in each power state, written out from XAPI's
#: xapi_vm_lifecycle.ml (allowed_power_states, restricted to the operations
#: update_allowed_operations lists) rather than computed from the server's table: provision
#: and revert need a template or a snapshot, snapshot_with_quiesce a guest that offers it.
EVERY_STATE = {"snapshot", "metadata_export"}
ALLOWED: dict[str, set[str]] = {
    H: EVERY_STATE
    | {"start", "start_on", "clone", "copy", "export", "destroy", "make_into_template"}
    | {"changing_static_range", "changing_shadow_memory", "changing_dynamic_range"}
    | {"changing_NVRAM", "create_vtpm", "migrate_send"},
    P: EVERY_STATE | {"unpause", "hard_shutdown", "hard_reboot", "checkpoint"},
    S: EVERY_STATE
    | {"resume", "resume_on", "hard_shutdown", "checkpoint", "export", "destroy"}
    | {"migrate_send"},
    R: EVERY_STATE
    | {"clean_shutdown", "clean_reboot", "hard_shutdown", "hard_reboot", "pause", "suspend"}
    | {"checkpoint", "pool_migrate", "migrate_send", "changing_dynamic_range"}
    | {"changing_VCPUs_live"},
}


def call(x: Any, op: str, vm: str) -> Any:
    if op in ("start", "start_paused"):
        return x.VM.start(vm, op == "start_paused", False)
    if op in ("resume", "resume_paused"):
        return x.VM.resume(vm, op == "resume_paused", False)
    if op in ("snapshot",):
        return x.VM.snapshot(vm, "s", [])
    if op in ("checkpoint", "clone"):
        return getattr(x.VM, op)(vm, "c")
    return getattr(x.VM, op)(vm)


def expected_allowed(state: str) -> set[str]:
    return ALLOWED[state]


class Lifecycle(RuleBasedStateMachine):
    env: tuple[RunningPool, Any]  # a plain tuple: hypothesis inspects class attributes

    def __init__(self) -> None:
        super().__init__()
        self.pool, self.x = self.env
        self.model = {halted_vm(self.x, name=f"p{i}"): H for i in range(2)}

    @rule(op=st.sampled_from(sorted(TABLE)), index=st.integers(0, 1))
    def operate(self, op: str, index: int) -> None:
        vm = list(self.model)[index]
        allowed, after = TABLE[op]
        state = self.model[vm]
        if state in allowed:
            result = call(self.x, op, vm)
            if after is not None:
                self.model[vm] = after
            if op in ("snapshot", "checkpoint", "clone"):
                self.x.VM.destroy(result) if op == "clone" else None
        else:
            with pytest.raises(XenAPI.Failure) as err:
                call(self.x, op, vm)
            expected = ", ".join(s.lower() for s in allowed)
            assert err.value.details == ["VM_BAD_POWER_STATE", vm, expected, state.lower()]

    @rule(index=st.integers(0, 1))
    def concurrent_start(self, index: int) -> None:
        """While an Async start runs, a second start sees OTHER_OPERATION_IN_PROGRESS."""
        vm = list(self.model)[index]
        if self.model[vm] != H:
            return
        set_delays(self.pool, start=0.1)
        try:
            task = self.x.Async.VM.start(vm, False, False)
            wait_for(lambda: self.x.VM.get_current_operations(vm))
            with pytest.raises(XenAPI.Failure) as err:
                self.x.VM.start(vm, False, False)
            assert err.value.details == ["OTHER_OPERATION_IN_PROGRESS", "VM", vm, "start", task]
            wait_for(lambda: self.x.task.get_status(task) != "pending")
            assert self.x.task.get_status(task) == "success"
        finally:
            set_delays(self.pool, start=0.0)
        self.model[vm] = R

    @invariant()
    def records_match_model(self) -> None:
        for vm, state in self.model.items():
            rec = self.x.VM.get_record(vm)
            assert rec["power_state"] == state
            assert set(rec["allowed_operations"]) == expected_allowed(state), state
            assert rec["current_operations"] == {}
            assert (rec["domid"] == "-1") == (state in (H, S))

    def teardown(self) -> None:
        for vm in self.model:
            if self.x.VM.get_power_state(vm) != H:
                self.x.VM.hard_shutdown(vm)


@pytest.fixture(scope="module")
def lifecycle_pool() -> Iterator[tuple[RunningPool, Any]]:
    with simulated_pool(guest_agent_delay=30) as pool:
        s = XenAPI.Session(pool.url)
        s.xenapi.login_with_password("root", pool.password, "1.0", "property")
        yield pool, s.xenapi
        s.xenapi.session.logout()


def test_random_operations_follow_the_table(lifecycle_pool: tuple[RunningPool, Any]) -> None:
    Lifecycle.env = lifecycle_pool
    run_state_machine_as_test(
        Lifecycle,
        settings=settings(
            max_examples=25,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
