"""Real guests on the members of a pool of toolstacks of their own: two ``xenstack serve``
processes with the QEMU backend (each on its own guest network), the second joined to the
first, and a shared SR on real files.

The master starts a guest on the member: the member's QEMU boots it (its console, in the
member's state, shows the guest's shell), its disk on the shared SR is opened by the
member's own NBD server (the member has no row for that VDI: the master names its file),
and what the guest writes lands in the VDI's file. The export goes with the domain.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import XenAPI
from conftest import until
from systools import require_root, require_tool

from xenstack.storage.vhd.image import VhdImage
from xenstack.testing.guests import Console, QemuHost, install, qemu_pool, run_dir

pytestmark = [pytest.mark.qemu, pytest.mark.guest, pytest.mark.root, pytest.mark.slow]


@pytest.fixture(scope="module")
def pool() -> Iterator[list[QemuHost]]:
    require_tool("qemu-system-x86_64")
    require_tool("dnsmasq")
    require_root()
    with qemu_pool("xp") as hosts:
        yield hosts


@pytest.fixture(scope="module")
def x(pool: list[QemuHost]) -> Iterator[Any]:
    s = XenAPI.Session(pool[0].url)
    s.xenapi.login_with_password("root", pool[0].password, "1.0", "xp-tests")
    yield s.xenapi
    s.xenapi.session.logout()


def host_of(x: Any, qh: QemuHost) -> str:
    return str(x.host.get_by_uuid(qh.host_uuid))


def member_exports(qh: QemuHost) -> list[str]:
    nbd = qh.state_dir / "nbd"
    return sorted(p.stem for p in nbd.glob("*.sock")) if nbd.is_dir() else []


def test_guest_started_through_the_master_boots_on_the_member(pool: list[QemuHost], x: Any) -> None:
    master, member = pool
    vm = install(x, "xp-member")
    vdi = x.VBD.get_VDI(next(v for v in x.VM.get_VBDs(vm) if x.VBD.get_type(v) == "Disk"))
    vdi_uuid = x.VDI.get_uuid(vdi)
    x.VM.start_on(vm, host_of(x, member), False, False)
    assert x.VM.get_resident_on(vm) == host_of(x, member)
    assert x.VM.get_power_state(vm) == "Running"
    con = Console(run_dir(member.state_dir, x.VM.get_uuid(vm)))
    con.wait_for("XSG-READY")
    assert con.run_command("echo up") == "up\n"  # its shell answers (typed at once, it may not)
    assert not run_dir(master.state_dir, x.VM.get_uuid(vm)).exists()  # not the master's QEMU
    # its disk is the member's export of the shared SR's file (the master exports nothing)
    assert member_exports(member) == [vdi_uuid]
    assert vdi_uuid not in member_exports(master)
    out = con.run_command("echo xp-data-$((6*7)) | dd of=/dev/vda bs=512 conv=sync,fsync"
                          " 2>/dev/null; head -c 10 /dev/vda")  # fmt: skip
    assert "xp-data-42" in out
    x.VM.hard_shutdown(vm)
    assert x.VM.get_power_state(vm) == "Halted"
    until(lambda: member_exports(member) == [], what="the member's export gone")
    # the write is in the VDI's file on the shared SR (read as a chain, as any host would)
    directory = x.SR.get_sm_config(x.VDI.get_SR(vdi))["xenstack_path"]
    with VhdImage.open(f"{directory}/{vdi_uuid}.vhd", writable=False) as image:
        assert bytes(image.read(0, 10)) == b"xp-data-42"
