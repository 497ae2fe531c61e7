"""VM power operations over the wire: state, metrics, memory, and XAPI's exact errors."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from vmkit import GIB, MIB, master, set_delays, vif_record, wait_for

from xenstack.testing import RunningPool, failure, halted_vm, simulated_pool

GUEST_AGENT_DELAY = 0.05  # seconds: how soon the simulated guest agents report


@pytest.fixture(scope="module")
def pool() -> Iterator[RunningPool]:
    with simulated_pool(guest_agent_delay=GUEST_AGENT_DELAY) as running:
        yield running


def test_create_gives_a_halted_vm_with_metrics(x: Any) -> None:
    vm = halted_vm(x)
    rec = x.VM.get_record(vm)
    assert (rec["power_state"], rec["domid"], rec["resident_on"]) == (
        "Halted",
        "-1",
        "OpaqueRef:NULL",
    )
    assert {"start", "start_on", "clone", "destroy", "snapshot"} <= set(rec["allowed_operations"])
    assert "clean_shutdown" not in rec["allowed_operations"]
    assert x.VM_metrics.get_record(rec["metrics"])["memory_actual"] == "0"
    assert rec["domain_type"] == "pv"


def test_start_and_shutdown_account_memory(x: Any) -> None:
    vm = halted_vm(x, memory=512 * MIB)
    host = master(x)
    free_before = int(x.host.compute_free_memory(host))
    x.VM.start(vm, False, False)
    rec = x.VM.get_record(vm)
    assert rec["power_state"] == "Running" and int(rec["domid"]) > 0 and rec["resident_on"] == host
    metrics = x.VM_metrics.get_record(rec["metrics"])
    assert metrics["memory_actual"] == str(512 * MIB) and metrics["VCPUs_number"] == "1"
    assert metrics["state"] == ["running"] and metrics["current_domain_type"] == "pv"
    used = free_before - int(x.host.compute_free_memory(host))
    assert used == 512 * MIB + int(rec["memory_overhead"])
    assert x.host_metrics.get_memory_free(x.host.get_metrics(host)) == str(free_before - used)
    assert vm in x.host.get_resident_VMs(host)
    assert {"clean_shutdown", "pause", "suspend", "pool_migrate"} <= set(rec["allowed_operations"])
    x.VM.clean_shutdown(vm)
    rec = x.VM.get_record(vm)
    assert (rec["power_state"], rec["domid"], rec["resident_on"]) == (
        "Halted",
        "-1",
        "OpaqueRef:NULL",
    )
    assert int(x.host.compute_free_memory(host)) == free_before


def test_bad_power_state_errors_name_the_allowed_states(x: Any) -> None:
    vm = halted_vm(x)
    assert failure(x.VM.clean_shutdown, vm) == ["VM_BAD_POWER_STATE", vm, "running", "halted"]
    assert failure(x.VM.hard_shutdown, vm) == [
        "VM_BAD_POWER_STATE",
        vm,
        "paused, suspended, running",
        "halted",
    ]
    assert failure(x.VM.unpause, vm) == ["VM_BAD_POWER_STATE", vm, "paused", "halted"]
    x.VM.start(vm, False, False)
    assert failure(x.VM.start, vm, False, False) == ["VM_BAD_POWER_STATE", vm, "halted", "running"]
    assert failure(x.VM.destroy, vm) == ["VM_BAD_POWER_STATE", vm, "halted, suspended", "running"]
    assert failure(x.VM.resume, vm, False, False) == [
        "VM_BAD_POWER_STATE",
        vm,
        "suspended",
        "running",
    ]
    x.VM.hard_shutdown(vm)


def test_templates_blocked_ops_and_bad_refs(x: Any) -> None:
    template = halted_vm(x, name="tpl", is_a_template=True)
    assert failure(x.VM.start, template, False, False) == ["VM_IS_TEMPLATE", template, "start"]
    vm = halted_vm(x)
    x.VM.set_blocked_operations(vm, {"start": "maintenance"})
    assert failure(x.VM.start, vm, False, False) == ["OPERATION_BLOCKED", vm, "maintenance"]
    assert "start" not in x.VM.get_allowed_operations(vm)
    x.VM.set_blocked_operations(vm, {})
    assert failure(x.VM.start, "OpaqueRef:nope", False, False) == [
        "HANDLE_INVALID",
        "VM",
        "OpaqueRef:nope",
    ]
    assert failure(x.VM.assert_operation_valid, vm, "clean_shutdown")[0] == "VM_BAD_POWER_STATE"
    x.VM.assert_operation_valid(vm, "start")


def test_pause_suspend_resume_reboot(x: Any) -> None:
    vm = halted_vm(x)
    x.VM.start(vm, True, False)
    assert x.VM.get_power_state(vm) == "Paused"
    x.VM.unpause(vm)
    x.VM.pause(vm)
    x.VM.unpause(vm)
    domid = x.VM.get_domid(vm)
    x.VM.clean_reboot(vm)
    assert x.VM.get_domid(vm) != domid and x.VM.get_power_state(vm) == "Running"
    x.VM.hard_reboot(vm)
    x.VM.suspend(vm)
    rec = x.VM.get_record(vm)
    assert (rec["power_state"], rec["domid"], rec["resident_on"]) == (
        "Suspended",
        "-1",
        "OpaqueRef:NULL",
    )
    assert set(rec["allowed_operations"]) >= {"resume", "resume_on", "hard_shutdown", "checkpoint"}
    x.VM.resume(vm, False, False)
    assert x.VM.get_power_state(vm) == "Running"
    x.VM.suspend(vm)
    x.VM.resume_on(vm, master(x), True, False)
    assert x.VM.get_power_state(vm) == "Paused"
    x.VM.hard_shutdown(vm)
    x.VM.destroy(vm)
    assert failure(x.VM.get_record, vm)[0] == "HANDLE_INVALID"


def test_not_enough_memory(x: Any) -> None:
    vm = halted_vm(x, memory=1024 * GIB)
    err = failure(x.VM.start, vm, False, False)
    assert err[0] == "HOST_NOT_ENOUGH_FREE_MEMORY"
    assert int(err[1]) > int(err[2]) == int(x.host.compute_free_memory(master(x)))
    assert failure(x.VM.assert_can_boot_here, vm, master(x))[0] == "HOST_NOT_ENOUGH_FREE_MEMORY"
    assert x.VM.get_possible_hosts(vm) == []
    assert x.VM.get_power_state(vm) == "Halted" and x.VM.get_current_operations(vm) == {}


def test_other_operation_in_progress(pool: RunningPool, x: Any) -> None:
    vm = halted_vm(x)
    set_delays(pool, start=0.4)
    try:
        task = x.Async.VM.start(vm, False, False)
        wait_for(lambda: x.VM.get_current_operations(vm))
        assert x.VM.get_current_operations(vm) == {task: "start"}
        assert "start" not in x.VM.get_allowed_operations(vm)
        assert failure(x.VM.start, vm, False, False) == [
            "OTHER_OPERATION_IN_PROGRESS",
            "VM",
            vm,
            "start",
            task,
        ]
        wait_for(lambda: x.task.get_status(task) != "pending")
        assert x.task.get_status(task) == "success"
        assert x.VM.get_current_operations(vm) == {}
    finally:
        set_delays(pool, start=0.0)
    x.VM.hard_shutdown(vm)


def test_disabled_host(x: Any) -> None:
    host = master(x)
    vm = halted_vm(x)
    x.host.disable(host)
    try:
        assert failure(x.VM.start_on, vm, host, False, False) == ["HOST_DISABLED", host]
        assert failure(x.VM.start, vm, False, False) == ["NO_HOSTS_AVAILABLE"]
    finally:
        x.host.enable(host)
    x.VM.start_on(vm, host, False, False)
    x.VM.hard_shutdown(vm)


def test_memory_and_vcpu_settings(x: Any) -> None:
    vm = halted_vm(x, memory=512 * MIB)
    x.VM.set_memory_limits(vm, str(128 * MIB), str(1 * GIB), str(256 * MIB), str(768 * MIB))
    rec = x.VM.get_record(vm)
    assert rec["memory_dynamic_max"] == str(768 * MIB) and rec["memory_target"] == str(256 * MIB)
    assert failure(x.VM.set_memory_dynamic_range, vm, str(GIB), str(MIB)) == [
        "MEMORY_CONSTRAINT_VIOLATION_ORDER"
    ]
    x.VM.set_memory(vm, str(512 * MIB))
    assert x.VM.get_memory_static_max(vm) == str(512 * MIB)
    x.VM.set_memory_static_range(vm, str(256 * MIB), str(GIB))
    x.VM.set_VCPUs_max(vm, "4")
    assert failure(x.VM.set_VCPUs_at_startup, vm, "5")[0] == "INVALID_VALUE"
    x.VM.set_VCPUs_at_startup(vm, "2")
    x.VM.start(vm, False, False)
    assert failure(x.VM.set_memory_static_range, vm, "1", "2")[:2] == ["VM_BAD_POWER_STATE", vm]
    x.VM.set_memory_dynamic_range(vm, str(256 * MIB), str(300 * MIB))
    assert x.VM_metrics.get_memory_actual(x.VM.get_metrics(vm)) == str(300 * MIB)
    x.VM.set_VCPUs_number_live(vm, "3")
    assert x.VM_metrics.get_VCPUs_number(x.VM.get_metrics(vm)) == "3"
    assert failure(x.VM.set_VCPUs_number_live, vm, "9")[0] == "INVALID_VALUE"
    x.VM.hard_shutdown(vm)


def test_allowed_devices(x: Any) -> None:
    vm = halted_vm(x)
    assert x.VM.get_allowed_VIF_devices(vm) == [str(n) for n in range(16)]
    vbds = x.VM.get_allowed_VBD_devices(vm)
    assert vbds[:3] == ["0", "1", "2"] and len(vbds) == 255
    net = x.network.get_all()[0]
    x.VIF.create(vif_record(vm, net))
    assert x.VM.get_allowed_VIF_devices(vm)[0] == "1"


def test_guest_agent_reports_ip_per_vif(x: Any) -> None:
    vm = halted_vm(x)
    net = x.network.get_all()[0]
    x.VIF.create(vif_record(vm, net))
    x.VM.start(vm, False, False)
    gm = wait_for(
        lambda: x.VM.get_guest_metrics(vm) != "OpaqueRef:NULL" and x.VM.get_guest_metrics(vm)
    )
    rec = x.VM_guest_metrics.get_record(gm)
    assert (
        rec["networks"]["0/ip"].startswith("10.")
        and rec["networks"]["0/ipv4/0"] == rec["networks"]["0/ip"]
    )
    assert rec["PV_drivers_up_to_date"] is True and rec["os_version"]["distro"]
    x.VM.clean_shutdown(vm)
    assert x.VM.get_guest_metrics(vm) == "OpaqueRef:NULL"
    assert failure(x.VM_guest_metrics.get_record, gm)[0] == "HANDLE_INVALID"


def test_power_state_reset_and_dom0(x: Any) -> None:
    vm = halted_vm(x)
    x.VM.start(vm, False, False)
    assert failure(x.VM.power_state_reset, vm) == ["DOMAIN_EXISTS", vm]
    x.VM.pause(vm)
    x.VM.power_state_reset(vm)
    assert x.VM.get_power_state(vm) == "Halted"
    dom0 = x.host.get_control_domain(master(x))
    assert failure(x.VM.power_state_reset, dom0) == ["CANNOT_RESET_CONTROL_DOMAIN", dom0]
    assert failure(x.VM.destroy, dom0)[0] == "VM_BAD_POWER_STATE"


def test_jsonrpc_start_and_error(pool: RunningPool) -> None:
    def rpc(method: str, *params: Any) -> Any:
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
        req = urllib.request.Request(
            pool.jsonrpc_url, body.encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req) as resp:
            return json.loads(resp.read())

    session = rpc("session.login_with_password", "root", pool.password, "1.0", "t")["result"]
    vm = rpc("VM.create", session, {**_json_record()})["result"]
    assert rpc("VM.start", session, vm, False, False)["result"] is None
    err = rpc("VM.start", session, vm, False, False)["error"]
    assert err["message"] == "VM_BAD_POWER_STATE" and err["data"] == [vm, "halted", "running"]
    rpc("VM.hard_shutdown", session, vm)


def _json_record() -> dict[str, Any]:
    from xenstack.testing import vm_record

    rec = vm_record("json")
    return {
        k: (int(v) if k.startswith(("memory", "VCPUs_m", "VCPUs_at", "user_v")) else v)
        for k, v in rec.items()
    }
