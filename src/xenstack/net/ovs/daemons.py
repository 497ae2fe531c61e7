"""The switch's daemons: the system's when one runs, else a private pair under the state.

A private switch keeps everything in ``STATE/ovs``: ``conf.db`` (created with
``ovsdb-tool``), the unix sockets, pid and log files. ``OVS_RUNDIR`` points there, so that a
switch another program runs on this machine is never touched. ``ovs-vswitchd`` runs in the
switch's network namespace when one is configured (``ovsdb-server`` needs none); the
datapath is the kernel's when its module loads, the userspace ``netdev`` one otherwise.
Unix socket paths are limited to 107 bytes, so a deep state directory is reached through a
short symbolic link in the temporary directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import socket
import tempfile
from pathlib import Path

from ..command import in_netns, run
from ..model import SwitchError

SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")
SYSTEM_DB = Path("/var/run/openvswitch/db.sock")
MAX_SOCKET_PATH = 90


def system_switch_running(path: Path = SYSTEM_DB) -> bool:
    """Whether the system's ovsdb-server answers on its unix socket."""
    if not path.exists():
        return False
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(1.0)
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True


def kernel_datapath_available() -> bool:
    if Path("/sys/module/openvswitch").exists():
        return True
    with contextlib.suppress(OSError):
        return os.system("modprobe -q openvswitch 2>/dev/null") == 0
    return False


class OvsDaemons:
    """The ovsdb-server and ovs-vswitchd a switch talks to.

    ``use_system`` (None: when one runs) picks the system's; otherwise :meth:`start` starts a
    private pair under ``state_dir/ovs`` and :meth:`stop` stops it. ``ovsdb_tcp``, when set
    (``ptcp:6640:127.0.0.1``), is a further remote of a private ovsdb-server.
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        netns: str = "",
        use_system: bool | None = None,
        ovsdb_tcp: str = "",
        datapath: str = "",
    ) -> None:
        self.state_dir = Path(state_dir)
        self.netns = netns
        self.ovsdb_tcp = ovsdb_tcp
        self.use_system = system_switch_running() if use_system is None else use_system
        self.datapath = datapath or ("system" if kernel_datapath_available() else "netdev")
        self.rundir = self._short_rundir()
        self.started = False

    def _short_rundir(self) -> Path:
        real = self.state_dir / "ovs"
        if self.use_system:
            return SYSTEM_DB.parent
        if len(str(real)) <= MAX_SOCKET_PATH - 30:
            return real
        tag = hashlib.sha256(str(real).encode()).hexdigest()[:10]
        return Path(tempfile.gettempdir()) / f"xenstack-ovs-{tag}"

    @property
    def db_socket(self) -> Path:
        return self.rundir / "db.sock"

    @property
    def remote(self) -> str:
        return f"unix:{self.db_socket}"

    @property
    def env(self) -> dict[str, str]:
        return {"OVS_RUNDIR": str(self.rundir), "OVS_DBDIR": str(self.rundir)}

    def vsctl(self, *args: str) -> list[str]:
        return ["ovs-vsctl", f"--db={self.remote}", "--timeout=30", *args]

    async def start(self) -> None:
        if self.use_system or self.started:
            return
        real = self.state_dir / "ovs"
        real.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.rundir != real:
            if self.rundir.is_symlink() and os.readlink(self.rundir) != str(real):
                self.rundir.unlink()
            if not self.rundir.exists():
                self.rundir.symlink_to(real)
        await self.stop_stale()
        db = self.rundir / "conf.db"
        if not db.exists():
            await run(["ovsdb-tool", "create", str(db), str(SCHEMA)])
        remotes = [f"--remote=punix:{self.db_socket}"]
        if self.ovsdb_tcp:
            remotes.append(f"--remote={self.ovsdb_tcp}")
        d = self.rundir
        await run(
            [
                "ovsdb-server",
                str(db),
                *remotes,
                f"--pidfile={d}/ovsdb-server.pid",
                f"--unixctl={d}/ovsdb-server.ctl",
                f"--log-file={d}/ovsdb-server.log",
                "--detach",
            ],
            env=self.env,
            detaches=True,
        )
        self.started = True  # from here on, stop() undoes what is started
        try:
            await run(self.vsctl("--no-wait", "init"), env=self.env)
            await self._start_vswitchd(d)
        except BaseException:
            await self.stop()
            raise

    async def _start_vswitchd(self, d: Path) -> None:
        await run(
            in_netns(
                self.netns,
                [
                    "env",
                    f"OVS_RUNDIR={d}",
                    "ovs-vswitchd",
                    self.remote,
                    f"--pidfile={d}/ovs-vswitchd.pid",
                    f"--unixctl={d}/ovs-vswitchd.ctl",
                    f"--log-file={d}/ovs-vswitchd.log",
                    "--detach",
                ],
            ),
            env=self.env,
            detaches=True,
        )

    def _pid(self, name: str) -> int:
        try:
            return int((self.rundir / f"{name}.pid").read_text().strip())
        except (OSError, ValueError):
            return 0

    async def stop_stale(self) -> None:
        """Stop daemons a previous run left (a toolstack killed with -9)."""
        for name in ("ovs-vswitchd", "ovsdb-server"):
            pid = self._pid(name)
            if pid and _alive(pid) and _is(pid, name):
                await self._terminate(name, pid)

    async def _terminate(self, name: str, pid: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        for _ in range(200):
            if not _alive(pid):
                break
            await asyncio.sleep(0.05)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        (self.rundir / f"{name}.pid").unlink(missing_ok=True)

    async def stop(self) -> None:
        if self.use_system or not self.started:
            return
        for name in ("ovs-vswitchd", "ovsdb-server"):
            pid = self._pid(name)
            if pid:
                await self._terminate(name, pid)
        self.started = False
        if self.rundir != self.state_dir / "ovs" and self.rundir.is_symlink():
            self.rundir.unlink()

    def pids(self) -> dict[str, int]:
        return {n: self._pid(n) for n in ("ovsdb-server", "ovs-vswitchd")}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
            return False
    return True


def _is(pid: int, name: str) -> bool:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip().startswith(name[:15])
    except OSError:
        return False


async def wait_for_socket(path: Path, timeout: float = 60.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not path.exists():
        if loop.time() > deadline:
            raise SwitchError(f"{path} did not appear within {timeout:.0f} s")
        await asyncio.sleep(0.02)
