"""Errors over the wire carry XAPI's exact codes and parameters, and change nothing."""

from __future__ import annotations

import http.client
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
import XenAPI

from xenstack.api.dispatch import build_table
from xenstack.idl.model import ENUMS
from xenstack.idl.types import NULL_REF, Type
from xenstack.testing import RunningPool, simulated_pool, vm_record
from xenstack.testing import raw_call as raw
from xenstack.testing import raw_failure as failure
from xenstack.testing import raw_login as login

BOGUS = "OpaqueRef:12345678-1234-1234-1234-123456789abc"


def a_vm(pool: RunningPool, session: str) -> str:
    """The control domain: a VM every pool has."""
    vms = raw(pool.url, "VM.get_all_records", session)["Value"]
    return next(ref for ref, rec in vms.items() if rec["is_control_domain"])


def test_parameter_count_mismatch(xenstack_pool: RunningPool) -> None:
    """As XAPI counts: without the session, and without parameters that have defaults."""
    url, s = xenstack_pool.url, login(xenstack_pool)
    vm = a_vm(xenstack_pool, s)
    assert failure(url, "VM.get_record", s, vm, "extra") == [
        "MESSAGE_PARAMETER_COUNT_MISMATCH",
        "VM.get_record",
        "1",
        "2",
    ]
    assert failure(url, "VM.get_all", s, 1, 2) == [
        "MESSAGE_PARAMETER_COUNT_MISMATCH",
        "VM.get_all",
        "0",
        "2",
    ]
    assert failure(url, "session.login_with_password", "root") == [
        "MESSAGE_PARAMETER_COUNT_MISMATCH",
        "session.login_with_password",
        "2",
        "1",
    ]
    too_many = ["root", xenstack_pool.password, "1.0", "tests", "extra"]
    assert failure(url, "session.login_with_password", *too_many) == [
        "MESSAGE_PARAMETER_COUNT_MISMATCH",
        "session.login_with_password",
        "2",
        "5",
    ]


def test_trailing_parameters_with_defaults_may_be_left_out(xenstack_pool: RunningPool) -> None:
    """Old clients (Xen Orchestra's among them) log in with just a name and a password."""
    url = xenstack_pool.url
    for params in (["root", xenstack_pool.password], ["root", xenstack_pool.password, "1.0"]):
        answer = raw(url, "session.login_with_password", *params)
        assert answer["Status"] == "Success", answer
        assert answer["Value"].startswith("OpaqueRef:")
    s = login(xenstack_pool)
    vm = raw(url, "VM.create", s, vm_record("defaults"))["Value"]
    snap = raw(url, "VM.snapshot", s, vm, "without ignore_vdis")  # ignore_vdis added later
    assert snap["Status"] == "Success", snap
    assert raw(url, "VM.get_snapshot_of", s, snap["Value"])["Value"] == vm
    assert failure(url, "VM.snapshot", s, vm) == [
        "MESSAGE_PARAMETER_COUNT_MISMATCH",
        "VM.snapshot",
        "2",
        "1",
    ]


def test_field_type_errors_change_nothing(xenstack_pool: RunningPool) -> None:
    url, s = xenstack_pool.url, login(xenstack_pool)
    vm = a_vm(xenstack_pool, s)
    before = raw(url, "VM.get_record", s, vm)["Value"]
    assert failure(url, "VM.set_name_label", s, vm, 42) == ["FIELD_TYPE_ERROR", "value"]
    assert failure(url, "VM.set_user_version", s, vm, "twelve") == ["FIELD_TYPE_ERROR", "value"]
    assert failure(url, "VM.set_other_config", s, vm, ["not", "a", "map"])[0] == "FIELD_TYPE_ERROR"
    assert failure(url, "VM.set_tags", s, vm, {"not": "a set"})[0] == "FIELD_TYPE_ERROR"
    assert failure(url, "VM.set_is_a_template", s, vm, "maybe")[0] == "FIELD_TYPE_ERROR"
    assert failure(url, "VM.get_record", s, 17)[0] == "FIELD_TYPE_ERROR"
    assert raw(url, "VM.get_record", s, vm)["Value"] == before


def test_enums_are_checked(xenstack_pool: RunningPool) -> None:
    url, s = xenstack_pool.url, login(xenstack_pool)
    vm = a_vm(xenstack_pool, s)
    before = raw(url, "VM.get_actions_after_crash", s, vm)["Value"]
    assert failure(url, "VM.set_actions_after_crash", s, vm, "explode")[0] == "FIELD_TYPE_ERROR"
    assert raw(url, "VM.get_actions_after_crash", s, vm)["Value"] == before
    assert failure(url, "VM.add_to_blocked_operations", s, vm, "fly", "x")[0] == "FIELD_TYPE_ERROR"
    events = failure(url, "VM.get_all_records_where", s, 'field "x" =')
    assert events == ["INVALID_VALUE", 'field "x" =', "Parsing.Parse_error"]


def test_handle_invalid(xenstack_pool: RunningPool) -> None:
    url, s = xenstack_pool.url, login(xenstack_pool)
    assert failure(url, "VM.get_record", s, BOGUS) == ["HANDLE_INVALID", "VM", BOGUS]
    assert failure(url, "network.get_name_label", s, BOGUS) == ["HANDLE_INVALID", "network", BOGUS]
    assert failure(url, "host.set_name_label", s, NULL_REF, "x") == [
        "HANDLE_INVALID",
        "host",
        NULL_REF,
    ]


@pytest.mark.parametrize(
    "method", ["VM.no_such_message", "Async.VM.get_record", "nonsense", "NoClass.get_all", "Async."]
)
def test_unknown_methods(xenstack_pool: RunningPool, method: str) -> None:
    s = login(xenstack_pool)
    assert failure(xenstack_pool.url, method, s) == ["MESSAGE_METHOD_UNKNOWN", method]


def _valid_dummy(ty: Type) -> Any:
    if ty.kind == "enum":
        return ENUMS[ty.name][0]
    if ty.kind == "ref":
        return NULL_REF
    return {
        "int": 0,
        "float": 0.0,
        "bool": False,
        "set": [],
        "map": {},
        "record": {},
        "datetime": "19700101T00:00:00Z",
    }.get(ty.kind, "")


def test_unimplemented_messages_answer_not_implemented(xenstack_pool: RunningPool) -> None:
    """Every explicit message still without a server function says so, over JSON-RPC."""
    s = login(xenstack_pool)
    missing = [e.msg for e in build_table().values() if e.fn is None]
    if not missing:
        pytest.skip("every message has a server function")
    conn = http.client.HTTPConnection("127.0.0.1", xenstack_pool.port, timeout=30)
    try:
        for msg in missing:
            params = [s, *(_valid_dummy(p.type) for p in msg.params[1:])]
            body = orjson.dumps(
                {"jsonrpc": "2.0", "method": msg.wire_name, "params": params, "id": 7}
            )
            conn.request("POST", "/jsonrpc", body, {"Content-Type": "application/json"})
            doc = orjson.loads(conn.getresponse().read())
            assert doc["error"]["message"] == "NOT_IMPLEMENTED", (msg.wire_name, doc)
            assert doc["error"]["data"] == [msg.wire_name]
    finally:
        conn.close()


def _user_add(state: Path, name: str, role: str, password: str) -> None:
    pw_file = state.parent / f"{name}.pw"
    pw_file.write_text(password + "\n")
    cmd = [sys.executable, "-m", "xenstack.cli.main", "user-add", "--state-dir", str(state),
           name, "--role", role, "--password-file", str(pw_file)]  # fmt: skip
    subprocess.run(cmd, check=True, timeout=60)


def test_read_only_role(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with simulated_pool(state):
        pass  # initialise the state directory
    _user_add(state, "auditor", "read-only", "audit-pw")
    with simulated_pool(state) as pool:
        admin = XenAPI.Session(pool.url)
        admin.xenapi.login_with_password("root", pool.password, "1.0", "t")
        reader = XenAPI.Session(pool.url)
        reader.xenapi.login_with_password("auditor", "audit-pw", "1.0", "t")
        r = reader.xenapi
        (vm,) = [v for v, rec in r.VM.get_all_records().items() if rec["is_control_domain"]]
        label = r.VM.get_name_label(vm)
        assert r.VM.get_record(vm)["name_label"] == label
        assert r.host.get_all() == admin.xenapi.host.get_all()
        assert r.session.get_record(reader.handle)["auth_user_name"] == "auditor"
        writes = [
            ("set_name_label", lambda: r.VM.set_name_label(vm, "hijacked")),
            ("add_to_other_config", lambda: r.VM.add_to_other_config(vm, "k", "v")),
            ("create", lambda: r.network.create({"name_label": "n"})),
            ("destroy", lambda: r.VM.destroy(vm)),
        ]
        for name, write in writes:
            with pytest.raises(XenAPI.Failure) as err:
                write()
            assert err.value.details[0] == "RBAC_PERMISSION_DENIED", name
            assert name.lower() in err.value.details[1]
        assert admin.xenapi.VM.get_name_label(vm) == label
        assert "k" not in admin.xenapi.VM.get_other_config(vm)
        assert admin.xenapi.network.get_by_name_label("n") == []
        admin.xenapi.VM.set_name_label(vm, label)  # the admin still may
