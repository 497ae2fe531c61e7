"""What a master sends a member's backend: a domain's spec survives the wire whole (its
disks, NICs and boot method as the backend's data classes), a member names a shared-SR
disk by its file only when it looks like one, and a spec that is not one changes nothing."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from xenstack.errors import ApiError
from xenstack.impl.pool import member_disks
from xenstack.impl.pool.wire_backend import _argument, dump
from xenstack.xenops.interface import BootSpec, DiskSpec, DomainSpec, NicSpec

VDI = "0b9e5c0e-6d2a-4f55-9a49-52f0e3c1a7de"


def spec() -> DomainSpec:
    return DomainSpec(
        vm_id="OpaqueRef:vm", name="guest", domain_type="pv", memory_static_max=128 << 20,
        memory_dynamic_min=128 << 20, memory_dynamic_max=128 << 20, memory_overhead=1 << 20,
        vcpus_max=2, vcpus=1, vbds=("0", "3"), vifs=("0",), platform=(("acpi", "1"),),
        vif_networks=(("0", "OpaqueRef:net"),), os_hint="linux",
        disks=(DiskSpec("0", "OpaqueRef:vdi", vhd=f"/nfs/sr/{VDI}.vhd", bootable=True),
               DiskSpec("3", kind="CD", mode="RO", empty=True)),
        nics=(NicSpec("0", "OpaqueRef:vif", "02:00:00:00:00:01", "OpaqueRef:net", "xenbr0",
                      other_config=(("nicira-iface-id", "x"),)),),
        boot=BootSpec(kernel="/boot/vmlinux", ramdisk="/boot/initrd", kernel_args="quiet"),
        uuid="c2f1", xenstore_data=(("vm-data/a", "b"),),
    )  # fmt: skip


def test_a_spec_crosses_the_wire_whole() -> None:
    sent = spec()
    received = _argument("spec", orjson.loads(orjson.dumps(dump(sent))))
    assert received == sent
    assert isinstance(received.disks[0], DiskSpec) and isinstance(received.boot, BootSpec)
    assert received.disk("0") == sent.disks[0]  # the backend's lookups work on it
    assert received.nic("0") is not None and received.nic("0").bridge == "xenbr0"


def test_a_spec_that_is_not_one_is_refused() -> None:
    doc = dump(spec())
    doc["disks"][0]["colour"] = "blue"
    with pytest.raises(ApiError) as err:
        _argument("spec", doc)
    assert err.value.code == "INVALID_VALUE"


def test_a_member_exports_only_files_named_like_a_vdi(tmp_path: Path) -> None:
    good = tmp_path / f"{VDI}.vhd"
    good.write_bytes(b"")
    assert member_disks.key_of(str(good)) == VDI
    for bad in ("/etc/shadow", f"relative/{VDI}.vhd", f"{tmp_path}/../x.vhd", str(tmp_path)):
        with pytest.raises(ApiError) as err:
            member_disks.key_of(bad)
        assert err.value.code == "INVALID_VALUE"
    with pytest.raises(ApiError) as err:
        member_disks.key_of(str(tmp_path / f"{VDI.replace('0b', '1b')}.vhd"))
    assert err.value.code == "VDI_MISSING"


def test_a_hot_plugged_disk_and_nic_cross_the_wire_whole() -> None:
    """``vbd_plug``'s disk (named by file) and ``vif_plug``'s NIC, as the member gets them."""
    disk, nic = spec().disks[0], spec().nics[0]
    assert _argument("plug?", orjson.loads(orjson.dumps(dump(disk)))) == disk
    assert _argument("nic?", orjson.loads(orjson.dumps(dump(nic)))) == nic
    assert _argument("nic?", None) is None
    with pytest.raises(ApiError, match="INVALID_VALUE"):
        _argument("nic", {"device": "1", "colour": "blue"})  # not a NicSpec field
