"""A pool of ``xenstack serve`` hosts on one etcd cluster, with HA, for the HA tests.

Every host journals its domains' lives into one shared file (``--domain-log``), so a test can
check, from the timeline of run intervals across hosts, that no VM ever ran on two hosts at
once and that every protected VM runs again.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import XenAPI
from systools import require_tool

from xenstack.impl.pool import timeline
from xenstack.testing import ServerProcess, free_port
from xenstack.testing.etcd import EtcdCluster, etcd_cluster


@dataclass
class HaPool:
    cluster: EtcdCluster
    hosts: list[ServerProcess]
    log: Path
    password: str
    killed: dict[str, float] = field(default_factory=dict)  # pid -> when killed
    uuids: list[str] = field(default_factory=list)  # of each host, in the order of hosts

    def ref(self, i: int, x: Any = None) -> str:
        """The host ref of ``hosts[i]`` in the pool's database."""
        return str((x or self.api()).host.get_by_uuid(self.uuids[i]))

    def api(self, server: ServerProcess | None = None) -> Any:
        s = XenAPI.Session((server or self.hosts[0]).url)
        s.xenapi.login_with_password("root", self.password, "1.0", "ha-tests")
        return s.xenapi

    def kill(self, server: ServerProcess) -> float:
        """Power the host off: its process (and the simulator's domains) gone at once."""
        assert server.proc is not None
        pid = str(server.proc.pid)
        server.kill()
        self.killed[pid] = time.time()
        return self.killed[pid]

    def master_api(self, timeout: float = 60) -> tuple[ServerProcess, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for server in self.hosts:
                if server.proc is None or server.proc.poll() is not None:
                    continue
                try:
                    x = self.api(server)
                    x.pool.get_all()
                    return server, x
                except (OSError, XenAPI.Failure):
                    pass
            time.sleep(0.1)
        raise TimeoutError("no master answers")

    def runs(self) -> dict[str, list[timeline.Interval]]:
        return timeline.intervals(timeline.read([self.log]), self.killed)

    def assert_never_twice(self) -> None:
        bad = timeline.overlaps(self.runs())
        assert not bad, f"VMs ran on two hosts at once: {bad}"


def wait_until(what: str, test: Any, timeout: float = 60.0) -> float:
    """Poll ``test()`` until it is true; the seconds it took."""
    start = time.monotonic()
    while True:
        try:
            if test():
                return time.monotonic() - start
        except (OSError, XenAPI.Failure):
            pass
        if time.monotonic() - start > timeout:
            raise TimeoutError(what)
        time.sleep(0.05)


def _show_logs(hosts: list[ServerProcess]) -> None:
    """Print what each host logged (pytest shows it for a failed test)."""
    for server in hosts:
        if server.proc is not None:
            if server.proc.poll() is None:
                server.stop()
            print(f"--- {server.state_dir.name}:\n{server.stderr_text(3000)}")


@contextmanager
def ha_pool(root: Path, n: int = 3, timeout: float = 4, lease: float = 3) -> Iterator[HaPool]:
    require_tool("etcd")
    log = root / "domains.log"
    with ExitStack() as stack:
        cluster = stack.enter_context(etcd_cluster(root / "etcd"))
        # fixed ports: a host restarted (elected, demoted) is found where it was
        args = ["--etcd", cluster.urls, "--master-lease", str(lease), "--domain-log", str(log)]
        hosts = []
        for i in range(n):
            https = ["--https-port", str(free_port())]
            server = ServerProcess(root / f"xp-host{i}", free_port(), [*args, *https])
            server.start()
            stack.callback(server.stop)
            hosts.append(server)
        pool = HaPool(cluster, hosts, log, hosts[0].password)
        stack.callback(_show_logs, hosts)
        for i, server in enumerate(hosts):
            s = XenAPI.Session(server.url)
            s.xenapi.login_with_password("root", server.password, "1.0", "ha-tests")
            (me,) = s.xenapi.host.get_all()
            pool.uuids.append(s.xenapi.host.get_uuid(me))
            if i:
                s.xenapi.pool.join(f"127.0.0.1:{hosts[0].port}", "root", pool.password)
        pool.api().pool.enable_ha([], {"timeout": str(timeout)})
        yield pool
