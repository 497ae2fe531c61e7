"""``sm_config:vhd-parent``, as XAPI's VHD SRs show it: a VDI whose leaf is a differencing
VHD names its parent node's uuid; a whole disk names none. Kept true by scans, snapshots
and the GC folding a chain back into one file."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from sr_helpers import MIB, new_vdi, run_gc

from xenstack.storage.vhd import create_dynamic
from xenstack.testing import RunningPool


def _chain(directory: Path) -> tuple[str, str, str]:
    """``<uuid>.vhd`` files base <- middle <- leaf, as glance.py leaves them; their uuids."""
    base, middle, leaf = (str(uuid.uuid4()) for _ in range(3))
    create_dynamic(str(directory / f"{base}.vhd"), 8 * MIB)
    create_dynamic(str(directory / f"{middle}.vhd"), parent=str(directory / f"{base}.vhd"))
    create_dynamic(str(directory / f"{leaf}.vhd"), parent=str(directory / f"{middle}.vhd"))
    return base, middle, leaf


def _parents(x: Any, sr: str) -> dict[str, str | None]:
    return {
        r["uuid"]: r["sm_config"].get("vhd-parent")
        for r in (x.VDI.get_record(v) for v in x.SR.get_VDIs(sr))
    }


def test_scan_records_the_chain(session: Any, tmp_path: Path) -> None:
    x = session.xenapi
    library = tmp_path / "library"
    library.mkdir()
    base, middle, leaf = _chain(library)
    sr = x.SR.introduce(str(uuid.uuid4()), "glance", "", "file", "user", False, {})
    pbd = x.PBD.create(
        {"host": x.host.get_all()[0], "SR": sr, "device_config": {"location": str(library)}}
    )
    x.PBD.plug(pbd)
    assert _parents(x, sr) == {base: None, middle: base, leaf: middle}
    (library / f"{middle}.vhd").unlink()  # a broken chain names no parent it cannot find
    x.SR.scan(sr)
    assert _parents(x, sr) == {base: None, leaf: None}
    x.PBD.unplug(pbd)
    x.SR.forget(sr)


def test_snapshot_names_the_hidden_base_and_gc_clears_it(
    session: Any, xenstack_pool: RunningPool
) -> None:
    x = session.xenapi
    vdi = new_vdi(session, 8 * MIB)
    assert "vhd-parent" not in x.VDI.get_sm_config(vdi)
    snap = x.VDI.snapshot(vdi, {})
    base = x.VDI.get_sm_config(vdi)["vhd-parent"]
    assert x.VDI.get_sm_config(snap)["vhd-parent"] == base
    assert base not in (x.VDI.get_uuid(vdi), x.VDI.get_uuid(snap))
    x.VDI.destroy(snap)
    run_gc(xenstack_pool)  # the base has one child left: folded into the VDI's own file
    assert "vhd-parent" not in x.VDI.get_sm_config(vdi)
    x.VDI.destroy(vdi)
