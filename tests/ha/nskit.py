"""An HA pool whose hosts and etcd members live in network namespaces (needs root).

Nodes ``h0..hN`` (xenstack hosts), ``e0..e2`` (etcd members) and ``c`` (the test's client)
are namespaces with a veth each to one bridge (``xenstack.testing.netns``), so cutting a
host's link, dropping its packets to etcd or delaying them is real. Every host journals its
domains into one shared file, as in :mod:`hakit`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import XenAPI
from systools import require_root, require_tool

from xenstack.impl.pool import timeline
from xenstack.testing.etcd import etcd_cluster
from xenstack.testing.netns import Topology

PORT, HTTPS = 8080, 8443


@dataclass
class NsHost:
    net: Topology
    node: str
    state_dir: Path
    args: list[str]
    proc: subprocess.Popen[bytes] | None = None

    @property
    def ip(self) -> str:
        return self.net.ip(self.node)

    @property
    def url(self) -> str:
        return f"http://{self.ip}:{PORT}/"

    @property
    def log(self) -> Path:
        return self.state_dir.parent / f"{self.state_dir.name}.log"

    @property
    def password(self) -> str:
        return (self.state_dir / "root-password").read_text().strip()

    def start(self, timeout: float = 60) -> None:
        cmd = [*self.net.exec(self.node), sys.executable, "-m", "xenstack.cli.main", "serve"]
        cmd += ["--state-dir", str(self.state_dir), "--listen", self.ip, "--port", str(PORT)]
        cmd += ["--https-port", str(HTTPS), *self.args]
        # a file, not a pipe: a pipe nobody reads stalls the host once it fills
        with self.log.open("ab") as err:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("serve exited: " + self.log.read_text()[-4000:])
            if self.net.client(_connects, self.ip, PORT):
                return
            time.sleep(0.1)
        raise TimeoutError("serve did not listen")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.alive():
            assert self.proc is not None
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


def _connects(ip: str, port: int) -> bool:
    try:
        socket.create_connection((ip, port), 0.5).close()
        return True
    except OSError:
        return False


@dataclass
class NsPool:
    net: Topology
    hosts: list[NsHost]
    log: Path
    password: str
    uuids: list[str] = field(default_factory=list)
    killed: dict[str, float] = field(default_factory=dict)

    def call(self, fn: Any, *args: Any) -> Any:
        """Run ``fn(api, *args)`` from the client's namespace against the master."""
        return self.net.client(self._call, fn, args)

    def _call(self, fn: Any, args: tuple[Any, ...]) -> Any:
        last: Exception | None = None
        for host in self.hosts:
            if not host.alive():
                continue
            try:
                s = XenAPI.Session(host.url)
                s.xenapi.login_with_password("root", self.password, "1.0", "ns-tests")
                return fn(s.xenapi, *args)
            except (OSError, XenAPI.Failure) as exc:
                redirected = isinstance(exc, XenAPI.Failure) and exc.details[0] == "HOST_IS_SLAVE"
                last = exc if last is None or not redirected else last  # the master's own words
        raise last or OSError("no host answers")

    def ref(self, i: int) -> str:
        return str(self.call(lambda x: x.host.get_by_uuid(self.uuids[i])))

    def runs(self) -> dict[str, list[timeline.Interval]]:
        return timeline.intervals(timeline.read([self.log]), self.killed)

    def assert_never_twice(self) -> None:
        bad = timeline.overlaps(self.runs())
        assert not bad, f"VMs ran on two hosts at once: {bad}"


def wait_for(what: str, test: Any, timeout: float = 60) -> float:
    start = time.monotonic()
    while True:
        try:
            if test():
                return time.monotonic() - start
        except (OSError, XenAPI.Failure):
            pass
        if time.monotonic() - start > timeout:
            raise TimeoutError(what)
        time.sleep(0.1)


@contextmanager
def ns_pool(root: Path, n: int = 3, timeout: float = 4) -> Iterator[NsPool]:
    require_root()
    require_tool("etcd")
    nodes = [*(f"h{i}" for i in range(n)), "e0", "e1", "e2", "c"]
    log = root / "domains.log"
    with ExitStack() as stack:
        net = stack.enter_context(Topology(f"xp{os.getpid():x}", nodes))  # one per test process
        places = [(net.ip(f"e{i}"), net.exec(f"e{i}")) for i in range(3)]
        cluster = stack.enter_context(etcd_cluster(root / "etcd", places=places))
        args = ["--etcd", cluster.urls, "--master-lease", "3", "--domain-log", str(log)]
        hosts = [NsHost(net, f"h{i}", root / f"xp-host{i}", args) for i in range(n)]
        for host in hosts:
            host.start()
            stack.callback(host.stop)
        pool = NsPool(net, hosts, log, hosts[0].password)

        def join(i: int) -> None:
            s = XenAPI.Session(hosts[i].url)
            s.xenapi.login_with_password("root", hosts[i].password, "1.0", "ns-tests")
            (me,) = s.xenapi.host.get_all()
            pool.uuids.append(s.xenapi.host.get_uuid(me))
            if i:
                s.xenapi.pool.join(f"{hosts[0].ip}:{PORT}", "root", pool.password)

        for i in range(n):
            net.client(join, i)
        pool.call(lambda x: x.pool.enable_ha([], {"timeout": str(int(timeout))}))
        yield pool
