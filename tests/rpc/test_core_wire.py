"""Wire details: the XML-RPC envelope and value forms, JSON-RPC 1.0/2.0, keep-alive, the Unix
socket and HTTPS with the generated certificate."""

from __future__ import annotations

import http.client
import re
import ssl
import uuid
import xmlrpc.client
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import XenAPI
from test_core_support import JsonRpc

from xenstack.testing import RunningPool, free_port, server_process
from xenstack.testing import raw_login as login


def post_xml(conn: http.client.HTTPConnection, method: str, *params: Any) -> bytes:
    body = xmlrpc.client.dumps(params, method, allow_none=True).encode()
    conn.request("POST", "/", body, {"Content-Type": "text/xml"})
    resp = conn.getresponse()
    assert resp.status == 200
    assert resp.getheader("Content-Type", "").startswith("text/xml")
    return resp.read()


@pytest.fixture
def conn(xenstack_pool: RunningPool) -> Iterator[http.client.HTTPConnection]:
    c = http.client.HTTPConnection("127.0.0.1", xenstack_pool.port, timeout=30)
    yield c
    c.close()


def dom0_of(conn: http.client.HTTPConnection, s: str) -> str:
    records = xmlrpc.client.loads(post_xml(conn, "VM.get_all_records", s))[0][0]["Value"]
    return next(ref for ref, rec in records.items() if rec["is_control_domain"])


def test_envelope_and_value_forms(xenstack_pool: RunningPool, conn: Any) -> None:
    s = login(xenstack_pool)
    vm = dom0_of(conn, s)
    body = post_xml(conn, "VM.get_VCPUs_max", s, vm)
    assert re.search(
        rb"<methodResponse><params><param><value><struct>"
        rb"<member><name>Status</name><value>Success</value></member>"
        rb"<member><name>Value</name><value>\d+</value></member>",
        body,
    ), body  # an int is a bare decimal string
    body = post_xml(conn, "VM.get_record", s, vm)
    assert b"<int>" not in body and b"<i4>" not in body and b"<i8>" not in body
    assert b"<name>suspend_VDI</name><value>OpaqueRef:NULL</value>" in body
    assert b"<boolean>1</boolean>" in body
    record = xmlrpc.client.loads(body)[0][0]["Value"]
    assert record["memory_static_max"].isdigit()
    body = post_xml(conn, "VM.set_name_description", s, vm, "wire test")
    assert xmlrpc.client.loads(body)[0][0] == {"Status": "Success", "Value": ""}
    body = post_xml(conn, "session.get_last_active", s, s)
    assert re.search(rb"<dateTime.iso8601>\d{8}T\d\d:\d\d:\d\dZ</dateTime.iso8601>", body), body
    body = post_xml(conn, "VM.get_record", s, "OpaqueRef:NULL")
    assert xmlrpc.client.loads(body)[0][0] == {
        "Status": "Failure",
        "ErrorDescription": ["HANDLE_INVALID", "VM", "OpaqueRef:NULL"],
    }


def test_escaping_roundtrip(xenstack_pool: RunningPool, session: Any) -> None:
    vm = session.xenapi.VM.get_all()[0]
    text = "a <b> & \"c\" 'd' \n\t ünïcode ☃ ]]>"
    session.xenapi.VM.set_name_description(vm, text)
    assert session.xenapi.VM.get_name_description(vm) == text
    # XML parsers turn a raw CR into LF, so the server must send it as a character reference
    rpc = JsonRpc(xenstack_pool.port)
    try:
        assert (
            rpc.request("VM.set_name_description", session.handle, vm, "cr\r\nlf")["result"] is None
        )
    finally:
        rpc.close()
    assert session.xenapi.VM.get_name_description(vm) == "cr\r\nlf"


def test_list_methods_is_unwrapped(conn: Any) -> None:
    body = post_xml(conn, "system.listMethods")
    assert body.startswith(b"<?xml")
    assert b"<methodResponse><params><param><value><array><data>" in body
    assert b"Status" not in body
    methods = xmlrpc.client.loads(body)[0][0]
    assert {"VM.get_record", "Async.VM.start", "session.login_with_password"} <= set(methods)
    assert "Async.VM.get_record" not in methods
    assert len(methods) == len(set(methods)) > 2000


def test_keep_alive(xenstack_pool: RunningPool, conn: Any) -> None:
    post_xml(conn, "system.listMethods")
    sock = conn.sock
    assert sock is not None
    s = login(xenstack_pool)
    for _ in range(3):
        post_xml(conn, "pool.get_all", s)
        assert conn.sock is sock  # the same connection served every request
    conn.request("POST", "/", xmlrpc.client.dumps((s,), "host.get_all").encode())
    resp = conn.getresponse()
    assert resp.version == 11
    assert (resp.getheader("Connection") or "keep-alive").lower() == "keep-alive"
    resp.read()


def _read_responses(sock: Any, count: int) -> list[bytes]:
    """Read ``count`` HTTP responses (Content-Length framed) off a raw socket, in order."""
    data, bodies = b"", []
    while len(bodies) < count:
        head_end = data.find(b"\r\n\r\n")
        if head_end >= 0:
            length = int(re.findall(rb"Content-Length: (\d+)", data[:head_end])[0])
            end = head_end + 4 + length
            if len(data) >= end:
                bodies.append(data[head_end + 4 : end])
                data = data[end:]
                continue
        chunk = sock.recv(65536)
        assert chunk, "connection closed early"
        data += chunk
    return bodies


def test_pipelined_calls_answer_in_order(xenstack_pool: RunningPool, conn: Any) -> None:
    """Calls that wait (a durable write, event.from) hold back the ones behind them."""
    s = login(xenstack_pool)
    vm = dom0_of(conn, s)
    token = xmlrpc.client.loads(post_xml(conn, "event.inject", s, "VM", vm))[0][0]["Value"]
    calls = [
        ("VM.set_name_description", s, vm, "first"),
        ("VM.get_name_description", s, vm),
        ("event.from", s, ["VM"], token, 0.2),
        ("VM.set_name_description", s, vm, "second"),
        ("VM.get_name_description", s, vm),
    ]
    wire = b""
    for method, *params in calls:
        body = xmlrpc.client.dumps(tuple(params), method, allow_none=True).encode()
        wire += b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\n"
        wire += b"Content-Length: %d\r\n\r\n" % len(body) + body
    conn.connect()
    conn.sock.sendall(wire)  # all five in one write
    values = [xmlrpc.client.loads(b)[0][0] for b in _read_responses(conn.sock, len(calls))]
    assert all(v["Status"] == "Success" for v in values), values
    assert [values[1]["Value"], values[4]["Value"]] == ["first", "second"]
    assert any(e["ref"] == vm for e in values[2]["Value"]["events"])


def test_calls_after_another_request_on_the_connection(xenstack_pool: RunningPool) -> None:
    """A connection that served a non-API request (here a 404) still takes API calls."""
    conn = http.client.HTTPConnection("127.0.0.1", xenstack_pool.port, timeout=30)
    conn.request("GET", "/no-such-thing")
    missing = conn.getresponse()
    missing.read()
    assert missing.status == 404
    sock = conn.sock
    body = orjson.dumps(
        {"jsonrpc": "2.0", "id": 1, "method": "session.login_with_password",
         "params": ["root", xenstack_pool.password]}
    )  # fmt: skip
    conn.request("POST", "/jsonrpc", body, {"Content-Type": "application/json"})
    answer = conn.getresponse()
    assert conn.sock is sock  # the same connection
    assert answer.getheader("Content-Type") == "application/json"  # exactly: XO checks
    assert orjson.loads(answer.read())["result"].startswith("OpaqueRef:")
    conn.request("POST", "/", xmlrpc.client.dumps((), "system.listMethods").encode())
    listed = xmlrpc.client.loads(conn.getresponse().read())[0][0]
    assert "VM.get_record" in listed
    conn.close()


@pytest.mark.parametrize("version", ["1.0", "2.0"])
def test_jsonrpc(xenstack_pool: RunningPool, version: str) -> None:
    rpc = JsonRpc(xenstack_pool.port, version)
    try:
        answer = rpc.request(
            "session.login_with_password", "root", xenstack_pool.password, "1", "t"
        )
        if version == "2.0":
            assert set(answer) == {"jsonrpc", "result", "id"} and answer["jsonrpc"] == "2.0"
        else:
            assert set(answer) == {"result", "error", "id"} and answer["error"] is None
        s = answer["result"]
        records = rpc.request("VM.get_all_records", s)["result"]
        dom0 = next(r for r, rec in records.items() if rec["is_control_domain"])
        assert isinstance(records[dom0]["memory_static_max"], int)  # JSON numbers, not strings
        assert records[dom0]["suspend_VDI"] == "OpaqueRef:NULL"
        assert rpc.request("VM.set_name_description", s, dom0, "json")["result"] is None
        bogus = "OpaqueRef:nope"
        error = rpc.request("VM.get_record", s, bogus)
        expected = ["HANDLE_INVALID", "VM", bogus]
        if version == "2.0":
            assert error["error"] == {"code": 1, "message": expected[0], "data": expected[1:]}
            assert "result" not in error
        else:
            assert error["error"] == expected and error["result"] is None
        _, doc = rpc.post(b"{not json")
        assert doc["error"]["message"] == "PARSE_ERROR"
    finally:
        rpc.close()


def test_jsonrpc_named_params_and_async(xenstack_pool: RunningPool) -> None:
    rpc = JsonRpc(xenstack_pool.port)
    try:
        s = login(xenstack_pool)
        task = rpc.request("Async.task.create", s, "json-task", "")["result"]
        assert task.startswith("OpaqueRef:")
        body = orjson.dumps(
            {"jsonrpc": "2.0", "method": "pool.get_all", "params": {"s": s}, "id": 9}
        )
        status, doc = rpc.post(body)
        assert status == 200 and len(doc["result"]) == 1
    finally:
        rpc.close()


def test_unix_socket_and_https(tmp_path: Path) -> None:
    sock_dir = Path("/tmp") / f"xs-{uuid.uuid4().hex}"  # the SDK maps "_" to "/" in the host
    sock_dir.mkdir()
    socket_path = sock_dir / "xapi.sock"
    https_port = free_port()
    args = ["--socket", str(socket_path), "--https-port", str(https_port)]
    try:
        with server_process(tmp_path / "state", args) as server:
            local = XenAPI.Session("http://" + str(socket_path).replace("/", "_"),
                                   transport=XenAPI.UDSTransport())  # fmt: skip
            local.xenapi.login_with_password("root", server.password, "1.0", "uds")
            assert len(local.xenapi.host.get_all()) == 1
            local.xenapi.session.logout()

            cert = tmp_path / "state" / "tls" / "xapi-ssl.pem"
            ctx = ssl.create_default_context(cafile=str(cert))
            transport = xmlrpc.client.SafeTransport(context=ctx)
            secure = XenAPI.Session(f"https://localhost:{https_port}/", transport=transport)
            secure.xenapi.login_with_password("root", server.password, "1.0", "tls")
            assert len(secure.xenapi.pool.get_all()) == 1
            secure.xenapi.session.logout()
            unverified = XenAPI.Session(f"https://127.0.0.1:{https_port}/", ignore_ssl=True)
            unverified.xenapi.login_with_password("root", server.password, "1.0", "tls")
            unverified.xenapi.session.logout()
    finally:
        socket_path.unlink(missing_ok=True)
        sock_dir.rmdir()
