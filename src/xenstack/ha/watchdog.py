"""The HA daemon's watchdog, as xhad arms the host's watchdog: no daemon, no guests.

A QEMU host's guests outlive both ``xenstack serve`` and the HA daemon. Were the daemon
killed (``kill -9``, a crash, the OOM killer) its lease would expire while the guests run
on, and the master would restart them elsewhere: two running copies. So the daemon forks
this watchdog before it starts any thread: the watchdog holds the read end of a pipe the
daemon kicks every round. Once kicked, on the pipe's end (the daemon is gone, however it
went) or when no kick came for ``deadline`` seconds (the daemon hangs) it fences the host
itself (its QEMUs, then serve), before the lease can expire. A daemon that stops cleanly (disarm)
sends ``DISARM`` first, and the watchdog ends without fencing.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
from collections.abc import Callable

KICK, DISARM = b"k", b"d"


def watch(fd: int, deadline: float, fence: Callable[[], None]) -> bool:
    """Read kicks from ``fd`` until ``DISARM`` (False) or a fence (True). Armed by the first
    kick (the daemon's first round, its lease taken): a daemon that fails before has no
    lease that could expire under its guests, and is not fenced for it."""
    armed = False
    while True:
        ready, _, _ = select.select([fd], [], [], deadline if armed else None)
        data = os.read(fd, 4096) if ready else b""
        if DISARM in data or (not data and not armed):
            return False
        if not data:  # the daemon went (end of the pipe) or hangs (no kick in time)
            fence()
            return True
        armed = True


class Watchdog:
    """The daemon's end: kick it every round, disarm it before a clean exit."""

    def __init__(self, fd: int, pid: int) -> None:
        self.fd = fd
        self.pid = pid

    def kick(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self.fd, KICK)

    def disarm(self) -> None:
        """The daemon stops cleanly: the watchdog ends without fencing."""
        if self.fd < 0:
            return
        with contextlib.suppress(OSError):
            os.write(self.fd, DISARM)
        os.close(self.fd)
        self.fd = -1
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)


def start(deadline: float, fence: Callable[[], None]) -> Watchdog:
    """Fork the watchdog (before any thread is started: only this one is copied)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the watchdog
        code = 1
        try:
            os.close(write)
            for sig in (signal.SIGHUP, signal.SIGTERM):  # the daemon's signals, not its own
                signal.signal(sig, signal.SIG_IGN)
            code = 0 if not watch(read, deadline, fence) else 75
        finally:
            os._exit(code)
    os.close(read)
    return Watchdog(write, pid)
