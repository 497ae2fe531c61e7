"""QEMU deprivileged, the default of a root toolstack: each QEMU runs as the ``xenstack-qemu``
system user (made if missing), ``-sandbox on`` kept, and what it opens after dropping root
works: the guest boots from its NBD disk (reached through a socket granted to QEMU's group)
and writes to it, suspends into a VDI and resumes (the image through a pipe the toolstack
pumps), and reads an ISO inserted live (a descriptor the toolstack opens, as QEMU's user may
not open the SR's files)."""

from __future__ import annotations

import os
import pwd
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import console, guest_ip, install, make_iso
from systools import require_root, require_tool

from xenstack.testing.guests import QemuHost, qemu_host

pytestmark = [pytest.mark.qemu, pytest.mark.guest, pytest.mark.root, pytest.mark.slow]

USER = "xenstack-qemu"


@pytest.fixture(scope="module")
def host() -> Iterator[QemuHost]:
    require_tool("qemu-system-x86_64")
    require_tool("dnsmasq")
    require_root()
    assert "XENSTACK_QEMU_USER" not in os.environ  # the default is what is tested
    with qemu_host("q3") as h:
        yield h


def qemu_uid(run: Path) -> tuple[int, str]:
    pid = (run / "qemu.pid").read_text().strip()
    status = Path(f"/proc/{pid}/status").read_text()
    uid = int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[2])
    seccomp = next(line for line in status.splitlines() if line.startswith("Seccomp:"))
    return uid, seccomp.split()[1]


def test_qemu_runs_as_its_own_user(host: QemuHost, x: Any, tmp_path: Path) -> None:
    vm = install(x, "q3-runas")
    cd = x.VBD.create({"VM": vm, "VDI": "OpaqueRef:NULL", "userdevice": "3", "bootable": False,
                       "mode": "RO", "type": "CD", "empty": True, "other_config": {},
                       "qos_algorithm_type": "", "qos_algorithm_params": {}})  # fmt: skip
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

    iso = _iso_sr(x, tmp_path)
    x.VBD.insert(cd, iso)
    # QEMU's user may not open the ISO (root's, 0600, in a 0700 directory): the insert
    # succeeds because the toolstack opened it and handed QEMU the descriptor
    pid = (con.run / "qemu.pid").read_text().strip()
    fds = Path(f"/proc/{pid}/fd")
    assert str(tmp_path / "isos" / "q3-run.iso") in {os.readlink(fd) for fd in fds.iterdir()}
    x.VM.hard_shutdown(vm)
    assert x.VM.get_power_state(vm) == "Halted"


def _iso_sr(x: Any, tmp_path: Path) -> str:
    """An ISO SR QEMU's user cannot read (0700, root's), holding one ISO labelled Q3RUN."""
    library = tmp_path / "isos"
    library.mkdir(mode=0o700)
    make_iso(library, "q3-run", "Q3RUN")
    (library / "q3-run.iso").chmod(0o600)
    [me] = x.host.get_all()
    sr = x.SR.create(me, {"location": str(library)}, "0", "q3 ISOs", "", "iso", "iso", False, {})
    x.SR.scan(sr)
    [iso] = x.SR.get_VDIs(sr)
    return str(iso)
