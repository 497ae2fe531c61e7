"""Guests outlive the toolstack: ``kill -9`` of ``xenstack serve`` while three guests run.

They keep running; the restarted toolstack shows them Running with the same domains, their
metrics and working disks (the NBD exports came back by themselves); a guest whose QEMU was
killed while the toolstack was down is Halted after the restart (its actions_after_crash
says destroy), with nothing left behind.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest
import XenAPI
from conftest import console, guest_ip, install

from xenstack.testing.guests import QemuHost, run_dir

pytestmark = [pytest.mark.qemu, pytest.mark.guest, pytest.mark.root, pytest.mark.slow]


def qemu_pid(host: QemuHost, x: Any, vm: str) -> int:
    return int((run_dir(host.state_dir, x.VM.get_uuid(vm)) / "qemu.pid").read_text())


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_guests_outlive_a_killed_toolstack(host: QemuHost, x: Any) -> None:
    vms = [install(x, f"xq-keep-{n}") for n in range(3)]
    x.VM.set_actions_after_crash(vms[2], "destroy")
    for vm in vms[:2]:  # at most two guests boot at once on this machine
        x.VM.start(vm, False, False)
    ips = [guest_ip(x, vm) for vm in vms[:2]]
    x.VM.start(vms[2], False, False)
    guest_ip(x, vms[2])
    domids = [x.VM.get_domid(vm) for vm in vms]
    pids = [qemu_pid(host, x, vm) for vm in vms]
    uuids = [x.VM.get_uuid(vm) for vm in vms]

    host.server.kill()  # SIGKILL: no clean-up at all
    os.kill(pids[2], signal.SIGKILL)  # this one dies while the toolstack is down
    assert alive(pids[0]) and alive(pids[1])
    host.server.start(timeout=120)

    s = XenAPI.Session(host.url)
    s.xenapi.login_with_password("root", host.password, "1.0", "xq-restart")
    y = s.xenapi
    again = [y.VM.get_by_uuid(u) for u in uuids]
    for vm, domid, ip in zip(again[:2], domids[:2], ips, strict=True):
        assert y.VM.get_power_state(vm) == "Running"
        assert y.VM.get_domid(vm) == domid
        assert guest_ip(y, vm) == ip
        con = console(host, y, vm)  # the disk works: its export is back
        out = con.run_command("echo after | dd of=/dev/vda bs=512 seek=8 conv=fsync && echo OK")
        assert "OK" in out
    assert y.VM.get_power_state(again[2]) == "Halted"
    assert not run_dir(host.state_dir, uuids[2]).exists()
    for vm in again[:2]:
        y.VM.hard_shutdown(vm)
    y.session.logout()
