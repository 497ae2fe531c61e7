"""A full disk: writes fail with a clear error and nothing half-done, storage is never
changed without a durable record, and everything works again once space returns.

The first test fails the database writer on purpose (any user); the second fills a real
small filesystem holding the whole state directory (root: a tmpfs is mounted)."""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import XenAPI
from sr_helpers import MIB, default_sr, new_vdi, sr_dir, vdi_file

from xenstack.testing import RunningPool, simulated_pool

FULL = ["INTERNAL_ERROR", "database: no space left on device"]
NO_SPACE = ["SR_BACKEND_FAILURE_44", "", "There is insufficient space", ""]


def _details(fn: Any, *args: Any) -> list[str]:
    with pytest.raises(XenAPI.Failure) as info:
        fn(*args)
    return list(info.value.details)


def _wait_healthy(pool: RunningPool, timeout: float = 30.0) -> None:
    """Wait until the database writer has written what it was retrying."""
    assert pool.toolstack is not None
    deadline = time.monotonic() + timeout
    while pool.toolstack.persistence.failure() is not None:
        assert time.monotonic() < deadline, "the database writer never recovered"
        time.sleep(0.02)


def _stored_vdis(state: Path, sr: str) -> set[str]:
    """The locations of the SR's VDI rows in the state's database file, as on disk."""
    conn = sqlite3.connect(f"file:{state / 'xapi.db'}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT ref, record FROM objects WHERE class = 'VDI'").fetchall()
    finally:
        conn.close()
    records = [orjson.loads(blob) for _, blob in rows]
    return {r["location"] for r in records if r["SR"] == sr}


def _leaves(directory: Path) -> set[str]:
    """The VDI files (not hidden bases) of an SR directory, by location."""
    names = set(os.listdir(directory))
    return {n[:-4] for n in names if n.endswith(".vhd") and f".{n[:-4]}.hidden" not in names}


def _agree(pool: RunningPool, session: Any) -> None:
    """The database file and the SR's directory name the same VDIs."""
    assert pool.state_dir is not None
    sr = default_sr(session)
    uuid = session.xenapi.SR.get_uuid(sr)
    assert pool.state_dir / "sr" / uuid == sr_dir(pool, session, sr)
    assert _stored_vdis(pool.state_dir, sr) == _leaves(sr_dir(pool, session, sr))


def test_unrecorded_removal_keeps_the_vdi_and_writes_recover(
    session: Any, xenstack_pool: RunningPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    x = session.xenapi
    assert xenstack_pool.toolstack is not None
    persistence = xenstack_pool.toolstack.persistence
    vdi = new_vdi(session, 4 * MIB)
    path = vdi_file(xenstack_pool, session, vdi)
    failing = threading.Event()
    real = persistence._write  # type: ignore[attr-defined]

    def refusing(batch: Any) -> None:
        if failing.is_set():
            raise sqlite3.OperationalError("database or disk is full")
        real(batch)

    monkeypatch.setattr(persistence, "_write", refusing)
    failing.set()
    assert _details(x.VDI.destroy, vdi) == FULL
    assert x.VDI.get_location(vdi) and path.is_file()  # the row is back, the file kept
    files = set(os.listdir(path.parent))
    assert _details(new_vdi, session, 4 * MIB) == FULL
    assert _details(x.VDI.snapshot, vdi, {}) == FULL
    assert _details(x.VDI.set_name_label, vdi, "while full") == FULL
    assert set(os.listdir(path.parent)) == files
    failing.clear()
    _wait_healthy(xenstack_pool)
    x.VDI.set_name_label(vdi, "after")
    _agree(xenstack_pool, session)
    x.VDI.destroy(vdi)
    assert not path.exists()
    _agree(xenstack_pool, session)


def _require_root() -> None:
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("this test mounts a filesystem: it needs root, and CI is set")
        pytest.skip("needs root (mounts a small tmpfs)")


@pytest.fixture
def small_state(tmp_path: Path) -> Iterator[Path]:
    """A state directory on its own 32 MiB filesystem."""
    _require_root()
    state = tmp_path / "state"
    state.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(state)], check=True)
    try:
        yield state
    finally:
        subprocess.run(["umount", "-l", str(state)], check=False)


def _fill(path: Path) -> None:
    """Write ``path`` until the filesystem has not one block left."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        chunk = MIB
        while chunk >= 512:
            try:
                os.write(fd, bytes(chunk))
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                chunk //= 2
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)


@pytest.mark.root
def test_full_state_filesystem_refuses_then_recovers(small_state: Path) -> None:
    with simulated_pool(small_state) as pool:
        s = XenAPI.Session(pool.url)
        s.xenapi.login_with_password("root", pool.password, "1.0", "disk-full")
        x = s.xenapi
        keep, doomed = new_vdi(s, 4 * MIB), new_vdi(s, 4 * MIB)
        doomed_file = vdi_file(pool, s, doomed)
        files = set(os.listdir(doomed_file.parent))
        _fill(small_state / "filler")
        assert _details(new_vdi, s, 4 * MIB) == NO_SPACE  # the SR's own disk is full
        assert _details(x.VDI.snapshot, keep, {}) == NO_SPACE
        assert set(os.listdir(doomed_file.parent)) == files
        failed = None
        for i in range(2000):  # the database's files still have room for a little
            try:
                x.VDI.add_to_other_config(keep, f"k{i}", "v" * 50_000)
            except XenAPI.Failure as failure:
                failed = list(failure.details)
                break
        assert failed == FULL
        files = set(os.listdir(doomed_file.parent))
        vdis = sorted(x.VDI.get_all())
        assert _details(x.VDI.destroy, doomed) == FULL
        assert _details(new_vdi, s, 4 * MIB) == FULL
        assert _details(x.VDI.snapshot, keep, {}) == FULL
        assert sorted(x.VDI.get_all()) == vdis and doomed_file.is_file()
        assert set(os.listdir(doomed_file.parent)) == files
        (small_state / "filler").unlink()
        _wait_healthy(pool)
        x.VDI.set_name_label(keep, "space is back")
        x.VDI.destroy(doomed)
        assert not doomed_file.exists()
        new_vdi(s, 4 * MIB)
        _agree(pool, s)
        s.xenapi.session.logout()
