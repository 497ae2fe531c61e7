"""One set of space-accounting checks, run through the API against every SR driver kind:
the file driver (a state directory's Local storage) and the sizes-only driver
(``--sim-storage``). VDI create, snapshot, clone, resize and destroy must keep an SR's
``virtual_allocation`` and ``physical_utilisation`` as its driver counts them, whichever
driver it is."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sr_helpers import GIB, MIB, default_sr, new_vdi, run_gc

from xenstack.testing import RunningPool, failure, login, simulated_pool

KINDS = {"file": False, "sizes": True}  # driver kind -> sim_storage


@pytest.fixture(params=sorted(KINDS))
def kind_pool(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, RunningPool]]:
    with simulated_pool(tmp_path / "state", sim_storage=KINDS[request.param]) as pool:
        yield request.param, pool


def _sr(x: Any, sr: str) -> dict[str, int]:
    record = x.SR.get_record(sr)
    keys = ("physical_utilisation", "virtual_allocation", "physical_size")
    return {k: int(record[k]) for k in keys}


def _vdis(x: Any, sr: str) -> list[dict[str, Any]]:
    return [x.VDI.get_record(v) for v in x.SR.get_VDIs(sr)]


def _consistent(x: Any, sr: str) -> dict[str, int]:
    """The SR's figures, checked against its VDIs: the virtual sizes of those clients made
    add up (as SM counts, not a base copy's), and the physical usage is at least what the
    VDIs take and fits the SR."""
    usage, vdis = _sr(x, sr), _vdis(x, sr)
    managed = sum(int(v["virtual_size"]) for v in vdis if v["managed"])
    assert usage["virtual_allocation"] == managed
    assert usage["physical_utilisation"] >= sum(int(v["physical_utilisation"]) for v in vdis)
    assert 0 <= usage["physical_utilisation"] <= usage["physical_size"]
    return usage


def test_the_drivers_keep_the_same_accounts(kind_pool: tuple[str, RunningPool]) -> None:
    kind, pool = kind_pool
    session = login(pool)
    x = session.xenapi
    sr = default_sr(session)
    assert x.SR.get_sm_config(sr).get("xenstack_driver", "sizes") == kind
    before = _consistent(x, sr)

    vdi = new_vdi(session, GIB + 1)  # rounded up to whole 2 MiB VHD blocks
    size = int(x.VDI.get_virtual_size(vdi))
    assert size == GIB + 2 * MIB
    taken = int(x.VDI.get_physical_utilisation(vdi))
    assert 0 < taken < MIB  # thin: the VHD's metadata, not its size
    created = _consistent(x, sr)
    assert created["virtual_allocation"] == before["virtual_allocation"] + size
    assert created["physical_utilisation"] == before["physical_utilisation"] + taken

    snap = x.VDI.snapshot(vdi, {})
    clone = x.VDI.clone(vdi, {})
    for new in (snap, clone):
        assert int(x.VDI.get_virtual_size(new)) == size
        assert 0 < int(x.VDI.get_physical_utilisation(new)) < MIB
    copies = _consistent(x, sr)
    assert copies["virtual_allocation"] == created["virtual_allocation"] + 2 * size
    assert copies["physical_utilisation"] > created["physical_utilisation"]

    x.VDI.resize(vdi, str(2 * GIB))
    assert int(x.VDI.get_virtual_size(vdi)) == 2 * GIB
    grown = _consistent(x, sr)
    assert grown["virtual_allocation"] == copies["virtual_allocation"] + 2 * GIB - size
    assert grown["physical_utilisation"] >= copies["physical_utilisation"]
    assert failure(x.VDI.resize, vdi, str(GIB))[0] == "SR_BACKEND_FAILURE_79"

    for gone in (snap, clone, vdi):
        x.VDI.destroy(gone)
    run_gc(pool)  # a file SR's hidden bases go with the GC's pass
    x.SR.scan(sr)
    assert _consistent(x, sr) == before
