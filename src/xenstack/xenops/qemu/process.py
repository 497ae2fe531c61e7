"""QEMU processes: launched detached, found again after a toolstack restart, ended.

QEMU is started with ``-daemonize``: the first process exits once the domain is built (its
exit status and stderr say whether QEMU could build it, in QEMU's own words), and the domain
runs on in a process of its own session, a child of init, so it outlives ``xenstack serve``
and leaves no zombie. Its pid is in the run directory's ``qemu.pid``; a pid is trusted only
while ``/proc/<pid>/cmdline`` still names that run directory (pids are reused).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

from ..interface import XenopsError


class QemuFailed(XenopsError):
    """QEMU could not build the domain; the message is QEMU's own."""


async def launch(argv: list[str], log: str, netns: str = "") -> None:
    """Run ``argv`` (a ``-daemonize`` QEMU) to the point where the domain exists.

    QEMU's output goes to the file ``log`` (a pipe would stay open in the daemon)."""
    full = ["ip", "netns", "exec", netns, *argv] if netns else argv
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        proc = await asyncio.create_subprocess_exec(
            *full, stdin=asyncio.subprocess.DEVNULL, stdout=fd, stderr=fd, start_new_session=True
        )
    except FileNotFoundError as exc:
        raise QemuFailed(f"{full[0]}: not found") from exc
    finally:
        os.close(fd)
    if await proc.wait() != 0:
        with open(log, errors="replace") as f:
            text = f.read().strip()
        raise QemuFailed(text[-2000:] or f"qemu exited with status {proc.returncode}")


def read_pid(pidfile: str, run_dir: str) -> int | None:
    """The pid in ``pidfile`` if that process is alive and is this run directory's QEMU."""
    try:
        with open(pidfile) as f:
            pid = int(f.read().strip() or "0")
    except (OSError, ValueError):
        return None
    return pid if pid > 0 and is_ours(pid, run_dir) else None


def is_ours(pid: int, run_dir: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z" and run_dir.encode() in cmdline


def kill(pid: int, run_dir: str) -> None:
    """SIGKILL the domain's QEMU if it is still ours."""
    if is_ours(pid, run_dir):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


async def wait_gone(pid: int, run_dir: str, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for the process to end; whether it did."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay = 0.005
    while is_ours(pid, run_dir):
        if loop.time() > deadline:
            return False
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.1)
    return True


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of the process, in seconds (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
