"""Device hotplug through the backend, device operation tables, suspend images, squeezing,
master handover and evacuation options — over the wire with the XenAPI SDK."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import XenAPI
from vmkit import GIB, MIB, add_hosts, disk_record, local_sr, simulator, vbd_record, vif_record

from xenstack.testing import RunningPool, failure, halted_vm, simulated_pool

NULL = "OpaqueRef:NULL"


GUEST_AGENT_DELAY = 0.02  # seconds: how soon the simulated guest agents report


@pytest.fixture
def pool() -> Iterator[RunningPool]:
    with simulated_pool(guest_agent_delay=GUEST_AGENT_DELAY) as running:
        add_hosts(running, 1, memory=8 * GIB)
        yield running


def vm_with_devices(x: Any) -> tuple[str, str, str]:
    vm = halted_vm(x)
    vdi = x.VDI.create(disk_record(local_sr(x)))
    vbd = x.VBD.create(vbd_record(vm, vdi, "0"))
    vif = x.VIF.create(vif_record(vm, x.network.get_all()[0]))
    return vm, vbd, vif


def test_hotplug_goes_through_the_backend(x: Any, pool: RunningPool) -> None:
    vm, vbd, vif = vm_with_devices(x)
    assert failure(x.VBD.plug, vbd) == ["VM_BAD_POWER_STATE", vm, "running", "halted"]
    assert failure(x.VIF.unplug, vif) == ["VM_BAD_POWER_STATE", vm, "running", "halted"]
    assert x.VBD.get_allowed_operations(vbd) == ["attach"]
    assert x.VIF.get_allowed_operations(vif) == ["attach"]
    x.VM.start(vm, False, False)
    dom = simulator(pool).domains[vm]
    assert (dom.vbds, dom.vifs) == (("0",), ("0",))
    assert x.VBD.get_currently_attached(vbd) and x.VBD.get_device(vbd) == "xvda"
    assert set(x.VBD.get_allowed_operations(vbd)) == {
        "attach",
        "unplug",
        "unplug_force",
        "pause",
        "unpause",
    }
    assert set(x.VIF.get_allowed_operations(vif)) == {"attach", "unplug"}
    x.VIF.unplug(vif)
    x.VBD.unplug(vbd)
    dom = simulator(pool).domains[vm]
    assert (dom.vbds, dom.vifs) == ((), ())
    assert failure(x.VBD.unplug, vbd) == ["DEVICE_ALREADY_DETACHED", vbd]
    assert failure(x.VIF.unplug, vif) == ["DEVICE_ALREADY_DETACHED", vif]
    assert set(x.VIF.get_allowed_operations(vif)) == {"attach", "plug"}
    x.VBD.plug(vbd)
    x.VIF.plug(vif)
    assert failure(x.VBD.plug, vbd) == ["DEVICE_ALREADY_ATTACHED", vbd]
    assert failure(x.VIF.plug, vif) == ["DEVICE_ALREADY_ATTACHED", vif]
    assert simulator(pool).domains[vm].vbds == ("0",)
    x.VM.hard_shutdown(vm)
    assert x.VBD.get_currently_attached(vbd) is False
    assert x.VBD.get_allowed_operations(vbd) == ["attach"]


def test_unpluggable_and_hvm_rules(x: Any) -> None:
    vm, vbd, _ = vm_with_devices(x)
    x.VBD.set_unpluggable(vbd, False)
    x.VM.start(vm, False, False)
    assert x.VBD.get_allowed_operations(vbd) == ["attach", "pause", "unpause"]
    assert failure(x.VBD.unplug, vbd) == ["VBD_NOT_UNPLUGGABLE", vbd]
    hvm = halted_vm(x, name="hvm", HVM_boot_policy="BIOS order")
    vif = x.VIF.create(vif_record(hvm, x.network.get_all()[0]))
    x.VM.start(hvm, False, False)
    if x.VM.get_guest_metrics(hvm) == NULL:  # the agent has not reported drivers yet
        assert failure(x.VIF.unplug, vif) == ["VM_MISSING_PV_DRIVERS", hvm]


def test_suspend_image_vdi(x: Any, pool: RunningPool) -> None:
    vm, vbd, vif = vm_with_devices(x)
    x.VM.start(vm, False, False)
    x.VM.suspend(vm)
    image = x.VM.get_suspend_VDI(vm)
    rec = x.VDI.get_record(image)
    assert rec["type"] == "suspend"
    assert int(rec["virtual_size"]) >= int(x.VM.get_memory_static_max(vm))
    assert x.VBD.get_allowed_operations(vbd) == ["attach"]
    # devices stay recorded as attached while suspended
    assert x.VIF.get_currently_attached(vif) is True
    x.VM.resume(vm, False, False)
    assert x.VM.get_suspend_VDI(vm) == NULL
    assert image not in x.VDI.get_all()
    x.VM.suspend(vm)
    image = x.VM.get_suspend_VDI(vm)
    x.VM.hard_shutdown(vm)
    assert image not in x.VDI.get_all() and x.VM.get_suspend_VDI(vm) == NULL


def test_checkpoint_and_revert_use_suspend_vdis(x: Any) -> None:
    vm, _, _ = vm_with_devices(x)
    x.VM.start(vm, False, False)
    cp = x.VM.checkpoint(vm, "cp")
    image = x.VM.get_suspend_VDI(cp)
    assert x.VDI.get_type(image) == "suspend"
    assert x.VM.get_suspend_VDI(vm) == NULL
    x.VM.revert(cp)
    assert x.VM.get_power_state(vm) == "Suspended"
    mine = x.VM.get_suspend_VDI(vm)
    assert mine not in (NULL, image) and x.VDI.get_type(mine) == "suspend"
    x.VM.resume(vm, False, False)
    assert mine not in x.VDI.get_all() and image in x.VDI.get_all()


def test_suspend_without_an_sr(x: Any) -> None:
    vm = halted_vm(x)
    x.VM.start(vm, False, False)
    pool_ref = x.pool.get_all()[0]
    x.pool.set_suspend_image_SR(pool_ref, NULL)
    x.pool.set_default_SR(pool_ref, NULL)
    for host in x.host.get_all():
        x.host.set_suspend_image_sr(host, NULL)
    assert failure(x.VM.suspend, vm) == ["VM_NO_SUSPEND_SR", vm]
    assert x.VM.get_power_state(vm) == "Running"


def test_master_moves_and_this_host_follows(pool: RunningPool) -> None:
    s = XenAPI.Session(pool.url)
    s.xenapi.login_with_password("root", pool.password, "1.0", "master-tests")
    x, me = s.xenapi, s._session
    pool_ref = x.pool.get_all()[0]
    old = x.pool.get_master(pool_ref)
    (new,) = [h for h in x.host.get_all() if h != old]
    assert x.session.get_this_host(me) == old
    x.pool.designate_new_master(new)
    assert x.pool.get_master(pool_ref) == new == x.session.get_this_host(me)
    assert x.pool.recover_slaves() == [old]
    x.pool.emergency_transition_to_master()
    assert x.pool.get_master(pool_ref) == new
    x.pool.emergency_reset_master(x.host.get_address(old))
    assert x.pool.get_master(pool_ref) == old == x.session.get_this_host(me)
    s.xenapi.session.logout()


def test_start_squeezes_other_guests(x: Any, pool: RunningPool) -> None:
    host = x.pool.get_master(x.pool.get_all()[0])
    free = int(x.host.compute_free_memory(host))
    big = halted_vm(x, name="big", memory=free)
    x.VM.set_memory_limits(big, str(free // 4), str(free), str(free // 2), str(free))
    x.VM.start_on(big, host, False, False)
    assert int(x.host.compute_free_memory(host)) < 256 * MIB
    small = halted_vm(x, name="small", memory=256 * MIB)
    x.VM.start_on(small, host, False, False)
    assert x.VM.get_power_state(small) == "Running"
    actual = simulator(pool).domains[big].memory_actual
    assert free // 2 <= actual < free
    huge = halted_vm(x, name="huge", memory=free)
    err = failure(x.VM.start_on, huge, host, False, False)
    assert err[0] == "HOST_NOT_ENOUGH_FREE_MEMORY"
    assert int(err[1]) > int(err[2])
    assert x.VM.get_power_state(huge) == "Halted"


def test_evacuate_network_and_batch(x: Any) -> None:
    pool_ref = x.pool.get_all()[0]
    master = x.pool.get_master(pool_ref)
    vms = [halted_vm(x, name=f"e{i}") for i in range(3)]
    for vm in vms:
        x.VM.start_on(vm, master, False, False)
    internal = x.network.create(
        {"name_label": "internal", "name_description": "", "other_config": {}, "tags": []}
    )
    (other,) = [h for h in x.host.get_all() if h != master]
    assert failure(x.host.evacuate, master, internal, "2") == ["PIF_NOT_PRESENT", other, internal]
    assert failure(x.host.evacuate, master, "OpaqueRef:bad", "2")[0] == "HANDLE_INVALID"
    x.host.evacuate(master, NULL, "2")
    assert {x.VM.get_resident_on(vm) for vm in vms} == {other}
