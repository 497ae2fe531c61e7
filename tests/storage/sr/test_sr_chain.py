"""Snapshot chains stay within XenServer's limit: past MAX_CHAIN files a snapshot or clone is
refused with SM's error 109, the disk still reads whole, and once its snapshots are gone
and the GC has coalesced the chain, snapshots work again."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import XenAPI
from sr_helpers import MIB, get_file, new_vdi, run_gc, vdi_file

from xenstack.storage.vhd import VhdImage
from xenstack.testing import RunningPool

MAX_CHAIN = 30  # XenServer's limit: files in a chain, the leaf included
TOO_LONG = ["SR_BACKEND_FAILURE_109", "", "The snapshot chain is too long", ""]


def _details(fn: Any, *args: Any) -> list[str]:
    with pytest.raises(XenAPI.Failure) as info:
        fn(*args)
    return list(info.value.details)


def test_snapshot_chain_is_limited_and_recovers_after_gc(
    session: Any, xenstack_pool: RunningPool, tmp_path: Path
) -> None:
    x = session.xenapi
    vdi = new_vdi(session, 8 * MIB)
    data = os.urandom(MIB)
    with VhdImage.open(str(vdi_file(xenstack_pool, session, vdi))) as image:
        image.write(2 * MIB, data)
        image.flush()
    expected = bytes(2 * MIB) + data + bytes(5 * MIB)
    snaps = []
    for _ in range(MAX_CHAIN + 5):
        try:
            snaps.append(x.VDI.snapshot(vdi, {}))
        except XenAPI.Failure as failure:
            assert list(failure.details) == TOO_LONG
            break
    assert len(snaps) == MAX_CHAIN - 1  # the leaf and 29 bases: 30 files
    vdis = len(x.VDI.get_all())
    assert _details(x.VDI.clone, vdi, {}) == TOO_LONG
    assert _details(x.VDI.snapshot, vdi, {}) == TOO_LONG
    assert len(x.VDI.get_all()) == vdis  # nothing was made
    for i, target in enumerate((vdi, snaps[-1])):
        out = tmp_path / f"out{i}.raw"
        assert get_file(xenstack_pool, session, target, out, "raw") == 200
        assert out.read_bytes() == expected
    for snap in snaps:
        x.VDI.destroy(snap)
    run_gc(xenstack_pool)
    again = x.VDI.snapshot(vdi, {})
    out = tmp_path / "again.raw"
    assert get_file(xenstack_pool, session, again, out, "raw") == 200
    assert out.read_bytes() == expected
