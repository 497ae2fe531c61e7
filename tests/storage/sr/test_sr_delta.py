"""Delta backups as Xen Orchestra makes them: ``GET /export_raw_vdi?format=vhd&base=<older
snapshot>`` gives only what changed since, and importing that VHD over a copy of the base
(XAPI's prezeroed import on file SRs: what the stream leaves out stays) restores the disk."""

from __future__ import annotations

import http.client
import urllib.parse
from pathlib import Path
from typing import Any

from sr_helpers import MIB, get_file, new_vdi, put_file, vdi_file

from xenstack.storage.vhd import VhdImage
from xenstack.testing import RunningPool

BLOCK = 2 * MIB


def _export(pool: RunningPool, session: Any, vdi: str, fmt: str, base: str | None) -> bytes:
    query = {"session_id": session._session, "vdi": vdi, "format": fmt}
    if base is not None:
        query["base"] = base
    conn = http.client.HTTPConnection("127.0.0.1", pool.port, timeout=60)
    conn.request("GET", "/export_raw_vdi?" + urllib.parse.urlencode(query))
    response = conn.getresponse()
    assert response.status == 200, response.read()
    return response.read()


def _raw(pool: RunningPool, session: Any, vdi: str, tmp_path: Path) -> bytes:
    out = tmp_path / f"{vdi[-12:]}.raw"
    assert get_file(pool, session, vdi, out, "raw") == 200
    return out.read_bytes()


def test_delta_since_a_snapshot_restores_over_its_base(
    session: Any, xenstack_pool: RunningPool, tmp_path: Path
) -> None:
    x = session.xenapi
    disk = new_vdi(session, 16 * MIB)
    with VhdImage.open(str(vdi_file(xenstack_pool, session, disk))) as image:
        image.write(0, b"A" * (3 * BLOCK))  # blocks 0-2
    first = x.VDI.snapshot(disk, {})
    with VhdImage.open(str(vdi_file(xenstack_pool, session, disk))) as image:
        image.write(BLOCK + 4096, b"B" * 8192)  # block 1 changes
        image.write(5 * BLOCK, b"C" * 512)  # block 5 is new
        image.write(2 * BLOCK, bytes(BLOCK))  # block 2 is zeroed: a change too
    second = x.VDI.snapshot(disk, {})

    delta = _export(xenstack_pool, session, second, "vhd", base=first)
    full = _export(xenstack_pool, session, second, "vhd", base=None)
    # three changed blocks (1, 2, 5), against four holding data (0, 1, 2, 5) in the full one
    assert len(full) - len(delta) == BLOCK + 512  # a block and its bitmap sector

    # restore: the base from a full export, then the delta over a clone of it
    restored_base = new_vdi(session, 16 * MIB)
    (tmp_path / "base.vhd").write_bytes(_export(xenstack_pool, session, first, "vhd", None))
    assert put_file(xenstack_pool, session, restored_base, tmp_path / "base.vhd", "vhd") == 200
    restored = x.VDI.clone(restored_base, {})
    (tmp_path / "delta.vhd").write_bytes(delta)
    assert put_file(xenstack_pool, session, restored, tmp_path / "delta.vhd", "vhd") == 200
    assert _raw(xenstack_pool, session, restored, tmp_path) == _raw(
        xenstack_pool, session, second, tmp_path
    )
    assert _raw(xenstack_pool, session, restored_base, tmp_path) == _raw(
        xenstack_pool, session, first, tmp_path
    )

    # the raw delta: the changed blocks, zeros elsewhere
    raw_delta = _export(xenstack_pool, session, second, "raw", base=first)
    now = _raw(xenstack_pool, session, second, tmp_path)
    for block in range(8):
        piece = slice(block * BLOCK, (block + 1) * BLOCK)
        expected = now[piece] if block in (1, 2, 5) else bytes(BLOCK)
        assert raw_delta[piece] == expected, block


def test_a_full_vhd_import_leaves_what_it_does_not_hold(
    session: Any, xenstack_pool: RunningPool, tmp_path: Path
) -> None:
    """XAPI's prezeroed import on file SRs: a stream's holes do not erase the disk."""
    source = new_vdi(session, 8 * MIB)
    with VhdImage.open(str(vdi_file(xenstack_pool, session, source))) as image:
        image.write(0, b"S" * 4096)
    (tmp_path / "s.vhd").write_bytes(_export(xenstack_pool, session, source, "vhd", None))
    target = new_vdi(session, 8 * MIB)
    with VhdImage.open(str(vdi_file(xenstack_pool, session, target))) as image:
        image.write(0, b"T" * 8192)
        image.write(4 * MIB, b"T" * 512)
    assert put_file(xenstack_pool, session, target, tmp_path / "s.vhd", "vhd") == 200
    data = _raw(xenstack_pool, session, target, tmp_path)
    assert data[:4096] == b"S" * 4096  # what the stream holds
    assert data[4096:8192] == b"T" * 4096  # what it leaves out stays
    assert data[4 * MIB : 4 * MIB + 512] == b"T" * 512
