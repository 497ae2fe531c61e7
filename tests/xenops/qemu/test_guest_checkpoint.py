"""``VM.checkpoint`` and ``VM.revert`` of a running real guest, as XAPI does them.

The checkpoint is a snapshot record in ``power_state`` Suspended whose ``suspend_VDI`` holds
the guest's memory, its disks snapshotted at the same instant; the VM runs on. Reverting to
it makes the VM Suspended with a clone of that image; resuming it brings the guest back
where it was: what it wrote after the checkpoint, in memory and on disk, is gone, and its
uptime is the checkpoint's.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from conftest import console, guest_ip, install, until
from systools import require_root, require_tool

from xenstack.testing.guests import QemuHost, qemu_host

pytestmark = [pytest.mark.qemu, pytest.mark.guest, pytest.mark.root, pytest.mark.slow]

SECTOR = 4096  # where the disk markers go on /dev/vda (in 512-byte sectors)


@pytest.fixture(scope="module")
def host() -> Iterator[QemuHost]:
    require_tool("qemu-system-x86_64")
    require_tool("dnsmasq")
    require_root()
    with qemu_host("q3") as h:
        yield h


def write_marker(con: Any, text: str) -> None:
    con.run_command(
        f"printf '%-16s' {text} | dd of=/dev/vda bs=512 seek={SECTOR} conv=fsync 2>/dev/null"
    )


def disk_marker(con: Any) -> str:
    # O_DIRECT: what is on the disk, not in the guest's page cache
    out = con.run_command(
        f"dd if=/dev/vda bs=512 skip={SECTOR} count=1 iflag=direct 2>/dev/null | head -c 16"
    )
    return out.strip().splitlines()[-1].strip()  # the console wraps the long command


def uptime(con: Any) -> float:
    return float(con.run_command("cat /proc/uptime").split()[0])


def test_checkpoint_and_revert_a_running_guest(host: QemuHost, x: Any) -> None:
    vm = install(x, "q3-ckpt")
    x.VM.start(vm, False, False)
    ip = guest_ip(x, vm)
    con = console(host, x, vm)
    con.wait_for("XSG-READY")
    write_marker(con, "CKPT-ONE")
    con.run_command("echo one > /run/q3-mem-one")
    before = uptime(con)

    snap = x.VM.checkpoint(vm, "q3-checkpoint")
    record = x.VM.get_record(snap)
    assert record["is_a_snapshot"] and record["snapshot_of"] == vm
    assert record["power_state"] == "Suspended"
    image = record["suspend_VDI"]
    assert x.VDI.get_type(image) == "suspend"
    assert int(x.VDI.get_virtual_size(image)) >= int(x.VM.get_memory_static_max(vm))
    assert x.VM.get_power_state(vm) == "Running"  # the guest ran on
    at_checkpoint = uptime(con)
    assert at_checkpoint > before

    # after the checkpoint: a second marker on disk and in memory
    write_marker(con, "CKPT-TWO")
    con.run_command("echo two > /run/q3-mem-two")
    assert disk_marker(con) == "CKPT-TWO"
    # the guest lives on well past the checkpoint, so a revert shows in its clock
    later = until(lambda: (u := uptime(con)) > at_checkpoint + 8 and u, what="guest time")

    x.VM.revert(snap)
    assert x.VM.get_power_state(vm) == "Suspended"
    clone = x.VM.get_suspend_VDI(vm)
    assert clone not in ("OpaqueRef:NULL", image) and x.VDI.get_type(clone) == "suspend"
    x.VM.resume(vm, False, False)
    assert x.VM.get_power_state(vm) == "Running"
    con = console(host, x, vm)
    # the guest is where it was at the checkpoint: its memory, its disk, its clock
    assert con.run_command("cat /run/q3-mem-one").strip() == "one"
    assert "No such file" in con.run_command("cat /run/q3-mem-two 2>&1")
    assert disk_marker(con) == "CKPT-ONE"
    assert at_checkpoint - 1 < uptime(con) < later
    assert guest_ip(x, vm) == ip  # the same guest, the same MAC: its agent reports again
    assert x.VM.get_suspend_VDI(vm) == "OpaqueRef:NULL"
    assert x.VDI.get_type(image) == "suspend"  # the checkpoint keeps its own image

    x.VM.hard_shutdown(vm)
    x.VM.destroy(snap)
