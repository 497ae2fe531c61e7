"""Strings XML cannot carry: refused at the wire (JSON-RPC and XML-RPC), never stored, never
sent; and a fuzz test of every string-typed setter over both protocols, read back over both."""

from __future__ import annotations

import http.client
import json
import xmlrpc.client
from collections.abc import Iterator
from typing import Any
from xml.parsers import expat

import pytest
import XenAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xenstack.api.dispatch import build_table
from xenstack.idl.model import CLASSES
from xenstack.idl.types import Type
from xenstack.testing import RunningPool, simulated_pool

BAD = ["\x00", "\x01", "\x08", "\x0b", "\x1b", "\x1f", "\ufffe", "\uffff"]
TABLE = build_table()


@pytest.fixture(scope="module")
def pool() -> Iterator[RunningPool]:
    with simulated_pool(None) as running:
        yield running


class Json:
    """A JSON-RPC client that can send any string (lone surrogates too, as ``\\ud800``)."""

    def __init__(self, pool: RunningPool) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", pool.port, timeout=30)
        self.sid = ""
        self.sid = self.ok("session.login_with_password", "root", pool.password, "1.0", "t")

    def call(self, method: str, *params: Any) -> dict[str, Any]:
        args = [self.sid, *params] if self.sid else list(params)
        body = json.dumps({"jsonrpc": "2.0", "method": method, "params": args, "id": 1})
        self.conn.request("POST", "/jsonrpc", body.encode(), {"Content-Type": "application/json"})
        answer: dict[str, Any] = json.loads(self.conn.getresponse().read())
        return answer

    def ok(self, method: str, *params: Any) -> Any:
        answer = self.call(method, *params)
        assert "result" in answer and answer.get("error") is None, answer
        return answer["result"]


def xml_body(method: str, *params: Any) -> bytes:
    return xmlrpc.client.dumps(params, method, allow_none=True).encode()


def post_xml(pool: RunningPool, body: bytes) -> Any:
    """POST an XML-RPC body; the answer must be a well-formed document."""
    conn = http.client.HTTPConnection("127.0.0.1", pool.port, timeout=30)
    try:
        conn.request("POST", "/", body, {"Content-Type": "text/xml"})
        data = conn.getresponse().read()
    finally:
        conn.close()
    expat.ParserCreate().Parse(data, True)  # raises ExpatError if ill-formed
    try:
        return xmlrpc.client.loads(data)[0][0]
    except xmlrpc.client.Fault as fault:
        return fault


@pytest.fixture(scope="module")
def js(pool: RunningPool) -> Json:
    return Json(pool)


class Sdk:
    """The SDK's ``xenapi`` (as ``.x``): held, since it answers every attribute asked of it."""

    def __init__(self, pool: RunningPool) -> None:
        session = XenAPI.Session(pool.url)
        session.xenapi.login_with_password("root", pool.password, "1.0", "test_security_strings")
        self.x = session.xenapi


@pytest.fixture(scope="module")
def held(pool: RunningPool) -> Sdk:
    return Sdk(pool)


@pytest.fixture(scope="module")
def sdk(held: Sdk) -> Any:
    return held.x


@pytest.mark.parametrize("bad", BAD)
def test_json_rpc_refuses_what_xml_cannot_carry(
    pool: RunningPool, js: Json, sdk: Any, bad: str
) -> None:
    text = f"a{bad}b"
    tasks = set(sdk.task.get_all())
    answer = js.call("task.create", text, "")
    assert answer["error"]["data"] == ["label", "a" + ascii(bad)[1:-1] + "b"]  # spelled out
    assert answer["error"]["message"] == "INVALID_VALUE"
    sr = sdk.SR.get_all()[0]
    before = sdk.SR.get_record(sr)
    for method, params, name in [
        ("SR.add_to_other_config", (sr, text, "v"), "key"),  # a map's key
        ("SR.add_to_other_config", (sr, "k", text), "value"),  # a map's value
        ("SR.set_other_config", (sr, {"k": text}), "value"),  # inside a whole map
        ("SR.add_tags", (sr, text), "value"),  # a set's member
        ("SR.set_name_label", (sr, text), "value"),
    ]:
        answer = js.call(method, *params)
        assert answer["error"]["message"] == "INVALID_VALUE", (method, answer)
        assert answer["error"]["data"][0] == name
    vm = js.call("VM.create", {"name_label": text})  # a record's field
    assert vm["error"]["message"] == "INVALID_VALUE" and vm["error"]["data"][0] == "name_label"
    # nothing stored: every client still reads everything
    assert set(sdk.task.get_all()) == tasks
    assert sdk.SR.get_record(sr) == before
    sdk.task.get_all_records()
    assert post_xml(pool, xml_body("event.from", js.sid, ["*"], "", "0"))["Status"] == "Success"


def test_base64_where_a_string_is_declared_is_a_type_error(
    pool: RunningPool, js: Json, sdk: Any
) -> None:
    sr = sdk.SR.get_all()[0]
    tags = sdk.SR.get_tags(sr)
    body = xml_body("SR.add_tags", js.sid, sr, xmlrpc.client.Binary(b"\x00\xff"))
    assert b"<base64>AP8=" in body.replace(b"\n", b"")
    answer = post_xml(pool, body)
    assert answer == {"Status": "Failure", "ErrorDescription": ["FIELD_TYPE_ERROR", "value"]}
    assert sdk.SR.get_tags(sr) == tags
    assert len(sdk.SR.get_all_records()) == len(sdk.SR.get_all())


@pytest.mark.parametrize("bad", ["\x00", "\x01", "\x1b", "\ufffe"])
def test_raw_control_characters_in_xml_are_malformed(
    pool: RunningPool, js: Json, sdk: Any, bad: str
) -> None:
    sr = sdk.SR.get_all()[0]
    label = sdk.SR.get_name_label(sr)
    body = xml_body("SR.set_name_label", js.sid, sr, f"x{bad}y")
    assert bad.encode() in body  # the plain form the fast decoder would take
    answer = post_xml(pool, body)
    assert isinstance(answer, xmlrpc.client.Fault)
    assert sdk.SR.get_name_label(sr) == label


def test_answers_stay_well_formed_whatever_is_stored(pool: RunningPool, js: Json, sdk: Any) -> None:
    """Defence in depth: text XML cannot carry that got into the database some other way."""
    net = sdk.network.get_all()[0]
    stored = "a\x00b\x1bc\ufffed\ud800e\rf"
    pool.call(lambda ts: _poke(ts, "network", net, "name_description", stored))
    try:
        record = sdk.network.get_record(net)  # the SDK's expat would raise if ill-formed
        assert record["name_description"] == "a\ufffdb\ufffdc\ufffdd\ufffde\rf"
        answer = post_xml(pool, xml_body("network.get_all_records", js.sid))
        assert answer["Status"] == "Success"
        answer = post_xml(pool, xml_body("network.get_name_description", js.sid, net))
        assert answer["Value"] == "a\ufffdb\ufffdc\ufffdd\ufffde\rf"
        # JSON cannot carry a lone surrogate (not UTF-8): then as over XML-RPC
        assert js.ok("network.get_name_description", net) == "a\ufffdb\ufffdc\ufffdd\ufffde\rf"
        assert js.ok("network.get_all_records")[net]["name_description"].startswith("a\ufffdb")
        # but controls and U+FFFE it carries as they are
        pool.call(lambda ts: _poke(ts, "network", net, "name_description", "a\x00b\ufffe"))
        assert js.ok("network.get_name_description", net) == "a\x00b\ufffe"
        assert sdk.network.get_name_description(net) == "a\ufffdb\ufffd"
    finally:
        pool.call(lambda ts: _poke(ts, "network", net, "name_description", ""))


def _poke(ts: Any, cls: str, ref: str, field: str, value: Any) -> None:
    with ts.db.transaction() as db:
        db.set(cls, ref, field, value)


# ---- the fuzz test -------------------------------------------------------------------------


def _setter(cname: str, ty: Type, fname: str) -> tuple[str, str] | None:
    """(kind, message) of the setter of a string-typed field, if it has one."""
    if ty.kind == "string":
        return "string", f"{cname}.set_{fname}"
    key = ty.key.kind if ty.key is not None else ""
    if ty.kind == "map" and ty.of is not None and key == ty.of.kind == "string":
        return "map", f"{cname}.add_to_{fname}"
    if ty.kind == "set" and ty.of is not None and ty.of.kind == "string":
        return "set", f"{cname}.add_{fname}"
    return None


def _setters() -> list[tuple[str, str, str, str]]:
    """(class, kind, field, message) of every string-typed setter in the declaration."""
    out = []
    for cname, cdef in sorted(CLASSES.items()):
        for fname, fdef in sorted(cdef.fields.items()):
            setter = _setter(cname, fdef.type, fname)
            entry = TABLE.get(setter[1]) if setter is not None else None
            if setter is None or entry is None:
                continue
            strings = [p.type.kind for p in entry.msg.params[2:]]  # after session and self
            if strings == (["string", "string"] if setter[0] == "map" else ["string"]):
                out.append((cname, setter[0], fname, setter[1]))
    return out


SETTERS = _setters()
# Objects the fresh pool lacks, made so that their classes' setters are fuzzed too.
MADE = {
    "task": ("task.create", ["fuzz", ""]),
    "secret": ("secret.create", [{"value": "s"}]),
    "VM_appliance": ("VM_appliance.create", [{"name_label": "app"}]),
}


@pytest.fixture(scope="module")
def targets(js: Json) -> list[tuple[str, str, str, str, str]]:
    """(class, kind, field, message, object) for every setter with an object to set."""
    for method, params in MADE.values():
        js.ok(method, *params)
    out = []
    for cname, kind, field, message in SETTERS:
        refs = js.call(f"{cname}.get_all").get("result")
        if not refs:
            continue
        ref = sorted(refs)[0]
        probe = [ref, "probe", "probe"] if kind == "map" else [ref, "probe"]
        if js.call(message, *probe).get("error") is None:  # not one that checks its values
            out.append((cname, kind, field, message, ref))
    assert len(out) >= 40, out
    return out


EXPECTED: dict[tuple[str, str, str], Any] = {}  # (class, ref, field) -> the value stored

any_text = st.text(st.characters(blacklist_categories=()), max_size=10)  # surrogates too
with_bad = st.tuples(any_text, st.sampled_from(BAD), any_text).map("".join)
texts = st.one_of(any_text, with_bad, st.text(max_size=10))
FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _xml_sendable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False  # the SDK cannot even send a lone surrogate
    return True


def _as_xml_parses(text: str) -> str:
    """What an XML parser makes of text sent raw: line ends normalised to LF."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _carriable(text: str) -> bool:
    """Whether XML 1.0 can carry ``text`` (the test's own statement of the rule)."""
    return not any(
        c in BAD or (ord(c) < 0x20 and c not in "\t\n\r") or 0xD800 <= ord(c) <= 0xDFFF
        for c in text
    )


def _write(js: Json, sdk: Any, protocol: str, message: str, ref: str, kind: str, text: str) -> bool:
    """Call the setter; True if it was accepted, False if refused (by a XenAPI error)."""
    value: Any = text
    if protocol == "base64":
        value = xmlrpc.client.Binary(text.encode("utf-8", "surrogatepass"))
    args = [ref, value, value] if kind == "map" else [ref, value]
    if protocol == "json":
        answer = js.call(message, *args)
        if answer.get("error") is None:
            return True
        assert answer["error"]["message"] in ("INVALID_VALUE", "PARSE_ERROR", "MAP_DUPLICATE_KEY")
        return False
    cls, name = message.split(".", 1)
    try:
        getattr(getattr(sdk, cls), name)(*args)
    except XenAPI.Failure as err:
        assert err.details[0] in ("FIELD_TYPE_ERROR", "MAP_DUPLICATE_KEY"), err.details
        return False
    except xmlrpc.client.Fault:
        return False  # a document XML cannot carry: refused as malformed
    return True


def _stored(kind: str, before: Any, text: str) -> Any:
    if kind == "map":
        return {**before, text: text}
    if kind == "set":
        return before if text in before else [*before, text]
    return text


def _check_class(js: Json, sdk: Any, cls: str) -> None:
    """Every record of ``cls`` reads back over both protocols as the model says."""
    over_xml = getattr(sdk, cls).get_all_records()  # ExpatError if ill-formed
    over_json = js.ok(f"{cls}.get_all_records")
    for (c, ref, field), value in EXPECTED.items():
        if c == cls:
            for records in (over_xml, over_json):
                got = records[ref][field]
                assert _same(got, value), (cls, field, got, value)


def _same(got: Any, want: Any) -> bool:
    if isinstance(want, list):
        return sorted(got) == sorted(want)
    return bool(got == want)


@FUZZ
@given(
    which=st.integers(0, 1 << 16), protocol=st.sampled_from(["json", "xml", "base64"]), text=texts
)
def test_fuzz_every_string_setter_over_both_protocols(
    js: Json,
    held: Sdk,
    targets: list[tuple[str, str, str, str, str]],
    which: int,
    protocol: str,
    text: str,
) -> None:
    target = targets[which % len(targets)]
    _step(js, held.x, target, protocol, text)
    _check_class(js, held.x, target[0])


def _step(
    js: Json, sdk: Any, target: tuple[str, str, str, str, str], protocol: str, text: str
) -> None:
    """Store ``text`` with the setter over ``protocol``; check the outcome, update the model."""
    cls, kind, field, message, ref = target
    if protocol == "xml" and not _xml_sendable(text):
        protocol = "json"
    key = (cls, ref, field)
    if key not in EXPECTED:
        EXPECTED[key] = js.ok(f"{cls}.get_record", ref)[field]
    before = EXPECTED[key]
    sent = _as_xml_parses(text) if protocol == "xml" else text
    duplicate = kind == "map" and sent in before
    accepted = _write(js, sdk, protocol, message, ref, kind, text)
    if accepted:
        assert protocol != "base64" and not duplicate
        EXPECTED[key] = _stored(kind, before, sent)
    else:  # refused: only a type error, a duplicate key, or text XML cannot carry
        assert protocol == "base64" or duplicate or not _carriable(text), (message, text)


# Every setter gets these too, whatever the fuzzer drew.
SWEEP = ["tab\tlf\ncr\r<&>\"']]>", "astral \U0001f600 é \u0085", "nul\x00", "\ufffe", "esc\x1b"]


def test_every_setter_reads_back_over_both_protocols_and_events(
    pool: RunningPool, js: Json, sdk: Any, targets: list[tuple[str, str, str, str, str]]
) -> None:
    """Each setter with the sweep's texts over both protocols; then every class's records
    and a full event.from, over both protocols, hold what the model says."""
    for target in targets:
        for n, text in enumerate(SWEEP):
            _step(js, sdk, target, ("json", "xml", "base64")[n % 3], text)
            _step(js, sdk, target, ("xml", "json")[n % 2], text + "2")
    for cls in sorted({c for c, _, _ in EXPECTED}):
        _check_class(js, sdk, cls)
    over_xml = post_xml(pool, xml_body("event.from", js.sid, ["*"], "", "0"))
    assert over_xml["Status"] == "Success"
    over_json = js.ok("event.from", ["*"], "", 0.0)
    for events in (over_xml["Value"]["events"], over_json["events"]):
        latest = {(e["class"], e["ref"]): e.get("snapshot") for e in events}
        for (cls, ref, field), value in EXPECTED.items():
            snapshot = latest.get((cls.lower(), ref)) or latest.get((cls, ref))
            assert snapshot is not None, (cls, ref)
            assert _same(snapshot[field], value), (cls, field)


def test_xml_line_ends_are_normalised_on_every_decoder_path(pool: RunningPool, js: Json) -> None:
    net = js.ok("network.get_all")[0]
    for text in ["a\rb\r\nc", "a\rb\r\nc&"]:  # the plain fast path, and the full parser
        answer = post_xml(pool, xml_body("network.set_name_description", js.sid, net, text))
        assert answer["Status"] == "Success"
        assert js.ok("network.get_name_description", net) == text.replace("\r\n", "\n").replace(
            "\r", "\n"
        )
