"""The live GC leaves operations in progress alone; crash leftovers are repaired at start-up.

A snapshot in progress (its base linked beside the leaf, its new leaf still a temporary
file) looks just like one a crash cut short. The GC of a serving toolstack must not "repair"
it: that happened when every pass repaired, and a snapshot racing the GC lost its files.
Repairs happen once, before anything is served.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import XenAPI
from sr_helpers import MIB, new_vdi, run_gc, vdi_file

from xenstack.storage.sr.filesr import TMP_SUFFIX, hidden_marker
from xenstack.testing import RunningPool, server_process


def _half_made_snapshot(leaf: Path) -> tuple[Path, Path, Path]:
    """What VDI.snapshot has made of ``leaf`` just before its swap: base, marker, new leaf."""
    base = leaf.with_name(f"{uuid.uuid4()}.vhd")
    marker = Path(hidden_marker(str(leaf.parent), base.name[: -len(".vhd")]))
    marker.touch()
    os.link(leaf, base)
    tmp = Path(str(leaf) + TMP_SUFFIX)
    tmp.write_bytes(leaf.read_bytes()[-512:])
    return base, marker, tmp


def test_the_live_gc_leaves_a_snapshot_in_progress_alone(
    session: Any, xenstack_pool: RunningPool
) -> None:
    vdi = new_vdi(session, 4 * MIB)
    leaf = vdi_file(xenstack_pool, session, vdi)
    made = _half_made_snapshot(leaf)
    run_gc(xenstack_pool)
    assert [p.exists() for p in made] == [True, True, True]
    assert leaf.exists()


def test_leftovers_of_a_crash_are_repaired_at_start(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with server_process(state) as server:
        x = XenAPI.Session(server.url)
        x.xenapi.login_with_password("root", server.password, "1.0", "gc-live")
        (sr,) = x.xenapi.SR.get_by_name_label("Local storage")
        vdi = x.xenapi.VDI.create(
            {
                "name_label": "d",
                "name_description": "",
                "SR": sr,
                "virtual_size": str(4 * MIB),
                "type": "user",
                "sharable": False,
                "read_only": False,
                "other_config": {},
            }
        )
        location = x.xenapi.VDI.get_location(vdi)
        directory = state / "sr" / x.xenapi.SR.get_uuid(sr)
        x.xenapi.session.logout()
    leaf = directory / f"{location}.vhd"
    assert leaf.exists()
    made = _half_made_snapshot(leaf)  # as if the toolstack had died in the middle
    with server_process(state) as server:
        x = XenAPI.Session(server.url)
        x.xenapi.login_with_password("root", server.password, "1.0", "gc-live")
        # the repair ran before the port opened: nothing is left of the cut snapshot
        assert [p.exists() for p in made] == [False, False, False]
        assert leaf.exists()
        (vdi,) = [r for r, v in x.xenapi.VDI.get_all_records().items() if v["location"] == location]
        snapshot = x.xenapi.VDI.snapshot(vdi, {})
        assert x.xenapi.VDI.get_is_a_snapshot(snapshot)
        x.xenapi.session.logout()
