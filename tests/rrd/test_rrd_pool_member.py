"""The archive of a VM a pool member runs: two ``xenstack serve`` processes, B a member of A.

A VM started on B runs in B's backend; its counters come to the master with B's answers, so
A's archive records it (``/rrd_updates?vm_uuid=``, ``/vm_rrd``, ``VM_metrics``) as XAPI's
master keeps every VM's archive. Stopped on B, its archive is written out on A; started
again on A, the same archive goes on, its history from B kept; and so again back on B.

B's own handlers (``/rrd_updates``, ``/host_rrd``) take a session made on A, as XAPI's
members do (Xen Orchestra logs in to the master and reads each host's RRDs from that host):
B asks A about it, and refuses it again within seconds of its logout on A.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import XenAPI
from poolkit import joined_pair

from xenstack.testing import ServerProcess, halted_vm

pytestmark = pytest.mark.slow
WAIT = 120.0


def connect(server: ServerProcess) -> Any:
    s = XenAPI.Session(server.url)
    s.xenapi.login_with_password("root", server.password, "1.0", "r3-rrd-member")
    return s


def until(check: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise TimeoutError(what)


def rows(server: ServerProcess, session: str, vm_uuid: str) -> dict[int, dict[str, Any]]:
    """The VM's 5-second AVERAGE rows (ten minutes: more reads the 1-minute archive) on
    ``server``, by time."""
    url = (
        f"{server.url}rrd_updates?session_id={session}&start=-595&cf=AVERAGE&json=true"
        f"&vm_uuid={vm_uuid}"
    )
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            doc = json.load(r)
    except urllib.error.HTTPError:
        return {}
    names = [e.split(":", 3) for e in doc["meta"]["legend"]]
    found: dict[int, dict[str, Any]] = {}
    for row in doc["data"]:
        values = {n[3]: v for n, v in zip(names, row["values"], strict=True) if n[2] == vm_uuid}
        if values:
            found[int(row["t"])] = values
    return found


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[tuple[ServerProcess, ServerProcess, str]]:
    with joined_pair(tmp_path) as pair:
        yield pair


def status(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def members_own_handlers(a: ServerProcess, b: ServerProcess, member_uuid: str) -> None:
    """B's /rrd_updates and /host_rrd with sessions made on A: good, bad, logged out."""
    s = connect(a)
    query = "rrd_updates?start=-60&host=true&vm_uuid=none&json=true&session_id="
    code, body = until(
        lambda: (got := status(f"{b.url}{query}{s._session}"))[0] != 404 and got,
        "the member's first tick",
    )
    assert code == 200, body
    doc = json.loads(body)
    assert doc["data"] and doc["meta"]["legend"]
    assert {e.split(":")[2] for e in doc["meta"]["legend"]} == {member_uuid}  # B's host rows
    code, body = status(f"{b.url}host_rrd?session_id={s._session}")
    assert code == 200 and b"<name>memory_total_kib</name>" in body
    assert status(f"{b.url}{query}OpaqueRef:not-a-session")[0] == 401
    assert status(f"{b.url}{query}")[0] == 401
    s.xenapi.session.logout()
    logged_out = time.monotonic()
    until(lambda: status(f"{b.url}{query}{s._session}")[0] == 401, "refused after logout")
    assert time.monotonic() - logged_out < 10.0  # kept two seconds at most, then asked again


def test_a_members_vm_is_archived_on_the_master_and_follows_it_back(pool: Any) -> None:
    a, b, member = pool
    sa = connect(a)
    xa, session = sa.xenapi, sa._session
    members_own_handlers(a, b, xa.host.get_uuid(member))
    (pool_ref,) = xa.pool.get_all()
    master = xa.pool.get_master(pool_ref)
    vm = halted_vm(xa, "r3-member")
    uuid = xa.VM.get_uuid(vm)
    xa.VM.start_on(vm, member, False, False)

    def measured() -> bool:
        known = [r for r in rows(a, session, uuid).values() if r.get("cpu0") is not None]
        return len(known) >= 2 and all(r["memory"] > 0 for r in known)

    until(measured, "the member's VM in the master's /rrd_updates")
    on_member = {t for t, r in rows(a, session, uuid).items() if r.get("cpu0") is not None}
    with urllib.request.urlopen(f"{a.url}vm_rrd?session_id={session}&uuid={uuid}") as r:
        assert b"<name>cpu0</name>" in r.read()
    metrics = xa.VM.get_metrics(vm)
    until(lambda: xa.VM_metrics.get_VCPUs_utilisation(metrics), "VM_metrics from the member")
    # vm_uuid=all is the master's own VMs: this one runs on B
    assert not any(uuid in e for e in _legend(a, session, "all"))

    xa.VM.hard_shutdown(vm)
    archive = a.state_dir / "rrd" / f"vm-{uuid}.xml.gz"
    until(archive.exists, "the stopped VM's archive written on the master")
    assert archive.stat().st_mode & 0o777 == 0o600
    xa.VM.start_on(vm, master, False, False)
    assert xa.VM.get_resident_on(vm) == master
    until(lambda: any(uuid in e for e in _legend(a, session, "all")), "the VM on the master")

    def history_kept() -> bool:
        known = {t for t, r in rows(a, session, uuid).items() if r.get("cpu0") is not None}
        return on_member <= known and max(known) > max(on_member) + 5  # and measured anew

    until(history_kept, "the archive going on with its history from the member")
    # and back to the member: the same archive again
    on_master = {t for t, r in rows(a, session, uuid).items() if r.get("cpu0") is not None}
    xa.VM.hard_shutdown(vm)
    xa.VM.start_on(vm, member, False, False)
    on_member = on_master

    until(history_kept, "the archive going on with its history from the master")
    xa.VM.hard_shutdown(vm)
    sa.xenapi.session.logout()


def _legend(server: ServerProcess, session: str, vm_uuid: str) -> list[str]:
    url = f"{server.url}rrd_updates?session_id={session}&start=-60&json=true&vm_uuid={vm_uuid}"
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            return list(json.load(r)["meta"]["legend"])
    except urllib.error.HTTPError as err:
        assert err.code == 404  # no archive to show
        return []
