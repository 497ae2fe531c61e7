"""``xe vdi-import`` / ``xe vdi-export``, run as the real command (and its progress bar)."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sr_helpers import MIB, new_vdi, qemu, require_qemu_img, write_pattern

from xenstack.testing import RunningPool

XE = str(Path(sys.executable).with_name("xe"))


def xe(
    pool: RunningPool, *args: str, stderr: Any = subprocess.PIPE
) -> subprocess.CompletedProcess[str]:
    env = os.environ | {
        "XE_EXTRA_ARGS": f"server=127.0.0.1,port={pool.port},username=root,password={pool.password}"
    }
    return subprocess.run(
        [XE, *args], env=env, stdout=subprocess.PIPE, stderr=stderr, text=True, check=False
    )


@pytest.mark.qemu
def test_xe_vdi_import_export_roundtrip(
    session: Any, xenstack_pool: RunningPool, tmp_path: Path
) -> None:
    require_qemu_img()
    source = tmp_path / "disk.raw"
    write_pattern(source, 24 * MIB, seed=3)
    vdi = new_vdi(session, 32 * MIB)
    uuid = session.xenapi.VDI.get_uuid(vdi)
    done = xe(xenstack_pool, "vdi-import", f"uuid={uuid}", f"filename={source}")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # not a terminal: no progress bar
    out = tmp_path / "out.vhd"
    done = xe(xenstack_pool, "vdi-export", f"uuid={uuid}", f"filename={out}", "format=vhd")
    assert done.returncode == 0, done.stderr
    back = tmp_path / "back.raw"
    qemu("convert", "-f", "vpc", "-O", "raw", str(out), str(back))
    assert back.read_bytes()[: source.stat().st_size] == source.read_bytes()
    again = new_vdi(session, 32 * MIB)
    done = xe(
        xenstack_pool,
        "vdi-import",
        f"uuid={session.xenapi.VDI.get_uuid(again)}",
        f"filename={out}",
        "format=vhd",
    )
    assert done.returncode == 0, done.stderr
    assert session.xenapi.task.get_all() == []  # xe removes its tasks


def test_xe_progress_bar_on_a_terminal(
    session: Any, xenstack_pool: RunningPool, tmp_path: Path
) -> None:
    source = tmp_path / "disk.raw"
    write_pattern(source, 8 * MIB)
    uuid = session.xenapi.VDI.get_uuid(new_vdi(session, 8 * MIB))
    master, slave = pty.openpty()
    try:
        done = xe(xenstack_pool, "vdi-import", f"uuid={uuid}", f"filename={source}", stderr=slave)
        os.close(slave)
        drawn = os.read(master, 65536).decode()
    finally:
        os.close(master)
    assert done.returncode == 0
    assert "Importing [" in drawn and "100.0%" in drawn


def test_xe_vdi_import_errors(session: Any, xenstack_pool: RunningPool, tmp_path: Path) -> None:
    uuid = session.xenapi.VDI.get_uuid(new_vdi(session, 4 * MIB))
    big = tmp_path / "big.raw"
    write_pattern(big, 8 * MIB)
    done = xe(xenstack_pool, "vdi-import", f"uuid={uuid}", f"filename={big}")
    assert done.returncode == 1 and "vdi io error" in done.stdout + done.stderr
    done = xe(xenstack_pool, "vdi-import", f"uuid={uuid}", f"filename={tmp_path / 'none'}")
    assert done.returncode == 1 and "Cannot open" in done.stdout + done.stderr
    done = xe(xenstack_pool, "vdi-export", f"uuid={uuid}", f"filename={big}", "format=qcow2")
    assert done.returncode == 1 and "Unknown format" in done.stdout + done.stderr
