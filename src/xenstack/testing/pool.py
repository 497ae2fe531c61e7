"""Start a simulated pool in a background thread, or ``xenstack serve`` as a child process."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.clock import Clock
from ..core.config import ToolstackConfig, from_environment
from ..net import Switch
from ..rpc.http import HttpConfig
from ..toolstack import Toolstack
from ..xenops.interface import Backend


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RunningPool:
    """What a test needs to reach a running toolstack."""

    url: str
    password: str
    state_dir: Path | None
    port: int
    socket_path: Path | None = None
    toolstack: Toolstack | None = None
    loop: asyncio.AbstractEventLoop | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def jsonrpc_url(self) -> str:
        return self.url.rstrip("/") + "/jsonrpc"

    def call(self, fn: Any) -> Any:
        """Run ``fn(toolstack)`` on the server's event loop and return its result."""
        assert self.loop is not None and self.toolstack is not None
        ts = self.toolstack

        async def run() -> Any:
            return fn(ts)

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(30)


STOP_WAIT = 30.0  # seconds a simulated pool's toolstack has to stop


@contextmanager
def simulated_pool(
    state_dir: Path | None = None,
    *,
    password: str = "xenstack",
    session_timeout: float | None = None,
    hosts: int = 1,
    sim_storage: bool = False,
    shared_sr: bool | None = None,
    guest_agent_delay: float | None = None,
    toolstack_config: ToolstackConfig | None = None,
    clock: Clock | None = None,
    backend: Backend | None = None,
    switch: Switch | None = None,
    **config: Any,
) -> Iterator[RunningPool]:
    """A toolstack serving on 127.0.0.1 on a free port, in a thread of this process.

    ``session_timeout`` (seconds) overrides how long an idle session lives; ``config`` goes to
    :class:`HttpConfig` (``socket_path``, ``idle_timeout``, ``max_body``...). A fresh state
    holds a pool of ``hosts`` hosts; ``sim_storage`` keeps storage sizes-only, and
    ``shared_sr`` (by default: as ``sim_storage``) adds a shared NFS-like SR.

    The toolstack's configuration is ``toolstack_config`` (default: the defaults) with what the
    ``XENSTACK_*`` environment sets, then ``guest_agent_delay`` (seconds before a simulated
    guest reports) when given; ``clock`` and ``backend`` go to the toolstack as they are.
    """
    port = free_port()
    started = threading.Event()
    box: dict[str, Any] = {}
    http = HttpConfig(port=port, **config)
    settings = kit_config(toolstack_config, guest_agent_delay=guest_agent_delay)

    async def main() -> None:
        toolstack = Toolstack(
            state_dir, config=settings, clock=clock, backend=backend, switch=switch
        )
        if session_timeout is not None:
            toolstack.auth.idle_timeout = session_timeout
        if not toolstack.initialised:
            shared = sim_storage if shared_sr is None else shared_sr
            toolstack.initialise(password, hosts, shared_sr=shared, sim_storage=sim_storage)
        await toolstack.start(http)
        stop = asyncio.Event()
        box.update(toolstack=toolstack, loop=asyncio.get_running_loop(), stop=stop)
        started.set()
        await stop.wait()
        await toolstack.stop()

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # surfaced to the caller below
            box["error"] = exc
            started.set()

    thread = threading.Thread(target=run, name="xenstack-pool", daemon=True)
    thread.start()
    started.wait(30)
    if "error" in box:
        raise RuntimeError("the simulated pool failed to start") from box["error"]
    pool = RunningPool(
        f"http://127.0.0.1:{port}/",
        password,
        state_dir,
        port,
        http.socket_path,
        box["toolstack"],
        box["loop"],
    )
    try:
        yield pool
    finally:
        box["loop"].call_soon_threadsafe(box["stop"].set)
        thread.join(STOP_WAIT)
        if thread.is_alive():  # a stop that hangs is a defect, not a slow teardown
            raise RuntimeError(f"the simulated pool did not stop within {STOP_WAIT:.0f} s")


def kit_config(
    base: ToolstackConfig | None = None, *, guest_agent_delay: float | None = None
) -> ToolstackConfig:
    """``base`` with the ``XENSTACK_*`` environment applied, then the kit's own options."""
    settings = from_environment(os.environ, base)
    if guest_agent_delay is not None:
        settings = dataclasses.replace(settings, guest_agent_delay=guest_agent_delay)
    return settings


class ServerProcess:
    """``xenstack serve`` as a child process, to be stopped or killed by a test."""

    def __init__(self, state_dir: Path, port: int, extra_args: list[str] | None = None) -> None:
        self.state_dir = state_dir
        self.port = port
        self.extra_args = extra_args or []
        self.proc: subprocess.Popen[bytes] | None = None
        # its stderr goes to a file, never a pipe nobody reads (a chatty server would block)
        self.stderr = tempfile.TemporaryFile(prefix="xenstack-serve-")  # noqa: SIM115 (lives as long as the server)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def stderr_text(self, tail: int = 0) -> str:
        """What the server wrote to stderr so far (its last ``tail`` characters if given)."""
        self.stderr.flush()
        self.stderr.seek(0)
        text = self.stderr.read().decode(errors="replace")
        return text[-tail:] if tail else text

    @property
    def password(self) -> str:
        return (self.state_dir / "root-password").read_text().strip()

    def start(self, timeout: float = 30.0) -> None:
        cmd = [
            sys.executable,
            "-m",
            "xenstack.cli.main",
            "serve",
            "--state-dir",
            str(self.state_dir),
            "--port",
            str(self.port),
            *self.extra_args,
        ]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self.stderr)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"xenstack serve exited: {self.stderr_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError("xenstack serve did not start listening")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)


@contextmanager
def server_process(
    state_dir: Path | None = None, extra_args: list[str] | None = None
) -> Iterator[ServerProcess]:
    """A started ``xenstack serve`` child; stopped with SIGTERM at the end."""
    with tempfile.TemporaryDirectory(prefix="xenstack-") as tmp:
        server = ServerProcess(state_dir or Path(tmp) / "state", free_port(), extra_args)
        server.start()
        try:
            yield server
        finally:
            server.stop()
