"""host.reboot / shutdown / power_on over the wire: XAPI's preconditions, then the host's
domains stop and its metrics' live flag records it (the machine itself is never touched)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from vmkit import GIB, add_hosts, master

from xenstack.testing import RunningPool, failure, halted_vm, simulated_pool


@pytest.fixture(scope="module")
def pool() -> Iterator[RunningPool]:
    with simulated_pool() as running:
        add_hosts(running, 1, memory=8 * GIB)
        yield running


def member(x: Any) -> str:
    first = master(x)
    return next(h for h in x.host.get_all() if h != first)


def live(x: Any, host: str) -> bool:
    return bool(x.host_metrics.get_live(x.host.get_metrics(host)))


@pytest.mark.parametrize("op", ["reboot", "shutdown"])
def test_power_action_needs_a_disabled_empty_host(x: Any, op: str) -> None:
    host = member(x)
    call = getattr(x.host, op)
    assert failure(call, host) == ["HOST_NOT_DISABLED"]
    vm = halted_vm(x, memory=GIB)
    x.VM.start_on(vm, host, False, False)
    x.host.disable(host)
    try:
        assert failure(call, host) == ["HOST_IN_USE", host, "vm", vm]
        assert x.VM.get_power_state(vm) == "Running" and live(x, host)
    finally:
        x.VM.hard_shutdown(vm)
        x.host.enable(host)


def test_reboot_stops_paused_domains_and_comes_back_enabled(x: Any) -> None:
    host = member(x)
    vm = halted_vm(x, memory=GIB)
    x.VM.start_on(vm, host, True, False)
    free = int(x.host.compute_free_memory(host))
    x.host.disable(host)
    x.host.reboot(host)
    assert x.VM.get_power_state(vm) == "Halted" and vm not in x.host.get_resident_VMs(host)
    assert int(x.host.compute_free_memory(host)) > free
    assert live(x, host) and x.host.get_enabled(host)


def test_shutdown_then_power_on(x: Any) -> None:
    host = member(x)
    x.host.disable(host)
    x.host.shutdown(host)
    assert not live(x, host) and not x.host.get_enabled(host)
    vm = halted_vm(x, memory=GIB)
    assert failure(x.VM.start_on, vm, host, False, False)[0] == "HOST_NOT_LIVE"
    assert failure(x.host.power_on, host) == ["HOST_POWER_ON_MODE_DISABLED"]
    assert not live(x, host)
    x.host.set_power_on_mode(host, "wake-on-lan", {})
    x.host.power_on(host)
    assert live(x, host) and x.host.get_enabled(host)
    x.VM.start_on(vm, host, False, False)
    x.VM.hard_shutdown(vm)
    x.host.power_on(host)  # a live host: nothing to do
    assert live(x, host)


def test_power_on_config_keeps_its_password_in_a_secret(x: Any) -> None:
    """XenCenter keeps a BMC's password as a secret named by ``power_on_password_secret``; a new
    config forgets the old one's secrets (XAPI's clean_out_passwds), keeps one still named."""
    host = master(x)
    old = x.secret.create({"value": "bmc-1", "other_config": {}})
    kept = x.secret.create({"value": "shared", "other_config": {}})
    config = {"power_on_ip": "192.0.2.9", "power_on_user": "admin"}
    x.host.set_power_on_mode(host, "DRAC", config | {
        "power_on_password_secret": x.secret.get_uuid(old),
        "other_password_secret": x.secret.get_uuid(kept)})  # fmt: skip
    new = x.secret.create({"value": "bmc-2", "other_config": {}})
    x.host.set_power_on_mode(host, "DRAC", config | {
        "power_on_password_secret": x.secret.get_uuid(new),
        "other_password_secret": x.secret.get_uuid(kept)})  # fmt: skip
    assert failure(x.secret.get_value, old)[0] == "HANDLE_INVALID"
    assert x.secret.get_value(kept) == "shared" and x.secret.get_value(new) == "bmc-2"
    assert x.host.get_power_on_config(host)["power_on_password_secret"] == x.secret.get_uuid(new)
    x.host.set_power_on_mode(host, "", {})
    assert failure(x.secret.get_value, new)[0] == "HANDLE_INVALID"
