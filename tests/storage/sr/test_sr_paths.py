"""Storage paths stay in their SR: VDI.introduce takes only a plain name of one of the SR's
files, SR.destroy removes only the SR's own files, and no caller names an SR's directory
through sm_config."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pytest
import XenAPI
from sr_helpers import MIB, default_sr, new_vdi, sr_dir, vdi_file

from xenstack.storage.vhd import create_dynamic
from xenstack.testing import RunningPool

NULL = "OpaqueRef:NULL"


def _introduce(x: Any, sr: str, location: str) -> str:
    return str(
        x.VDI.introduce(
            "", "intro", "", sr, "user", False, False, {}, location, {}, {}, True, "0", "0",
            NULL, False, "19700101T00:00:00Z", NULL,
        )
    )  # fmt: skip


def _details(fn: Any, *args: Any) -> list[str]:
    with pytest.raises(XenAPI.Failure) as info:
        fn(*args)
    return list(info.value.details)


def _plugged_over(x: Any, directory: Path) -> tuple[str, str]:
    """An ext SR introduced over ``directory`` (a PBD naming it) and plugged: (sr, pbd)."""
    sr = x.SR.introduce(str(uuid.uuid4()), "over", "", "ext", "user", False, {})
    host = x.host.get_all()[0]
    pbd = x.PBD.create({"host": host, "SR": sr, "device_config": {"location": str(directory)}})
    x.PBD.plug(pbd)
    return sr, pbd


def test_introduce_refuses_locations_outside_the_sr(
    session: Any, xenstack_pool: RunningPool, tmp_path: Path
) -> None:
    x = session.xenapi
    sr = default_sr(session)
    home = sr_dir(xenstack_pool, session, sr)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    create_dynamic(str(elsewhere / "x.vhd"), 4 * MIB)
    os.symlink(elsewhere / "x.vhd", home / "link.vhd")
    base = x.VDI.get_location(new_vdi(session, 4 * MIB))
    x.VDI.snapshot(x.VDI.get_by_uuid(base), {})
    hidden = next(n[1:-7] for n in os.listdir(home) if n.endswith(".hidden"))
    up = os.path.relpath(elsewhere / "x", home)
    before = sorted(x.SR.get_VDIs(sr))
    for location in (str(elsewhere / "x"), up, "../x", "a/b", "", ".", "..", "link"):
        err = _details(_introduce, x, sr, location)
        assert err[0] == "SR_BACKEND_FAILURE_46", (location, err)
        assert err[1] == "" and err[3] == "" and "The VDI is not available" in err[2]
    # the hidden base has its own record (a base copy): that location is taken
    assert _details(_introduce, x, sr, hidden) == ["LOCATION_NOT_UNIQUE", sr, hidden]
    assert sorted(x.SR.get_VDIs(sr)) == before
    x.SR.scan(sr)  # a symlink out of the SR is no VDI of it either
    assert "link" not in [x.VDI.get_location(v) for v in x.SR.get_VDIs(sr)]
    assert (elsewhere / "x.vhd").is_file()


def test_introduce_of_a_known_location_is_refused(session: Any, xenstack_pool: RunningPool) -> None:
    x = session.xenapi
    vdi = new_vdi(session, 4 * MIB)
    sr, location = x.VDI.get_SR(vdi), x.VDI.get_location(vdi)
    assert _details(_introduce, x, sr, location) == ["LOCATION_NOT_UNIQUE", sr, location]
    path = vdi_file(xenstack_pool, session, vdi)
    x.VDI.destroy(vdi)
    assert not path.exists()


def test_sr_destroy_removes_only_its_own_files(session: Any, tmp_path: Path) -> None:
    x = session.xenapi
    directory = tmp_path / "shared-with-others"
    (directory / "keep").mkdir(parents=True)
    (directory / "notes.txt").write_text("not the SR's")
    (directory / "keep" / "inner.vhd").write_bytes(b"nor this")
    (directory / "readme.vhd").write_bytes(b"not a VHD: scan skips it")
    sr, pbd = _plugged_over(x, directory)
    vdi = new_vdi(session, 4 * MIB, sr=sr)
    snap = x.VDI.snapshot(vdi, {})
    names = set(os.listdir(directory))
    assert any(n.endswith(".hidden") for n in names) and len(names) > 6
    x.VDI.destroy(snap)
    x.VDI.destroy(vdi)
    x.PBD.unplug(pbd)
    x.SR.destroy(sr)
    assert sorted(os.listdir(directory)) == ["keep", "notes.txt", "readme.vhd"]
    assert (directory / "keep" / "inner.vhd").read_bytes() == b"nor this"


def test_sr_destroy_removes_its_own_directory_only_when_empty(
    session: Any, xenstack_pool: RunningPool
) -> None:
    x = session.xenapi
    host = x.host.get_all()[0]
    made = []
    for stray in (False, True):
        sr = x.SR.create(host, {}, "0", "local", "", "ext", "user", False, {})
        home = sr_dir(xenstack_pool, session, sr)
        x.VDI.destroy(new_vdi(session, 4 * MIB, sr=sr))
        if stray:
            (home / "operator-notes").write_text("kept")
        for pbd in x.SR.get_PBDs(sr):
            x.PBD.unplug(pbd)
        x.SR.destroy(sr)
        made.append(home)
    assert not made[0].exists()
    assert os.listdir(made[1]) == ["operator-notes"]


def test_sm_config_cannot_name_an_srs_storage(
    session: Any, xenstack_pool: RunningPool, tmp_path: Path
) -> None:
    x = session.xenapi
    target = tmp_path / "target"
    target.mkdir()
    (target / "precious").write_text("x")
    claimed = {"xenstack_driver": "file", "xenstack_path": str(target), "mine": "1"}
    sr = x.SR.introduce(str(uuid.uuid4()), "sneaky", "", "ext", "user", False, claimed)
    assert x.SR.get_sm_config(sr) == {"mine": "1"}
    x.SR.add_to_sm_config(sr, "xenstack_path", "/")
    x.SR.set_sm_config(sr, claimed)
    assert x.SR.get_sm_config(sr) == {"mine": "1"}
    real = default_sr(session)
    path = x.SR.get_sm_config(real)["xenstack_path"]
    x.SR.set_sm_config(real, {})
    x.SR.remove_from_sm_config(real, "xenstack_path")
    assert x.SR.get_sm_config(real) == {"xenstack_driver": "file", "xenstack_path": path}
    x.SR.forget(sr)
    assert (target / "precious").is_file()
