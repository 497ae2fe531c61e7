"""pool.join carries the joining host's VMs and local storage into the pool, uuids kept.

Two ``xenstack serve`` processes serving HTTPS, each with its own simulator backend and file
SRs: B has a halted VM with a disk on its Local storage (bytes written through B's HTTP
handler) and a VIF, and a snapshot of it. After B joins A's pool, A's database has them all
with B's uuids; the disk is still B's file, read through A; the VM starts on B (placed there
by its disk) in B's own backend, through A. A failure of the import on the master does not
fail the join (XAPI's best effort).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from poolkit import DATA, connect, guest_with_disk, member_domains, raw_vdi, two_servers

from xenstack.errors import ApiError
from xenstack.impl.pool import carry_import
from xenstack.testing import (
    RunningPool,
    ServerProcess,
    failure,
    halted_vm,
    simulated_pool,
)

NULL = "OpaqueRef:NULL"


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    with two_servers(tmp_path) as both:
        yield both


@pytest.mark.slow
def test_join_carries_a_halted_vm_with_its_disk_and_vif(pool: Any) -> None:
    a, b = pool
    xb = connect(b)
    (b_host,) = xb.host.get_all()
    b_uuid = xb.host.get_uuid(b_host)
    carried = guest_with_disk(xb, b, "carried")
    xb.VM.set_affinity(carried["ref"], b_host)
    snap_uuid = xb.VM.get_uuid(xb.VM.snapshot(carried["ref"], "before-join"))
    sleeper = guest_with_disk(xb, b, "sleeper")
    xb.VM.start(sleeper["ref"], False, False)
    xb.VM.suspend(sleeper["ref"])
    xb.pool.join(f"127.0.0.1:{a.port}", "root", a.password)

    xa = connect(a)
    member = xa.host.get_by_uuid(b_uuid)
    vm = xa.VM.get_by_uuid(carried["VM"])
    record = xa.VM.get_record(vm)
    assert (record["power_state"], record["resident_on"]) == ("Halted", NULL)
    assert record["affinity"] == member  # B's host is the member
    snap = xa.VM.get_by_uuid(snap_uuid)
    assert xa.VM.get_snapshot_of(snap) == vm and xa.VM.get_snapshots(vm) == [snap]
    (vbd,) = record["VBDs"]
    (vif,) = record["VIFs"]
    assert xa.VBD.get_uuid(vbd) == carried["VBD"]
    assert (xa.VIF.get_uuid(vif), xa.VIF.get_MAC(vif)) == (carried["VIF"], "02:00:00:0a:0b:0c")
    assert xa.network.get_bridge(xa.VIF.get_network(vif)) == "xenbr0"
    vdi = xa.VBD.get_VDI(vbd)
    assert xa.VDI.get_uuid(vdi) == carried["VDI"]
    sr = xa.VDI.get_SR(vdi)
    assert xa.SR.get_uuid(sr) == carried["SR"]
    assert [xa.PBD.get_host(p) for p in xa.SR.get_PBDs(sr)] == [member]
    assert xa.host.get_suspend_image_sr(member) == sr  # B's Local storage, not a fresh one
    seen = [xa.PBD.get_SR(p) for p in xa.host.get_PBDs(member)]
    assert sorted(xa.SR.get_name_label(s) for s in seen) == [
        "DVD drives",
        "Local storage",
        "XenServer Tools",
    ]  # B's own two (the fresh ones the master made for it became them), and the pool's
    assert sr in seen
    # the disk is B's own file, read through the master
    path = Path(xa.SR.get_sm_config(sr)["xenstack_path"])
    assert path.is_relative_to(b.state_dir)
    assert any(p.name.startswith(carried["VDI"]) for p in path.iterdir())
    assert raw_vdi(a, vdi)[: len(DATA)] == DATA

    # it starts on B (its disk is on B's local SR), in B's own backend, through the master
    xa.VM.start(vm, False, False)
    assert xa.VM.get_resident_on(vm) == member
    assert member_domains(a, b_uuid, member) == [vm]
    xa.VM.hard_shutdown(vm)
    xa.VM.start_on(vm, member, False, False)
    assert member_domains(a, b_uuid, member) == [vm]
    xa.VM.clean_shutdown(vm)
    assert member_domains(a, b_uuid, member) == []
    # a suspended VM stays so, and resumes on B from the image B's backend kept
    slept = xa.VM.get_by_uuid(sleeper["VM"])
    assert xa.VM.get_power_state(slept) == "Suspended"
    assert xa.VDI.get_SR(xa.VM.get_suspend_VDI(slept)) == sr
    xa.VM.resume(slept, False, False)
    assert xa.VM.get_resident_on(slept) == member
    assert member_domains(a, b_uuid, member) == [slept]
    xa.VM.hard_shutdown(slept)
    boss = xa.pool.get_master(xa.pool.get_all()[0])
    assert failure(xa.VM.start_on, vm, boss, False, False)[0] == "VM_REQUIRES_SR"


def test_a_failed_import_does_not_fail_the_join(tmp_path: Path, monkeypatch: Any) -> None:
    def broken(metadata: str) -> Any:
        raise ApiError("INTERNAL_ERROR", ["the import broke"])

    with (
        simulated_pool(tmp_path / "a", sim_storage=True, shared_sr=False) as a,
        simulated_pool(tmp_path / "b", sim_storage=True, shared_sr=False) as b,
    ):
        xa, xb = connect(a), connect(b)
        uuid = xb.VM.get_uuid(halted_vm(xb, "left-behind"))
        kept = xa.VM.get_uuid(halted_vm(xa, "the-masters"))
        monkeypatch.setattr(carry_import, "_parse", broken)
        xb.pool.join(f"127.0.0.1:{a.port}", "root", a.password)
        assert len(xa.host.get_all()) == 2
        assert failure(xb.VM.get_all) == ["HOST_IS_SLAVE", f"127.0.0.1:{a.port}"]
        assert failure(xa.VM.get_by_uuid, uuid)[0] == "UUID_INVALID"
        assert xa.VM.get_by_uuid(kept)
        monkeypatch.undo()
        # the hidden call itself refuses bad input with XenAPI's errors, changing nothing
        carry = xa.pool.xenstack_carry_member
        member = next(h for h in xa.host.get_all() if h != xa.pool.get_master(xa.pool.get_all()[0]))
        before = len(xa.VM.get_all())
        assert failure(carry, "no-such-host", "{}")[:2] == ["UUID_INVALID", "host"]
        assert failure(carry, xa.host.get_uuid(member), "not json") == [
            "INVALID_VALUE",
            "metadata",
            "not JSON",
        ]
        bad = '{"host": "h", "objects": [["VM", "OpaqueRef:x", {"uuid": 1}], ["pool", "p", {}]]}'
        assert failure(carry, xa.host.get_uuid(member), bad)[:2] == ["INVALID_VALUE", "metadata"]
        assert len(xa.VM.get_all()) == before


def test_a_member_leaves_its_carried_sr_to_the_masters_storage(tmp_path: Path) -> None:
    """Two garbage collectors on one directory would race: once its SRs are the pool's, the
    member's storage repairs and collects none of them, the master's does."""

    def gc_pass(pool: RunningPool) -> dict[str, Any]:
        assert pool.toolstack is not None and pool.loop is not None
        run = pool.toolstack.storage.run_gc()
        return dict(asyncio.run_coroutine_threadsafe(run, pool.loop).result(60))

    with simulated_pool(tmp_path / "a") as a, simulated_pool(tmp_path / "b") as b:
        xa, xb = connect(a), connect(b)
        local = xb.SR.get_uuid(xb.pool.get_default_SR(xb.pool.get_all()[0]))
        assert len(gc_pass(b)) == 1  # its Local storage, a file SR
        xb.pool.join(f"127.0.0.1:{a.port}", "root", a.password)
        assert gc_pass(b) == {}
        assert xa.SR.get_by_uuid(local) in gc_pass(a)
