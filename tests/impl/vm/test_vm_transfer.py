"""VM export and import as XVA, over the wire: ``GET /export``, ``PUT /import``, ``VM.import``
and ``xe vm-export``/``vm-import``."""

from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import os
import pty
import random
import subprocess
import sys
import tarfile
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import xxhash
import zstandard
from sim_helpers import default_sr, new_disk, vbd_record, vif_record

from xenstack.storage.xva import PrematureEof, XvaError, open_stream
from xenstack.testing import RunningPool, failure, vm_from_template

MIB = 1 << 20
XE = str(Path(sys.executable).with_name("xe"))


def _request(
    pool: RunningPool, method: str, path: str, query: dict[str, str], body: Any = None
) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", pool.port, timeout=120)
    headers = {} if body is None else {"Content-Length": str(len(body))}
    conn.request(method, f"{path}?{urllib.parse.urlencode(query)}", body=body, headers=headers)
    response = conn.getresponse()
    if method == "PUT":
        response.read()  # an upload is answered at once; its answer ends with the import
    return response


def _disk_bytes(pool: RunningPool, session: Any, vdi: str) -> bytes:
    query = {"session_id": session._session, "vdi": vdi, "format": "raw"}
    response = _request(pool, "GET", "/export_raw_vdi", query)
    assert response.status == 200
    return response.read()


def _vm_with_data(pool: RunningPool, session: Any, size: int = 8 * MIB) -> tuple[str, str, bytes]:
    """A halted VM with a VIF and one disk holding some random extents (and a hole)."""
    x = session.xenapi
    vm = vm_from_template(session, "exported")
    vdi = new_disk(session, size, label="data disk")
    x.VBD.create(vbd_record(vm, vdi, "0", bootable=True))
    x.VIF.create(vif_record(vm, x.network.get_all()[0], "0"))
    rng = random.Random(7)
    raw = bytearray(size)
    raw[0:4096] = rng.randbytes(4096)
    raw[5 * MIB + 100 : 5 * MIB + 300_000] = rng.randbytes(299_900)
    query = {"session_id": session._session, "vdi": vdi, "format": "raw"}
    assert _request(pool, "PUT", "/import_raw_vdi", query, bytes(raw)).status == 200
    return vm, vdi, bytes(raw)


def _export(pool: RunningPool, session: Any, vm: str, **extra: str) -> bytes:
    query = {"session_id": session._session, "ref": vm, **extra}
    response = _request(pool, "GET", "/export", query)
    assert response.status == 200, response.read()
    return response.read()


def _import(pool: RunningPool, session: Any, xva: bytes, **extra: str) -> http.client.HTTPResponse:
    task = session.xenapi.task.create("import", "")
    query = {"session_id": session._session, "task_id": task, **extra}
    response = _request(pool, "PUT", "/import", query, xva)
    response.read()
    response.task = task  # type: ignore[attr-defined]
    return response


def _new_vm_of(session: Any, task: str) -> str:
    assert session.xenapi.task.get_status(task) == "success", session.xenapi.task.get_error_info(
        task
    )
    result = session.xenapi.task.get_result(task)
    assert result.startswith("<value><array><data><value>OpaqueRef:")
    return result.split("<value>")[2].split("</value>")[0]


def _counts(session: Any) -> tuple[int, ...]:
    x = session.xenapi
    return tuple(len(c.get_all()) for c in (x.VM, x.VDI, x.VBD, x.VIF))


def test_export_is_an_xva_tar(session: Any, xenstack_pool: RunningPool) -> None:
    vm, _, raw = _vm_with_data(xenstack_pool, session)
    task = session.xenapi.task.create("export", "")
    xva = _export(xenstack_pool, session, vm, task_id=task)
    assert session.xenapi.task.get_status(task) == "success"
    with tarfile.open(fileobj=io.BytesIO(xva)) as tar:
        members = tar.getmembers()
        assert members[0].name == "ova.xml"
        ova = tar.extractfile(members[0]).read()  # type: ignore[union-attr]
        assert ova.startswith(b"<value><struct><member><name>version</name>")
        assert b"<name>objects</name>" in ova and b"<name>class</name><value>VM</value>" in ova
        names = [m.name for m in members[1:]]
        prefix = names[0].split("/")[0]
        assert prefix.startswith("Ref:")
        chunks = [n for n in names if not n.endswith(".xxhash")]
        # chunk 0 and 5 hold data, 7 is the last; the all-zero chunks are left out
        assert chunks == [f"{prefix}/{n:08d}" for n in (0, 5, 7)]
        for name in chunks:
            data = tar.extractfile(name).read()  # type: ignore[union-attr]
            digest = tar.extractfile(name + ".xxhash").read()  # type: ignore[union-attr]
            assert digest.decode() == f"{xxhash.xxh64_intdigest(data):016X}"  # as XAPI writes
            number = int(name.split("/")[1])
            assert data == raw[number * MIB : (number + 1) * MIB]


def test_import_makes_a_new_vm_with_equal_disks(session: Any, xenstack_pool: RunningPool) -> None:
    x = session.xenapi
    vm, vdi, raw = _vm_with_data(xenstack_pool, session)
    xva = _export(xenstack_pool, session, vm)
    response = _import(xenstack_pool, session, xva, sr_id=default_sr(session))
    assert response.status == 200
    new = _new_vm_of(session, response.task)  # type: ignore[attr-defined]
    record = x.VM.get_record(new)
    assert record["uuid"] != x.VM.get_uuid(vm) and record["power_state"] == "Halted"
    assert record["name_label"] == "exported" and record["current_operations"] == {}
    (vbd,) = record["VBDs"]
    new_vdi = x.VBD.get_VDI(vbd)
    assert new_vdi != vdi and x.VDI.get_name_label(new_vdi) == "data disk"
    assert _disk_bytes(xenstack_pool, session, new_vdi) == raw
    (vif,) = record["VIFs"]
    assert x.VIF.get_network(vif) == x.network.get_all()[0]
    assert x.VIF.get_MAC(vif) != x.VIF.get_MAC(x.VM.get_VIFs(vm)[0])


def test_vm_import_message_from_a_url_and_a_file(
    session: Any, xenstack_pool: RunningPool, tmp_path: Path
) -> None:
    x = session.xenapi
    vm, _, raw = _vm_with_data(xenstack_pool, session)
    url = f"http://127.0.0.1:{xenstack_pool.port}/export?session_id={session._session}&ref={vm}"
    (new,) = _call_import(session, url)
    disk = x.VBD.get_VDI(x.VM.get_VBDs(new)[0])
    assert _disk_bytes(xenstack_pool, session, disk) == raw
    path = tmp_path / "vm.xva"
    path.write_bytes(_export(xenstack_pool, session, vm))
    (again,) = _call_import(session, str(path))
    assert again != new and x.VM.get_power_state(again) == "Halted"
    assert failure(_call_import, session, "http://example.com/x.xva")[0] == "IMPORT_ERROR"


def _call_import(session: Any, url: str) -> list[str]:
    """``VM.import`` (a Python keyword: called through the SDK's generic dispatcher)."""
    method = getattr(session.xenapi.VM, "import")
    return list(method(url, default_sr(session), False, False))


def test_corrupt_or_truncated_stream_leaves_nothing(
    session: Any, xenstack_pool: RunningPool
) -> None:
    vm, _, _ = _vm_with_data(xenstack_pool, session)
    good = _export(xenstack_pool, session, vm)
    xva = bytearray(good)
    before = _counts(session)
    with tarfile.open(fileobj=io.BytesIO(bytes(xva))) as tar:
        checksum = next(m for m in tar.getmembers() if m.name.endswith(".xxhash"))
    at = checksum.offset_data  # spoil the first chunk's checksum
    xva[at : at + 2] = b"AB" if xva[at : at + 2] != b"AB" else b"CD"
    response = _import(xenstack_pool, session, bytes(xva))
    assert response.status == 200  # accepted before the body, as XAPI does: the task failed
    error = session.xenapi.task.get_error_info(response.task)  # type: ignore[attr-defined]
    assert error[0] == "IMPORT_ERROR" and "checksum" in error[1]
    assert _counts(session) == before
    truncated = _import(xenstack_pool, session, good[: len(good) // 2])
    error = session.xenapi.task.get_error_info(truncated.task)  # type: ignore[attr-defined]
    assert error == ["IMPORT_ERROR_PREMATURE_EOF"]
    assert _counts(session) == before
    forced = _import(xenstack_pool, session, bytes(xva), force="true")
    assert forced.status == 200
    assert _counts(session) != before


def test_bad_session_and_bad_requests(session: Any, xenstack_pool: RunningPool) -> None:
    vm, _, _ = _vm_with_data(xenstack_pool, session)
    bad = {"session_id": "OpaqueRef:nope", "ref": vm}
    assert _request(xenstack_pool, "GET", "/export", bad).status == 401  # as XAPI
    assert _request(xenstack_pool, "PUT", "/import", bad, b"x" * 1024).status == 401
    unknown = {"session_id": session._session, "uuid": "no-such-uuid"}
    assert _request(xenstack_pool, "GET", "/export", unknown).status == 404
    before = _counts(session)
    response = _import(xenstack_pool, session, b"not a tar" * 200)
    error = session.xenapi.task.get_error_info(response.task)  # type: ignore[attr-defined]
    assert error[0].startswith("IMPORT_ERROR")
    assert _counts(session) == before


def xe(pool: RunningPool, *args: str, stderr: Any = subprocess.PIPE) -> Any:
    env = os.environ | {
        "XE_EXTRA_ARGS": f"server=127.0.0.1,port={pool.port},username=root,password={pool.password}"
    }
    return subprocess.run(
        [XE, *args], env=env, stdout=subprocess.PIPE, stderr=stderr, text=True, check=False
    )


def test_xe_vm_export_import_roundtrip(
    session: Any, xenstack_pool: RunningPool, tmp_path: Path
) -> None:
    x = session.xenapi
    vm, _, raw = _vm_with_data(xenstack_pool, session)
    path = tmp_path / "vm.xva"
    done = xe(xenstack_pool, "vm-export", f"vm={x.VM.get_uuid(vm)}", f"filename={path}")
    assert done.returncode == 0, done.stderr
    assert done.stderr == "" and "Export succeeded" in done.stdout
    with tarfile.open(path) as tar:
        assert tar.getnames()[0] == "ova.xml"
    master, slave = pty.openpty()
    try:
        sr_uuid = x.SR.get_uuid(default_sr(session))
        done = xe(
            xenstack_pool, "vm-import", f"filename={path}", f"sr-uuid={sr_uuid}", stderr=slave
        )
        os.close(slave)
        drawn = os.read(master, 65536).decode()
    finally:
        os.close(master)
    assert done.returncode == 0, done.stdout
    new = x.VM.get_by_uuid(done.stdout.strip())
    assert "Importing [" in drawn and "100.0%" in drawn
    disk = x.VBD.get_VDI(x.VM.get_VBDs(new)[0])
    assert _disk_bytes(xenstack_pool, session, disk) == raw
    assert x.task.get_all() == []
    missing = xe(xenstack_pool, "vm-export", "vm=nothing", f"filename={path}")
    assert missing.returncode != 0


@pytest.mark.parametrize("preserve", [True])
def test_restore_keeps_uuids(session: Any, xenstack_pool: RunningPool, preserve: bool) -> None:
    x = session.xenapi
    vm, _, _ = _vm_with_data(xenstack_pool, session)
    uuid = x.VM.get_uuid(vm)
    xva = _export(xenstack_pool, session, vm)
    refused = _import(xenstack_pool, session, xva, restore="true")
    error = x.task.get_error_info(refused.task)  # type: ignore[attr-defined]
    assert error[0] == "VM_TO_IMPORT_IS_NOT_NEWER_VERSION"
    forced = _import(xenstack_pool, session, xva, restore="true", force="true")
    new = _new_vm_of(session, forced.task)  # type: ignore[attr-defined]
    assert x.VM.get_uuid(new) == uuid and new != vm
    assert failure(x.VM.get_record, vm)[0] == "HANDLE_INVALID"


def _rewrite_checksums(xva: bytes, suffix: str, digest: Any) -> bytes:
    """The archive with every ``.xxhash`` file replaced by one named ``suffix`` of ``digest``."""
    out = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(xva)) as src,
        tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as dst,
    ):
        last = b""
        for info in src.getmembers():
            data = src.extractfile(info).read()  # type: ignore[union-attr]
            if info.name.endswith(".xxhash"):
                info = tarfile.TarInfo(info.name[: -len(".xxhash")] + suffix)
                data = digest(last).encode()
                info.size = len(data)
            dst.addfile(info, io.BytesIO(data))
            last = data
    return out.getvalue()


def test_import_accepts_sha1_checksums_of_older_xapi(
    session: Any, xenstack_pool: RunningPool
) -> None:
    vm, _, raw = _vm_with_data(xenstack_pool, session)
    xva = _export(xenstack_pool, session, vm)
    sha1 = _rewrite_checksums(xva, ".checksum", lambda d: hashlib.sha1(d).hexdigest())
    response = _import(xenstack_pool, session, sha1)
    new = _new_vm_of(session, response.task)  # type: ignore[attr-defined]
    disk = session.xenapi.VBD.get_VDI(session.xenapi.VM.get_VBDs(new)[0])
    assert _disk_bytes(xenstack_pool, session, disk) == raw
    before = _counts(session)
    bad = _rewrite_checksums(xva, ".checksum", lambda d: hashlib.sha1(d + b"x").hexdigest())
    error = session.xenapi.task.get_error_info(_import(xenstack_pool, session, bad).task)
    assert error[0] == "IMPORT_ERROR" and "checksum failed" in error[1]
    md5 = _rewrite_checksums(xva, ".md5", lambda d: hashlib.md5(d).hexdigest())
    error = session.xenapi.task.get_error_info(_import(xenstack_pool, session, md5).task)
    assert error[0] == "IMPORT_ERROR" and "unsupported checksum file" in error[1]
    assert _counts(session) == before


def test_gzip_export_and_import(session: Any, xenstack_pool: RunningPool, tmp_path: Path) -> None:
    x = session.xenapi
    vm, _, raw = _vm_with_data(xenstack_pool, session)
    plain = _export(xenstack_pool, session, vm)
    packed = _export(xenstack_pool, session, vm, use_compression="true")
    assert packed[:2] == b"\x1f\x8b" and len(packed) < len(plain)
    assert gzip.decompress(packed)[:512] == plain[:512]
    for body in (packed, gzip.compress(plain[:1000]) + gzip.compress(plain[1000:]) + bytes(512)):
        response = _import(xenstack_pool, session, body)
        new = _new_vm_of(session, response.task)  # type: ignore[attr-defined]
        assert _disk_bytes(xenstack_pool, session, x.VBD.get_VDI(x.VM.get_VBDs(new)[0])) == raw
    url = (
        f"http://127.0.0.1:{xenstack_pool.port}/export?session_id={session._session}"
        f"&ref={vm}&use_compression=gzip"
    )
    (new,) = _call_import(session, url)
    assert _disk_bytes(xenstack_pool, session, x.VBD.get_VDI(x.VM.get_VBDs(new)[0])) == raw
    before = _counts(session)
    cut = _import(xenstack_pool, session, packed[: len(packed) // 2])
    assert x.task.get_error_info(cut.task)[0].startswith("IMPORT_ERROR")  # type: ignore[attr-defined]
    assert _counts(session) == before
    assert x.VM.get_current_operations(vm) == {}


def test_zstd_export_and_import(session: Any, xenstack_pool: RunningPool) -> None:
    """``use_compression=zstd`` (Xen Orchestra's choice for full backups), and zstd imports."""
    x = session.xenapi
    vm, _, raw = _vm_with_data(xenstack_pool, session)
    plain = _export(xenstack_pool, session, vm)
    packed = _export(xenstack_pool, session, vm, use_compression="zstd")
    assert packed[:4] == b"\x28\xb5\x2f\xfd" and len(packed) < len(plain)
    assert zstandard.ZstdDecompressor().decompressobj().decompress(packed)[:512] == plain[:512]
    frames = zstandard.ZstdCompressor().compress(plain[:5000])
    frames += zstandard.ZstdCompressor(level=9).compress(plain[5000:])
    for body in (packed, frames):  # one frame, or several (as a parallel compressor makes)
        response = _import(xenstack_pool, session, body)
        new = _new_vm_of(session, response.task)  # type: ignore[attr-defined]
        assert _disk_bytes(xenstack_pool, session, x.VBD.get_VDI(x.VM.get_VBDs(new)[0])) == raw
    before = _counts(session)
    cut = _import(xenstack_pool, session, packed[: len(packed) // 2])
    error = x.task.get_error_info(cut.task)  # type: ignore[attr-defined]
    assert error == ["IMPORT_ERROR_PREMATURE_EOF"]
    garbage = _import(xenstack_pool, session, b"\x28\xb5\x2f\xfd" + b"\xff" * 2000)
    error = x.task.get_error_info(garbage.task)  # type: ignore[attr-defined]
    assert error[0] == "IMPORT_ERROR" and "zstd" in error[1]
    assert _counts(session) == before
    assert x.VM.get_current_operations(vm) == {}


def test_xe_vm_export_compressed(session: Any, xenstack_pool: RunningPool, tmp_path: Path) -> None:
    x = session.xenapi
    vm, _, raw = _vm_with_data(xenstack_pool, session)
    path = tmp_path / "vm.xva.gz"
    done = xe(xenstack_pool, "vm-export", f"vm={x.VM.get_uuid(vm)}", f"filename={path}",
              "compress=true")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert path.read_bytes()[:2] == b"\x1f\x8b"
    with tarfile.open(path) as tar:  # tarfile sees through the gzip
        assert tar.getnames()[0] == "ova.xml"
    done = xe(xenstack_pool, "vm-import", f"filename={path}")
    assert done.returncode == 0, done.stderr
    new = x.VM.get_by_uuid(done.stdout.strip())
    assert _disk_bytes(xenstack_pool, session, x.VBD.get_VDI(x.VM.get_VBDs(new)[0])) == raw
    zst = tmp_path / "vm.xva.zst"
    done = xe(xenstack_pool, "vm-export", f"vm={x.VM.get_uuid(vm)}", f"filename={zst}",
              "compress=zstd")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert zst.read_bytes()[:4] == b"\x28\xb5\x2f\xfd"
    done = xe(xenstack_pool, "vm-import", f"filename={zst}")
    assert done.returncode == 0, done.stderr
    new = x.VM.get_by_uuid(done.stdout.strip())
    assert _disk_bytes(xenstack_pool, session, x.VBD.get_VDI(x.VM.get_VBDs(new)[0])) == raw
    assert x.task.get_all() == []


def _read_all(source: Any, size: int) -> bytes:
    out = bytearray()
    while piece := source.read(size):
        out += piece
    return bytes(out)


@pytest.mark.parametrize("size", [1, 512, 3 * MIB])
def test_gzip_source_reads_members_and_detects_truncation(size: int) -> None:
    data = random.Random(3).randbytes(300_000) + bytes(2 * MIB)
    members = gzip.compress(data[:5]) + gzip.compress(data[5:]) + bytes(1024)
    assert _read_all(open_stream(io.BytesIO(members)), size) == data
    assert _read_all(open_stream(io.BytesIO(data)), size) == data  # plain passes through
    assert _read_all(open_stream(io.BytesIO(b"")), size) == b""
    with pytest.raises(PrematureEof):
        _read_all(open_stream(io.BytesIO(gzip.compress(data)[:-20])), size)
    with pytest.raises(XvaError):
        _read_all(open_stream(io.BytesIO(b"\x1f\x8b" + bytes(100))), size)
