"""Forwarding for real: a master sends a member's work to the member's own toolstack.

Two ``xenstack serve`` processes, each with its own simulator backend, serving HTTPS; B joins
A's pool. A VM started with ``VM.start_on(B)`` runs in B's backend (asked directly, over TLS
with the pool secret), its ``resident_on`` is B, and its operations (pause, shutdown) reach B
through the master, who records them. Killing B's toolstack loses B's domains, not A's.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import XenAPI
from poolkit import connect, joined_pair, member_domains, uuid_of

from xenstack.testing import ServerProcess, failure, halted_vm

pytestmark = pytest.mark.slow


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[tuple[ServerProcess, ServerProcess, str]]:
    with joined_pair(tmp_path) as pair:
        yield pair


def test_start_on_the_member_runs_in_its_backend(pool: Any) -> None:
    a, b, member = pool
    xa = connect(a)
    master = xa.pool.get_master(xa.pool.get_all()[0])
    here, there = halted_vm(xa, "here"), halted_vm(xa, "there")
    xa.VM.start_on(there, member, False, False)
    xa.VM.start_on(here, master, False, False)
    assert xa.VM.get_resident_on(there) == member
    assert xa.VM.get_power_state(there) == "Running"
    assert member_domains(a, uuid_of(b), member) == [there]  # in B's backend, not A's
    # the member's own API still answers HOST_IS_SLAVE for all of it
    assert failure(connect_raw(b).VM.get_all) == ["HOST_IS_SLAVE", f"127.0.0.1:{a.port}"]
    # operations reach the member through the master
    xa.VM.pause(there)
    assert xa.VM.get_power_state(there) == "Paused"
    xa.VM.unpause(there)
    xa.VM.hard_shutdown(there)
    assert xa.VM.get_power_state(there) == "Halted"
    assert member_domains(a, uuid_of(b), member) == []
    xa.VM.start_on(there, member, False, False)
    assert member_domains(a, uuid_of(b), member) == [there]
    xa.VM.clean_shutdown(there)
    assert member_domains(a, uuid_of(b), member) == []
    assert xa.VM.get_power_state(here) == "Running"


def test_a_member_that_does_not_answer_fails_the_operation_and_changes_nothing(
    pool: Any,
) -> None:
    a, b, member = pool
    xa = connect(a)
    vm = halted_vm(xa, "there")
    b.kill()
    code, *_ = failure(xa.VM.start_on, vm, member, False, False)
    assert code == "INTERNAL_ERROR"
    assert xa.VM.get_power_state(vm) == "Halted"
    assert xa.VM.get_current_operations(vm) == {}


def test_a_restarted_master_still_forwards(pool: Any) -> None:
    a, b, member = pool
    xa = connect(a)
    vm = halted_vm(xa, "there")
    xa.VM.start_on(vm, member, False, False)
    a.stop()
    a.start()
    xa = connect(a)
    assert xa.VM.get_power_state(vm) == "Running"
    xa.VM.hard_shutdown(vm)  # the master learnt again what B runs
    assert member_domains(a, uuid_of(b), member) == []


def connect_raw(server: ServerProcess) -> Any:
    return XenAPI.Session(server.url).xenapi
