"""Live changes to a running real guest, over the wire with the PyPI XenAPI SDK.

- ``VM.set_memory_dynamic_range``: QEMU's balloon moves, ``VM_metrics.memory_actual``
  follows it, and the guest's ``MemTotal`` shrinks and grows back.
- ``VM.set_VCPUs_number_live`` within ``VCPUs_max``: QEMU CPUs are hot-plugged and ejected,
  the guest's agent onlines them, ``/sys/devices/system/cpu/online`` says so.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import XenAPI
from conftest import console, guest_ip, install, until
from systools import require_root, require_tool

from xenstack.testing.guests import QemuHost, qemu_host

pytestmark = [pytest.mark.qemu, pytest.mark.guest, pytest.mark.root, pytest.mark.slow]

MIB = 1 << 20


@pytest.fixture(scope="module")
def host() -> Iterator[QemuHost]:
    require_tool("qemu-system-x86_64")
    require_tool("dnsmasq")
    require_root()
    with qemu_host("q3") as h:
        yield h


def failure(call: Any, *args: Any) -> list[str]:
    with pytest.raises(XenAPI.Failure) as info:
        call(*args)
    return list(info.value.details)


def mem_total(con: Any) -> int:
    out = con.run_command("grep MemTotal /proc/meminfo")
    return int(out.split()[1]) * 1024


def test_balloon_and_vcpus_live(host: QemuHost, x: Any) -> None:
    vm = install(x, "q3-live")
    x.VM.set_memory_limits(vm, str(128 * MIB), str(256 * MIB), str(256 * MIB), str(256 * MIB))
    # more vCPUs than this 2-core machine has pCPUs: XAPI allows it only when told
    x.VM.add_to_platform(vm, "vcpu-unrestricted", "true")
    x.VM.set_VCPUs_max(vm, "3")
    x.VM.set_VCPUs_at_startup(vm, "1")
    x.VM.start(vm, False, False)
    guest_ip(x, vm)
    con = console(host, x, vm)
    con.wait_for("XSG-READY")
    metrics = x.VM.get_metrics(vm)
    full = mem_total(con)

    # memory: the balloon moves and the guest sees it
    x.VM.set_memory_dynamic_range(vm, str(160 * MIB), str(160 * MIB))
    actual = int(x.VM_metrics.get_memory_actual(metrics))
    assert abs(actual - 160 * MIB) <= 4 * MIB, actual
    until(lambda: mem_total(con) <= full - 80 * MIB, what="a smaller MemTotal in the guest")
    x.VM.set_memory_dynamic_range(vm, str(192 * MIB), str(256 * MIB))
    assert int(x.VM_metrics.get_memory_actual(metrics)) >= 250 * MIB
    until(lambda: mem_total(con) >= full - 8 * MIB, what="MemTotal back in the guest")
    assert int(x.VM.get_memory_dynamic_max(vm)) == 256 * MIB
    # XAPI's errors: bad order, beyond the static limits; nothing changes
    assert failure(x.VM.set_memory_dynamic_range, vm, str(200 * MIB), str(150 * MIB)) == [
        "MEMORY_CONSTRAINT_VIOLATION_ORDER"
    ]
    assert failure(x.VM.set_memory_dynamic_range, vm, str(192 * MIB), str(512 * MIB))[0] == (
        "MEMORY_CONSTRAINT_VIOLATION_ORDER"
    )
    assert int(x.VM.get_memory_dynamic_min(vm)) == 192 * MIB
    # set_memory_target_live is XAPI's no-op (use set_memory_dynamic_range): accepted, ignored
    x.VM.set_memory_target_live(vm, str(150 * MIB))
    assert int(x.VM_metrics.get_memory_actual(metrics)) >= 250 * MIB

    # vCPUs: hot-plugged up to VCPUs_max, onlined by the guest's agent, then ejected
    online = lambda: con.run_command("cat /sys/devices/system/cpu/online").strip()  # noqa: E731
    assert online() == "0"
    x.VM.set_VCPUs_number_live(vm, "3")
    until(lambda: online() == "0-2", what="three CPUs online in the guest")
    assert int(x.VM_metrics.get_VCPUs_number(metrics)) == 3
    x.VM.set_VCPUs_number_live(vm, "2")
    until(lambda: online() == "0-1", what="two CPUs online in the guest")
    assert con.run_command("grep -c ^processor /proc/cpuinfo").strip() == "2"
    assert int(x.VM_metrics.get_VCPUs_number(metrics)) == 2
    for bad in ("4", "0"):
        assert failure(x.VM.set_VCPUs_number_live, vm, bad)[0] == "INVALID_VALUE"
    assert online() == "0-1"
    x.VM.hard_shutdown(vm)
    # halted: live changes are refused with XAPI's power-state error
    assert failure(x.VM.set_VCPUs_number_live, vm, "2")[0] == "VM_BAD_POWER_STATE"
