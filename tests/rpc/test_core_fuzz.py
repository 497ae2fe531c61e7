"""Bad input over the wire: every request gets a well-formed answer and the server stays up."""

from __future__ import annotations

import http.client
import re
import socket
import time
import xmlrpc.client
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xenstack.api.dispatch import build_table
from xenstack.idl.errors import ERROR_PARAMS
from xenstack.testing import RunningPool, simulated_pool
from xenstack.testing import raw_call as raw
from xenstack.testing import raw_login as login

MAX_BODY = 1024 * 1024
IDLE = 0.5
FUZZ = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
TABLE = build_table()
SAFE_METHODS = sorted(
    name
    for name, entry in TABLE.items()
    if entry.msg.implicit and name.split(".")[0] in ("VM", "network", "VIF", "VBD", "SR", "task")
)


@pytest.fixture(scope="module")
def pool() -> Iterator[RunningPool]:
    with simulated_pool(None, max_body=MAX_BODY, idle_timeout=IDLE) as running:
        yield running


@pytest.fixture(scope="module")
def sid(pool: RunningPool) -> str:
    return login(pool)


def still_up(pool: RunningPool, sid: str) -> None:
    assert raw(pool.url, "pool.get_all", sid)["Status"] == "Success"


def post(pool: RunningPool, path: str, body: bytes) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", pool.port, timeout=30)
    try:
        conn.request("POST", path, body, {"Content-Type": "text/xml"})
        resp = conn.getresponse()
        resp.read()
        return resp
    finally:
        conn.close()


def xml_answer(pool: RunningPool, body: bytes) -> Any:
    """POST to / and parse the answer, which must be a well-formed XML-RPC response."""
    conn = http.client.HTTPConnection("127.0.0.1", pool.port, timeout=30)
    try:
        conn.request("POST", "/", body, {"Content-Type": "text/xml"})
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    assert resp.status == 200, (resp.status, data[:200])
    try:
        return xmlrpc.client.loads(data)[0][0]
    except xmlrpc.client.Fault as fault:
        return fault


def json_answer(pool: RunningPool, body: bytes) -> dict[str, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", pool.port, timeout=30)
    try:
        conn.request("POST", "/jsonrpc", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    assert resp.status == 200, (resp.status, data[:200])
    assert resp.getheader("Content-Type") == "application/json"
    doc: dict[str, Any] = orjson.loads(data)
    return doc


def is_failure(answer: Any) -> bool:
    if isinstance(answer, xmlrpc.client.Fault):
        return True
    return bool(answer["Status"] == "Failure" and answer["ErrorDescription"][0] in ERROR_PARAMS)


@FUZZ
@given(body=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode)))
def test_malformed_xml(pool: RunningPool, sid: str, body: bytes) -> None:
    answer = xml_answer(pool, body)
    assert isinstance(answer, xmlrpc.client.Fault) or answer["Status"] == "Failure"


XML_PIECES = ["<methodCall>", "<methodName>", "VM.get_all", "</methodName>", "<params>",
              "<param>", "<value>", "<string>", "<int>", "12", "</int>", "<array>", "<data>",
              "<struct>", "<member>", "<name>", "</struct>", "</value>", "</param>",
              "</params>", "</methodCall>", "&amp;", "&bogus;", "<![CDATA[", "]]>"]  # fmt: skip


@FUZZ
@given(pieces=st.lists(st.sampled_from(XML_PIECES), max_size=30))
def test_scrambled_xml_rpc(pool: RunningPool, sid: str, pieces: list[str]) -> None:
    answer = xml_answer(pool, ("<?xml version='1.0'?>" + "".join(pieces)).encode())
    assert is_failure(answer)


@FUZZ
@given(body=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode)))
def test_malformed_json(pool: RunningPool, sid: str, body: bytes) -> None:
    doc = json_answer(pool, body)
    assert doc.get("error")


# XML 1.0 cannot carry control characters at all, so a client never sends them
text = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=20)
values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**31), 2**31 - 1) | text
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=10,
)  # fmt: skip


@FUZZ
@given(method=st.sampled_from(SAFE_METHODS), params=st.lists(values, max_size=4))
def test_wrong_types_and_counts(
    pool: RunningPool, sid: str, method: str, params: list[Any]
) -> None:
    """Accessors with random arguments: a XenAPI error (never an internal one) or a result."""
    for protocol in ("xml", "json"):
        if protocol == "xml":
            body = xmlrpc.client.dumps((sid, *params), method, allow_none=True).encode()
            answer = xml_answer(pool, body)
            assert not isinstance(answer, xmlrpc.client.Fault)
            code = answer.get("ErrorDescription", ["OK"])[0]
        else:
            call = {"jsonrpc": "2.0", "method": method, "params": [sid, *params], "id": 1}
            doc = json_answer(pool, orjson.dumps(call))
            code = doc["error"]["message"] if "error" in doc else "OK"
        assert code == "OK" or code in ERROR_PARAMS, code
        assert code != "INTERNAL_ERROR", (method, params)
        if method.endswith(".destroy") or ".set_" in method or ".add_" in method:
            assert code != "OK" or not params  # random refs name nothing


@FUZZ
@given(name=st.text(min_size=1, max_size=40).filter(lambda n: n not in TABLE))
def test_unknown_methods(pool: RunningPool, sid: str, name: str) -> None:
    if name.startswith("system."):
        return
    call = {"jsonrpc": "2.0", "method": name, "params": [sid], "id": 1}
    doc = json_answer(pool, orjson.dumps(call))
    assert doc["error"]["message"] == "MESSAGE_METHOD_UNKNOWN"
    assert doc["error"]["data"] == [name]


def test_deep_nesting(pool: RunningPool, sid: str) -> None:
    depth = 10_000
    xml = "<value><array><data>" * depth + "</data></array></value>" * depth
    call = f"<methodCall><methodName>VM.get_all</methodName><params><param>{xml}</param></params>"
    assert is_failure(xml_answer(pool, f"<?xml version='1.0'?>{call}</methodCall>".encode()))
    doc = json_answer(
        pool, b'{"method": "VM.get_all", "params": [' + b"[" * depth + b"]" * depth + b"]}"
    )
    assert doc["error"]
    still_up(pool, sid)


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
<!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
<!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">]>
<methodCall><methodName>&lol6;</methodName><params/></methodCall>"""
EXTERNAL = b"""<?xml version="1.0"?>
<!DOCTYPE x [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<methodCall><methodName>VM.get_all</methodName><params>
<param><value>&secret;</value></param></params></methodCall>"""


@pytest.mark.parametrize(
    "body", [BILLION_LAUGHS, EXTERNAL, EXTERNAL.replace(b"DOCTYPE", b"doctype")]
)
def test_entity_attacks(pool: RunningPool, sid: str, body: bytes) -> None:
    answer = xml_answer(pool, body)
    assert isinstance(answer, xmlrpc.client.Fault)
    assert "root:" not in answer.faultString
    still_up(pool, sid)


@pytest.mark.parametrize("path", ["/", "/jsonrpc"])
def test_oversized_bodies(pool: RunningPool, sid: str, path: str) -> None:
    resp = post(pool, path, b"x" * (MAX_BODY + 1))
    assert resp.status == 413
    still_up(pool, sid)


def closed_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
        return True
    except (TimeoutError, ConnectionResetError):
        return False


@pytest.mark.parametrize("stage", ["silent", "half a header", "after a request"])
def test_idle_connections_are_closed(pool: RunningPool, sid: str, stage: str) -> None:
    request = xmlrpc.client.dumps((sid,), "pool.get_all").encode()
    head = f"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {len(request)}\r\n\r\n".encode()
    data = {"silent": b"", "half a header": head[:20], "after a request": head + request}[stage]
    with socket.create_connection(("127.0.0.1", pool.port)) as sock:
        sock.sendall(data)
        start = time.monotonic()
        assert closed_within(sock, 5.0)
        assert IDLE * 0.8 <= time.monotonic() - start < 5.0
    still_up(pool, sid)


@pytest.mark.parametrize(
    "data",
    [
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n<?xml version='1.0'?><method",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Le",
        b'POST /jsonrpc HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{"method": ',
        b"GARBAGE\r\n\r\n",
    ],
)
def test_truncated_requests(pool: RunningPool, sid: str, data: bytes) -> None:
    with socket.create_connection(("127.0.0.1", pool.port)) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(10)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer == b"" or re.match(rb"HTTP/1\.[01] 4\d\d ", answer), answer[:100]
    still_up(pool, sid)
