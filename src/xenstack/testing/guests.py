"""Real test guests for tests and benchmarks: the guest image, a qemu host, the console.

- :func:`guest_image_dir` builds (or finds in its cache) the test guest with
  ``tools/test-guest/build.sh`` and returns its directory.
- :func:`qemu_host` gives a ``xenstack serve`` of a state made by
  ``xenstack init --backend qemu``, its QEMUs in a private :func:`guest_network`.
- :class:`Console` types into a guest's serial console and waits for what it prints,
  reading the console log the backend keeps per domain.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid as uuidlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .guestnet import GuestNetwork, guest_network
from .pool import ServerProcess, free_port

REPO = Path(__file__).resolve().parents[3]
BUILD_SCRIPT = REPO / "tools" / "test-guest" / "build.sh"


@functools.cache
def guest_image_dir() -> Path:
    """The test guest's files (vmlinux, initrd.img, disk.raw, cmdline), built if needed
    (once per process: the script's cache check itself asks apt)."""
    out = subprocess.run(
        ["sh", str(BUILD_SCRIPT)], check=True, capture_output=True, text=True, timeout=300
    )
    return Path(out.stdout.strip().splitlines()[-1])


def run_dir(state_dir: Path, vm_uuid: str) -> Path:
    """Where the qemu backend keeps a domain's sockets and logs."""
    return state_dir / "run" / "qemu" / vm_uuid


@dataclass
class QemuHost:
    server: ServerProcess
    network: GuestNetwork
    state_dir: Path
    host_uuid: str = ""  # its host's uuid (set by qemu_pool)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def password(self) -> str:
        return self.server.password


@contextmanager
def qemu_host(
    prefix: str = "xq",
    state_dir: Path | None = None,
    init_args: tuple[str, ...] = (),
    serve_args: tuple[str, ...] = (),
) -> Iterator[QemuHost]:
    """``xenstack init --backend qemu`` then ``xenstack serve --netns``, on a private net.

    ``init_args`` go to ``xenstack init`` (``--hosts 2 --shared-sr`` for a pool of one
    toolstack), ``serve_args`` to ``xenstack serve``."""
    guest_image_dir()
    with guest_network(prefix) as net, tempfile.TemporaryDirectory(prefix=f"{prefix}-") as tmp:
        os.chmod(tmp, 0o711)  # a root toolstack's QEMUs run as a user of their own (.runas)
        state = state_dir or Path(tmp) / "state"
        cli = [sys.executable, "-m", "xenstack.cli.main"]
        init = [*cli, "init", "--state-dir", str(state), "--backend", "qemu", *init_args]
        subprocess.run(init, check=True, timeout=120)
        server = ServerProcess(state, free_port(), ["--netns", net.netns, *serve_args])
        server.start(timeout=120)
        try:
            yield QemuHost(server, net, state)
        finally:
            server.stop()
            stop_guests(state)


@contextmanager
def qemu_pool(prefix: str = "xp", size: int = 2) -> Iterator[list[QemuHost]]:
    """A pool of ``size`` toolstacks of their own (``xenstack serve`` processes with the
    QEMU backend, each on its own guest network, HTTPS on for the master's calls to its
    members' backends), the first the master, the others joined to it; and a shared SR on
    real files (an NFS-like directory every host sees), the pool's default SR."""
    with contextlib.ExitStack() as stack:
        hosts = [
            stack.enter_context(qemu_host(f"{prefix}{i}", serve_args=("--https-port", "0")))
            for i in range(size)
        ]
        for qh in hosts:
            mine = _login(qh).xenapi
            qh.host_uuid = mine.host.get_uuid(mine.host.get_all()[0])
            if qh is not hosts[0]:
                mine.pool.join(f"127.0.0.1:{hosts[0].server.port}", "root", hosts[0].password)
        master = _login(hosts[0])
        export = stack.enter_context(tempfile.TemporaryDirectory(prefix=f"{prefix}-nfs-"))
        x = master.xenapi
        sr = x.SR.create(
            x.pool.get_master(x.pool.get_all()[0]), {"path": export}, "0", "shared",
            "", "nfs", "user", True, {},
        )  # fmt: skip
        x.pool.set_default_SR(x.pool.get_all()[0], sr)
        yield hosts


def _login(host: QemuHost) -> Any:
    import XenAPI  # the PyPI SDK: what a client of the pool uses

    session = XenAPI.Session(host.url)
    session.xenapi.login_with_password("root", host.password, "1.0", "xenstack-tests")
    return session


def stop_guests(state_dir: Path) -> None:
    """Kill the QEMUs a state left running (tests end with no guest behind), by pid file."""
    root = state_dir / "run" / "qemu"
    if not root.is_dir():
        return
    for entry in root.iterdir():
        try:
            pid = int((entry / "qemu.pid").read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if str(entry).encode() in cmdline:
            os.kill(pid, 9)


def install(x: Any, name: str) -> str:
    """``xe vm-install template="xenstack test guest"``: clone, provision, a VIF on xenbr0."""
    template = x.VM.get_by_name_label("xenstack test guest")[0]
    vm = x.VM.clone(template, name)
    # the build of this checkout, not whatever build.sh last pointed the shared cache's
    # "current" at (other checkouts on the machine move it)
    image = guest_image_dir()
    x.VM.set_PV_kernel(vm, str(image / "vmlinux"))
    x.VM.set_PV_ramdisk(vm, str(image / "initrd.img"))
    x.VM.provision(vm)
    net = next(n for n in x.network.get_all() if x.network.get_bridge(n) == "xenbr0")
    vif = {"VM": vm, "network": net, "device": "0", "MAC": "", "MTU": "1500", "other_config": {}}
    x.VIF.create({**vif, "qos_algorithm_type": "", "qos_algorithm_params": {}})
    return str(vm)


STATUS = "XSG-"  # the test guest's status lines on its console (tools/test-guest)
TICK = "XQ-TICK "  # the lines a test's background counter writes to the guest's console
NOISE = (STATUS, TICK)  # lines that may land amid a command's output, and are not of it


class Console:
    """A guest's serial console: type a command, wait for its output in console.log."""

    def __init__(self, run: Path) -> None:
        self.run = run
        self.log = run / "console.log"

    def text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for(self, marker: str, timeout: float = 90.0, start: int = 0) -> str:
        """The log's text from ``start`` once ``marker`` is in it (TimeoutError if not)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.text()[start:]
            if marker in text:
                return text
            time.sleep(0.05)
        raise TimeoutError(f"{marker!r} not on the console of {self.run}:\n{self.text()[-2000:]}")

    def type(self, command: str) -> None:
        """Type ``command`` into the guest's shell, waiting for nothing."""
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(self.run / "serial.sock"))
            s.sendall(f"{command}\n".encode())

    def run_command(self, command: str, timeout: float = 90.0) -> str:
        """Run ``command`` in the guest's shell; what it printed (before the end marker),
        without the status lines the test guest writes to its console meanwhile."""
        tag = uuidlib.uuid4().hex[:8]
        start = len(self.text())
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(self.run / "serial.sock"))
            s.sendall(f"{command}; echo XQ-END-$((1+0)){tag}\n".encode())
            text = self.wait_for(f"XQ-END-1{tag}", timeout, start)
        return _output(text.split(f"XQ-END-1{tag}")[0], f")){tag}")


def _output(body: str, echoed: str) -> str:
    """A command's output from the console text before its end marker: after the tty's echo
    of the command (``echoed`` is its end, however the tty wrapped it), without the lines
    of :data:`NOISE`. A noise line written while the echo was printed lands glued to the
    echo's line, and the echo's own line end then stands on a line of its own: that one
    goes too."""
    if echoed in body:
        body = body.rsplit(echoed, 1)[1]
    first, _, rest = body.partition("\n")
    if first.strip() and rest.startswith(("\n", "\r\n")):
        rest = rest.split("\n", 1)[1]  # the echo's line end, after the glued noise
    return "".join(line for line in rest.splitlines(True) if not line.startswith(NOISE))
