"""Uploads as XAPI answers them: ``200`` with the task's id before the body, the outcome on the
task, and the ways clients really send bodies (Xen Orchestra's probe, a huge Content-Length
for a stream of unknown length, ``Expect: 100-continue``, hanging up after the body)."""

from __future__ import annotations

import socket
import time
import urllib.parse
from typing import Any

import pytest
from sr_helpers import MIB, get_file, new_vdi
from vmkit import wait_for

from xenstack.testing import RunningPool

HUGE = 1 << 50  # the Content-Length XO announces for a stream whose length it does not know


def _connect(
    pool: RunningPool, path: str, query: dict[str, str], length: int, extra: str = ""
) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", pool.port), timeout=30)
    target = f"/{path}?{urllib.parse.urlencode(query)}"
    sock.sendall(
        f"PUT {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n{extra}\r\n".encode()
    )
    return sock


def _head(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, f"closed before an answer: {data!r}"
        data += chunk
    return data.split(b"\r\n\r\n", 1)[0]


def _rest(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def _wait_task(session: Any, task: str) -> str:
    for _ in range(200):
        status = str(session.xenapi.task.get_status(task))
        if status != "pending":
            return status
        time.sleep(0.05)
    raise AssertionError("the task never finished")


def _vhd_of(pool: RunningPool, session: Any, data: bytes, tmp_path: Any) -> bytes:
    """``data`` as a VHD stream, exported by the server from a disk holding it."""
    vdi = new_vdi(session, len(data))
    sock = _connect(pool, "import_raw_vdi", {"session_id": session._session, "vdi": vdi}, len(data))
    sock.sendall(data)
    _rest(sock)
    out = tmp_path / "disk.vhd"
    assert get_file(pool, session, vdi, out, "vhd") == 200
    return out.read_bytes()


def test_the_answer_comes_before_the_body(session: Any, xenstack_pool: RunningPool) -> None:
    vdi = new_vdi(session, 4 * MIB)
    task = session.xenapi.task.create("upload", "")
    query = {"session_id": session._session, "vdi": vdi, "format": "raw", "task_id": task}
    sock = _connect(xenstack_pool, "import_raw_vdi", query, 4 * MIB)
    head = _head(sock)  # nothing of the body sent yet
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert f"task-id: {task}".encode() in head
    assert session.xenapi.task.get_status(task) == "pending"
    sock.sendall(b"\x5a" * (4 * MIB))
    assert _rest(sock) == b""  # the answer ends, and the connection closes, with the import
    assert session.xenapi.task.get_status(task) == "success"
    assert session.xenapi.task.get_result(task) == f"<value>{vdi}</value>"


def test_expect_100_continue(session: Any, xenstack_pool: RunningPool) -> None:
    vdi = new_vdi(session, 1 * MIB)
    query = {"session_id": session._session, "vdi": vdi, "format": "raw"}
    sock = _connect(xenstack_pool, "import_raw_vdi", query, MIB, "Expect: 100-continue\r\n")
    assert _head(sock) == b"HTTP/1.1 100 Continue"
    sock.sendall(b"\x01" * MIB)
    final = _rest(sock)
    assert final.startswith(b"HTTP/1.1 200 OK\r\n"), final


def test_a_huge_length_then_hanging_up_after_the_vhd(
    session: Any, xenstack_pool: RunningPool, tmp_path: Any
) -> None:
    """XO's stream of unknown length: the import ends at the VHD's last footer."""
    data = bytes(range(256)) * (8 * MIB // 256)
    vhd = _vhd_of(xenstack_pool, session, data, tmp_path)
    vdi = new_vdi(session, len(data))
    task = session.xenapi.task.create("upload", "")
    query = {"session_id": session._session, "vdi": vdi, "format": "vhd", "task_id": task}
    sock = _connect(xenstack_pool, "import_raw_vdi", query, HUGE)
    assert _head(sock).startswith(b"HTTP/1.1 200 OK")
    sock.sendall(vhd)
    sock.close()
    assert _wait_task(session, task) == "success", session.xenapi.task.get_error_info(task)
    back = tmp_path / "back.raw"
    assert get_file(xenstack_pool, session, vdi, back, "raw") == 200
    assert back.read_bytes() == data


def test_a_probe_then_the_upload(session: Any, xenstack_pool: RunningPool) -> None:
    """XO probes with an empty request it hangs up on, then sends the real one at once."""
    vdi = new_vdi(session, MIB)
    before = set(session.xenapi.task.get_all())
    query = {"session_id": session._session, "vdi": vdi, "format": "raw"}
    probe = _connect(xenstack_pool, "import_raw_vdi/", query, HUGE)
    assert _head(probe).startswith(b"HTTP/1.1 200 OK")
    probe.close()
    task = session.xenapi.task.create("upload", "")
    sock = _connect(xenstack_pool, "import_raw_vdi/", query | {"task_id": task}, MIB)
    sock.sendall(b"\x07" * MIB)
    _rest(sock)
    assert session.xenapi.task.get_status(task) == "success", session.xenapi.task.get_error_info(
        task
    )
    # the probe's own task is forgotten once the server has seen the probe end
    wait_for(lambda: set(session.xenapi.task.get_all()) == before | {task})
    assert set(session.xenapi.task.get_all()) == before | {task}


@pytest.mark.parametrize("body", [0, 3 * MIB])
def test_refused_before_the_body(session: Any, xenstack_pool: RunningPool, body: int) -> None:
    vdi = new_vdi(session, MIB)
    query = {"session_id": "OpaqueRef:not-a-session", "vdi": vdi, "format": "raw"}
    sock = _connect(xenstack_pool, "import_raw_vdi", query, body)
    sock.sendall(b"\x00" * body)  # the whole body goes through: it is read and dropped
    answer = _rest(sock)
    assert answer.startswith(b"HTTP/1.1 401 Unauthorised\r\n"), answer  # as XAPI
    assert answer.endswith(b"SESSION_INVALID OpaqueRef:not-a-session\n")


def test_a_failed_import_still_reads_the_body(session: Any, xenstack_pool: RunningPool) -> None:
    vdi = new_vdi(session, MIB)
    task = session.xenapi.task.create("too big", "")
    query = {"session_id": session._session, "vdi": vdi, "format": "raw", "task_id": task}
    sock = _connect(xenstack_pool, "import_raw_vdi", query, 8 * MIB)
    sock.sendall(b"\x01" * (8 * MIB))  # the disk is 1 MiB: the import fails, the send does not
    assert _rest(sock).startswith(b"HTTP/1.1 200 OK")
    assert session.xenapi.task.get_error_info(task) == ["VDI_IO_ERROR"]


def test_an_import_into_an_sr_makes_the_vdi(
    session: Any, xenstack_pool: RunningPool, tmp_path: Any
) -> None:
    """Without ``vdi`` but with ``sr_id``, a raw upload goes into a new VDI of its length."""
    x = session.xenapi
    sr = x.pool.get_default_SR(x.pool.get_all()[0])
    data = bytes(range(256)) * (2 * MIB // 256)
    task = x.task.create("upload", "")
    query = {"session_id": session._session, "sr_id": sr, "format": "raw", "task_id": task}
    sock = _connect(xenstack_pool, "import_raw_vdi", query, len(data))
    sock.sendall(data)
    assert _rest(sock).startswith(b"HTTP/1.1 200 OK")
    vdi = x.task.get_result(task).removeprefix("<value>").removesuffix("</value>")
    assert x.VDI.get_name_label(vdi) == "Imported VDI"
    assert x.VDI.get_SR(vdi) == sr and int(x.VDI.get_virtual_size(vdi)) == len(data)
    back = tmp_path / "back.raw"
    assert get_file(xenstack_pool, session, vdi, back, "raw") == 200
    assert back.read_bytes() == data
    vhd = _connect(xenstack_pool, "import_raw_vdi", query | {"format": "vhd"}, 1024)
    vhd.sendall(bytes(1024))
    assert _rest(vhd).startswith(b"HTTP/1.1 400 ")
