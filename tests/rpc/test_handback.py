"""A browser's keep-alive connection: a UI page, then an upload on the same connection."""

from __future__ import annotations

import http.client
import time
import urllib.parse
from typing import Any

from sim_helpers import new_disk, vbd_record

from xenstack.testing import RunningPool, vm_from_template


def _xva(pool: RunningPool, session: Any) -> bytes:
    vm = vm_from_template(session, "carried")
    vdi = new_disk(session, 1 << 20, label="carried disk")
    session.xenapi.VBD.create(vbd_record(vm, vdi, "0", bootable=True))
    conn = http.client.HTTPConnection("127.0.0.1", pool.port, timeout=120)
    conn.request("GET", f"/export?session_id={session._session}&ref={vm}")
    response = conn.getresponse()
    assert response.status == 200
    return response.read()


def test_put_import_after_a_ui_page_on_one_connection(
    session: Any, xenstack_pool: RunningPool
) -> None:
    xva = _xva(xenstack_pool, session)
    before = len(session.xenapi.VM.get_all())
    task = session.xenapi.task.create("import", "")
    conn = http.client.HTTPConnection("127.0.0.1", xenstack_pool.port, timeout=120)
    conn.request("GET", "/ui/index.html")  # handed to the web application
    page = conn.getresponse()
    assert page.status == 200 and b"<html" in page.read().lower()
    sock = conn.sock
    query = urllib.parse.urlencode({"session_id": session._session, "task_id": task})
    conn.request("PUT", f"/import?{query}", body=xva, headers={"Content-Length": str(len(xva))})
    assert conn.sock is sock  # the same connection, as a browser reuses it
    response = conn.getresponse()
    assert response.status == 200, response.read()
    response.read()
    deadline = time.monotonic() + 60
    while session.xenapi.task.get_status(task) == "pending" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert session.xenapi.task.get_status(task) == "success"
    assert len(session.xenapi.VM.get_all()) == before + 1


def test_api_calls_still_follow_a_ui_page(session: Any, xenstack_pool: RunningPool) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", xenstack_pool.port, timeout=60)
    conn.request("GET", "/ui/index.html")
    assert conn.getresponse().read()
    body = b"<?xml version='1.0'?><methodCall><methodName>session.get_all_subject_identifiers"
    body += b"</methodName><params><param><value>%s</value></param></params></methodCall>" % (
        session._session.encode()
    )
    conn.request("POST", "/", body=body, headers={"Content-Type": "text/xml"})
    response = conn.getresponse()
    assert response.status == 200 and b"Success" in response.read()
