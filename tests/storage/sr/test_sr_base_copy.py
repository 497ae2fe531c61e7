"""Base copies: the hidden node a snapshot or clone leaves on a file SR is a VDI record, as
SM's VHD SRs make it ("base copy", managed false, read-only, ``vhd-blocks``), which clients
cannot change or attach (XAPI's VDI_NOT_MANAGED), which follows the GC, survives a restart
and which SR.scan finds again from the files."""

from __future__ import annotations

import base64
import os
import zlib
from pathlib import Path
from typing import Any

import pytest
import XenAPI
from sr_helpers import MIB, get_file, new_vdi, put_file, run_gc, sr_dir

from xenstack.testing import RunningPool, halted_vm, simulated_pool

BLOCK = 2 * MIB


def _failure(fn: Any, *args: Any) -> list[str]:
    with pytest.raises(XenAPI.Failure) as info:
        fn(*args)
    return list(info.value.details)


def _with_data(
    pool: RunningPool, session: Any, tmp_path: Path, blocks: list[int], vdi: str = ""
) -> str:
    """A 16 MiB VDI (new, or ``vdi``) whose leaf is given data in ``blocks`` (2 MiB VHD
    blocks) only."""
    vdi = vdi or new_vdi(session, 16 * MIB)
    raw = tmp_path / "disk.raw"
    with open(raw, "wb") as f:
        f.truncate(16 * MIB)
        for block in blocks:
            f.seek(block * BLOCK + 4096)
            f.write(os.urandom(8192))
    assert put_file(pool, session, vdi, raw, "raw") == 200
    return vdi


def _bitmap(sm_config: dict[str, str]) -> bytes:
    return zlib.decompress(base64.b64decode(sm_config["vhd-blocks"]))


def _base_of(x: Any, vdi: str) -> str:
    return str(x.VDI.get_by_uuid(x.VDI.get_sm_config(vdi)["vhd-parent"]))


def _is_base_copy(record: dict[str, Any]) -> None:
    assert record["name_label"] == "base copy"
    assert record["managed"] is False
    assert record["read_only"] is True
    assert record["is_a_snapshot"] is False
    assert record["VBDs"] == []
    assert record["location"] == record["uuid"]


def test_snapshot_makes_a_base_copy_both_children_name(
    session: Any, xenstack_pool: RunningPool, tmp_path: Path
) -> None:
    x = session.xenapi
    vdi = _with_data(xenstack_pool, session, tmp_path, [0, 3])
    allocation = x.SR.get_virtual_allocation(x.VDI.get_SR(vdi))
    snap = x.VDI.snapshot(vdi, {})
    base = _base_of(x, vdi)
    assert _base_of(x, snap) == base
    record = x.VDI.get_record(base)
    _is_base_copy(record)
    assert record["virtual_size"] == str(16 * MIB)
    assert int(record["physical_utilisation"]) > 2 * BLOCK  # the data is in it now
    assert "vhd-parent" not in record["sm_config"]  # it was a whole disk
    assert _bitmap(record["sm_config"]) == bytes([0b10010000])  # blocks 0 and 3 of 8
    assert base in x.VDI.get_all() and base in x.SR.get_VDIs(record["SR"])
    assert x.VDI.get_all_records()[base]["name_label"] == "base copy"
    assert x.SR.get_virtual_allocation(record["SR"]) == str(int(allocation) + 16 * MIB)

    # a second snapshot: a new base copy over the first one
    snap2 = x.VDI.snapshot(vdi, {})
    base2 = _base_of(x, vdi)
    assert base2 != base and _base_of(x, snap2) == base2
    _is_base_copy(x.VDI.get_record(base2))
    assert x.VDI.get_sm_config(base2)["vhd-parent"] == x.VDI.get_uuid(base)
    assert _bitmap(x.VDI.get_sm_config(base2)) == bytes(1)  # nothing written since
    for ref in (snap, snap2, vdi):
        x.VDI.destroy(ref)
    run_gc(xenstack_pool)  # nothing depends on either base any more
    assert base not in x.VDI.get_all() and base2 not in x.VDI.get_all()


def test_clone_makes_a_base_copy(session: Any, xenstack_pool: RunningPool) -> None:
    x = session.xenapi
    vdi = new_vdi(session, 8 * MIB)
    clone = x.VDI.clone(vdi, {})
    base = _base_of(x, vdi)
    assert _base_of(x, clone) == base
    _is_base_copy(x.VDI.get_record(base))
    assert x.VDI.get_is_a_snapshot(clone) is False
    for ref in (clone, vdi):
        x.VDI.destroy(ref)
    run_gc(xenstack_pool)
    assert base not in x.VDI.get_all()


def test_a_base_copy_refuses_what_would_change_or_attach_it(
    session: Any, xenstack_pool: RunningPool
) -> None:
    x = session.xenapi
    vdi = new_vdi(session, 8 * MIB)
    snap = x.VDI.snapshot(vdi, {})
    base = _base_of(x, vdi)
    sr = x.VDI.get_SR(base)
    directory = sr_dir(xenstack_pool, session, sr)
    before = (x.VDI.get_record(base), sorted(x.SR.get_VDIs(sr)), sorted(os.listdir(directory)))
    for call in (
        (x.VDI.destroy, base),
        (x.VDI.snapshot, base, {}),
        (x.VDI.clone, base, {}),
        (x.VDI.resize, base, str(16 * MIB)),
        (x.VDI.resize_online, base, str(16 * MIB)),
        (x.VDI.copy, base, sr),
    ):
        assert _failure(*call) == ["VDI_NOT_MANAGED", base], call[0]
    vm = halted_vm(x, "user")
    disk = {"VM": vm, "VDI": base, "userdevice": "1", "bootable": False, "mode": "RW",
            "type": "Disk", "empty": False, "other_config": {}, "qos_algorithm_type": "",
            "qos_algorithm_params": {}}  # fmt: skip
    assert _failure(x.VBD.create, disk) == ["VDI_READONLY", base]
    cd = x.VBD.create(disk | {"VDI": "OpaqueRef:NULL", "type": "CD", "mode": "RO", "empty": True})
    assert _failure(x.VBD.insert, cd, base) == ["VDI_NOT_MANAGED", base]
    after = (x.VDI.get_record(base), sorted(x.SR.get_VDIs(sr)), sorted(os.listdir(directory)))
    assert after == before
    x.VBD.destroy(cd)
    x.VM.destroy(vm)
    for ref in (snap, vdi):
        x.VDI.destroy(ref)


def test_the_gc_takes_the_records_with_the_nodes(
    session: Any, xenstack_pool: RunningPool, tmp_path: Path
) -> None:
    x = session.xenapi
    vdi = _with_data(xenstack_pool, session, tmp_path, [0])
    snap1 = x.VDI.snapshot(vdi, {})
    base1 = _base_of(x, vdi)
    _with_data(xenstack_pool, session, tmp_path, [5], vdi)
    snap2 = x.VDI.snapshot(vdi, {})
    base2 = _base_of(x, vdi)  # base1 <- base2 <- {vdi, snap2}; base1 <- snap1
    uuid1, uuid2 = x.VDI.get_uuid(base1), x.VDI.get_uuid(base2)
    assert _bitmap(x.VDI.get_sm_config(base1)) == bytes([0b10000000])
    # the second import wrote block 5, and block 0 over base1's data (zeros, as the raw file)
    assert _bitmap(x.VDI.get_sm_config(base2)) == bytes([0b10000100])
    x.VDI.destroy(snap1)
    run_gc(xenstack_pool)  # base2 is base1's only child: coalesced into it
    assert _failure(x.VDI.get_by_uuid, uuid2) == ["UUID_INVALID", "VDI", uuid2]
    for child in (vdi, snap2):  # re-pointed at base1
        assert x.VDI.get_sm_config(child)["vhd-parent"] == uuid1
    _is_base_copy(x.VDI.get_record(base1))
    assert _bitmap(x.VDI.get_sm_config(base1)) == bytes([0b10000100])  # base2's block 5 too
    x.VDI.destroy(snap2)
    run_gc(xenstack_pool)  # vdi is base1's only child: folded back into one file
    assert _failure(x.VDI.get_by_uuid, uuid1) == ["UUID_INVALID", "VDI", uuid1]
    assert "vhd-parent" not in x.VDI.get_sm_config(vdi)
    assert [v for v in x.VDI.get_all() if not x.VDI.get_managed(v)] == []
    x.VDI.destroy(vdi)


def _login(pool: RunningPool) -> Any:
    session = XenAPI.Session(pool.url)
    session.xenapi.login_with_password("root", pool.password, "1.0", "test")
    return session


def test_a_restart_keeps_them_and_a_scan_finds_them_again(tmp_path: Path) -> None:
    with simulated_pool(tmp_path / "state") as pool:
        x = _login(pool).xenapi
        vdi = new_vdi(_login(pool), 8 * MIB)
        snap = x.VDI.snapshot(vdi, {})
        base = _base_of(x, vdi)
        record = x.VDI.get_record(base)
    with simulated_pool(tmp_path / "state") as pool:
        x = _login(pool).xenapi
        assert x.VDI.get_record(base) == record
        x.VDI.forget(base)  # the record goes; the node stays, both leaves read through it
        assert base not in x.VDI.get_all()
        x.SR.scan(record["SR"])
        found = x.VDI.get_by_uuid(record["uuid"])
        again = x.VDI.get_record(found)
        _is_base_copy(again)
        keys = ("uuid", "location", "virtual_size", "sm_config", "SR")
        assert {k: again[k] for k in keys} == {k: record[k] for k in keys}
        assert _base_of(x, snap) == found
        for ref in (snap, vdi):
            x.VDI.destroy(ref)
        run_gc(pool)
        assert found not in x.VDI.get_all()


def test_destroying_a_parent_vdi_keeps_its_node_for_the_child(
    session: Any, xenstack_pool: RunningPool, tmp_path: Path
) -> None:
    """A visible VDI that another reads through (a chain found by a scan) is not deleted by
    VDI.destroy: its node becomes a base copy, the child keeps its bytes, and the GC folds
    the two together once it may."""
    from xenstack.storage.vhd import create_dynamic

    x = session.xenapi
    parent = _with_data(xenstack_pool, session, tmp_path, [1])
    sr = x.VDI.get_SR(parent)
    directory = sr_dir(xenstack_pool, session, sr)
    parent_uuid = x.VDI.get_uuid(parent)
    child_uuid = "0c1d0000-0000-4000-8000-000000000001"
    create_dynamic(
        str(directory / f"{child_uuid}.vhd"), parent=str(directory / f"{parent_uuid}.vhd")
    )
    x.SR.scan(sr)
    child = x.VDI.get_by_uuid(child_uuid)
    assert x.VDI.get_sm_config(child)["vhd-parent"] == parent_uuid
    before, after = tmp_path / "before.raw", tmp_path / "after.raw"
    assert get_file(xenstack_pool, session, child, before, "raw") == 200
    x.VDI.destroy(parent)
    assert (directory / f"{parent_uuid}.vhd").exists()
    kept = x.VDI.get_by_uuid(parent_uuid)
    _is_base_copy(x.VDI.get_record(kept))
    assert get_file(xenstack_pool, session, child, after, "raw") == 200
    assert after.read_bytes() == before.read_bytes()
    run_gc(xenstack_pool)  # the child is the base's only one: folded back into one file
    assert _failure(x.VDI.get_by_uuid, parent_uuid) == ["UUID_INVALID", "VDI", parent_uuid]
    assert get_file(xenstack_pool, session, child, after, "raw") == 200
    assert after.read_bytes() == before.read_bytes()
    x.VDI.destroy(child)
