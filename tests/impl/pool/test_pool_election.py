"""Master loss on etcd: the master killed with kill -9 while 8 clients write through it.

Three ``xenstack serve`` hosts (own simulators, HTTPS between them) on one three-member etcd
cluster, B and C members of A's pool. A is killed; when its lease expires, B or C is
elected, restarts on the pool's database and answers as master; the other follows it (its
HOST_IS_SLAVE names the new master). Every write A acknowledged is in the new master's
database.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import XenAPI
from systools import require_tool

from xenstack.testing import ServerProcess, failure, halted_vm, server_process
from xenstack.testing.etcd import EtcdCluster, etcd_cluster

pytestmark = [pytest.mark.etcd, pytest.mark.slow]
LEASE = 3.0


def connect(server: ServerProcess, password: str) -> Any:
    s = XenAPI.Session(server.url)
    s.xenapi.login_with_password("root", password, "1.0", "election-tests")
    return s.xenapi


def address(server: ServerProcess) -> str:
    return f"127.0.0.1:{server.port}"


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[tuple[EtcdCluster, list[ServerProcess]]]:
    require_tool("etcd")
    with etcd_cluster(tmp_path / "etcd") as cluster:
        args = ["--etcd", cluster.urls, "--https-port", "0", "--master-lease", str(LEASE)]
        with (
            server_process(tmp_path / "a", args) as a,
            server_process(tmp_path / "b", args) as b,
            server_process(tmp_path / "c", args) as c,
        ):
            for member in (b, c):
                connect(member, member.password).pool.join(address(a), "root", a.password)
            yield cluster, [a, b, c]


def wait_for_master(candidates: list[ServerProcess], password: str, timeout: float = 60) -> Any:
    """The server that answers pool.get_master as master, once one does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for server in candidates:
            try:
                x = connect(server, password)
                x.pool.get_master(x.pool.get_all()[0])
                return server
            except (OSError, XenAPI.Failure):
                pass
        time.sleep(0.1)
    raise TimeoutError("no new master")


def test_master_killed_with_writes_in_flight_loses_no_acknowledged_write(pool: Any) -> None:
    _, (a, b, c) = pool
    password = a.password
    xa = connect(a, password)
    vms = [halted_vm(xa, f"w{i}") for i in range(8)]
    xa_master = xa.pool.get_master(xa.pool.get_all()[0])
    acked: dict[str, list[str]] = {vm: [] for vm in vms}
    stop = threading.Event()

    def writer(vm: str) -> None:
        api = connect(a, password)
        n = 0
        while not stop.is_set():
            try:
                api.VM.add_to_other_config(vm, f"k{n}", "v")
            except Exception:
                return  # not acknowledged
            acked[vm].append(f"k{n}")
            n += 1

    threads = [threading.Thread(target=writer, args=(vm,)) for vm in vms]
    for t in threads:
        t.start()
    while sum(len(v) for v in acked.values()) < 300:
        time.sleep(0.05)
    a.kill()
    killed = time.monotonic()
    stop.set()
    for t in threads:
        t.join(60)
    new = wait_for_master([b, c], password)
    took = time.monotonic() - killed
    other = c if new is b else b
    x = connect(new, password)
    for vm, keys in acked.items():
        assert keys
        assert set(keys) <= set(x.VM.get_other_config(vm)), vm
    pool_ref = x.pool.get_all()[0]
    master = x.pool.get_master(pool_ref)
    assert master != xa_master
    print(f"elected after {took:.2f}s; acked {sum(map(len, acked.values()))} writes")
    # the other member follows the new master
    deadline = time.monotonic() + 60
    while failure(XenAPI.Session(other.url).xenapi.VM.get_all) != [
        "HOST_IS_SLAVE",
        address(new),
    ]:
        assert time.monotonic() < deadline, "the other member does not follow"
        time.sleep(0.1)
    assert took < 60
    # and the pool goes on: a write through the new master
    x.VM.set_name_description(vms[0], "after the election")
    assert x.VM.get_name_description(vms[0]) == "after the election"
