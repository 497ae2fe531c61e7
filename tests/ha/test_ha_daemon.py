"""A QEMU host's HA daemon is a process of its own (issue 14).

A pool on a single-member etcd of two ``xenstack serve`` hosts with the QEMU backend (each on
its own guest network, a shared SR on files), HA on with a short timeout, a protected real
guest on the member. Two hosts suffice: a member cut off etcd and its master sees one host
of two (no majority) and fences; the master keeps etcd and does not.

- ``kill -9`` of the member's serve: the guest's QEMU keeps running well past 2 x timeout,
  the VM is not restarted elsewhere (the domain log: never twice) and stays resident on the
  member; serve restarted re-attaches to the same daemon pid, the guest's console answers.
- the daemon pointed at dead endpoints (etcd and peers, by its own config and SIGHUP): it
  kills the member's QEMU (journaled) before its lease expires, then its serve; the master
  restarts the VM on itself; the timeline shows no overlap.
- disarm (pool.disable_ha) stops the master's daemon: no daemon process is left.
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import XenAPI
from hakit import wait_until
from systools import require_root, require_tool

from xenstack.ha import fence, process
from xenstack.impl.pool import timeline
from xenstack.testing import free_port
from xenstack.testing.etcd import etcd_cluster
from xenstack.testing.guests import Console, QemuHost, install, qemu_host, run_dir

pytestmark = [pytest.mark.qemu, pytest.mark.root, pytest.mark.etcd, pytest.mark.slow]
TIMEOUT = 6.0


@dataclass
class Pool:
    master: QemuHost
    member: QemuHost
    log: Path

    def api(self) -> Any:
        s = XenAPI.Session(self.master.url)
        s.xenapi.login_with_password("root", self.master.password, "1.0", "had-tests")
        return s.xenapi

    def assert_never_twice(self) -> None:
        bad = timeline.overlaps(timeline.intervals(timeline.read([self.log])))
        assert not bad, f"VMs ran on two hosts at once: {bad}"


def _kill_daemon(state_dir: Path) -> None:
    """A daemon a failed test left behind, by its pid file (checked as the daemon's)."""
    pid = process.running(state_dir)
    if pid:
        os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def pool() -> Iterator[Pool]:
    for tool in ("qemu-system-x86_64", "dnsmasq", "etcd"):
        require_tool(tool)
    require_root()
    with contextlib.ExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="had-")))
        cluster = stack.enter_context(etcd_cluster(root / "etcd", size=1))
        log = root / "domains.log"
        hosts = []
        for i in range(2):
            args = ("--etcd", cluster.urls, "--domain-log", str(log), "--backend", "qemu")
            serve = (*args, "--https-port", str(free_port()))
            qh = stack.enter_context(qemu_host(f"hd{i}", serve_args=serve))
            stack.callback(_kill_daemon, qh.state_dir)
            hosts.append(qh)
        master, member = hosts
        for qh in hosts:
            s = XenAPI.Session(qh.url)
            s.xenapi.login_with_password("root", qh.password, "1.0", "had-tests")
            qh.host_uuid = s.xenapi.host.get_uuid(s.xenapi.host.get_all()[0])
            if qh is member:
                s.xenapi.pool.join(f"127.0.0.1:{master.server.port}", "root", master.password)
        pool = Pool(master, member, log)
        x = pool.api()
        export = stack.enter_context(tempfile.TemporaryDirectory(prefix="had-nfs-"))
        the_pool = x.pool.get_all()[0]
        sr = x.SR.create(
            x.pool.get_master(the_pool), {"path": export}, "0", "shared",
            "", "nfs", "user", True, {},
        )  # fmt: skip
        x.pool.set_default_SR(the_pool, sr)
        x.pool.enable_ha([], {"timeout": str(TIMEOUT)})
        yield pool


@pytest.fixture(scope="module")
def guest(pool: Pool) -> str:
    x = pool.api()
    vm = install(x, "had-guest")
    x.VM.set_ha_restart_priority(vm, "restart")
    x.VM.start_on(vm, x.host.get_by_uuid(pool.member.host_uuid), False, False)
    Console(run_dir(pool.member.state_dir, x.VM.get_uuid(vm))).wait_for("XSG-READY")
    return str(vm)


def qemu_pid(qh: QemuHost, vm_uuid: str) -> int:
    found = fence.domains(str(qh.state_dir / "run" / "qemu")).get(vm_uuid)
    return found[0] if found else 0


def test_killed_serve_leaves_the_guest_running_and_reattaches(pool: Pool, guest: str) -> None:
    x, member = pool.api(), pool.member
    uuid, home = x.VM.get_uuid(guest), x.host.get_by_uuid(member.host_uuid)
    daemon, qemu = process.running(member.state_dir), qemu_pid(member, uuid)
    assert daemon and qemu and daemon != member.server.proc.pid  # type: ignore[union-attr]
    metrics = x.host.get_metrics(home)
    member.server.kill()  # kill -9
    deadline = time.monotonic() + 2.5 * TIMEOUT
    while time.monotonic() < deadline:  # the whole span: nothing may happen in it
        assert qemu_pid(member, uuid) == qemu, "the guest's QEMU died with serve"
        assert x.VM.get_resident_on(guest) == home, "the VM was moved off its host"
        assert x.VM.get_power_state(guest) == "Running"
        assert x.host_metrics.get_live(metrics), "the master declared the host dead"
        time.sleep(0.5)
    assert process.running(member.state_dir) == daemon
    member.server.start(timeout=120)
    wait_until("serve re-attached", lambda: _config_pid(member) == member.server.proc.pid)  # type: ignore[union-attr]
    assert process.running(member.state_dir) == daemon  # the same daemon, not a new one
    assert x.VM.get_power_state(guest) == "Running"
    assert x.VM.get_resident_on(guest) == home
    assert Console(run_dir(member.state_dir, uuid)).run_command("echo alive") == "alive\n"
    runs = timeline.intervals(timeline.read([pool.log]))[guest]
    assert len(runs) == 1, runs  # one run, never restarted
    pool.assert_never_twice()


def _config_pid(qh: QemuHost) -> int:
    return int(process.read_config(qh.state_dir).get("serve_pid") or 0)


def test_etcd_moved_closes_the_old_client(pool: Pool) -> None:
    """SIGHUP with another etcd URL: the daemon takes a new client and closes the old one
    (its thread and channels), so flipping it leaves the daemon's thread count flat."""
    member = pool.member
    daemon = process.running(member.state_dir)
    config = process.read_config(member.state_dir)
    urls = [config["etcd"], config["etcd"].removeprefix("http://")]  # one cluster, two names
    moves = _moves(member)

    def move(n: int) -> int:
        process.write_config(member.state_dir, {**config, "etcd": urls[(n + 1) % 2]})
        os.kill(daemon, signal.SIGHUP)
        wait_until("the daemon moved", lambda: _moves(member) > moves + n, 4 * TIMEOUT)
        return _threads(daemon)

    settled = max(move(i) for i in range(2))  # its executor's threads made
    assert max(move(i) for i in range(2, 5)) <= settled + 1, "old etcd clients left behind"
    process.write_config(member.state_dir, config)
    os.kill(daemon, signal.SIGHUP)
    assert process.running(member.state_dir) == daemon


def _moves(qh: QemuHost) -> int:
    log = process.ha_dir(qh.state_dir) / "daemon.log"
    return log.read_text().count("etcd moved") if log.exists() else 0


def _threads(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(ln for ln in status.splitlines() if ln.startswith("Threads:")).split()[1])


def test_a_dead_daemon_fences_its_host_by_the_watchdog(pool: Pool, guest: str) -> None:
    """serve and the daemon killed -9, the guest's QEMU left running: the daemon's watchdog
    kills the QEMU (journaled) before the lease expires; the master declares the host dead
    and restarts the VM on itself; the VM never ran twice."""
    x, member = pool.api(), pool.member
    uuid, home = x.VM.get_uuid(guest), x.host.get_by_uuid(member.host_uuid)
    daemon, qemu = process.running(member.state_dir), qemu_pid(member, uuid)
    assert daemon and qemu
    member.server.kill()
    os.kill(daemon, signal.SIGKILL)
    cut = time.time()
    wait_until("the watchdog killed the QEMU", lambda: not qemu_pid(member, uuid), TIMEOUT)
    fenced = [e for e in timeline.read([pool.log]) if e["vm"] == guest and e["event"] == "fence"]
    assert fenced and fenced[-1]["t"] - cut < TIMEOUT, fenced
    wait_until(
        "the VM restarted on the master",
        lambda: x.VM.get_power_state(guest) == "Running" and x.VM.get_resident_on(guest) != home,
        6 * TIMEOUT,
    )
    assert not x.host_metrics.get_live(x.host.get_metrics(home))
    pool.assert_never_twice()
    back_on_member(pool, guest)


def back_on_member(pool: Pool, guest: str) -> None:
    """The member's serve up again and re-armed, the VM moved back to it."""
    x, member = pool.api(), pool.member
    member.server.start(timeout=120)
    wait_until("the member re-armed", lambda: process.running(member.state_dir), 6 * TIMEOUT)
    home = x.host.get_by_uuid(member.host_uuid)
    wait_until("live again", lambda: x.host_metrics.get_live(x.host.get_metrics(home)), 60)
    x.VM.pool_migrate(guest, home, {"live": "true"})
    assert x.VM.get_resident_on(guest) == home


def test_cut_off_daemon_fences_before_its_lease_expires(pool: Pool, guest: str) -> None:
    x, member = pool.api(), pool.member
    uuid, home = x.VM.get_uuid(guest), x.host.get_by_uuid(member.host_uuid)
    daemon, qemu = process.running(member.state_dir), qemu_pid(member, uuid)
    assert daemon and qemu
    dead = f"http://127.0.0.1:{free_port()}"
    config = process.read_config(member.state_dir)
    config["etcd"] = dead
    config["peers"] = {
        u: {**w, "address": "127.0.0.1", "port": free_port(), "tls_port": free_port()}
        for u, w in config["peers"].items()
    }
    process.write_config(member.state_dir, config)
    cut = time.time()
    os.kill(daemon, signal.SIGHUP)
    wait_until("the member's QEMU killed", lambda: not qemu_pid(member, uuid), TIMEOUT * 3)
    wait_until("the daemon gone", lambda: not process.running(member.state_dir), TIMEOUT)
    wait_until("serve fenced", lambda: member.server.proc.poll() is not None, TIMEOUT)  # type: ignore[union-attr]
    events = timeline.read([pool.log])
    fenced = [e for e in events if e["vm"] == guest and e["event"] == "fence"]
    assert fenced and fenced[0]["t"] - cut < TIMEOUT, fenced  # before the lease could expire
    wait_until(
        "the VM restarted on the master",
        lambda: x.VM.get_power_state(guest) == "Running" and x.VM.get_resident_on(guest) != home,
        60,
    )
    restarted = [e for e in timeline.read([pool.log]) if e["vm"] == guest and e["event"] == "start"]
    assert restarted[-1]["t"] > fenced[0]["t"]
    pool.assert_never_twice()


def slowest_answer_during(pool: Pool, work: Any) -> float:
    """Run ``work()`` in a thread; the longest ``pool.get_all`` of the master meanwhile."""
    x, errors = pool.api(), []

    def run() -> None:
        try:
            work()
        except Exception as exc:  # shown by the test
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    slowest = 0.0
    while thread.is_alive():
        began = time.monotonic()
        x.pool.get_all()
        slowest = max(slowest, time.monotonic() - began)
        time.sleep(0.05)
    thread.join()
    assert not errors, errors
    return slowest


def test_disarm_stops_the_daemon_and_serve_answers_meanwhile(pool: Pool) -> None:
    """The master's daemon held (SIGSTOP) while pool.disable_ha waits for it to stop: the
    API answers meanwhile; once it runs again, it resigns and goes."""
    x, master = pool.api(), pool.master
    daemon = process.running(master.state_dir)
    assert daemon
    os.kill(daemon, signal.SIGSTOP)
    held = threading.Timer(TIMEOUT / 4, os.kill, (daemon, signal.SIGCONT))  # not long: its
    held.start()  # watchdog would fence the host
    try:
        assert slowest_answer_during(pool, x.pool.disable_ha) < 0.5
    finally:
        held.cancel()
        with contextlib.suppress(ProcessLookupError):
            os.kill(daemon, signal.SIGCONT)
    assert not process.running(master.state_dir)
    assert not process.running(pool.member.state_dir)
    assert not process.pid_path(master.state_dir).exists()
    assert master.server.proc.poll() is None  # type: ignore[union-attr]  # not fenced


def test_arming_does_not_hold_the_api(pool: Pool) -> None:
    """pool.enable_ha starts the master's daemon (a process) off serve's event loop."""
    x = pool.api()
    slowest = slowest_answer_during(pool, lambda: x.pool.enable_ha([], {"timeout": str(TIMEOUT)}))
    assert process.running(pool.master.state_dir)
    assert slowest < 0.5
    x.pool.disable_ha()
    assert not process.running(pool.master.state_dir)
