"""Fencing from outside the toolstack: kill this host's QEMUs by their pid files.

A QEMU host's domains are daemonized QEMUs under ``<state>/run/qemu/<vm uuid>/`` (a
``qemu.pid`` beside the domain's files). A pid is trusted only while
``/proc/<pid>/cmdline`` still names that directory (pids are reused), as the backend trusts
it. Each stop is journaled to the domain log (``--domain-log``, one JSON line, O_APPEND) as
the in-process fence journals it, so a timeline shows when the guest stopped running.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

import orjson


def is_ours(pid: int, run_dir: str) -> bool:
    """``pid`` is alive (not a zombie) and its command line names ``run_dir``."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z" and run_dir.encode() in cmdline


def domains(run_root: str) -> dict[str, tuple[int, str]]:
    """vm uuid -> (pid, run dir) of every running QEMU under ``run_root``."""
    found: dict[str, tuple[int, str]] = {}
    with contextlib.suppress(OSError):
        for name in os.listdir(run_root):
            run_dir = os.path.join(run_root, name)
            try:
                with open(os.path.join(run_dir, "qemu.pid")) as f:
                    pid = int(f.read().strip() or "0")
            except (OSError, ValueError):
                continue
            if pid > 0 and is_ours(pid, run_dir):
                found[name] = (pid, run_dir)
    return found


def journal(path: str, event: str, vm: str, host: str) -> None:
    if not path:
        return
    by = f"ha-daemon:{os.getpid()}"
    line = orjson.dumps({"t": time.time(), "event": event, "vm": vm, "host": host, "by": by})
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line + b"\n")
    finally:
        os.close(fd)


def identity(run_dir: str, vm: str, host: str) -> tuple[str, str]:
    """(vm id, host id) as the backend named the domain (its ``domain.json``), so that the
    journal's lines match those the toolstack wrote; else the directory's and ``host``."""
    try:
        with open(os.path.join(run_dir, "domain.json"), "rb") as f:
            record = orjson.loads(f.read())
        return str(record["spec"]["vm_id"]), str(record["host_id"])
    except (OSError, ValueError, KeyError, TypeError):
        return vm, host


def kill_domains(run_root: str, host: str, domain_log: str = "") -> list[str]:
    """SIGKILL every QEMU of this host (journaled as ``fence``); the vms stopped."""
    stopped = []
    for name, (pid, run_dir) in domains(run_root).items():
        vm, where = identity(run_dir, name, host)
        if not is_ours(pid, run_dir):
            continue
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        journal(domain_log, "fence", vm, where)
        stopped.append(vm)
    return stopped


def kill_process(pid: int, marker: str) -> None:
    """SIGKILL ``pid`` if its command line still names ``marker`` (the toolstack's)."""
    if pid > 0 and pid != os.getpid() and is_ours(pid, marker):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
