"""``Dom0Disks`` on its own: what it refuses, and that cleaning up touches only its own.

A record left in its directory that names someone else's loop device or process (a reused
device number or pid) must not make it detach or kill them.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from systools import require_root, require_tool

from xenstack.storage.dom0_attach import Dom0AttachError, Dom0Disks


def test_refuses_without_the_daemon(tmp_path: Path) -> None:
    disks = Dom0Disks(tmp_path / "disks", qsd=str(tmp_path / "absent"))
    reason = disks.missing()
    assert reason in (
        "dom0 block devices need qemu-storage-daemon",
        "dom0 block devices need root (loop devices)",
    )
    with pytest.raises(Dom0AttachError) as err:
        asyncio.run(disks.attach("vbd-1", str(tmp_path / "nbd.sock"), "/x", True))
    assert err.value.reason == reason
    assert disks.attached() == []


def test_bad_keys_are_refused(tmp_path: Path) -> None:
    disks = Dom0Disks(tmp_path / "disks")
    for key in ("", "../x", "a/b", ".hidden"):
        with pytest.raises(ValueError):
            disks.device(key)


def test_cleanup_leaves_other_loops_and_processes_alone(tmp_path: Path) -> None:
    require_root()
    losetup = require_tool("losetup")
    foreign = tmp_path / "foreign.raw"
    foreign.write_bytes(bytes(1 << 20))
    loop = subprocess.run(
        [losetup, "--find", "--show", str(foreign)], capture_output=True, text=True, check=True
    ).stdout.strip()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        disks = Dom0Disks(tmp_path / "disks")
        where = tmp_path / "disks" / "d0-stale"
        where.mkdir(parents=True)
        record = {
            "mountpoint": str(where / "disk"),
            "pid": sleeper.pid,
            "device": os.path.basename(loop),
        }
        (where / "record.json").write_text(json.dumps(record))
        assert disks.attached() == ["d0-stale"]
        assert asyncio.run(disks.detach_all()) == ["d0-stale"]
        assert disks.attached() == [] and not where.exists()
        assert sleeper.poll() is None  # not its daemon: alive
        backing = Path(f"/sys/block/{os.path.basename(loop)}/loop/backing_file")
        assert backing.read_text().strip() == str(foreign)  # not its loop: still attached
    finally:
        sleeper.kill()
        sleeper.wait()
        subprocess.run([losetup, "--detach", loop], check=False)
