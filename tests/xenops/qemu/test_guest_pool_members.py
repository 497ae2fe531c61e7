"""Real guests on the members of a pool of toolstacks of their own: two ``xenstack serve``
processes with the QEMU backend (each on its own guest network), the second joined to the
first, and a shared SR on real files.

The master starts a guest on the member: the member's QEMU boots it (its console, in the
member's state, shows the guest's shell), its disk on the shared SR is opened by the
member's own NBD server (the member has no row for that VDI: the master names its file),
and what the guest writes lands in the VDI's file. The export goes with the domain.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import XenAPI
from conftest import until
from systools import require_root, require_tool

from xenstack.storage.vhd.image import VhdImage
from xenstack.testing.guests import Console, QemuHost, install, qemu_pool, run_dir

pytestmark = [pytest.mark.qemu, pytest.mark.guest, pytest.mark.root, pytest.mark.slow]
SECTOR = 4096  # where the markers go on /dev/vda (in 512-byte sectors)


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


@pytest.fixture(autouse=True)
def _stops_what_it_started(request: pytest.FixtureRequest) -> Iterator[None]:
    """The pool is the module's: a test that fails half-way must not leave a guest (and its
    disk exports) to the next. What it started and left up is hard-shut down afterwards."""
    if "x" not in request.fixturenames:
        yield
        return
    x = request.getfixturevalue("x")
    before = set(x.VM.get_all())
    yield
    for vm in set(x.VM.get_all()) - before:
        if x.VM.get_power_state(vm) != "Halted" and not x.VM.get_is_a_snapshot(vm):
            x.VM.hard_shutdown(vm)


def host_of(x: Any, qh: QemuHost) -> str:
    return str(x.host.get_by_uuid(qh.host_uuid))


def member_exports(qh: QemuHost) -> list[str]:
    nbd = qh.state_dir / "nbd"
    return sorted(p.stem for p in nbd.glob("*.sock")) if nbd.is_dir() else []


def _guest_ip(x: Any, vm: str) -> str:
    gm = x.VM.get_guest_metrics(vm)
    if gm == "OpaqueRef:NULL":
        return ""
    return str(x.VM_guest_metrics.get_networks(gm).get("0/ip", ""))


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
    # what its agent wrote into the member's XenStore makes the master's guest metrics
    ip = until(lambda: _guest_ip(x, vm), what="the member's guest's address on the master")
    assert ip.count(".") == 3
    gm = x.VM.get_guest_metrics(vm)
    assert x.VM_guest_metrics.get_os_version(gm)["distro"] == "xsg"
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


@pytest.fixture(scope="module")
def pool3() -> Iterator[list[QemuHost]]:
    require_tool("qemu-system-x86_64")
    require_tool("dnsmasq")
    require_root()
    with qemu_pool("xm", size=3) as hosts:
        yield hosts


def ticks(text: str) -> list[tuple[int, float]]:
    return [(int(n), float(t)) for n, t in re.findall(r"XQ-TICK (\d+) ([\d.]+)", text)]


def test_live_migration_between_member_toolstacks_keeps_the_guest_running(
    pool3: list[QemuHost],
) -> None:
    """Member B -> member C: QEMU to QEMU over TCP, each host's NBD server on the same
    chain; the counter keeps counting, the writes before and after are on the disk."""
    s = XenAPI.Session(pool3[0].url)
    s.xenapi.login_with_password("root", pool3[0].password, "1.0", "xm-tests")
    x = s.xenapi
    _, b, c = pool3
    vm = install(x, "xm-mover")
    uuid = x.VM.get_uuid(vm)
    x.VM.start_on(vm, host_of(x, b), False, False)
    con = Console(run_dir(b.state_dir, uuid))
    con.wait_for("XSG-READY")
    assert con.run_command("echo up") == "up\n"
    con.run_command(f"printf '%-16s' before | dd of=/dev/vda bs=512 seek={SECTOR} conv=fsync"
                    " 2>/dev/null")  # fmt: skip
    con.run_command("(i=0; while :; do i=$((i+1)); read -r u _ < /proc/uptime;"
                    " echo XQ-TICK $i $u > /dev/console; sleep 0.1; done) & true")  # fmt: skip
    last_before = ticks(con.wait_for("XQ-TICK 5 "))[-1][0]
    x.VM.pool_migrate(vm, host_of(x, c), {"live": "true"})
    assert x.VM.get_resident_on(vm) == host_of(x, c)
    assert x.VM.get_power_state(vm) == "Running"
    after = Console(run_dir(c.state_dir, uuid))
    first = ticks(after.wait_for("XQ-TICK"))[0][0]
    assert first > last_before  # the same counter, not a new boot
    seen = ticks(after.wait_for(f"XQ-TICK {first + 5} "))
    assert [n for n, _ in seen[:6]] == list(range(first, first + 6))
    until(lambda: not run_dir(b.state_dir, uuid).exists(), what="the source QEMU gone")
    assert member_exports(b) == [] and len(member_exports(c)) == 1
    # the disk: what was written before is read on the destination, which writes on
    got = after.run_command(f"dd if=/dev/vda bs=512 skip={SECTOR} count=1 iflag=direct"
                            " 2>/dev/null | head -c 16")  # fmt: skip
    assert [line for line in got.split() if line.startswith("before")] == ["before"]
    after.run_command(f"printf '%-16s' after | dd of=/dev/vda bs=512 seek={SECTOR + 8}"
                      " conv=fsync 2>/dev/null")  # fmt: skip
    stats = json.loads((after.run / "migration.json").read_text())
    gaps = [q[1] - p[1] for p, q in itertools.pairwise(seen)]
    print(
        f"\nlive migration between toolstacks: downtime {stats['downtime_ms']:.0f} ms (QEMU),"
        f" total {stats['total_ms']:.0f} ms (QEMU), {stats['wall_s']:.2f} s wall;"
        f" guest ticks after it at most {max(gaps):.2f} s apart"
    )
    x.VM.hard_shutdown(vm)
    until(lambda: member_exports(c) == [], what="the destination's export gone")
    vdi = x.VBD.get_VDI(next(v for v in x.VM.get_VBDs(vm) if x.VBD.get_type(v) == "Disk"))
    directory = x.SR.get_sm_config(x.VDI.get_SR(vdi))["xenstack_path"]
    with VhdImage.open(f"{directory}/{x.VDI.get_uuid(vdi)}.vhd", writable=False) as image:
        assert bytes(image.read(SECTOR * 512, 6)) == b"before"
        assert bytes(image.read((SECTOR + 8) * 512, 5)) == b"after"
    s.xenapi.session.logout()


def _disk_write(con: Console, text: str, sector: int) -> None:
    con.run_command(f"printf '%-16s' {text} | dd of=/dev/vda bs=512 seek={sector} conv=fsync"
                    " 2>/dev/null")  # fmt: skip


def _disk_read(con: Console, sector: int) -> list[str]:
    got = con.run_command(f"dd if=/dev/vda bs=512 skip={sector} count=1 iflag=direct"
                          " 2>/dev/null | head -c 16")  # fmt: skip
    return [w for w in got.split() if w.isalpha()]


def _moved(x: Any, vm: str, src: QemuHost, dest: QemuHost, last: int) -> tuple[Console, int]:
    """Migrate ``vm`` live from ``src`` to ``dest``: the same guest counting on there."""
    uuid = x.VM.get_uuid(vm)
    x.VM.pool_migrate(vm, host_of(x, dest), {"live": "true"})
    assert x.VM.get_resident_on(vm) == host_of(x, dest)
    assert x.VM.get_power_state(vm) == "Running"
    con = Console(run_dir(dest.state_dir, uuid))
    first = ticks(con.wait_for("XQ-TICK"))[0][0]
    assert first > last  # the same counter, not a new boot
    seen = ticks(con.wait_for(f"XQ-TICK {first + 3} "))
    assert [n for n, _ in seen[:4]] == list(range(first, first + 4))
    until(lambda: not run_dir(src.state_dir, uuid).exists(), what="the source QEMU gone")
    stats = json.loads((con.run / "migration.json").read_text())
    print(f"\nlive migration {src.host_uuid[:8]} -> {dest.host_uuid[:8]}: downtime"
          f" {stats['downtime_ms']:.0f} ms (QEMU), {stats['wall_s']:.2f} s wall")  # fmt: skip
    assert stats["downtime_ms"] > 0
    return con, seen[-1][0]


def test_live_migration_from_the_masters_host_to_a_member_and_back(
    pool: list[QemuHost], x: Any
) -> None:
    """Master -> member -> master: the master's exports hand the chain over as a member's
    do; the guest counts on throughout, and every write on every host is on the disk."""
    master, member = pool
    vm = install(x, "xp-roundtrip")
    vdi = x.VBD.get_VDI(next(v for v in x.VM.get_VBDs(vm) if x.VBD.get_type(v) == "Disk"))
    key = x.VDI.get_uuid(vdi)
    x.VM.start_on(vm, host_of(x, master), False, False)
    con = Console(run_dir(master.state_dir, x.VM.get_uuid(vm)))
    con.wait_for("XSG-READY")
    assert con.run_command("echo up") == "up\n"
    _disk_write(con, "before", SECTOR)
    con.run_command("(i=0; while :; do i=$((i+1)); read -r u _ < /proc/uptime;"
                    " echo XQ-TICK $i $u > /dev/console; sleep 0.1; done) & true")  # fmt: skip
    last = ticks(con.wait_for("XQ-TICK 3 "))[-1][0]
    con, last = _moved(x, vm, master, member, last)
    assert member_exports(member) == [key] and key not in member_exports(master)
    assert _disk_read(con, SECTOR) == ["before"]
    _disk_write(con, "middle", SECTOR + 8)
    con, last = _moved(x, vm, member, master, last)
    until(lambda: member_exports(member) == [], what="the member's export gone")
    assert key in member_exports(master)
    assert _disk_read(con, SECTOR + 8) == ["middle"]
    _disk_write(con, "after", SECTOR + 16)
    x.VM.hard_shutdown(vm)
    until(lambda: key not in member_exports(master), what="the master's export gone")
    directory = x.SR.get_sm_config(x.VDI.get_SR(vdi))["xenstack_path"]
    with VhdImage.open(f"{directory}/{key}.vhd", writable=False) as image:
        assert bytes(image.read(SECTOR * 512, 6)) == b"before"
        assert bytes(image.read((SECTOR + 8) * 512, 6)) == b"middle"
        assert bytes(image.read((SECTOR + 16) * 512, 5)) == b"after"


def test_suspend_and_resume_of_a_members_guest_through_the_master(
    pool: list[QemuHost], x: Any
) -> None:
    """The member writes the memory into the suspend VDI on the shared SR (named by file)
    and reads it back: the guest's uptime runs on; no export is left while suspended."""
    _, member = pool
    vm = install(x, "xp-sleeper")
    uuid = x.VM.get_uuid(vm)
    x.VM.start_on(vm, host_of(x, member), False, False)
    con = Console(run_dir(member.state_dir, uuid))
    con.wait_for("XSG-READY")
    assert con.run_command("echo up") == "up\n"
    con.run_command("(i=0; while :; do i=$((i+1)); read -r u _ < /proc/uptime;"
                    " echo XQ-TICK $i $u > /dev/console; sleep 0.1; done) & true")  # fmt: skip
    before = ticks(con.wait_for("XQ-TICK 3 "))[-1]
    x.VM.suspend(vm)
    assert x.VM.get_power_state(vm) == "Suspended"
    image = x.VM.get_suspend_VDI(vm)
    assert x.VDI.get_type(image) == "suspend" and int(x.VDI.get_physical_utilisation(image)) > 0
    until(lambda: member_exports(member) == [], what="the member's exports gone")
    x.VM.resume_on(vm, host_of(x, member), False, False)
    assert x.VM.get_power_state(vm) == "Running"
    assert x.VM.get_resident_on(vm) == host_of(x, member)
    after = Console(run_dir(member.state_dir, uuid))
    first = ticks(after.wait_for("XQ-TICK"))[0]
    assert first[0] > before[0] and first[1] >= before[1]  # the same guest, not a new boot
    assert after.run_command("echo awake") == "awake\n"
    x.VM.hard_shutdown(vm)
    until(lambda: member_exports(member) == [], what="the member's exports gone")


def _start_on_member(x: Any, pool: list[QemuHost], name: str) -> tuple[str, Console]:
    vm = install(x, name)
    x.VM.start_on(vm, host_of(x, pool[1]), False, False)
    con = Console(run_dir(pool[1].state_dir, x.VM.get_uuid(vm)))
    con.wait_for("XSG-READY")
    assert con.run_command("echo up") == "up\n"
    return vm, con


def _vhd(x: Any, vdi: str) -> VhdImage:
    directory = x.SR.get_sm_config(x.VDI.get_SR(vdi))["xenstack_path"]
    return VhdImage.open(f"{directory}/{x.VDI.get_uuid(vdi)}.vhd", writable=False)


def _restart(x: Any, member: QemuHost) -> None:
    """``kill -9`` of the member's serve, serve again; until the master was told."""
    host = host_of(x, member)
    started = x.host.get_other_config(host)["agent_start_time"]
    member.server.kill()
    member.server.start(timeout=120)
    until(lambda: x.host.get_other_config(host)["agent_start_time"] != started,
          what="the master told of the member's restart")  # fmt: skip


def test_a_restarted_member_takes_its_running_guest_and_disks_back(
    pool: list[QemuHost], x: Any
) -> None:
    """``kill -9`` of the member's serve under its guest, then serve again: QEMU runs on,
    the member exports the guest's disk again (same socket: QEMU reconnects), and the
    master, told the member's new port, drives the guest there (suspend, resume after
    another restart, clean shutdown)."""
    master, member = pool
    vm, con = _start_on_member(x, pool, "xp-restart")
    vdi = x.VBD.get_VDI(next(v for v in x.VM.get_VBDs(vm) if x.VBD.get_type(v) == "Disk"))
    key, host = x.VDI.get_uuid(vdi), host_of(x, member)
    _disk_write(con, "before", SECTOR)
    qemu_pid = (con.run / "qemu.pid").read_text().strip()
    _restart(x, member)
    assert x.VM.get_power_state(vm) == "Running" and x.VM.get_resident_on(vm) == host
    assert (con.run / "qemu.pid").read_text().strip() == qemu_pid  # the same QEMU
    assert member_exports(member) == [key] and key not in member_exports(master)
    _disk_write(con, "after", SECTOR + 8)  # the guest's disk answers again
    assert _disk_read(con, SECTOR) == ["before"] and _disk_read(con, SECTOR + 8) == ["after"]
    # suspended on the member, which restarts again: it still resumes there
    con.run_command("echo kept > /run/xp-kept")
    x.VM.suspend(vm)
    _restart(x, member)
    x.VM.resume_on(vm, host, False, False)
    con = Console(run_dir(member.state_dir, x.VM.get_uuid(vm)))
    assert con.run_command("cat /run/xp-kept").strip() == "kept"  # the same guest
    x.VM.clean_shutdown(vm)
    assert x.VM.get_power_state(vm) == "Halted"
    until(lambda: member_exports(member) == [], what="the member's export gone")
    with _vhd(x, vdi) as image:
        assert bytes(image.read((SECTOR + 8) * 512, 5)) == b"after"


def test_disk_and_nic_hot_plug_into_a_members_guest_through_the_master(
    pool: list[QemuHost], x: Any
) -> None:
    """``VBD.plug`` names the disk by file for the member, which exports it while it is
    plugged; ``VIF.plug`` gives the member the port; both show in the guest and go."""
    master, member = pool
    vm, con = _start_on_member(x, pool, "xp-hotplug")
    sr = x.pool.get_default_SR(x.pool.get_all()[0])
    vdi = x.VDI.create({"name_label": "xp-hot", "SR": sr, "virtual_size": str(16 << 20),
                        "type": "user", "sharable": False, "read_only": False,
                        "other_config": {}})  # fmt: skip
    vbd = x.VBD.create({"VM": vm, "VDI": vdi, "userdevice": "1", "bootable": False, "mode": "RW",
                        "type": "Disk", "empty": False, "other_config": {},
                        "qos_algorithm_type": "", "qos_algorithm_params": {}})  # fmt: skip
    key = x.VDI.get_uuid(vdi)
    x.VBD.plug(vbd)
    assert x.VBD.get_currently_attached(vbd)
    until(lambda: "vdb" in con.run_command("ls /sys/block"), what="vdb in the guest")
    assert key in member_exports(member) and key not in member_exports(master)
    con.run_command("printf '%-16s' hotplugged | dd of=/dev/vdb bs=512 conv=fsync 2>/dev/null")
    x.VBD.unplug(vbd)
    until(lambda: "vdb" not in con.run_command("ls /sys/block"), what="vdb gone from the guest")
    until(lambda: key not in member_exports(member), what="the plugged disk's export gone")
    assert len(member_exports(member)) == 1  # the guest's own disk stays exported
    net = next(n for n in x.network.get_all() if x.network.get_bridge(n) == "xenbr0")
    vif = x.VIF.create({"VM": vm, "network": net, "device": "1", "MAC": "", "MTU": "1500",
                        "other_config": {}, "qos_algorithm_type": "",
                        "qos_algorithm_params": {}})  # fmt: skip
    x.VIF.plug(vif)
    until(lambda: "eth1" in con.run_command("ls /sys/class/net"), what="eth1 in the guest")
    x.VIF.unplug(vif)
    until(lambda: "eth1" not in con.run_command("ls /sys/class/net"), what="eth1 gone")
    x.VM.hard_shutdown(vm)
    until(lambda: member_exports(member) == [], what="the member's exports gone")
    with _vhd(x, vdi) as image:
        assert bytes(image.read(0, 10)) == b"hotplugged"


def test_checkpoint_and_revert_of_a_members_guest_through_the_master(
    pool: list[QemuHost], x: Any
) -> None:
    """The member saves the memory into the checkpoint's suspend VDI (named by file) while
    the guest runs on; reverted and resumed there, the guest is as it was at the
    checkpoint, in memory and on disk."""
    _, member = pool
    vm, con = _start_on_member(x, pool, "xp-ckpt")
    _disk_write(con, "one", SECTOR)
    con.run_command("echo one > /run/xp-mem-one")
    snap = x.VM.checkpoint(vm, "xp-checkpoint")
    assert x.VM.get_power_state(snap) == "Suspended"
    image = x.VM.get_suspend_VDI(snap)
    assert x.VDI.get_type(image) == "suspend" and int(x.VDI.get_physical_utilisation(image)) > 0
    assert x.VM.get_power_state(vm) == "Running"  # the guest ran on
    _disk_write(con, "two", SECTOR)
    con.run_command("echo two > /run/xp-mem-two")
    assert _disk_read(con, SECTOR) == ["two"]
    x.VM.revert(snap)
    assert x.VM.get_power_state(vm) == "Suspended"
    until(lambda: len(member_exports(member)) == 0, what="the member's exports gone")
    x.VM.resume_on(vm, host_of(x, member), False, False)
    assert x.VM.get_power_state(vm) == "Running"
    assert x.VM.get_resident_on(vm) == host_of(x, member)
    con = Console(run_dir(member.state_dir, x.VM.get_uuid(vm)))
    assert con.run_command("cat /run/xp-mem-one").strip() == "one"
    assert "No such file" in con.run_command("cat /run/xp-mem-two 2>&1")
    assert _disk_read(con, SECTOR) == ["one"]
    x.VM.hard_shutdown(vm)
    x.VM.destroy(snap)
    until(lambda: member_exports(member) == [], what="the member's exports gone")


def test_a_move_to_a_member_keeps_the_masters_export_of_a_disk_another_guest_reads(
    pool: list[QemuHost], x: Any
) -> None:
    """Two guests on the master's host read one disk (VBDs RO); one moves live to the
    member, which opens the disk itself: the master's export stays for the other."""
    master, member = pool
    sr = x.pool.get_default_SR(x.pool.get_all()[0])
    shared = x.VDI.create({"name_label": "xp-shared", "SR": sr, "virtual_size": str(16 << 20),
                           "type": "user", "sharable": False, "read_only": False,
                           "other_config": {}})  # fmt: skip
    key, consoles, vms = x.VDI.get_uuid(shared), [], []
    for name in ("xp-stays", "xp-goes"):
        vm = install(x, name)
        x.VBD.create({"VM": vm, "VDI": shared, "userdevice": "1", "bootable": False,
                      "mode": "RO", "type": "Disk", "empty": False, "other_config": {},
                      "qos_algorithm_type": "", "qos_algorithm_params": {}})  # fmt: skip
        x.VM.start_on(vm, host_of(x, master), False, False)
        vms.append(vm)
    for vm in vms:
        con = Console(run_dir(master.state_dir, x.VM.get_uuid(vm)))
        con.wait_for("XSG-READY")
        assert con.run_command("echo up") == "up\n"
        consoles.append(con)
    read = "dd if=/dev/vdb bs=512 count=1 iflag=direct 2>/dev/null | wc -c"
    x.VM.pool_migrate(vms[1], host_of(x, member), {"live": "true"})
    assert x.VM.get_resident_on(vms[1]) == host_of(x, member)
    assert key in member_exports(master) and key in member_exports(member)
    assert consoles[0].run_command(read).split()[-1] == "512"  # the stayer reads on
    moved = Console(run_dir(member.state_dir, x.VM.get_uuid(vms[1])))
    assert moved.run_command(read).split()[-1] == "512"
    for vm in vms:
        x.VM.hard_shutdown(vm)
    until(lambda: key not in member_exports(master), what="the master's export gone")
    until(lambda: member_exports(member) == [], what="the member's exports gone")


def test_a_guest_suspended_on_one_toolstack_resumes_on_the_other_and_back(
    pool: list[QemuHost], x: Any
) -> None:
    """``VM.resume_on`` across toolstacks: the image the master's host wrote into the
    suspend VDI on the shared SR is read by the member's QEMU, and the member's image by the
    master's; the guest's memory and uptime run on through both moves. (An image on a
    host's local SR would pin the VM there: ``VM_REQUIRES_SR``, as XAPI answers.)"""
    master, member = pool
    the_pool = x.pool.get_all()[0]
    was = x.pool.get_suspend_image_SR(the_pool)
    x.pool.set_suspend_image_SR(the_pool, x.pool.get_default_SR(the_pool))
    try:
        _wander(x, master, member)
    finally:  # the pool is the module's: the next test finds it as it was
        x.pool.set_suspend_image_SR(the_pool, was)


def _wander(x: Any, master: QemuHost, member: QemuHost) -> None:
    vm = install(x, "xp-wanderer")
    uuid = x.VM.get_uuid(vm)
    x.VM.start_on(vm, host_of(x, master), False, False)
    con = Console(run_dir(master.state_dir, uuid))
    con.wait_for("XSG-READY")
    con.run_command("echo carried > /run/xp-carried")
    uptime = float(con.run_command("cat /proc/uptime").split()[0])
    for there in (member, master):
        x.VM.suspend(vm)
        assert x.VM.get_power_state(vm) == "Suspended"
        x.VM.resume_on(vm, host_of(x, there), False, False)
        assert x.VM.get_resident_on(vm) == host_of(x, there)
        con = Console(run_dir(there.state_dir, uuid))
        assert con.run_command("cat /run/xp-carried").strip() == "carried"  # the same guest
        now = float(con.run_command("cat /proc/uptime").split()[0])
        assert now >= uptime
        uptime = now
    assert member_exports(member) == []  # the member let go of the guest's disk
    x.VM.hard_shutdown(vm)
    until(lambda: member_exports(master) == [], what="the master's exports gone")
