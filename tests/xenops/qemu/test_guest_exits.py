"""A guest that ends by itself is handled as its VM's actions say (XAPI's actions_after_*):
a reboot from inside restarts it in a new domain, a kernel panic (reported through the
pvpanic device) follows actions_after_crash (destroy here), a poweroff from inside halts it."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import console, guest_ip, install, until

from xenstack.testing.guests import QemuHost

pytestmark = [pytest.mark.qemu, pytest.mark.guest, pytest.mark.root, pytest.mark.slow]


def type_in(host: QemuHost, x: Any, vm: str, command: str) -> None:
    """Type a command that ends the domain (no answer will come)."""
    import socket

    con = console(host, x, vm)
    con.run_command("true")  # the shell is there
    start = len(con.text())
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(con.run / "serial.sock"))
        s.sendall(f"{command}\n".encode())
        # QEMU reads the socket as fast as the guest's UART takes it: stay till it echoed
        con.wait_for(command, start=start)


def test_guest_initiated_ends_follow_the_vm_actions(host: QemuHost, x: Any) -> None:
    vm = install(x, "xq-exits")
    x.VM.set_actions_after_crash(vm, "restart")
    x.VM.start(vm, False, False)
    guest_ip(x, vm)
    console(host, x, vm).wait_for("XSG-READY")

    domid = x.VM.get_domid(vm)
    type_in(host, x, vm, "reboot -f")  # actions_after_reboot: restart
    until(lambda: x.VM.get_domid(vm) not in (domid, "-1"), what="a new domain after reboot")
    assert x.VM.get_power_state(vm) == "Running"
    guest_ip(x, vm)
    console(host, x, vm).wait_for("XSG-READY")

    # a kernel panic, seen through pvpanic (not the reboot panic=-1 then does): a crash
    x.VM.set_actions_after_crash(vm, "destroy")
    type_in(host, x, vm, "echo c > /proc/sysrq-trigger")
    until(lambda: x.VM.get_power_state(vm) == "Halted", what="Halted after the panic")

    x.VM.start(vm, False, False)
    console(host, x, vm).wait_for("XSG-READY")
    type_in(host, x, vm, "poweroff -f")  # actions_after_shutdown: destroy
    until(lambda: x.VM.get_power_state(vm) == "Halted", what="Halted after poweroff")
    assert x.VM.get_domid(vm) == "-1"
