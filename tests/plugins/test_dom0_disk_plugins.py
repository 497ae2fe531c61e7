"""``partition_utils.py`` and ``kernel.py`` through ``host.call_plugin``, called as os-xenapi's
client calls them (pickled params for partition_utils, plain dicts for kernel), on real dom0
block devices (``VBD.plug`` on the control domain). Their effects are checked on the VDIs'
bytes (``/export_raw_vdi``, then ``e2fsck`` and the swap signature) and on dom0's files."""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import XenAPI
from pluginkit import call_serialized
from systools import require_root, require_tool

from xenstack.testing import RunningPool, failure, simulated_pool

MiB = 1 << 20


@pytest.fixture(scope="module")
def pool() -> Iterator[RunningPool]:
    require_root()
    require_tool("qemu-storage-daemon")
    require_tool("sfdisk")
    top = Path(tempfile.mkdtemp(prefix="d0-p", dir="/tmp"))  # short: NBD socket paths
    try:
        with simulated_pool(top / "state") as running:
            yield running
    finally:
        shutil.rmtree(top, ignore_errors=True)


@pytest.fixture
def s(pool: RunningPool) -> Iterator[Any]:
    session = XenAPI.Session(pool.url)
    session.xenapi.login_with_password("root", pool.password, "1.0", "d0-tests")
    yield session
    session.xenapi.session.logout()


def this_host(s: Any) -> str:
    return str(s.xenapi.session.get_this_host(s._session))


def dom0(s: Any) -> str:
    return str(s.xenapi.host.get_control_domain(this_host(s)))


def serialized(s: Any, plugin: str, fn: str, *args: Any) -> Any:
    return call_serialized(s.xenapi, this_host(s), plugin, fn, *args)


def new_vdi(s: Any, size: int) -> str:
    sr = s.xenapi.pool.get_default_SR(s.xenapi.pool.get_all()[0])
    record = {
        "name_label": "d0",
        "name_description": "",
        "SR": sr,
        "virtual_size": str(size),
        "type": "user",
        "sharable": False,
        "read_only": False,
        "other_config": {},
    }
    return str(s.xenapi.VDI.create(record))


def plugged(s: Any, vdi: str) -> tuple[str, str]:
    record = {
        "VM": dom0(s),
        "VDI": vdi,
        "userdevice": "autodetect",
        "bootable": False,
        "mode": "RW",
        "type": "Disk",
        "unpluggable": True,
        "empty": False,
        "other_config": {},
        "qos_algorithm_type": "",
        "qos_algorithm_params": {},
    }
    vbd = s.xenapi.VBD.create(record)
    s.xenapi.VBD.plug(vbd)
    return str(vbd), str(s.xenapi.VBD.get_device(vbd))


def unplugged(s: Any, vbd: str) -> None:
    s.xenapi.VBD.unplug(vbd)
    s.xenapi.VBD.destroy(vbd)


def raw(pool: RunningPool, s: Any, vdi: str) -> bytes:
    query = f"session_id={s._session}&vdi={vdi}&format=raw"
    with urllib.request.urlopen(f"{pool.url}export_raw_vdi?{query}", timeout=60) as response:
        return bytes(response.read())


def test_wait_for_dev(s: Any) -> None:
    vdi = new_vdi(s, 4 * MiB)
    vbd, dev = plugged(s, vdi)
    try:
        assert (
            serialized(s, "partition_utils.py", "wait_for_dev", f"/dev/{dev}", 10) == f"/dev/{dev}"
        )
        assert serialized(s, "partition_utils.py", "wait_for_dev", "/dev/d0-none", 1) == ""
    finally:
        unplugged(s, vbd)
        s.xenapi.VDI.destroy(vdi)


def test_make_partition_and_mkfs_ext3(pool: RunningPool, s: Any, tmp_path: Path) -> None:
    e2fsck = require_tool("e2fsck")
    vdi = new_vdi(s, 32 * MiB)
    vbd, dev = plugged(s, vdi)
    try:
        err = failure(
            s.xenapi.host.call_plugin,
            this_host(s),
            "partition_utils.py",
            "make_partition",
            {"params": pickle.dumps({"args": (dev, 2048, "4096")}, protocol=0).decode("latin-1")},
        )
        assert err[0] == "XENAPI_PLUGIN_FAILURE" and "unbounded" in " ".join(err)
        serialized(s, "partition_utils.py", "make_partition", dev, 2048, "-")
        serialized(s, "partition_utils.py", "mkfs", dev, 1, "ext3", "d0-label")
    finally:
        unplugged(s, vbd)
    disk = raw(pool, s, vdi)
    mbr = disk[446:462]  # the first partition entry: type 0x83 at sector 2048 to the end
    assert disk[510:512] == b"\x55\xaa" and mbr[4] == 0x83
    start = int.from_bytes(mbr[8:12], "little")
    length = int.from_bytes(mbr[12:16], "little")
    assert (start, start + length) == (2048, 32 * MiB // 512)
    part = tmp_path / "part.img"
    part.write_bytes(disk[start * 512 :])
    check = subprocess.run([e2fsck, "-fn", str(part)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    superblock = disk[start * 512 + 1024 : start * 512 + 2048]
    assert superblock[56:58] == b"\x53\xef"  # ext2/3/4 magic
    assert int.from_bytes(superblock[92:96], "little") & 0x4  # has_journal: ext3
    assert superblock[120:136].rstrip(b"\0") == b"d0-label"
    s.xenapi.VDI.destroy(vdi)


def test_mkfs_swap_and_unknown_type(pool: RunningPool, s: Any) -> None:
    vdi = new_vdi(s, 16 * MiB)
    vbd, dev = plugged(s, vdi)
    try:
        serialized(s, "partition_utils.py", "make_partition", dev, 2048, "-")
        serialized(s, "partition_utils.py", "mkfs", dev, 1, "swap", "")
        params = pickle.dumps({"args": (dev, 1, "zfs", "")}, protocol=0).decode("latin-1")
        err = failure(
            s.xenapi.host.call_plugin,
            this_host(s),
            "partition_utils.py",
            "mkfs",
            {"params": params},
        )
        assert err[0] == "XENAPI_PLUGIN_FAILURE" and "zfs" in " ".join(err)
    finally:
        unplugged(s, vbd)
    disk = raw(pool, s, vdi)
    page = disk[2048 * 512 : 2048 * 512 + 4096]
    assert page[4086:4096] == b"SWAPSPACE2"
    s.xenapi.VDI.destroy(vdi)


def test_kernel_copy_cache_and_remove(pool: RunningPool, s: Any, tmp_path: Path) -> None:
    assert pool.state_dir is not None
    vdi = new_vdi(s, 4 * MiB)
    kernel = os.urandom(MiB + 1234)
    vbd, dev = plugged(s, vdi)  # the "kernel image" written into the VDI through dom0
    with open(f"/dev/{dev}", "r+b") as f:
        f.write(kernel)
        f.flush()
        os.fsync(f.fileno())
    unplugged(s, vbd)
    vbds_before = s.xenapi.VM.get_VBDs(dom0(s))

    host = this_host(s)
    args = {"vdi-ref": vdi, "image-size": str(len(kernel)), "cached-image": "d0-image"}
    filename = s.xenapi.host.call_plugin(host, "kernel.py", "copy_vdi", args)
    boot = pool.state_dir / "boot" / "guest"
    assert filename == str(boot / s.xenapi.VDI.get_uuid(vdi))
    assert Path(filename).read_bytes() == kernel
    assert (boot / "d0-image").read_bytes() == kernel
    assert os.stat(boot).st_mode & 0o777 == 0o700
    assert s.xenapi.VM.get_VBDs(dom0(s)) == vbds_before  # its VBD plugged, then removed

    args = {"cached-image": "d0-image", "new-image-uuid": "d0-new"}
    copy = s.xenapi.host.call_plugin(host, "kernel.py", "create_kernel_ramdisk", args)
    assert copy == str(boot / "d0-new") and Path(copy).read_bytes() == kernel
    args = {"cached-image": "d0-absent", "new-image-uuid": "d0-other"}
    assert s.xenapi.host.call_plugin(host, "kernel.py", "create_kernel_ramdisk", args) == ""
    bad = {"cached-image": "../../etc", "new-image-uuid": "x"}
    assert (
        failure(s.xenapi.host.call_plugin, host, "kernel.py", "create_kernel_ramdisk", bad)[0]
        == "XENAPI_PLUGIN_FAILURE"
    )

    outside = tmp_path / "not-a-kernel"
    outside.write_text("keep")
    err = failure(
        s.xenapi.host.call_plugin, host, "kernel.py", "remove_kernel_ramdisk",
        {"kernel-file": str(outside)},
    )  # fmt: skip
    assert err[0] == "XENAPI_PLUGIN_FAILURE" and outside.exists()
    args = {"kernel-file": filename, "ramdisk-file": copy}
    assert s.xenapi.host.call_plugin(host, "kernel.py", "remove_kernel_ramdisk", args) == "ok"
    assert not Path(filename).exists() and not Path(copy).exists()
    assert s.xenapi.host.call_plugin(host, "kernel.py", "remove_kernel_ramdisk", args) == "ok"
    s.xenapi.VDI.destroy(vdi)
