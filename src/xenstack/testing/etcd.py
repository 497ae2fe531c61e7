"""A three-member etcd cluster on loopback ports chosen free at run time, under a directory.

    with etcd_cluster(tmp_path) as cluster:
        serve("--etcd", cluster.urls)
        cluster.stop_member(0)      # quorum kept
        cluster.start_member(0)

Each member is Debian's ``etcd`` (v3.4) as a child process with its own data directory;
everything is stopped, by process id, when the block ends.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ETCD = "etcd"


def _free_port() -> int:
    from .pool import free_port

    return free_port()


@dataclass
class EtcdMember:
    name: str
    data_dir: Path
    client_port: int
    peer_port: int
    proc: subprocess.Popen[bytes] | None = None
    host: str = "127.0.0.1"
    wrap: list[str] = field(default_factory=list)  # e.g. ["ip", "netns", "exec", NS]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.client_port}"


@dataclass
class EtcdCluster:
    root: Path
    members: list[EtcdMember] = field(default_factory=list)
    listen: str = "127.0.0.1"

    @property
    def urls(self) -> str:
        """The client URLs, comma-separated, as ``xenstack serve --etcd`` takes them."""
        return ",".join(m.url for m in self.members)

    def _initial(self) -> str:
        return ",".join(f"{m.name}=http://{m.host}:{m.peer_port}" for m in self.members)

    def start_member(self, i: int, state: str = "new") -> None:
        m = self.members[i]
        if m.proc is not None and m.proc.poll() is None:
            return
        m.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            *m.wrap,
            ETCD,
            "--name",
            m.name,
            "--data-dir",
            str(m.data_dir),
            "--listen-client-urls",
            m.url,
            "--advertise-client-urls",
            m.url,
            "--listen-peer-urls",
            f"http://{m.host}:{m.peer_port}",
            "--initial-advertise-peer-urls",
            f"http://{m.host}:{m.peer_port}",
            "--initial-cluster",
            self._initial(),
            "--initial-cluster-state",
            state,
            "--initial-cluster-token",
            f"xenstack-{os.getpid()}-{self.members[0].client_port}",
            "--heartbeat-interval",
            "50",
            "--election-timeout",
            "500",
            "--log-level",
            "error",
        ]
        log = open(self.root / f"{m.name}.log", "ab")  # noqa: SIM115  (kept open by the child)
        m.proc = subprocess.Popen(cmd, stdout=log, stderr=log, start_new_session=True)
        log.close()

    def stop_member(self, i: int, sig: int = signal.SIGKILL) -> None:
        m = self.members[i]
        if m.proc is not None and m.proc.poll() is None:
            os.kill(m.proc.pid, sig)
            m.proc.wait(30)
        m.proc = None

    def wait_healthy(self, timeout: float = 60.0, members: list[int] | None = None) -> None:
        deadline = time.monotonic() + timeout
        wanted = members if members is not None else range(len(self.members))
        for i in wanted:
            while True:
                if self._healthy(self.members[i]):
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"etcd member {i} not healthy")
                time.sleep(0.1)

    @staticmethod
    def _healthy(m: EtcdMember) -> bool:
        if m.wrap:  # in a namespace: ask from there
            cmd = [*m.wrap, "etcdctl", "--endpoints", m.url, "endpoint", "health"]
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
            return done.returncode == 0
        try:
            with urllib.request.urlopen(m.url + "/health", timeout=2) as reply:
                return b'"true"' in reply.read()
        except OSError:
            return False

    def stop(self) -> None:
        for i in range(len(self.members)):
            self.stop_member(i)


@contextmanager
def etcd_cluster(
    root: Path, size: int = 3, places: list[tuple[str, list[str]]] | None = None
) -> Iterator[EtcdCluster]:
    """A started cluster of ``size`` members under ``root``; all stopped at the end.
    ``places`` gives each member its address and command prefix (a network namespace)."""
    if shutil.which(ETCD) is None:
        raise FileNotFoundError(ETCD)
    root.mkdir(parents=True, exist_ok=True)
    cluster = EtcdCluster(root)
    for i in range(size):
        host, wrap = places[i] if places else ("127.0.0.1", [])
        ports = (2379, 2380) if places else (_free_port(), _free_port())
        cluster.members.append(
            EtcdMember(f"xp-etcd{i}", root / f"etcd{i}", *ports, host=host, wrap=wrap)
        )
    try:
        for i in range(size):
            cluster.start_member(i)
        cluster.wait_healthy()
        yield cluster
    finally:
        cluster.stop()
