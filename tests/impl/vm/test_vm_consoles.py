"""A running VM has an rfb console located on its host, as XAPI gives one; a halted or
suspended VM has none."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from vmkit import master

from xenstack.testing import RunningPool, halted_vm, simulated_pool


@pytest.fixture(scope="module")
def pool() -> Iterator[RunningPool]:
    with simulated_pool(guest_agent_delay=0) as running:
        yield running


def _consoles(x: Any, vm: str) -> list[dict[str, Any]]:
    return [x.console.get_record(c) for c in x.VM.get_consoles(vm)]


def test_running_vm_has_an_rfb_console_on_its_host(x: Any) -> None:
    vm = halted_vm(x)
    assert _consoles(x, vm) == []
    x.VM.start(vm, False, False)
    (console,) = _consoles(x, vm)
    address = x.host.get_address(master(x))
    assert console["protocol"] == "rfb"
    assert console["VM"] == vm
    assert console["location"] == f"https://{address}/console?uuid={console['uuid']}"
    x.VM.hard_reboot(vm)
    assert [c["uuid"] for c in _consoles(x, vm)] == [console["uuid"]]


def test_halted_and_suspended_vms_have_no_console(x: Any) -> None:
    vm = halted_vm(x)
    x.VM.start(vm, False, False)
    x.VM.hard_shutdown(vm)
    assert _consoles(x, vm) == []
    x.VM.start(vm, False, False)
    x.VM.suspend(vm)
    assert _consoles(x, vm) == []
    x.VM.resume(vm, False, False)
    assert len(_consoles(x, vm)) == 1
    x.VM.hard_shutdown(vm)
    x.VM.destroy(vm)
