"""``xe`` commands added for parity with XenServer: CD drives and device listings, memory and
VCPU settings, power-state reset, and generic param commands on other classes.

Goldens as in ``test_xe_golden`` (``XE_UPDATE_GOLDEN=1`` regenerates them).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from xekit import check_golden, one, transcript, two_host_pool, xe

from xenstack.testing import RunningPool

MIB = 1 << 20


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPool]:
    state = tmp_path_factory.mktemp("xe-extra") / "state"
    with two_host_pool(state, instant_agent=True) as running:  # for VCPU hot-plug
        yield running


def install(pool: RunningPool, name: str) -> str:
    sr = one(pool, "sr-list", "shared=true", "content-type=user", "--minimal")
    return one(
        pool, "vm-install", "template=Debian Bookworm 12", f"new-name-label={name}", f"sr-uuid={sr}"
    )


def test_cd_add_list_remove(pool: RunningPool) -> None:
    vm = install(pool, "cdvm")
    text = transcript(
        pool,
        ["vm-cd-add", "vm=cdvm", "cd-name=guest-tools.iso", "device=3"],
        ["vm-cd-list", "vm=cdvm"],
        ["vm-cd-list", "vm=cdvm", "vbd-params=userdevice,mode", "vdi-params=name-label"],
        ["vm-cd-add", "vm=cdvm", "cd-name=no-such.iso", "device=4"],
        ["vm-cd-add", "vm=cdvm", "cd-name=guest-tools.iso"],
        ["vm-cd-remove", "vm=cdvm", "cd-name=no-such.iso"],
        ["vm-cd-remove", "vm=cdvm", "cd-name=guest-tools.iso"],
        ["vm-cd-list", "vm=cdvm"],
    )
    check_golden("vm_cd_add_remove", text)
    # an empty drive is removed by the name <EMPTY>
    one(pool, "vbd-create", f"vm-uuid={vm}", "device=5", "type=CD", "mode=ro")
    assert one(pool, "vm-cd-list", "vm=cdvm", "vbd-params=empty", "--minimal") == "true"
    assert one(pool, "vm-cd-remove", "vm=cdvm", "cd-name=<EMPTY>") == ""
    assert one(pool, "vbd-list", f"vm-uuid={vm}", "type=CD", "--minimal") == ""


def test_disk_list(pool: RunningPool) -> None:
    install(pool, "diskvm")
    one(pool, "vm-disk-add", "vm=diskvm", "disk-size=16MiB", "device=2")
    text = transcript(
        pool,
        ["vm-disk-list", "vm=diskvm"],
        ["vm-disk-list", "vm=diskvm", "vbd-params=userdevice", "vdi-params=virtual-size"],
        ["vm-disk-list", "vm=no-such-vm"],
    )
    check_golden("vm_disk_list", text)
    rc, out, _ = xe(pool, "vm-disk-list", "vm=diskvm", "vdi-params=all")
    assert rc == 0 and "sm-config (MRO)" in out and "Disk 1 VDI:" in out


def test_memory_commands(pool: RunningPool) -> None:
    vm = install(pool, "memvm")

    def mem(field: str) -> int:
        return int(one(pool, "vm-param-get", f"uuid={vm}", f"param-name={field}"))

    assert one(pool, "vm-memory-set", "vm=memvm", "memory=600MiB") == ""
    assert mem("memory-static-max") == mem("memory-dynamic-min") == 600 * MIB
    limits = ["static-min=128MiB", "static-max=1GiB", "dynamic-min=256MiB", "dynamic-max=512MiB"]
    assert one(pool, "vm-memory-limits-set", "vm=memvm", *limits) == ""
    assert (mem("memory-static-min"), mem("memory-dynamic-max")) == (128 * MIB, 512 * MIB)
    assert one(pool, "vm-memory-static-range-set", "vm=memvm", "min=64MiB", "max=1GiB") == ""
    assert one(pool, "vm-memory-target-set", "vm=memvm", "target=300MiB") == ""
    assert mem("memory-dynamic-min") == mem("memory-dynamic-max") == 300 * MIB
    text = transcript(
        pool,
        ["vm-memory-set", "vm=memvm", "memory=lots"],
        ["vm-memory-limits-set", "vm=memvm", "static-min=1GiB"],
        ["vm-memory-limits-set", "vm=memvm", *limits[:2], "dynamic-min=2GiB", "dynamic-max=2GiB"],
        ["vm-memory-set", "vm=no-such-vm", "memory=1GiB"],
    )
    check_golden("vm_memory", text)
    assert mem("memory-dynamic-max") == 300 * MIB  # refused changes changed nothing


def test_vcpu_hotplug_and_power_state_reset(pool: RunningPool) -> None:
    vm = install(pool, "cpuvm")
    one(pool, "vm-param-set", f"uuid={vm}", "VCPUs-max=4")
    text = transcript(
        pool,
        ["vm-vcpu-hotplug", "vm=cpuvm", "new-vcpus=2"],
        ["vm-vcpu-hotplug", "vm=cpuvm", "new-vcpus=two"],
        ["vm-start", "vm=cpuvm"],
        ["vm-vcpu-hotplug", "vm=cpuvm", "new-vcpus=3"],
        ["vm-param-get", "vm=cpuvm", f"uuid={vm}", "param-name=VCPUs-number"],
        ["vm-reset-powerstate", "vm=cpuvm"],
        ["vm-suspend", "vm=cpuvm"],
        ["vm-reset-powerstate", "vm=cpuvm", "--force"],
        ["vm-param-get", f"uuid={vm}", "param-name=power-state"],
    )
    check_golden("vm_vcpu_reset", text)


def test_power_commands_on_hosts(pool: RunningPool) -> None:
    vm = install(pool, "pwrvm")
    hosts = one(pool, "host-list", "params=name-label", "--minimal").split(",")

    def resident() -> str:
        host = one(pool, "vm-param-get", f"uuid={vm}", "param-name=resident-on")
        return one(pool, "host-param-get", f"uuid={host}", "param-name=name-label")

    for host in hosts:
        assert one(pool, "vm-start", "vm=pwrvm", f"on={host}") == ""
        assert resident() == host
        assert one(pool, "vm-suspend", "vm=pwrvm") == ""
        # the suspend image lies on that host's local SR: resume there
        assert one(pool, "vm-resume", "vm=pwrvm", f"on={host}") == ""
        assert resident() == host
        assert one(pool, "vm-shutdown", "vm=pwrvm", "--force") == ""
    text = transcript(
        pool,
        ["vm-start", "vm=pwrvm", "on=no-such-host"],
        ["vm-param-get", f"uuid={vm}", "param-name=power-state"],
        ["vm-resume", "vm=pwrvm", f"on={hosts[0]}"],
        ["vm-shutdown", "vm=pwrvm", "--force"],
    )
    check_golden("vm_power_on", text)


def test_generic_param_commands(pool: RunningPool) -> None:
    vm = install(pool, "paramvm")
    host = one(pool, "host-list", "--minimal").split(",")[0]
    sr = one(pool, "sr-list", "shared=true", "content-type=user", "--minimal")
    net = one(pool, "network-create", "name-label=param-net")
    pool_uuid = one(pool, "pool-list", "--minimal")
    one(pool, "vm-param-set", f"uuid={vm}", "other-config:color=blue")
    assert one(pool, "vm-param-get", f"uuid={vm}", "param-name=other-config",
               "param-key=color") == "blue"  # fmt: skip
    assert one(pool, "host-param-get", f"uuid={host}", "param-name=uuid") == host
    assert "uuid ( RO)" in one(pool, "sr-param-list", f"uuid={sr}")
    vdis = one(pool, "vdi-list", f"sr-uuid={sr}", "params=sr-uuid", "--minimal").split(",")
    assert vdis and set(vdis) == {sr}
    assert (
        one(pool, "network-param-set", f"uuid={net}", "name-description=for tests", "MTU=9000")
        == ""
    )
    assert one(pool, "network-param-get", f"uuid={net}", "param-name=MTU") == "9000"
    assert one(pool, "pool-param-set", f"uuid={pool_uuid}", "name-label=golden pool") == ""
    assert one(pool, "pool-list", "params=name-label", "--minimal") == "golden pool"
    text = transcript(
        pool,
        ["vm-param-get", f"uuid={vm}", "param-name=other-config", "param-key=nope"],
        ["host-param-get", f"uuid={host}", "param-name=no-such-field"],
        ["network-param-set", f"uuid={net}", "MTU=big"],
        ["pool-param-set", f"uuid={pool_uuid}", "master=x"],
    )
    check_golden("param_misc", text)
