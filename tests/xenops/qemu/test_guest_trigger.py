"""VM.send_trigger reaches a real guest: an NMI is logged by the guest's kernel, which runs on;
with ``kernel.unknown_nmi_panic`` set the NMI panics it (the crash dump nova's
``trigger_crash_dump`` asks for), seen through pvpanic as a crash; the ACPI power button
makes the guest's acpid power it off."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from conftest import console, install, until
from systools import require_root, require_tool

from xenstack.testing.guests import QemuHost, qemu_host

pytestmark = [pytest.mark.qemu, pytest.mark.guest, pytest.mark.root, pytest.mark.slow]


@pytest.fixture(scope="module")
def host() -> Iterator[QemuHost]:
    require_tool("qemu-system-x86_64")
    require_tool("dnsmasq")
    require_root()
    with qemu_host("n3t") as h:
        yield h


def test_nmi_and_power_button_reach_the_guest(host: QemuHost, x: Any) -> None:
    vm = install(x, "n3-trigger")
    x.VM.set_actions_after_crash(vm, "destroy")
    x.VM.start(vm, False, False)
    con = console(host, x, vm)
    con.wait_for("XSG-READY")
    domid = x.VM.get_domid(vm)

    start = len(con.text())
    x.VM.send_trigger(vm, "nmi")
    con.wait_for("NMI received", start=start)  # "Uhhuh. NMI received for unknown reason"
    con.run_command("true")  # the shell is there
    assert con.run_command("dmesg | grep -c Uhhuh").strip() == "1"  # logged, and runs on
    assert x.VM.get_power_state(vm) == "Running"
    assert x.VM.get_domid(vm) == domid

    x.VM.send_trigger(vm, "power")  # the guest's acpid: poweroff
    until(lambda: x.VM.get_power_state(vm) == "Halted", what="Halted after the power button")

    x.VM.start(vm, False, False)
    con = console(host, x, vm)
    con.wait_for("XSG-READY")
    con.run_command("true")
    con.run_command("echo 1 > /proc/sys/kernel/unknown_nmi_panic")
    x.VM.send_trigger(vm, "nmi")
    # the panic, through pvpanic: a crash, and actions_after_crash destroys the domain
    until(lambda: x.VM.get_power_state(vm) == "Halted", what="Halted after the NMI panic")
    x.VM.destroy(vm)
