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

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"


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
        return ",".join(f"{m.name}=http://{self.listen}:{m.peer_port}" for m in self.members)

    def start_member(self, i: int, state: str = "new") -> None:
        m = self.members[i]
        if m.proc is not None and m.proc.poll() is None:
            return
        m.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            ETCD,
            "--name",
            m.name,
            "--data-dir",
            str(m.data_dir),
            "--listen-client-urls",
            f"http://{self.listen}:{m.client_port}",
            "--advertise-client-urls",
            f"http://{self.listen}:{m.client_port}",
            "--listen-peer-urls",
            f"http://{self.listen}:{m.peer_port}",
            "--initial-advertise-peer-urls",
            f"http://{self.listen}:{m.peer_port}",
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
                try:
                    url = self.members[i].url + "/health"
                    with urllib.request.urlopen(url, timeout=2) as reply:
                        if b'"true"' in reply.read():
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"etcd member {i} not healthy")
                time.sleep(0.1)

    def stop(self) -> None:
        for i in range(len(self.members)):
            self.stop_member(i)


@contextmanager
def etcd_cluster(root: Path, size: int = 3) -> Iterator[EtcdCluster]:
    """A started cluster of ``size`` members under ``root``; all stopped at the end."""
    if shutil.which(ETCD) is None:
        raise FileNotFoundError(ETCD)
    root.mkdir(parents=True, exist_ok=True)
    cluster = EtcdCluster(root)
    for i in range(size):
        cluster.members.append(
            EtcdMember(f"xp-etcd{i}", root / f"etcd{i}", _free_port(), _free_port())
        )
    try:
        for i in range(size):
            cluster.start_member(i)
        cluster.wait_healthy()
        yield cluster
    finally:
        cluster.stop()
