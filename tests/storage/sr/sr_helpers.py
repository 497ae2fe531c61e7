"""Helpers for the SR tests: pool access, HTTP transfers, qemu-img."""

from __future__ import annotations

import asyncio
import http.client
import os
import shutil
import subprocess
import urllib.parse
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest

from xenstack.testing import RunningPool

MIB = 1 << 20
GIB = 1 << 30


def require_qemu_img() -> str:
    """qemu-img's path; skipped when missing, but failed when CI is set."""
    path = shutil.which("qemu-img")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("qemu-img is not installed and CI is set: this test must run")
        pytest.skip("qemu-img is not installed (install qemu-utils)")
    return path


def qemu(*args: str) -> str:
    result = subprocess.run(["qemu-img", *args], capture_output=True, text=True, check=False)
    if result.returncode:
        pytest.fail(
            f"qemu-img {' '.join(args)}: {result.returncode} {result.stderr}{result.stdout}"
        )
    return result.stdout


def on_loop(pool: RunningPool, coro: Coroutine[Any, Any, Any]) -> Any:
    assert pool.loop is not None
    return asyncio.run_coroutine_threadsafe(coro, pool.loop).result(60)


def run_gc(pool: RunningPool) -> Any:
    assert pool.toolstack is not None
    return on_loop(pool, pool.toolstack.storage.run_gc())


def default_sr(session: Any) -> str:
    pool = session.xenapi.pool.get_all()[0]
    return str(session.xenapi.pool.get_default_SR(pool))


def new_vdi(session: Any, size: int, sr: str | None = None, label: str = "disk") -> str:
    return str(
        session.xenapi.VDI.create(
            {
                "name_label": label,
                "name_description": "",
                "SR": sr or default_sr(session),
                "virtual_size": str(size),
                "type": "user",
                "sharable": False,
                "read_only": False,
                "other_config": {},
            }
        )
    )


def sr_dir(pool: RunningPool, session: Any, sr: str) -> Path:
    assert pool.state_dir is not None
    return pool.state_dir / "sr" / session.xenapi.SR.get_uuid(sr)


def vdi_file(pool: RunningPool, session: Any, vdi: str) -> Path:
    sr = session.xenapi.VDI.get_SR(vdi)
    return sr_dir(pool, session, sr) / (session.xenapi.VDI.get_location(vdi) + ".vhd")


def _path(session: Any, endpoint: str, vdi: str, fmt: str, task: str | None) -> str:
    query = {"session_id": session._session, "vdi": vdi, "format": fmt}
    if task:
        query["task_id"] = task
    return f"/{endpoint}?{urllib.parse.urlencode(query)}"


def put_file(
    pool: RunningPool, session: Any, vdi: str, path: Path, fmt: str, task: str | None = None
) -> int:
    """PUT /import_raw_vdi from a file; return the HTTP status once the import has ended.

    As XAPI does, the server answers 200 as soon as it accepts the upload, and ends the
    (empty) answer when the import is done: reading it to the end waits for that.
    """
    conn = http.client.HTTPConnection("127.0.0.1", pool.port, timeout=120)
    size = path.stat().st_size
    with open(path, "rb") as f:
        conn.request(
            "PUT",
            _path(session, "import_raw_vdi", vdi, fmt, task),
            body=f,
            headers={"Content-Length": str(size)},
        )
        status = finished(conn)
    conn.close()
    return status


def finished(conn: http.client.HTTPConnection) -> int:
    """The status of an upload's answer, read to its end (the end of the import)."""
    response = conn.getresponse()
    response.read()
    return response.status


def get_file(
    pool: RunningPool, session: Any, vdi: str, dest: Path, fmt: str, query: str = ""
) -> int:
    """GET /export_raw_vdi into ``dest``; return the HTTP status."""
    conn = http.client.HTTPConnection("127.0.0.1", pool.port, timeout=120)
    conn.request("GET", _path(session, "export_raw_vdi", vdi, fmt, None) + query)
    response = conn.getresponse()
    with open(dest, "wb") as f:
        while chunk := response.read(1 << 20):
            f.write(chunk)
    conn.close()
    return response.status


def write_pattern(path: Path, size: int, seed: int = 1) -> bytes:
    """A sparse raw file of ``size`` with a few random extents; returns nothing useful."""
    import random

    rng = random.Random(seed)
    with open(path, "wb") as f:
        f.truncate(size)
        for _ in range(12):
            offset = rng.randrange(0, size - MIB) // 512 * 512
            f.seek(offset)
            f.write(rng.randbytes(rng.randrange(1, MIB)))
    return b""
