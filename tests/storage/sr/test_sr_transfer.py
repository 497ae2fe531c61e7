"""Disk transfer over HTTP (/import_raw_vdi, /export_raw_vdi) and NBD exports of VDIs."""

from __future__ import annotations

import http.client
import os
import shutil
import subprocess
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import XenAPI
from sr_helpers import (
    MIB,
    finished,
    get_file,
    new_vdi,
    put_file,
    qemu,
    require_qemu_img,
    write_pattern,
)

from xenstack.storage.vhd import VhdImage
from xenstack.testing import RunningPool

pytestmark = pytest.mark.qemu


def _status(pool: RunningPool, method: str, query: dict[str, str]) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", pool.port, timeout=30)
    conn.request(method, "/import_raw_vdi?" + urllib.parse.urlencode(query), body=b"x" * 512)
    status = finished(conn)
    conn.close()
    return status


def test_raw_import_then_vhd_and_raw_exports(
    session: Any, xenstack_pool: RunningPool, tmp_path: Path
) -> None:
    require_qemu_img()
    source = tmp_path / "source.raw"
    write_pattern(source, 64 * MIB)
    vdi = new_vdi(session, 64 * MIB)
    task = session.xenapi.task.create("import", "")
    assert put_file(xenstack_pool, session, vdi, source, "raw", task) == 200
    assert session.xenapi.task.get_status(task) == "success"
    assert float(session.xenapi.task.get_progress(task)) == 1.0
    assert int(session.xenapi.VDI.get_physical_utilisation(vdi)) > 5 * MIB
    as_vhd, as_raw = tmp_path / "out.vhd", tmp_path / "out.raw"
    assert get_file(xenstack_pool, session, vdi, as_vhd, "vhd") == 200
    assert get_file(xenstack_pool, session, vdi, as_raw, "raw") == 200
    assert as_vhd.stat().st_size < 40 * MIB  # only allocated blocks travel
    qemu("compare", "-f", "vpc", "-F", "raw", str(as_vhd), str(source))
    qemu("compare", "-f", "raw", "-F", "raw", str(as_raw), str(source))


def test_qemu_dynamic_vhd_imports_byte_exact(
    session: Any, xenstack_pool: RunningPool, tmp_path: Path
) -> None:
    require_qemu_img()
    source = tmp_path / "source.raw"
    write_pattern(source, 32 * MIB, seed=7)
    made = tmp_path / "qemu.vhd"
    qemu("convert", "-f", "raw", "-O", "vpc", "-o", "subformat=dynamic", str(source), str(made))
    vdi = new_vdi(session, 64 * MIB)
    assert put_file(xenstack_pool, session, vdi, made, "vhd") == 200
    back = tmp_path / "back.raw"
    assert get_file(xenstack_pool, session, vdi, back, "raw") == 200
    size = source.stat().st_size
    assert back.read_bytes()[:size] == source.read_bytes()
    assert back.read_bytes()[size:].count(0) == back.stat().st_size - size


def test_transfer_refusals(session: Any, xenstack_pool: RunningPool, tmp_path: Path) -> None:
    vdi = new_vdi(session, 8 * MIB)
    good = {"session_id": session._session, "vdi": vdi, "format": "raw"}
    assert _status(xenstack_pool, "PUT", good | {"session_id": "OpaqueRef:bad"}) == 401
    assert _status(xenstack_pool, "PUT", good | {"vdi": "OpaqueRef:nothing"}) == 404
    assert _status(xenstack_pool, "PUT", good | {"format": "qcow2"}) == 400
    source = tmp_path / "big.raw"
    write_pattern(source, 16 * MIB)
    task = session.xenapi.task.create("too big", "")
    # accepted (200, as XAPI answers before the body), then failed: the task says so
    assert put_file(xenstack_pool, session, vdi, source, "raw", task) == 200
    assert session.xenapi.task.get_status(task) == "failure"
    assert session.xenapi.task.get_error_info(task) == ["VDI_IO_ERROR"]
    # the VDI is free again afterwards
    session.xenapi.VDI.snapshot(vdi, {})


def test_nbd_serves_a_snapshot_chain(
    session: Any, xenstack_pool: RunningPool, tmp_path: Path
) -> None:
    require_qemu_img()
    from sr_helpers import vdi_file

    vdi = new_vdi(session, 16 * MIB)
    for i in range(3):
        with VhdImage.open(str(vdi_file(xenstack_pool, session, vdi))) as image:
            image.write(i * 3 * MIB + 4096, bytes([0x41 + i]) * (2 * MIB))
        session.xenapi.VDI.snapshot(vdi, {})
    with VhdImage.open(str(vdi_file(xenstack_pool, session, vdi)), writable=False) as image:
        assert image.depth == 4
    flat = tmp_path / "flat.raw"
    assert get_file(xenstack_pool, session, vdi, flat, "raw") == 200
    infos = session.xenapi.VDI.get_nbd_info(vdi)
    assert len(infos) == 1
    info = infos[0]
    uuid = session.xenapi.VDI.get_uuid(vdi)
    assert info["exportname"] == f"/{uuid}?session_id={session._session}"
    assert info["address"] == "127.0.0.1"
    assert xenstack_pool.toolstack is not None
    socket = xenstack_pool.toolstack.storage.nbd_socket(uuid)
    name = urllib.parse.quote(info["exportname"], safe="")
    qemu("compare", "-F", "raw", f"nbd+unix:///{name}?socket={socket}", str(flat))
    qemu("compare", "-F", "raw", f"nbd://127.0.0.1:{info['port']}/{name}", str(flat))
    with pytest.raises(XenAPI.Failure) as err:
        session.xenapi.VDI.get_nbd_info("OpaqueRef:nothing")
    assert err.value.details[0] == "HANDLE_INVALID"


def _qemu_io(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["qemu-io", *args], capture_output=True, text=True, timeout=60)


def test_nbd_export_writes_into_the_leaf(
    session: Any, xenstack_pool: RunningPool, tmp_path: Path
) -> None:
    require_qemu_img()
    if shutil.which("qemu-io") is None:
        pytest.skip("qemu-io is not installed")
    vdi = new_vdi(session, 8 * MIB)
    session.xenapi.VDI.snapshot(vdi, {})  # the leaf is a differencing child: a chain
    info = session.xenapi.VDI.get_nbd_info(vdi)[0]
    url = f"nbd://127.0.0.1:{info['port']}/{urllib.parse.quote(info['exportname'], safe='')}"
    done = _qemu_io("-f", "raw", "-c", "write -P 0x5a 1M 3M", "-c", "flush", url)
    assert done.returncode == 0 and "wrote" in done.stdout, done.stderr
    back = tmp_path / "back.raw"
    assert get_file(xenstack_pool, session, vdi, back, "raw") == 200
    data = back.read_bytes()
    assert data[MIB : 4 * MIB] == b"\x5a" * (3 * MIB)
    assert data[:MIB] == bytes(MIB) and data[4 * MIB :] == bytes(4 * MIB)
    snap = session.xenapi.VDI.snapshot(vdi, {})  # ends the writable export first
    snap_info = session.xenapi.VDI.get_nbd_info(snap)[0]
    snap_name = urllib.parse.quote(snap_info["exportname"], safe="")
    snap_url = f"nbd://127.0.0.1:{snap_info['port']}/{snap_name}"
    refused = _qemu_io("-f", "raw", "-c", "write -P 0x11 0 64k", snap_url)
    assert "wrote" not in refused.stdout
    assert get_file(xenstack_pool, session, snap, back, "raw") == 200
    assert back.read_bytes() == data


def test_random_upload_byte_exact_plain_and_chunked(
    session: Any, xenstack_pool: RunningPool, tmp_path: Path
) -> None:
    """64 MiB of random data (past the body queue's bound), by length and chunked."""
    data = os.urandom(64 * MIB)
    source = tmp_path / "random.raw"
    source.write_bytes(data)
    for chunked in (False, True):
        vdi = new_vdi(session, 64 * MIB)
        if chunked:
            query = {"session_id": session._session, "vdi": vdi, "format": "raw"}
            conn = http.client.HTTPConnection("127.0.0.1", xenstack_pool.port, timeout=120)
            pieces = (data[i : i + 3 * MIB + 17] for i in range(0, len(data), 3 * MIB + 17))
            conn.request("PUT", "/import_raw_vdi?" + urllib.parse.urlencode(query), body=pieces,
                         encode_chunked=True)  # fmt: skip
            assert finished(conn) == 200
            conn.close()
        else:
            assert put_file(xenstack_pool, session, vdi, source, "raw") == 200
        back = tmp_path / "back.raw"
        assert get_file(xenstack_pool, session, vdi, back, "raw") == 200
        assert back.read_bytes() == data


def test_an_import_waits_out_a_gc_pass(
    session: Any, xenstack_pool: RunningPool, tmp_path: Path
) -> None:
    """A GC pass holding the VDI's file delays an import (as other chain changes wait for it);
    any other holder refuses it with VDI_IN_USE."""
    import threading

    assert xenstack_pool.toolstack is not None
    claims = xenstack_pool.toolstack.storage.busy
    vdi = new_vdi(session, 4 * MIB)
    location = session.xenapi.VDI.get_location(vdi)
    source = tmp_path / "in.raw"
    write_pattern(source, 4 * MIB)

    assert claims.gc_claim([location])
    timer = threading.Timer(0.5, claims.gc_release, [location])
    timer.start()
    task = session.xenapi.task.create("after the GC", "")
    try:
        assert put_file(xenstack_pool, session, vdi, source, "raw", task) == 200
    finally:
        timer.join()
    assert session.xenapi.task.get_status(task) == "success"

    claims.add(location)  # another user (an export, a copy): no waiting for it
    task = session.xenapi.task.create("while in use", "")
    try:
        assert put_file(xenstack_pool, session, vdi, source, "raw", task) == 200
    finally:
        claims.discard(location)
    assert session.xenapi.task.get_error_info(task) == ["VDI_IN_USE", vdi, "import"]
