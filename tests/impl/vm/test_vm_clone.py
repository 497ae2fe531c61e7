"""Clone, copy, snapshot, checkpoint, revert and provision over the wire."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from vmkit import GIB, disk_record, local_sr, vbd_record, vif_record

from xenstack.testing import RunningPool, failure, halted_vm, simulated_pool

GUEST_AGENT_DELAY = 0.05  # seconds: how soon the simulated guest agents report


@pytest.fixture(scope="module")
def pool() -> Iterator[RunningPool]:
    with simulated_pool(guest_agent_delay=GUEST_AGENT_DELAY) as running:
        yield running


def vm_with_disk_and_vif(x: Any, name: str = "vm") -> tuple[str, str]:
    vm = halted_vm(x, name=name)
    vdi = x.VDI.create(disk_record(local_sr(x), f"{name} disk"))
    x.VBD.create(vbd_record(vm, vdi, "0", bootable=True, unpluggable=False))
    x.VIF.create(vif_record(vm, x.network.get_all()[0]))
    return vm, vdi


def disks(x: Any, vm: str) -> list[str]:
    return [x.VBD.get_VDI(v) for v in x.VM.get_VBDs(vm)]


def test_clone_copies_devices_and_disks(x: Any) -> None:
    vm, vdi = vm_with_disk_and_vif(x)
    clone = x.VM.clone(vm, "the clone")
    rec = x.VM.get_record(clone)
    assert rec["name_label"] == "the clone" and rec["power_state"] == "Halted"
    assert rec["uuid"] != x.VM.get_uuid(vm) and rec["is_a_snapshot"] is False
    (new_vdi,) = disks(x, clone)
    assert new_vdi != vdi and x.VDI.get_virtual_size(new_vdi) == str(GIB)
    assert x.VDI.get_SR(new_vdi) == x.VDI.get_SR(vdi)
    (vif,) = rec["VIFs"]
    assert x.VIF.get_MAC(vif) != x.VIF.get_MAC(x.VM.get_VIFs(vm)[0])
    assert "start" in rec["allowed_operations"]
    x.VM.start(vm, False, False)
    assert failure(x.VM.clone, vm, "no") == ["VM_BAD_POWER_STATE", vm, "halted", "running"]
    x.VM.hard_shutdown(vm)


def test_snapshot_and_revert(x: Any) -> None:
    vm, vdi = vm_with_disk_and_vif(x, "snappy")
    x.VM.start(vm, False, False)
    snap = x.VM.snapshot(vm, "before", [])
    rec = x.VM.get_record(snap)
    assert rec["is_a_snapshot"] is True and rec["is_a_template"] is True
    assert rec["snapshot_of"] == vm and rec["snapshot_time"].value > "1970"
    assert snap in x.VM.get_snapshots(vm)
    assert x.VIF.get_MAC(rec["VIFs"][0]) == x.VIF.get_MAC(x.VM.get_VIFs(vm)[0])
    assert failure(x.VM.start, snap, False, False) == ["VM_IS_SNAPSHOT", snap, "start"]
    assert failure(x.VM.revert, vm) == ["REVERT_ONLY_ALLOWED_ON_SNAPSHOT"]
    x.VM.set_memory_dynamic_range(
        vm, x.VM.get_memory_dynamic_min(vm), x.VM.get_memory_dynamic_max(vm)
    )
    x.VM.revert(snap)
    assert x.VM.get_power_state(vm) == "Halted"
    (disk,) = disks(x, vm)
    assert disk != vdi
    assert x.VM.get_snapshots(vm) == [snap]
    clone = x.VM.clone(snap, "from snapshot")
    assert x.VM.get_is_a_snapshot(clone) is False


def test_checkpoint_reverts_to_suspended(x: Any) -> None:
    vm, _ = vm_with_disk_and_vif(x, "cp")
    x.VM.start(vm, False, False)
    cp = x.VM.checkpoint(vm, "cp1")
    assert x.VM.get_power_state(cp) == "Suspended" and x.VM.get_power_state(vm) == "Running"
    x.VM.revert(cp)
    assert x.VM.get_power_state(vm) == "Suspended"
    x.VM.resume(vm, False, False)
    assert x.VM.get_power_state(vm) == "Running"
    x.VM.hard_shutdown(vm)


def test_copy_to_an_sr(x: Any) -> None:
    vm, vdi = vm_with_disk_and_vif(x, "copyme")
    copied = x.VM.copy(vm, "copied", local_sr(x))
    (disk,) = disks(x, copied)
    assert disk != vdi and x.VDI.get_SR(disk) == local_sr(x)


def test_provision_a_template(x: Any) -> None:
    sr_uuid = x.SR.get_uuid(local_sr(x))
    xml = (
        f'<provision><disk device="0" size="{GIB}" sr="{sr_uuid}" bootable="true" '
        'type="system"/></provision>'
    )
    template = halted_vm(x, name="my template", is_a_template=True, other_config={"disks": xml})
    vm = x.VM.clone(template, "installed")
    assert x.VM.get_is_a_template(vm) is True
    x.VM.provision(vm)
    rec = x.VM.get_record(vm)
    assert rec["is_a_template"] is False and "disks" not in rec["other_config"]
    (disk,) = disks(x, vm)
    assert x.VDI.get_virtual_size(disk) == str(GIB)
    assert failure(x.VM.provision, vm) == ["PROVISION_ONLY_ALLOWED_ON_TEMPLATE"]


def test_destroy_removes_devices_not_disks(x: Any) -> None:
    vm, vdi = vm_with_disk_and_vif(x, "doomed")
    vbd, vif = x.VM.get_VBDs(vm)[0], x.VM.get_VIFs(vm)[0]
    x.VM.destroy(vm)
    assert failure(x.VBD.get_record, vbd)[0] == "HANDLE_INVALID"
    assert failure(x.VIF.get_record, vif)[0] == "HANDLE_INVALID"
    assert x.VDI.get_virtual_size(vdi) == str(GIB)
