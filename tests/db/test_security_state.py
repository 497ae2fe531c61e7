"""The state directory: private from the start and fixed at start; absolute wherever made."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import XenAPI
from vmkit import disk_record, local_sr

from xenstack.testing.pool import server_process
from xenstack.toolstack import Toolstack

MIB = 1 << 20


def xenstack(*args: str, cwd: Path | None = None) -> None:
    cmd = [sys.executable, "-m", "xenstack.cli.main", *args]
    subprocess.run(cmd, check=True, cwd=cwd, capture_output=True, timeout=120)


def exposed(state: Path) -> list[str]:
    """Everything under ``state`` that its group or others may read, write or enter."""
    out = []
    for root, dirs, files in os.walk(state):
        for name in (*dirs, *files):
            path = Path(root, name)
            mode = path.lstat().st_mode
            if not stat.S_ISLNK(mode) and mode & 0o077:
                out.append(f"{path.relative_to(state)} {stat.filemode(mode)}")
    return out


def use(url: str, password: str) -> None:
    """Log in and make a disk, so that the database, its WAL and an SR file are written."""
    s = XenAPI.Session(url)
    s.xenapi.login_with_password("root", password, "1.0", "test_security_state")
    x = s.xenapi
    vdi = x.VDI.create(disk_record(local_sr(x), size=4 * MIB))
    assert x.VDI.get_virtual_size(vdi) == str(4 * MIB)
    s.xenapi.session.logout()


def test_init_and_serve_keep_everything_private(tmp_path: Path) -> None:
    state = tmp_path / "state"
    umask = os.umask(0o022)  # the usual umask: the toolstack must not rely on the caller's
    try:
        xenstack("init", "--state-dir", str(state))
        with server_process(state, ["--https-port", "0"]) as server:
            use(server.url, server.password)
            assert stat.S_IMODE(state.stat().st_mode) == 0o700
            for name in ("xapi.db", "xapi.db-wal", "xapi.db-shm", "root-password"):
                assert stat.S_IMODE((state / name).stat().st_mode) == 0o600, name
            assert (state / "tls" / "xapi-ssl.key").exists()
            assert exposed(state) == []
        assert exposed(state) == []
    finally:
        os.umask(umask)


def test_an_exposed_state_is_made_private_at_start(tmp_path: Path) -> None:
    state = tmp_path / "state"
    xenstack("init", "--state-dir", str(state))
    outside = tmp_path / "outside"
    outside.write_text("not the toolstack's")
    outside.chmod(0o644)
    (state / "plugins").mkdir()
    (state / "plugins" / "link").symlink_to(outside)
    for root, dirs, files in os.walk(state):  # as an older xenstack left it
        for name in dirs:
            Path(root, name).chmod(0o755)
        for name in files:
            Path(root, name).chmod(0o644)
    state.chmod(0o755)
    Toolstack(state).persistence.close()
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert exposed(state) == []
    assert stat.S_IMODE(outside.stat().st_mode) == 0o644  # links are not followed


def test_a_relative_state_dir_serves_from_anywhere(tmp_path: Path) -> None:
    xenstack("init", "--state-dir", "state", cwd=tmp_path)
    state = tmp_path / "state"
    with server_process(state) as server:  # served from the test's own directory
        use(server.url, server.password)
