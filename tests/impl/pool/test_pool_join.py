"""pool.join, pool.join_force and pool.eject over the wire.

Two ``xenstack serve`` processes (or two in-process toolstacks, for the quick error cases)
on 127.0.0.1: B joins A's pool, answers HOST_IS_SLAVE while a member, and starts afresh as a
standalone pool once A ejects it.
"""

from __future__ import annotations

import io
import json
import urllib.request
import xmlrpc.client
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import XenAPI
from vmkit import master
from xekit import xe

from xenstack.testing import (
    RunningPool,
    ServerProcess,
    failure,
    free_port,
    halted_vm,
    server_process,
    simulated_pool,
)


def connect(pool: RunningPool | ServerProcess) -> Any:
    s = XenAPI.Session(pool.url)
    s.xenapi.login_with_password("root", pool.password, "1.0", "pool-join-tests")
    return s.xenapi


def address(pool: RunningPool | ServerProcess) -> str:
    return f"127.0.0.1:{pool.port}"


def login_failure(pool: RunningPool | ServerProcess) -> list[str]:
    s = XenAPI.Session(pool.url)
    return failure(s.xenapi.login_with_password, "root", pool.password, "1.0", "t")


@pytest.fixture
def two_servers(tmp_path: Path) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    with server_process(tmp_path / "a") as a, server_process(tmp_path / "b") as b:
        yield a, b


def test_join_with_the_sdk_then_eject_with_xe(two_servers: Any) -> None:
    a, b = two_servers
    xa, xb = connect(a), connect(b)
    (b_host,) = xb.host.get_all()
    b_uuid = xb.host.get_uuid(b_host)
    xb.pool.join(address(a), "root", a.password)
    hosts = xa.host.get_all_records()
    assert len(hosts) == 2
    joined = xa.host.get_by_uuid(b_uuid)
    assert hosts[joined]["address"] == "127.0.0.1"
    assert len(xa.host.get_PIFs(joined)) == 2
    assert xa.VM.get_is_control_domain(xa.host.get_control_domain(joined))
    assert {xa.SR.get_name_label(xa.PBD.get_SR(p)) for p in xa.host.get_PBDs(joined)} >= {
        "Local storage",
        "DVD drives",
    }
    # B is a slave now: every call but logout, and every login, names the master.
    assert failure(xb.VM.get_all) == ["HOST_IS_SLAVE", address(a)]
    assert login_failure(b) == ["HOST_IS_SLAVE", address(a)]
    # ... and stays one across a restart.
    b.stop()
    b.start()
    assert login_failure(b) == ["HOST_IS_SLAVE", address(a)]

    rc, _, err = xe(a, "pool-eject", f"host-uuid={b_uuid}", "--force")  # type: ignore[arg-type]
    assert rc == 0, err
    assert xa.host.get_all() == [master(xa)]
    assert not [r for r in xa.PIF.get_all_records().values() if r["host"] == joined]
    # B is a pool of its own again, with the same root password.
    xb = connect(b)
    (new_host,) = xb.host.get_all()
    assert master(xb) == new_host
    assert xb.host.get_uuid(new_host) != b_uuid
    assert len(xb.SR.get_by_name_label("Local storage")) == 1
    assert halted_vm(xb)


def test_join_with_xe_then_eject_with_the_sdk(two_servers: Any, monkeypatch: Any) -> None:
    a, b = two_servers
    xa = connect(a)
    args = [f"master-address={address(a)}", "master-username=root"]
    rc, out, err = xe(b, "pool-join", *args, f"master-password={a.password}")  # type: ignore[arg-type]
    assert rc == 0, err
    assert len(xa.host.get_all()) == 2
    joined = next(h for h in xa.host.get_all() if h != master(xa))
    uuid = xa.host.get_uuid(joined)
    # Without --force xe asks first; anything but "yes" leaves the host in the pool.
    monkeypatch.setattr("sys.stdin", io.StringIO("no\n"))
    rc, out, err = xe(a, "pool-eject", f"host-uuid={uuid}")  # type: ignore[arg-type]
    assert rc == 0 and "WARNING" in out and "Aborted" in out
    assert len(xa.host.get_all()) == 2
    xa.pool.eject(joined)
    assert len(xa.host.get_all()) == 1
    assert len(connect(b).host.get_all()) == 1


def test_pre_join_checks(tmp_path: Path) -> None:
    with (
        simulated_pool(tmp_path / "a", sim_storage=True, shared_sr=False) as a,
        simulated_pool(tmp_path / "b", sim_storage=True, shared_sr=True) as b,
        simulated_pool(tmp_path / "c", sim_storage=True, hosts=2) as c,
    ):
        xa, xb, xc = connect(a), connect(b), connect(c)
        join = xb.pool.join
        assert failure(join, address(a), "root", "wrong")[0] == "SESSION_AUTHENTICATION_FAILED"
        unreachable = f"127.0.0.1:{free_port()}"
        assert failure(join, unreachable, "root", "x") == ["JOINING_HOST_CONNECTION_FAILED"]
        assert failure(join, address(a), "root", a.password) == [
            "JOINING_HOST_CANNOT_CONTAIN_SHARED_SRS"
        ]
        assert failure(xc.pool.join, address(a), "root", a.password) == [
            "JOINING_HOST_CANNOT_BE_MASTER_OF_OTHER_HOSTS"
        ]
        assert failure(xa.pool.join, address(a), "root", a.password) == [
            "OPERATION_NOT_ALLOWED",
            "Host cannot become slave of itself",
        ]
        assert len(xa.host.get_all()) == 1  # nothing of the failures reached the master
        # xe explains an unreachable master instead of failing.
        rc, out, _ = xe(b, "pool-join", f"master-address={unreachable}",  # type: ignore[arg-type]
                          "master-username=root", "master-password=x")  # fmt: skip
        assert rc == 0 and "could not be reached" in out


def test_running_vms_and_force(tmp_path: Path) -> None:
    with (
        simulated_pool(tmp_path / "a", sim_storage=True, shared_sr=False) as a,
        simulated_pool(tmp_path / "b", sim_storage=True, shared_sr=False) as b,
    ):
        xa, xb = connect(a), connect(b)
        vm = halted_vm(xb)
        xb.VM.start(vm, False, True)
        assert failure(xb.pool.join, address(a), "root", a.password) == [
            "JOINING_HOST_CANNOT_HAVE_RUNNING_VMS"
        ]
        xb.VM.hard_shutdown(vm)

        def other_xapi(ts: Any) -> None:
            host = ts.db.get("host", ts.this_host)
            with ts.db.transaction():
                sw = host["software_version"] | {"xapi": "1.0"}
                ts.db.set("host", ts.this_host, "software_version", sw)

        b.call(other_xapi)
        assert failure(xb.pool.join, address(a), "root", a.password) == [
            "HOSTS_NOT_HOMOGENEOUS",
            "Software version differs",
        ]
        xb.pool.join_force(address(a), "root", a.password)  # the soft check is skipped
        assert len(xa.host.get_all()) == 2
        assert failure(xb.pool.get_all) == ["HOST_IS_SLAVE", address(a)]
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "host.get_all", "params": ["x"]})
        headers = {"Content-Type": "application/json"}
        with urllib.request.urlopen(
            urllib.request.Request(b.jsonrpc_url, body.encode(), headers)
        ) as r:
            error = json.loads(r.read())["error"]
        assert (error["message"], error["data"]) == ("HOST_IS_SLAVE", [address(a)])
        # Only the master, with the pool secret, can make a member leave.
        reply = xmlrpc.client.ServerProxy(b.url).pool.xenstack_leave("not-the-secret")
        assert reply["ErrorDescription"][0] == "SESSION_AUTHENTICATION_FAILED"
        assert failure(xb.pool.get_all) == ["HOST_IS_SLAVE", address(a)]


def test_eject_in_a_simulated_pool(tmp_path: Path) -> None:
    with simulated_pool(tmp_path / "a", sim_storage=True, hosts=3) as pool:
        x = connect(pool)
        boss = master(x)
        assert failure(x.pool.eject, boss) == ["INTERNAL_ERROR", "Xapi_pool.Cannot_eject_master"]
        host2, host3 = (h for h in x.host.get_all() if h != boss)
        vm = halted_vm(x)
        x.VM.start_on(vm, host3, False, True)
        assert failure(x.pool.eject, host3) == ["OPERATION_NOT_ALLOWED", "VM resident on host"]
        x.VM.set_affinity(vm, host2)
        seen = {x.PBD.get_SR(p) for p in x.host.get_PBDs(host2)}
        shared = {sr for sr in seen if x.SR.get_shared(sr)}
        x.pool.eject(host2)
        assert set(x.host.get_all()) == {boss, host3}
        assert x.VM.get_affinity(vm) == "OpaqueRef:NULL"
        for cls in ("PIF", "PBD", "host_cpu"):
            rows = getattr(x, cls).get_all_records().values()
            assert not [r for r in rows if r["host"] == host2], cls
        assert seen & set(x.SR.get_all()) == shared  # its local SRs went, shared ones stay
        assert shared
        dom0s = [r for r in x.VM.get_all_records().values() if r["is_control_domain"]]
        assert len(dom0s) == 2
        assert failure(x.host.get_record, host2)[0] == "HANDLE_INVALID"


def test_member_methods_are_hidden(tmp_path: Path) -> None:
    with simulated_pool(tmp_path / "a", sim_storage=True) as pool:
        x = connect(pool)
        listed = xmlrpc.client.ServerProxy(pool.url).system.listMethods()
        assert "pool.join" in listed
        assert not [n for n in listed if "xenstack" in n]
        member = {"uuid": "u", "hostname": "h", "address": "1.2.3.4", "port": "0"}
        assert failure(getattr(x, "Async.pool.xenstack_add_member"), member)[0] == (
            "MESSAGE_METHOD_UNKNOWN"
        )
        pool.call(lambda ts: ts.auth.set_user("ro", "secret", "read-only"))
        ro = XenAPI.Session(pool.url)
        ro.xenapi.login_with_password("ro", "secret", "1.0", "t")
        assert failure(ro.xenapi.pool.xenstack_add_member, member)[0] == "RBAC_PERMISSION_DENIED"
        leave = xmlrpc.client.ServerProxy(pool.url).pool.xenstack_leave
        assert leave("not-the-secret")["Status"] == "Success"  # in no pool: nothing to do
