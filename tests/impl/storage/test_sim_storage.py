"""VDIs and SRs on simulated storage: sizes, accounting, snapshots, SR lifecycle, PBDs."""

from __future__ import annotations

from typing import Any

from sim_helpers import GiB, default_sr, new_disk, pool_master, running_vm, vbd_record

from xenstack.testing import failure

NULL = "OpaqueRef:NULL"


def _usage(session: Any, sr: str) -> tuple[int, int]:
    record = session.xenapi.SR.get_record(sr)
    return int(record["physical_utilisation"]), int(record["virtual_allocation"])


def _lvm_sr(session: Any, size: int) -> str:
    host = pool_master(session)
    return str(
        session.xenapi.SR.create(
            host, {"device": "/dev/sdb"}, str(size), "thick", "", "lvm", "user", False, {}
        )
    )


def test_vdi_create_destroy_accounting(session: Any) -> None:
    sr = default_sr(session)
    before_phys, before_virt = _usage(session, sr)
    vdi = new_disk(session, 10 * GiB)
    record = session.xenapi.VDI.get_record(vdi)
    assert int(record["virtual_size"]) == 10 * GiB and record["SR"] == sr
    assert "snapshot" in record["allowed_operations"]
    phys, virt = _usage(session, sr)
    assert virt == before_virt + 10 * GiB
    assert phys == before_phys + int(record["physical_utilisation"])
    session.xenapi.VDI.destroy(vdi)
    assert _usage(session, sr) == (before_phys, before_virt)


def test_thick_sr_fills_up(session: Any) -> None:
    sr = _lvm_sr(session, 4 * GiB)
    assert session.xenapi.PBD.get_currently_attached(session.xenapi.SR.get_PBDs(sr)[0])
    vdi = new_disk(session, 2 * GiB, sr=sr)
    phys, _ = _usage(session, sr)
    assert phys >= 2 * GiB
    err = failure(new_disk, session, 3 * GiB, sr)
    assert err[0] == "SR_FULL" and int(err[1]) > int(err[2])
    err = failure(session.xenapi.VDI.resize, vdi, str(5 * GiB))
    assert err[0] == "SR_FULL"
    session.xenapi.VDI.resize(vdi, str(3 * GiB))
    assert int(session.xenapi.VDI.get_virtual_size(vdi)) == 3 * GiB


def test_snapshot_clone_copy(session: Any) -> None:
    sr = default_sr(session)
    vdi = new_disk(session, GiB, label="base")
    snap = session.xenapi.VDI.snapshot(vdi, {})
    record = session.xenapi.VDI.get_record(snap)
    assert record["is_a_snapshot"] is True and record["snapshot_of"] == vdi
    assert record["snapshot_time"] != "19700101T00:00:00Z"
    assert session.xenapi.VDI.get_snapshots(vdi) == [snap]
    clone = session.xenapi.VDI.clone(vdi, {})
    assert session.xenapi.VDI.get_is_a_snapshot(clone) is False
    assert session.xenapi.VDI.get_name_label(clone) == "base"
    thick = _lvm_sr(session, 8 * GiB)
    copy = session.xenapi.VDI.copy(vdi, thick, NULL, NULL)
    assert session.xenapi.VDI.get_SR(copy) == thick
    assert int(session.xenapi.VDI.get_virtual_size(copy)) == GiB
    assert len(session.xenapi.SR.get_VDIs(sr)) >= 3


def test_vdi_in_use_and_shrink_refused(session: Any, xenstack_pool: Any) -> None:
    vm = running_vm(session, xenstack_pool)
    vdi = new_disk(session, GiB)
    vbd = session.xenapi.VBD.create(vbd_record(vm, vdi, "4"))
    session.xenapi.VBD.plug(vbd)
    assert failure(session.xenapi.VDI.destroy, vdi) == ["VDI_IN_USE", vdi, "destroy"]
    assert failure(session.xenapi.VDI.resize, vdi, str(2 * GiB)) == ["VDI_IN_USE", vdi, "resize"]
    assert "destroy" not in session.xenapi.VDI.get_allowed_operations(vdi)
    session.xenapi.VBD.unplug(vbd)
    assert "destroy" in session.xenapi.VDI.get_allowed_operations(vdi)
    assert failure(session.xenapi.VDI.resize, vdi, str(GiB // 2))[0].startswith("SR_BACKEND")
    session.xenapi.VDI.destroy(vdi)
    assert session.xenapi.VM.get_VBDs(vm).count(vbd) == 0


def test_sr_lifecycle(session: Any) -> None:
    sr = _lvm_sr(session, 4 * GiB)
    new_disk(session, GiB, sr=sr)
    (pbd,) = session.xenapi.SR.get_PBDs(sr)
    assert failure(session.xenapi.SR.destroy, sr) == ["SR_HAS_PBD", sr]
    session.xenapi.PBD.unplug(pbd)
    assert failure(session.xenapi.SR.destroy, sr) == ["SR_NOT_EMPTY"]
    assert failure(session.xenapi.SR.scan, sr) == ["SR_NOT_ATTACHED", sr]
    session.xenapi.PBD.plug(pbd)
    session.xenapi.SR.scan(sr)
    host = pool_master(session)
    err = failure(
        session.xenapi.PBD.create, {"host": host, "SR": sr, "device_config": {}, "other_config": {}}
    )
    assert err == ["PBD_EXISTS", sr, host, pbd]
    session.xenapi.PBD.unplug(pbd)
    session.xenapi.SR.forget(sr)
    assert failure(session.xenapi.SR.get_record, sr)[0] == "HANDLE_INVALID"


def test_sr_introduce_probe_and_unknown_driver(session: Any) -> None:
    host = pool_master(session)
    err = failure(session.xenapi.SR.create, host, {}, "0", "x", "", "nosuchtype", "user", False, {})
    assert err == ["SR_UNKNOWN_DRIVER", "nosuchtype"]
    sr = session.xenapi.SR.introduce("", "intro", "", "nfs", "user", True, {})
    assert session.xenapi.SR.get_PBDs(sr) == []
    uuid = session.xenapi.SR.get_uuid(sr)
    err = failure(session.xenapi.SR.introduce, uuid, "again", "", "nfs", "user", True, {})
    assert err == ["SR_UUID_EXISTS", uuid]
    probe = session.xenapi.SR.probe(host, {"device": "/dev/sda3"}, "ext", {})
    local = session.xenapi.SR.get_uuid(default_sr(session))
    assert f"<UUID>{local}</UUID>" in probe
    (dvd,) = session.xenapi.SR.get_by_name_label("DVD drives")
    err = failure(new_disk, session, GiB, dvd)
    assert err == ["SR_OPERATION_NOT_SUPPORTED", dvd]
