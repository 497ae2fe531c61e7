"""QEMU deprivileged (``XENSTACK_QEMU_USER``): each QEMU runs as the ``xenstack-qemu`` system
user (made if missing), ``-sandbox on`` kept, and what it opens after dropping root works:
the guest boots from its NBD disk (reached through a socket granted to QEMU's group) and
writes to it, then suspends into a VDI and resumes (the image through a pipe the
toolstack pumps)."""

from __future__ import annotations

import os
import pwd
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import console, guest_ip, install
from systools import require_root, require_tool

from xenstack.testing.guests import QemuHost, qemu_host

pytestmark = [pytest.mark.qemu, pytest.mark.guest, pytest.mark.root, pytest.mark.slow]

USER = "xenstack-qemu"


@pytest.fixture(scope="module")
def host() -> Iterator[QemuHost]:
    require_tool("qemu-system-x86_64")
    require_tool("dnsmasq")
    require_root()
    os.environ["XENSTACK_QEMU_USER"] = USER
    try:
        with qemu_host("q3") as h:
            # the state's own directory is the toolstack's; its parent (a private temporary
            # directory here) must let QEMU's user pass, as /var/lib does
            os.chmod(h.state_dir.parent, 0o711)
            yield h
    finally:
        del os.environ["XENSTACK_QEMU_USER"]


def qemu_uid(run: Path) -> tuple[int, str]:
    pid = (run / "qemu.pid").read_text().strip()
    status = Path(f"/proc/{pid}/status").read_text()
    uid = int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[2])
    seccomp = next(line for line in status.splitlines() if line.startswith("Seccomp:"))
    return uid, seccomp.split()[1]


def test_qemu_runs_as_its_own_user(host: QemuHost, x: Any) -> None:
    vm = install(x, "q3-runas")
    x.VM.start(vm, False, False)
    ip = guest_ip(x, vm)
    con = console(host, x, vm)
    con.wait_for("XSG-READY")
    uid, seccomp = qemu_uid(con.run)
    assert uid == pwd.getpwnam(USER).pw_uid != 0
    assert seccomp == "2"  # -sandbox on: a seccomp filter
    con.run_command("printf RUNAS-OK | dd of=/dev/vda bs=512 seek=8 conv=fsync 2>/dev/null")
    assert "RUNAS-OK" in con.run_command(
        "dd if=/dev/vda bs=512 skip=8 count=1 iflag=direct 2>/dev/null | head -c 8"
    )
    before = float(con.run_command("cat /proc/uptime").split()[0])

    x.VM.suspend(vm)  # the image goes through a pipe the toolstack pumps: no helper process
    assert x.VM.get_power_state(vm) == "Suspended"
    x.VM.resume(vm, False, False)
    con = console(host, x, vm)
    assert float(con.run_command("cat /proc/uptime").split()[0]) > before
    assert qemu_uid(con.run)[0] == pwd.getpwnam(USER).pw_uid
    assert guest_ip(x, vm) == ip
    x.VM.hard_shutdown(vm)
    assert x.VM.get_power_state(vm) == "Halted"
