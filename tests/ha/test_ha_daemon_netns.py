"""A QEMU member's HA daemon cut off by a real network partition (issue 14; root).

Two ``xenstack serve`` hosts with the QEMU backend, each in a network namespace of its own
(``xenstack.testing.netns``, as :mod:`nskit` places simulator hosts), a one-member etcd in a
third and the test's client in a fourth. The daemon a serve starts lives in serve's
namespace; the guests' QEMUs live in their host's guest network (``serve --netns``), their
consoles and disks on unix sockets, so cutting the member's link cuts its serve and daemon
from etcd and the master, and nothing else. The daemon sees neither its lease nor a
majority: it kills the guest's QEMU (journaled) before its lease can expire, then serve;
the master restarts the VM on itself; the journal shows it never ran twice.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nskit import PORT, NsHost, NsPool, wait_for
from systools import require_root, require_tool

from xenstack.ha import fence, process
from xenstack.impl.pool import timeline
from xenstack.testing.etcd import etcd_cluster
from xenstack.testing.guestnet import guest_network
from xenstack.testing.guests import Console, install, run_dir, stop_guests
from xenstack.testing.netns import Topology

pytestmark = [pytest.mark.qemu, pytest.mark.root, pytest.mark.etcd, pytest.mark.slow]
TIMEOUT = 6.0


def _qemu_host(stack: contextlib.ExitStack, net: Topology, i: int, args: list[str]) -> NsHost:
    guests = stack.enter_context(guest_network(f"hn{i}"))
    top = stack.enter_context(tempfile.TemporaryDirectory(prefix=f"hdn{i}-"))
    os.chmod(top, 0o711)  # QEMU's own user passes (xenops/qemu/runas.py)
    state = Path(top) / "state"
    init = [sys.executable, "-m", "xenstack.cli.main", "init", "--state-dir", str(state)]
    subprocess.run([*init, "--backend", "qemu"], check=True, timeout=120)
    host = NsHost(net, f"h{i}", state, [*args, "--backend", "qemu", "--netns", guests.netns])
    stack.callback(stop_guests, state)
    stack.callback(_kill_daemon, state)
    host.start(timeout=120)
    stack.callback(host.stop)
    return host


def _kill_daemon(state_dir: Path) -> None:
    pid = process.running(state_dir)
    if pid:
        os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NsPool]:
    for tool in ("qemu-system-x86_64", "dnsmasq", "etcd"):
        require_tool(tool)
    require_root()
    root = tmp_path_factory.mktemp("hdns")
    with contextlib.ExitStack() as stack:
        net = stack.enter_context(Topology(f"xd{os.getpid():x}", ["h0", "h1", "e0", "c"]))
        places = [(net.ip("e0"), net.exec("e0"))]
        cluster = stack.enter_context(etcd_cluster(root / "etcd", size=1, places=places))
        log = root / "domains.log"
        args = ["--etcd", cluster.urls, "--domain-log", str(log)]
        hosts = [_qemu_host(stack, net, i, args) for i in range(2)]
        pool = NsPool(net, hosts, log, hosts[0].password)
        for i in range(2):
            net.client(_join, pool, i)
        export = stack.enter_context(tempfile.TemporaryDirectory(prefix="hdn-nfs-"))
        pool.call(_shared_sr, export)
        pool.call(lambda x: x.pool.enable_ha([], {"timeout": str(TIMEOUT)}))
        yield pool


def _join(pool: NsPool, i: int) -> None:
    import XenAPI

    host = pool.hosts[i]
    s = XenAPI.Session(host.url)
    s.xenapi.login_with_password("root", host.password, "1.0", "hdn-tests")
    pool.uuids.append(s.xenapi.host.get_uuid(s.xenapi.host.get_all()[0]))
    if i:
        s.xenapi.pool.join(f"{pool.hosts[0].ip}:{PORT}", "root", pool.password)


def _shared_sr(x: Any, export: str) -> None:
    the_pool = x.pool.get_all()[0]
    sr = x.SR.create(
        x.pool.get_master(the_pool), {"path": export}, "0", "shared", "", "nfs", "user", True, {}
    )
    x.pool.set_default_SR(the_pool, sr)


def _protected_on_member(x: Any, member: str) -> tuple[str, str]:
    vm = install(x, "hdn-guest")
    x.VM.set_ha_restart_priority(vm, "restart")
    x.VM.start_on(vm, x.host.get_by_uuid(member), False, False)
    return str(vm), str(x.VM.get_uuid(vm))


def qemu_pid(host: NsHost, vm_uuid: str) -> int:
    found = fence.domains(str(host.state_dir / "run" / "qemu")).get(vm_uuid)
    return found[0] if found else 0


def test_a_partitioned_member_fences_and_its_vm_restarts(pool: NsPool) -> None:
    member = pool.hosts[1]
    vm, uuid = pool.call(_protected_on_member, pool.uuids[1])
    Console(run_dir(member.state_dir, uuid)).wait_for("XSG-READY")
    home = pool.ref(1)
    assert process.running(member.state_dir) and qemu_pid(member, uuid)
    cut = time.time()
    pool.net.cut("h1")
    wait_for("the member's QEMU killed", lambda: not qemu_pid(member, uuid), 3 * TIMEOUT)
    wait_for("the daemon gone", lambda: not process.running(member.state_dir), TIMEOUT)
    wait_for("serve fenced", lambda: not member.alive(), TIMEOUT)
    fenced = [e for e in timeline.read([pool.log]) if e["vm"] == vm and e["event"] == "fence"]
    assert fenced and fenced[0]["t"] - cut < TIMEOUT, fenced  # before the lease could expire

    def restarted() -> bool:
        record = pool.call(lambda x: x.VM.get_record(vm))
        return bool(record["power_state"] == "Running" and record["resident_on"] != home)

    wait_for("the VM restarted on the master", restarted, 10 * TIMEOUT)
    pool.assert_never_twice()
    assert {span[0] for span in pool.runs()[vm]} == {home, pool.ref(0)}
