"""The SR driver registry: a Toolstack builds every SR's driver through the registry it is
given (none shared between toolstacks), and the sizes-only driver's arithmetic."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from xenstack.core.calls import Origin
from xenstack.impl.storage.sr_backend import drivers
from xenstack.storage.sr import (
    DEFAULT_DRIVERS,
    SizesSr,
    SrDriver,
    SrDriverError,
    SrFullError,
    SrSite,
    VdiInfo,
)
from xenstack.storage.sr.sizes import Listed, vhd_overhead
from xenstack.toolstack import Toolstack

GIB = 1 << 30
ORIGIN = Origin("127.0.0.1", "tcp", "xmlrpc")


def _vdi_create(toolstack: Toolstack, size: int) -> dict[str, Any]:
    """VDI.create on the default SR through the dispatcher; the new VDI's record."""

    async def run() -> dict[str, Any]:
        call = toolstack.dispatcher
        login = ["root", "pw", "1.0", "test"]
        session = await call("session.login_with_password", login, ORIGIN)
        (pool,) = await call("pool.get_all", [session], ORIGIN)
        sr = await call("pool.get_default_SR", [session, pool], ORIGIN)
        record = {"SR": sr, "virtual_size": str(size), "type": "user", "name_label": "d"}
        vdi = await call("VDI.create", [session, record], ORIGIN)
        return dict(await call("VDI.get_record", [session, vdi], ORIGIN))

    return asyncio.run(run())


def test_a_toolstack_builds_drivers_through_the_registry_it_is_given() -> None:
    built: list[SrSite] = []

    def thick_sizes(site: SrSite) -> SrDriver:  # every sizes-only SR provisioned thick
        built.append(site)
        return SizesSr(site.vdis, site.capacity, thin=False, vhd=site.vhd)

    mine = Toolstack(None, sr_drivers=DEFAULT_DRIVERS.with_kind("sizes", thick_sizes))
    other = Toolstack(None)
    for toolstack in (mine, other):
        toolstack.initialise("pw")
    assert drivers(other) is DEFAULT_DRIVERS and not built  # nothing shared
    thick, thin = _vdi_create(mine, GIB), _vdi_create(other, GIB)
    assert built  # the given factory made the driver
    assert int(thick["physical_utilisation"]) == GIB + vhd_overhead(GIB)
    assert int(thin["physical_utilisation"]) == vhd_overhead(GIB)


def test_a_registry_is_not_changed_by_adding_a_kind() -> None:
    added = DEFAULT_DRIVERS.with_kind("lvm", lambda site: SizesSr([], 0, thin=False, vhd=True))
    assert "lvm" in added.kinds and "lvm" not in DEFAULT_DRIVERS.kinds
    assert DEFAULT_DRIVERS.kinds == ["file", "iso", "shared", "sizes"]


def _sizes(*vdis: VdiInfo, capacity: int = 10 * GIB, thin: bool = True) -> SizesSr:
    return SizesSr(list(vdis), capacity, thin=thin, vhd=True)


def test_sizes_driver_takes_vhd_metadata_on_thin_srs_and_everything_on_thick_ones() -> None:
    thin, thick = _sizes(), _sizes(thin=False)
    assert thin.create("a", GIB).physical_utilisation == vhd_overhead(GIB)
    assert thick.create("a", GIB).physical_utilisation == GIB + vhd_overhead(GIB)
    assert thick.snapshot("a", "b").physical_utilisation == GIB + vhd_overhead(GIB)
    assert thick.usage() == (2 * (GIB + vhd_overhead(GIB)), 10 * GIB)
    assert thick.resize("a", 2 * GIB).physical_utilisation == 2 * GIB + vhd_overhead(GIB)
    grown = thin.resize("a", 4 * GIB).physical_utilisation
    assert grown == vhd_overhead(4 * GIB)
    thick.delete("b")
    assert thick.usage()[0] == 2 * GIB + vhd_overhead(GIB)


def test_sizes_driver_refuses_what_does_not_fit_and_invalid_sizes() -> None:
    full = _sizes(VdiInfo("a", "a", GIB, 3 * GIB), capacity=4 * GIB, thin=False)
    with pytest.raises(SrFullError) as refused:
        full.create("b", GIB)
    assert (refused.value.needed, refused.value.free) == (GIB + vhd_overhead(GIB), GIB)
    with pytest.raises(SrFullError):
        full.resize("a", 2 * GIB + 1)
    assert full.usage() == (3 * GIB, 4 * GIB)  # nothing taken by the refusals
    with pytest.raises(SrDriverError) as invalid:
        full.create("c", -1)
    assert invalid.value.code == 79
    with pytest.raises(SrDriverError) as missing:
        full.snapshot("nope", "d")
    assert missing.value.code == 46
    assert not full.holds_data


def test_sizes_driver_reads_the_records_only_when_asked() -> None:
    class Counted(Listed):
        reads = 0

        def used(self) -> int:
            Counted.reads += 1
            return super().used()

    drv = SizesSr(Counted([VdiInfo("a", "a", GIB, GIB)]), 4 * GIB, thin=True, vhd=True)
    assert not drv.holds_data and not Counted.reads
    assert drv.usage() == (GIB, 4 * GIB) and drv.usage() == (GIB, 4 * GIB)
    assert Counted.reads == 1
    drv.create("b", GIB)
    assert [v.location for v in drv.scan()] == ["a", "b"]
    drv.delete("a")
    assert [v.location for v in drv.scan()] == ["b"]
    assert drv.usage()[0] == vhd_overhead(GIB)
