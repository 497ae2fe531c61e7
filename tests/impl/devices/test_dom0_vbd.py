"""VBDs of the control domain over the wire (XenAPI SDK): a real dom0 block device.

``VBD.plug`` on dom0 makes ``/dev/<VBD.device>`` a loop device reading and writing the VDI
(its NBD export, through ``qemu-storage-daemon``'s FUSE export). Bytes written through the
device are read back through ``/export_raw_vdi`` and by ``qemu-img convert`` of the VHD file;
a read-only VBD is a read-only device; unplug, toolstack stop and a killed toolstack's restart
leave no loop device, mount or daemon behind. Where the machine cannot make devices the plug
fails with XAPI's ``SR_BACKEND_FAILURE`` and changes nothing; the sizes-only simulator only
records the plug.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import XenAPI
from systools import require_root, require_tool

from xenstack.testing import failure
from xenstack.testing.pool import ServerProcess, free_port, simulated_pool

MiB = 1 << 20
SIZE = 16 * MiB


def needs_devices() -> None:
    require_root()
    require_tool("qemu-storage-daemon")
    require_tool("losetup")
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        if os.environ.get("CI"):
            pytest.fail("/dev/fuse is missing and CI is set")
        pytest.skip("no /dev/fuse")


@pytest.fixture
def state() -> Iterator[Path]:
    """A short state directory (NBD's Unix socket paths are limited to 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="d0-", dir="/tmp"))
    try:
        yield path / "state"
    finally:
        shutil.rmtree(path, ignore_errors=True)


def login(url: str, password: str) -> Any:
    s = XenAPI.Session(url)
    s.xenapi.login_with_password("root", password, "1.0", "dom0-tests")
    return s


def control_domain(session: Any) -> str:
    host = session.xenapi.session.get_this_host(session._session)
    return str(session.xenapi.host.get_control_domain(host))


def new_vdi(session: Any, size: int = SIZE) -> str:
    pool = session.xenapi.pool.get_all()[0]
    sr = session.xenapi.pool.get_default_SR(pool)
    record = {
        "name_label": "d0 disk",
        "name_description": "",
        "SR": sr,
        "virtual_size": str(size),
        "type": "user",
        "sharable": False,
        "read_only": False,
        "other_config": {},
    }
    return str(session.xenapi.VDI.create(record))


def dom0_vbd(session: Any, vdi: str, mode: str = "RW", kind: str = "Disk") -> str:
    record = {
        "VM": control_domain(session),
        "VDI": vdi,
        "userdevice": "autodetect",
        "bootable": False,
        "mode": mode,
        "type": kind,
        "unpluggable": True,
        "empty": False,
        "other_config": {},
        "qos_algorithm_type": "",
        "qos_algorithm_params": {},
    }
    return str(session.xenapi.VBD.create(record))


def ours(state: Path) -> list[str]:
    """Loop devices, mounts and processes that name ``state`` (what must not outlive it)."""
    found = []
    for dev in Path("/sys/block").glob("loop*"):
        backing = dev / "loop" / "backing_file"
        if backing.exists() and str(state) in backing.read_text():
            found.append(f"loop {dev.name}")
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        if str(state) in line:
            found.append(f"mount {line.split()[4]}")
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmd = (proc / "cmdline").read_bytes().decode(errors="replace")
            zombie = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
        except (OSError, IndexError):
            continue
        if "qemu-storage-daemon" in cmd and str(state) in cmd and not zombie:
            found.append(f"process {proc.name}")
    return found


def wait_gone(state: Path, timeout: float = 60.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while (left := ours(state)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def export_raw(url: str, session: Any, vdi: str) -> bytes:
    query = f"session_id={session._session}&vdi={vdi}&format=raw"
    with urllib.request.urlopen(f"{url}export_raw_vdi?{query}", timeout=60) as response:
        return bytes(response.read())


def vhd_bytes(state: Path, session: Any, vdi: str) -> bytes:
    """The VDI's VHD file read by qemu-img (``convert -f vpc`` to raw)."""
    qemu_img = require_tool("qemu-img")
    location = session.xenapi.VDI.get_location(vdi)
    [vhd] = list(state.glob(f"**/{location}.vhd"))
    out = state.parent / "out.raw"
    subprocess.run([qemu_img, "convert", "-f", "vpc", "-O", "raw", str(vhd), str(out)], check=True)
    data = out.read_bytes()
    out.unlink()
    return data


def test_dom0_plug_is_a_block_device_writing_the_vdi(state: Path) -> None:
    needs_devices()
    with simulated_pool(state) as pool:
        s = login(pool.url, pool.password)
        vdi = new_vdi(s)
        vbd = dom0_vbd(s, vdi)
        s.xenapi.VBD.plug(vbd)
        device = s.xenapi.VBD.get_device(vbd)
        assert device.startswith("loop") and s.xenapi.VBD.get_currently_attached(vbd)
        path = f"/dev/{device}"
        assert stat.S_ISBLK(os.stat(path).st_mode)
        size = subprocess.run(["blockdev", "--getsize64", path], capture_output=True, text=True)
        assert int(size.stdout) == SIZE
        assert Path(f"/sys/block/{device}/ro").read_text().strip() == "0"
        data = os.urandom(3 * MiB + 512)
        fd = os.open(path, os.O_RDWR)
        try:
            os.pwrite(fd, data, MiB)
            os.fsync(fd)
            assert os.pread(fd, len(data), MiB) == data
        finally:
            os.close(fd)
        assert failure(s.xenapi.VBD.plug, vbd) == ["DEVICE_ALREADY_ATTACHED", vbd]
        s.xenapi.VBD.unplug(vbd)
        assert s.xenapi.VBD.get_currently_attached(vbd) is False
        assert wait_gone(state) == []
        expected = bytes(MiB) + data + bytes(SIZE - MiB - len(data))
        assert export_raw(pool.url, s, vdi) == expected
        assert vhd_bytes(state, s, vdi) == expected

        ro = dom0_vbd(s, vdi, "RO")  # the same disk read-only: what was written, unwritable
        s.xenapi.VBD.plug(ro)
        device = s.xenapi.VBD.get_device(ro)
        assert Path(f"/sys/block/{device}/ro").read_text().strip() == "1"
        with open(f"/dev/{device}", "rb") as f:
            f.seek(MiB)
            assert f.read(len(data)) == data
        fd = os.open(f"/dev/{device}", os.O_WRONLY)
        try:
            with pytest.raises(OSError):  # EPERM: the device is read-only
                os.pwrite(fd, b"x" * 512, 0)
        finally:
            os.close(fd)
        s.xenapi.VBD.unplug_force(ro)
        s.xenapi.VBD.destroy(ro)
        s.xenapi.VBD.destroy(vbd)
    assert wait_gone(state) == []


def test_dom0_devices_do_not_outlive_the_toolstack(state: Path) -> None:
    needs_devices()
    state.mkdir(parents=True)
    server = ServerProcess(state, free_port())
    server.start(120)
    try:
        s = login(server.url, server.password)
        vbd = dom0_vbd(s, new_vdi(s))
        s.xenapi.VBD.plug(vbd)
        assert ours(state), "a plugged dom0 VBD has a device"
        server.kill()  # a killed toolstack leaves its device behind...
        assert any(item.startswith("loop") for item in ours(state))
        server.start(120)  # ...which the next one removes, recording the VBD detached
        assert wait_gone(state) == []
        s = login(server.url, server.password)
        assert s.xenapi.VBD.get_currently_attached(vbd) is False
        s.xenapi.VBD.plug(vbd)
        assert ours(state)
        assert server.stop() == 0  # a clean stop removes it too
        assert wait_gone(state) == []
    finally:
        server.kill()
    assert wait_gone(state) == []


def test_dom0_plug_without_the_tools_fails_and_changes_nothing(state: Path) -> None:
    with simulated_pool(state) as pool:
        assert pool.toolstack is not None and pool.toolstack.dom0_disks is not None
        pool.toolstack.dom0_disks.qsd = str(state / "no-such-qemu-storage-daemon")
        s = login(pool.url, pool.password)
        vdi = new_vdi(s)
        vbd = dom0_vbd(s, vdi)
        before = s.xenapi.VBD.get_record(vbd)
        err = failure(s.xenapi.VBD.plug, vbd)
        reason = "dom0 block devices need qemu-storage-daemon"
        if os.geteuid() != 0:
            reason = "dom0 block devices need root (loop devices)"
        assert err == ["SR_BACKEND_FAILURE", "dom0_attach", "", reason]
        assert s.xenapi.VBD.get_record(vbd) == before
        assert pool.call(lambda ts: dict(ts.storage.attached)) == {}  # no export started
        assert ours(state) == []


def test_sizes_only_simulator_records_the_plug() -> None:
    with simulated_pool(None) as pool:
        s = login(pool.url, pool.password)
        vbd = dom0_vbd(s, new_vdi(s))
        s.xenapi.VBD.plug(vbd)
        assert s.xenapi.VBD.get_currently_attached(vbd) is True
        assert s.xenapi.VBD.get_device(vbd).startswith("xvd")  # no /dev node: nothing to open
        s.xenapi.VBD.unplug(vbd)
        assert s.xenapi.VBD.get_currently_attached(vbd) is False


def test_dom0_plug_with_xe(state: Path) -> None:
    """As an administrator in dom0 does it: xe vbd-create on the control domain, vbd-plug,
    then /dev/<device> is the disk."""
    needs_devices()
    from xekit import xe

    with simulated_pool(state) as pool:
        s = login(pool.url, pool.password)
        vdi = new_vdi(s)
        vm_uuid = s.xenapi.VM.get_uuid(control_domain(s))
        vdi_uuid = s.xenapi.VDI.get_uuid(vdi)
        rc, vbd, err = xe(pool, "vbd-create", f"vm-uuid={vm_uuid}", f"vdi-uuid={vdi_uuid}",
                          "device=autodetect", "mode=RW", "type=Disk")  # fmt: skip
        assert rc == 0, err
        vbd = vbd.strip()
        assert xe(pool, "vbd-plug", f"uuid={vbd}")[0] == 0
        rc, device, _ = xe(pool, "vbd-param-get", f"uuid={vbd}", "param-name=device")
        device = device.strip()
        assert rc == 0 and device.startswith("loop")
        with open(f"/dev/{device}", "r+b") as f:
            f.write(b"written through xe's device")
            f.flush()
            os.fsync(f.fileno())
        assert xe(pool, "vbd-unplug", f"uuid={vbd}")[0] == 0
        assert wait_gone(state) == []
        assert export_raw(pool.url, s, vdi).startswith(b"written through xe's device")
        assert xe(pool, "vbd-destroy", f"uuid={vbd}")[0] == 0


def test_snapshot_of_a_dom0_plugged_vdi(state: Path) -> None:
    """The export of a plugged VDI restarts on its new chain at a snapshot; the device
    reconnects: what was written before is in the snapshot, what after only in the VDI."""
    needs_devices()
    with simulated_pool(state) as pool:
        s = login(pool.url, pool.password)
        vdi = new_vdi(s)
        vbd = dom0_vbd(s, vdi)
        s.xenapi.VBD.plug(vbd)
        path = f"/dev/{s.xenapi.VBD.get_device(vbd)}"
        fd = os.open(path, os.O_RDWR)
        try:
            os.pwrite(fd, b"before" * 100, 0)
            os.fsync(fd)
            snap = s.xenapi.VDI.snapshot(vdi, {})
            os.pwrite(fd, b"after!" * 100, 0)
            os.fsync(fd)
        finally:
            os.close(fd)
        s.xenapi.VBD.unplug(vbd)
        assert export_raw(pool.url, s, vdi).startswith(b"after!" * 100)
        assert export_raw(pool.url, s, snap).startswith(b"before" * 100)
        s.xenapi.VBD.destroy(vbd)
    assert wait_gone(state) == []


def test_iso_in_dom0_is_a_read_only_loop_of_its_file(state: Path) -> None:
    needs_devices()
    library = state.parent / "isos"
    library.mkdir()
    content = os.urandom(64 * 1024)
    (library / "d0.iso").write_bytes(content)
    with simulated_pool(state) as pool:
        s = login(pool.url, pool.password)
        host = s.xenapi.session.get_this_host(s._session)
        sr = s.xenapi.SR.create(
            host, {"location": str(library)}, "0", "d0 isos", "", "iso", "iso", True, {}
        )
        [iso] = s.xenapi.SR.get_VDIs(sr)
        cd = dom0_vbd(s, iso, "RO", "CD")
        s.xenapi.VBD.plug(cd)
        device = s.xenapi.VBD.get_device(cd)
        assert _backing_of(device) == str(library / "d0.iso")
        assert Path(f"/sys/block/{device}/ro").read_text().strip() == "1"
        with open(f"/dev/{device}", "rb") as f:
            assert f.read() == content
        s.xenapi.VBD.unplug(cd)
        assert _backing_of(device) != str(library / "d0.iso")
    assert wait_gone(state.parent) == []


def _backing_of(device: str) -> str:
    path = Path(f"/sys/block/{device}/loop/backing_file")
    return path.read_text().strip() if path.exists() else ""


def test_snapshot_plugged_rw_reads_as_exported(state: Path) -> None:
    """xenstack exports a snapshot read-only: a RW plug of one into dom0 gives a read-only
    device holding the snapshot's bytes (rather than failing in the daemon)."""
    needs_devices()
    with simulated_pool(state) as pool:
        s = login(pool.url, pool.password)
        vdi = new_vdi(s)
        vbd = dom0_vbd(s, vdi)
        s.xenapi.VBD.plug(vbd)
        with open(f"/dev/{s.xenapi.VBD.get_device(vbd)}", "r+b") as f:
            f.write(b"snapshotted")
            f.flush()
            os.fsync(f.fileno())
        s.xenapi.VBD.unplug(vbd)
        snap = s.xenapi.VDI.snapshot(vdi, {})
        on_snap = dom0_vbd(s, snap)
        s.xenapi.VBD.plug(on_snap)
        device = s.xenapi.VBD.get_device(on_snap)
        assert Path(f"/sys/block/{device}/ro").read_text().strip() == "1"
        with open(f"/dev/{device}", "rb") as f:
            assert f.read(11) == b"snapshotted"
        s.xenapi.VBD.unplug(on_snap)
    assert wait_gone(state) == []
