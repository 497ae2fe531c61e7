"""The file SR messages over plain JSON-RPC, SR forget/introduce/scan, chunked uploads."""

from __future__ import annotations

import http.client
import json
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from sr_helpers import MIB, finished, new_vdi, vdi_file

from xenstack.storage.vhd import VhdImage
from xenstack.testing import RunningPool


def rpc(pool: RunningPool, method: str, *params: Any) -> Any:
    body = json.dumps({"jsonrpc": "2.0", "method": method, "params": list(params), "id": 1})
    request = urllib.request.Request(
        pool.jsonrpc_url, body.encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read())


def test_vdi_lifecycle_over_jsonrpc(xenstack_pool: RunningPool) -> None:
    login = rpc(
        xenstack_pool, "session.login_with_password", "root", xenstack_pool.password, "1.0", "t"
    )
    session = login["result"]
    pool = rpc(xenstack_pool, "pool.get_all", session)["result"][0]
    sr = rpc(xenstack_pool, "pool.get_default_SR", session, pool)["result"]
    record = {"SR": sr, "virtual_size": 16 * MIB, "type": "user", "name_label": "j"}
    vdi = rpc(xenstack_pool, "VDI.create", session, record)["result"]
    snap = rpc(xenstack_pool, "VDI.snapshot", session, vdi, {})["result"]
    info = rpc(xenstack_pool, "VDI.get_nbd_info", session, snap)["result"]
    uuid = rpc(xenstack_pool, "VDI.get_uuid", session, snap)["result"]
    assert info[0]["exportname"] == f"/{uuid}?session_id={session}"
    assert isinstance(info[0]["port"], int) and info[0]["port"] > 0
    assert rpc(xenstack_pool, "VDI.destroy", session, snap)["result"] is None
    bad = rpc(xenstack_pool, "VDI.resize", session, vdi, 2 * MIB)
    assert bad["error"]["message"] == "SR_BACKEND_FAILURE_79"


def test_sr_forget_introduce_scan_finds_the_files(session: Any, xenstack_pool: RunningPool) -> None:
    vdi = new_vdi(session, 8 * MIB)
    with VhdImage.open(str(vdi_file(xenstack_pool, session, vdi))) as image:
        image.write(0, b"kept" * 128)
    vdi_uuid = session.xenapi.VDI.get_uuid(vdi)
    sr = session.xenapi.VDI.get_SR(vdi)
    record = session.xenapi.SR.get_record(sr)
    pbd = record["PBDs"][0]
    host = session.xenapi.PBD.get_host(pbd)
    config = session.xenapi.PBD.get_device_config(pbd)
    session.xenapi.PBD.unplug(pbd)
    session.xenapi.SR.forget(sr)
    again = session.xenapi.SR.introduce(record["uuid"], "back", "", "ext", "user", False, {})
    assert session.xenapi.SR.get_sm_config(again)["xenstack_driver"] == "file"
    new_pbd = session.xenapi.PBD.create({"host": host, "SR": again, "device_config": config})
    session.xenapi.PBD.plug(new_pbd)
    session.xenapi.SR.scan(again)
    found = session.xenapi.VDI.get_by_uuid(vdi_uuid)
    with VhdImage.open(str(vdi_file(xenstack_pool, session, found)), writable=False) as image:
        assert image.read(0, 512) == b"kept" * 128


def test_chunked_raw_upload(session: Any, xenstack_pool: RunningPool, tmp_path: Path) -> None:
    vdi = new_vdi(session, 8 * MIB)
    query = urllib.parse.urlencode({"session_id": session._session, "vdi": vdi, "format": "raw"})
    conn = http.client.HTTPConnection("127.0.0.1", xenstack_pool.port, timeout=30)
    payload = [bytes([n]) * 300_000 for n in range(1, 8)]
    conn.request("PUT", f"/import_raw_vdi?{query}", body=iter(payload), encode_chunked=True)
    assert finished(conn) == 200
    conn.close()
    with VhdImage.open(str(vdi_file(xenstack_pool, session, vdi)), writable=False) as image:
        assert image.read(0, 2_100_000) == b"".join(payload)
