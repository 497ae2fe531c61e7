"""Sessions over the wire: login, logout, expiry, throttling, stored passwords, the session gate."""

from __future__ import annotations

import http.client
import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest
import XenAPI

from xenstack.api.dispatch import build_table
from xenstack.testing import (
    FakeClock,
    RunningPool,
    add_users,
    failure,
    login,
    raw_call,
    raw_failure,
    raw_login,
    simulated_pool,
    user,
    user_password,
    vm_record,
)


def test_login_get_this_host_and_logout(xenstack_pool: RunningPool) -> None:
    s = login(xenstack_pool, label="test_core_session")
    ref = s.handle
    assert ref.startswith("OpaqueRef:")
    host = s.xenapi.session.get_this_host(ref)
    (pool_ref,) = s.xenapi.pool.get_all()
    assert host == s.xenapi.pool.get_master(pool_ref)
    record = s.xenapi.session.get_record(ref)
    assert record["auth_user_name"] == "root"
    assert record["originator"] == "test_core_session"
    assert record["is_local_superuser"] is True
    s.xenapi.session.logout()
    answer = raw_call(xenstack_pool.url, "session.get_this_host", ref, ref)
    assert answer == {"Status": "Failure", "ErrorDescription": ["SESSION_INVALID", ref]}


def test_slave_local_login_with_password(xenstack_pool: RunningPool) -> None:
    s = XenAPI.Session(xenstack_pool.url)
    s.slave_local_login_with_password("root", xenstack_pool.password)
    ref = s.handle
    assert s.xenapi.session.get_this_host(ref).startswith("OpaqueRef:")
    s.xenapi.session.logout()  # the SDK sends session.local_logout for this kind of login
    answer = raw_call(xenstack_pool.url, "pool.get_all", ref)
    assert answer["ErrorDescription"] == ["SESSION_INVALID", ref]


def test_idle_session_expires_by_the_toolstacks_clock() -> None:
    """Activity keeps a session alive past the timeout; idleness longer than it ends the
    session. Only the fake clock moves: no test time is slept."""
    clock = FakeClock()
    with simulated_pool(None, session_timeout=40, clock=clock) as pool:
        ref = raw_login(pool)
        for _ in range(4):  # 80 s in all, never 40 s idle
            clock.advance(20)
            assert raw_call(pool.url, "pool.get_all", ref)["Status"] == "Success"
        clock.advance(40)  # idle for exactly the timeout: still alive
        assert raw_call(pool.url, "pool.get_all", ref)["Status"] == "Success"
        clock.advance(40.5)
        assert raw_failure(pool.url, "pool.get_all", ref) == ["SESSION_INVALID", ref]


def test_login_throttle_refills_by_the_toolstacks_clock() -> None:
    """An empty bucket of password checks fills again as the toolstack's clock moves."""
    clock = FakeClock()
    with simulated_pool(None, clock=clock) as pool:
        pool.call(lambda ts: setattr(ts.auth, "refill_interval", 600.0))
        for _ in range(5):
            wrong = raw_failure(pool.url, "session.login_with_password", "root", "no", "1", "t")
            assert wrong[:2] == ["SESSION_AUTHENTICATION_FAILED", "root"]
        clock.advance(600)  # one check back, at once: no real wait of 600 s
        assert raw_login(pool)


def test_failed_logins_are_throttled(xenstack_pool: RunningPool) -> None:
    url = xenstack_pool.url
    xenstack_pool.call(lambda ts: setattr(ts.auth, "refill_interval", 0.5))
    for _ in range(5):
        answer = raw_call(url, "session.login_with_password", "root", "wrong", "1.0", "t")
        assert answer["ErrorDescription"][:2] == ["SESSION_AUTHENTICATION_FAILED", "root"]
    right = xenstack_pool.password
    answer = raw_call(url, "session.login_with_password", "root", right, "1.0", "t")
    assert answer["Status"] == "Success"  # slowed down (see test_security_login), not locked out
    add_users(xenstack_pool, {"other": "read-only"})
    password = user_password("other")
    other = raw_call(url, "session.login_with_password", "other", password, "1.0", "t")
    assert other["Status"] == "Success"  # the limit is per user, not global


def test_passwords_are_stored_hashed(tmp_path: Path) -> None:
    secret = "correct-horse-battery-staple-4711"
    state = tmp_path / "state"
    with simulated_pool(state, password=secret) as pool:
        pool.call(lambda ts: ts.auth.set_user("reader", secret + "-r", "read-only"))
        login(pool).xenapi.session.logout()
    with sqlite3.connect(state / "xapi.db") as conn:
        (users,) = conn.execute("SELECT value FROM meta WHERE key = 'users'").fetchone()
    doc = orjson.loads(users)
    assert set(doc) == {"root", "reader"}
    for stored in doc.values():
        assert stored["password_hash"].startswith("pbkdf2-sha256$")
        assert secret not in stored["password_hash"]
    for path in state.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


def _dummy(type_kind: str) -> Any:
    return {"int": "0", "bool": False, "float": 0.0, "set": [], "map": {}, "record": {}}.get(
        type_kind, ""
    )


def test_every_call_but_login_needs_a_valid_session(xenstack_pool: RunningPool) -> None:
    """Every method taking a session answers SESSION_INVALID [ref] to a bogus one."""
    table = build_table()
    bogus = "OpaqueRef:00000000-dead-beef-0000-000000000000"
    conn = http.client.HTTPConnection("127.0.0.1", xenstack_pool.port, timeout=30)
    checked = 0
    try:
        for name, entry in sorted(table.items()):
            if not entry.msg.takes_session:
                continue
            params = [bogus, *(_dummy(p.type.kind) for p in entry.msg.params[1:])]
            for method in (name, f"Async.{name}") if entry.msg.has_async else (name,):
                body = orjson.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": 1})
                conn.request("POST", "/jsonrpc", body, {"Content-Type": "application/json"})
                doc = orjson.loads(conn.getresponse().read())
                assert doc["error"]["message"] == "SESSION_INVALID", (method, doc)
                assert doc["error"]["data"] == [bogus], method
                checked += 1
    finally:
        conn.close()
    assert checked > 1500
    # login itself needs none
    answer = raw_call(
        xenstack_pool.url, "session.login_with_password", "root", xenstack_pool.password, "1", "t"
    )
    assert answer["Status"] == "Success"


@pytest.mark.parametrize("session", ["", 42, "OpaqueRef:NULL"])
def test_malformed_sessions_are_invalid(xenstack_pool: RunningPool, session: Any) -> None:
    answer = raw_call(xenstack_pool.url, "VM.get_all", session)
    assert answer["ErrorDescription"] == ["SESSION_INVALID", str(session)]


def test_the_kits_user_is_logged_in_with_its_role(xenstack_pool: RunningPool) -> None:
    session = user(xenstack_pool, "kit-reader", "read-only")
    try:
        x = session.xenapi
        assert x.session.get_auth_user_name(session.handle) == "kit-reader"
        assert failure(x.VM.create, vm_record())[0] == "RBAC_PERMISSION_DENIED"
    finally:
        session.xenapi.session.logout()
