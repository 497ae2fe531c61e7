"""Whole workflows as a client runs them with the XenAPI SDK, against a multi-host pool."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from vmkit import add_hosts, vif_record, wait_for

from xenstack.testing import RunningPool, failure, simulated_pool

GUEST_AGENT_DELAY = 0.1  # seconds: how soon the simulated guest agents report


@pytest.fixture
def pool() -> Iterator[RunningPool]:
    with simulated_pool(guest_agent_delay=GUEST_AGENT_DELAY) as running:
        add_hosts(running, 1)
        yield running


def shared_sr(x: Any) -> str:
    master = x.pool.get_master(x.pool.get_all()[0])
    return str(
        x.SR.create(
            master,
            {"server": "nfs.example", "serverpath": "/vms"},
            "0",
            "shared vms",
            "",
            "nfs",
            "user",
            True,
            {},
        )
    )


def install(x: Any, template_name: str, name: str, sr: str) -> str:
    """What ``xe vm-install`` does: clone the template, point its disks at an SR, provision."""
    (template,) = x.VM.get_by_name_label(template_name)
    vm = x.VM.clone(template, name)
    disks = x.VM.get_other_config(vm)["disks"]
    x.VM.remove_from_other_config(vm, "disks")
    x.VM.add_to_other_config(vm, "disks", re.sub(r'sr="[^"]*"', f'sr="{x.SR.get_uuid(sr)}"', disks))
    x.VM.provision(vm)
    return vm


def test_a_vms_life(x: Any) -> None:
    sr = shared_sr(x)
    vm = install(x, "Debian Bookworm 12", "web01", sr)
    assert x.VM.get_is_a_template(vm) is False
    net = x.network.get_all()[0]
    x.VIF.create(vif_record(vm, net))
    x.VM.start(vm, False, False)
    assert failure(x.VM.clean_shutdown, vm) == ["VM_LACKS_FEATURE", vm]  # HVM, no agent yet

    def ip() -> str | None:
        gm = x.VM.get_guest_metrics(vm)
        return x.VM_guest_metrics.get_networks(gm).get("0/ip") if gm != "OpaqueRef:NULL" else None

    address = wait_for(ip)
    assert address.startswith("10.")
    os_version = x.VM_guest_metrics.get_os_version(x.VM.get_guest_metrics(vm))
    assert os_version["distro"] == "debian" and os_version["major"] == "12"

    snap = x.VM.snapshot(vm, "web01 before upgrade", [])
    assert x.VM.get_snapshot_of(snap) == vm
    copy = x.VM.clone(snap, "web02")
    x.VM.set_is_a_template(copy, False)

    here = x.VM.get_resident_on(vm)
    (there,) = [h for h in x.host.get_all() if h != here]
    x.VM.pool_migrate(vm, there, {"live": "true"})
    assert x.VM.get_resident_on(vm) == there
    assert wait_for(ip) == address  # the guest keeps its address across the move

    x.VM.clean_shutdown(vm)
    assert x.VM.get_power_state(vm) == "Halted"
    x.VM.start_on(copy, there, False, False)
    x.VM.hard_shutdown(copy)
    for ref in (copy, snap, vm):
        x.VM.destroy(ref)
    assert failure(x.VM.get_record, vm)[0] == "HANDLE_INVALID"


def test_local_disks_pin_a_vm_to_its_host(x: Any) -> None:
    master = x.pool.get_master(x.pool.get_all()[0])
    local = next(
        r
        for r, rec in x.SR.get_all_records().items()
        if rec["name_label"] == "Local storage" and x.PBD.get_host(rec["PBDs"][0]) == master
    )
    vm = install(x, "Other install media", "pinned", local)
    x.VM.start_on(vm, master, False, False)
    (other,) = [h for h in x.host.get_all() if h != master]
    assert failure(x.VM.pool_migrate, vm, other, {}) == ["VM_LACKS_FEATURE", vm]
    wait_for(lambda: x.VM.get_guest_metrics(vm) != "OpaqueRef:NULL")
    assert failure(x.VM.pool_migrate, vm, other, {}) == ["VM_REQUIRES_SR", vm, local]
    assert x.VM.get_possible_hosts(vm) == [master]


def test_master_handover_with_ha_off(x: Any) -> None:
    pool_ref = x.pool.get_all()[0]
    old = x.pool.get_master(pool_ref)
    (new,) = [h for h in x.host.get_all() if h != old]
    assert x.pool.get_ha_enabled(pool_ref) is False
    x.pool.designate_new_master(new)
    assert x.pool.get_master(pool_ref) == new
    assert x.pool.recover_slaves() == [old]
    x.pool.designate_new_master(old)
    assert x.pool.recover_slaves() == [new]
