"""Attaching SRs as XenServer clients do (SR.introduce, PBD.create, PBD.plug), copying into
an existing VDI, and a failed VM.clone leaving no disk files behind."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pytest
import XenAPI
from sr_helpers import MIB, get_file, new_vdi, put_file, run_gc, sr_dir

from xenstack.storage.vhd import VhdImage, create_dynamic
from xenstack.testing import RunningPool, halted_vm, simulated_pool

NULL = "OpaqueRef:NULL"


def _vhd_with_data(directory: Path, size: int) -> tuple[str, bytes]:
    """A new ``<uuid>.vhd`` in ``directory`` holding random data at 1 MiB; (uuid, data)."""
    vdi_uuid = str(uuid.uuid4())
    path = str(directory / f"{vdi_uuid}.vhd")
    create_dynamic(path, size)
    data = os.urandom(3 * MIB)
    with VhdImage.open(path) as image:
        image.write(MIB, data)
        image.flush()
    return vdi_uuid, bytes(MIB) + data + bytes(size - 4 * MIB)


def _expect(code: str, fn: Any, *args: Any) -> list[str]:
    with pytest.raises(XenAPI.Failure) as info:
        fn(*args)
    assert info.value.details[0] == code, info.value.details
    return list(info.value.details)


def test_introduce_plug_scan_export_unplug(
    session: Any, xenstack_pool: RunningPool, tmp_path: Path
) -> None:
    x = session.xenapi
    library = tmp_path / "library"
    library.mkdir()
    vdi_uuid, expected = _vhd_with_data(library, 8 * MIB)
    sr_uuid = str(uuid.uuid4())
    sr = x.SR.introduce(sr_uuid, "library", "", "file", "user", False, {})
    host = x.host.get_all()[0]
    pbd = x.PBD.create({"host": host, "SR": sr, "device_config": {"location": str(library)}})
    _expect("SR_NOT_ATTACHED", x.SR.scan, sr)
    x.PBD.plug(pbd)
    assert x.PBD.get_currently_attached(pbd)
    vdis = x.SR.get_VDIs(sr)
    assert [x.VDI.get_uuid(v) for v in vdis] == [vdi_uuid]
    assert int(x.VDI.get_virtual_size(vdis[0])) == 8 * MIB
    out = tmp_path / "out.raw"
    assert get_file(xenstack_pool, session, vdis[0], out, "raw") == 200
    assert out.read_bytes() == expected
    second, _ = _vhd_with_data(library, 4 * MIB)  # a file added later: the next scan finds it
    x.SR.scan(sr)
    assert sorted(x.VDI.get_uuid(v) for v in x.SR.get_VDIs(sr)) == sorted([vdi_uuid, second])
    x.PBD.unplug(pbd)
    assert not x.PBD.get_currently_attached(pbd)
    _expect("SR_NOT_ATTACHED", x.SR.scan, sr)
    x.PBD.plug(pbd)  # and back
    assert len(x.SR.get_VDIs(sr)) == 2


def test_plug_shared_directory_sr(session: Any, xenstack_pool: RunningPool, tmp_path: Path) -> None:
    x = session.xenapi
    sr_uuid = str(uuid.uuid4())
    (tmp_path / "export" / sr_uuid).mkdir(parents=True)
    vdi_uuid, expected = _vhd_with_data(tmp_path / "export" / sr_uuid, 8 * MIB)
    sr = x.SR.introduce(sr_uuid, "nfs", "", "nfs", "user", True, {})
    pbd = x.PBD.create(
        {"host": x.host.get_all()[0], "SR": sr, "device_config": {"path": str(tmp_path / "export")}}
    )
    x.PBD.plug(pbd)
    (vdi,) = x.SR.get_VDIs(sr)
    assert x.VDI.get_uuid(vdi) == vdi_uuid
    out = tmp_path / "out.raw"
    assert get_file(xenstack_pool, session, vdi, out, "raw") == 200
    assert out.read_bytes() == expected


def test_plug_missing_shared_directory_fails(session: Any, tmp_path: Path) -> None:
    x = session.xenapi
    sr = x.SR.introduce(str(uuid.uuid4()), "nfs", "", "nfs", "user", True, {})
    config = {"path": str(tmp_path / "nowhere")}
    pbd = x.PBD.create({"host": x.host.get_all()[0], "SR": sr, "device_config": config})
    _expect("SR_BACKEND_FAILURE_73", x.PBD.plug, pbd)
    assert not x.PBD.get_currently_attached(pbd)


def test_vdi_copy_into_existing_vdi(
    session: Any, xenstack_pool: RunningPool, tmp_path: Path
) -> None:
    x = session.xenapi
    source_data = os.urandom(5 * MIB) + bytes(3 * MIB)
    old_data = bytes(2 * MIB) + os.urandom(6 * MIB)  # data where the source has none
    files = {}
    for name, data in (("src", source_data), ("dst", old_data)):
        files[name] = tmp_path / f"{name}.raw"
        files[name].write_bytes(data)
    src, dst = new_vdi(session, 8 * MIB), new_vdi(session, 16 * MIB)
    assert put_file(xenstack_pool, session, src, files["src"], "raw") == 200
    assert put_file(xenstack_pool, session, dst, files["dst"], "raw") == 200
    small = new_vdi(session, 4 * MIB)
    _expect("VDI_TOO_SMALL", x.VDI.copy, src, x.VDI.get_SR(src), NULL, small)
    assert x.VDI.copy(src, x.VDI.get_SR(src), NULL, dst) == dst
    out = tmp_path / "out.raw"
    assert get_file(xenstack_pool, session, dst, out, "raw") == 200
    assert out.read_bytes() == source_data + bytes(8 * MIB)
    assert len(x.VDI.get_all()) == len(set(x.VDI.get_all()))  # nothing new was made


def _visible_files(directory: Path) -> set[str]:
    names = os.listdir(directory)
    hidden = {n[1:-7] for n in names if n.endswith(".hidden")}
    return {n[:-4] for n in names if n.endswith(".vhd")} - hidden


def test_failed_vm_clone_removes_new_vdi_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from xenstack.impl.vm import clone as vm_clone

    with simulated_pool(tmp_path / "state") as pool:
        s = XenAPI.Session(pool.url)
        s.xenapi.login_with_password("root", pool.password, "1.0", "test")
        x = s.xenapi
        vm = halted_vm(x, "source")
        vdi = new_vdi(s, 8 * MIB)
        x.VBD.create(
            {"VM": vm, "VDI": vdi, "userdevice": "0", "bootable": True, "mode": "RW",
             "type": "Disk", "empty": False, "other_config": {}, "qos_algorithm_type": "",
             "qos_algorithm_params": {}}
        )  # fmt: skip
        directory = sr_dir(pool, s, x.VDI.get_SR(vdi))
        before, vdis = _visible_files(directory), set(x.VDI.get_all())
        made = vm_clone.new_device

        def failing(db: Any, cls: str, record: dict[str, Any], **fields: Any) -> str:
            if cls == "VBD":
                raise RuntimeError("injected failure after the disk was cloned")
            return made(db, cls, record, **fields)

        monkeypatch.setattr(vm_clone, "new_device", failing)
        with pytest.raises(XenAPI.Failure):
            x.VM.clone(vm, "clone")
        assert {v for v in x.VDI.get_all() if x.VDI.get_managed(v)} == vdis
        assert [v for v in x.VM.get_all() if x.VM.get_name_label(v) == "clone"] == []
        assert _visible_files(directory) == before
        run_gc(pool)  # what is left is the source's own chain, and the clone's base copy goes
        assert _visible_files(directory) == before
        assert set(x.VDI.get_all()) == vdis
        (leaf,) = before
        with VhdImage.open(str(directory / f"{leaf}.vhd")) as image:
            chain = {os.path.basename(layer.path)[:-4] for layer in image.layers}
        assert {n[:-4] for n in os.listdir(directory) if n.endswith(".vhd")} == chain
