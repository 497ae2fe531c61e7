"""HA's daemon as a process of its own, on a host whose domains outlive its toolstack.

With the QEMU backend the guests are daemonized QEMUs: were the liveness lease renewed by
``xenstack serve``, a killed serve would let it expire while the guests still run, and the
master would restart them elsewhere (two running copies). There, arming starts
``xenstack ha-daemon`` (:mod:`xenstack.cli.ha_daemon`) in a session of its own; serve writes
its configuration (``<state>/ha/daemon.json``, 0600) and signals it on a change of peers;
a serve restarted re-attaches to the daemon still running; disarm stops it (it resigns its
lease; one that hangs is killed, its watchdog first, so that it does not fence the host).
The simulator's domains die with the toolstack: it keeps the in-process daemon.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...ha import fence, process
from .timeline import TimelineBackend

if TYPE_CHECKING:
    from ...core.context import Services

_children: dict[int, subprocess.Popen[bytes]] = {}  # started here: reaped on disarm


def _chain(ts: Services) -> list[Any]:
    chain = [ts.hypervisor.backend]
    while hasattr(chain[-1], "local"):
        chain.append(chain[-1].local)
    return chain


def outlives(ts: Services) -> bool:
    """This host's domains outlive its toolstack (the backend says so)."""
    caps = getattr(_chain(ts)[-1], "capabilities", None)
    return bool(getattr(caps, "domains_outlive_toolstack", False)) and ts.state_dir is not None


def state_dir(ts: Services) -> Path:
    assert ts.state_dir is not None
    return Path(ts.state_dir).absolute()


def config(ts: Services, rt: Any) -> dict[str, Any]:
    chain = _chain(ts)
    journal = next((b for b in chain if isinstance(b, TimelineBackend)), None)
    hosts = list(chain[-1].host_ids())
    return {
        "etcd": rt.persistence.urls,
        "key": rt.lease.key,
        "timeout": rt.timeout,
        "me": rt.me,
        "peers": rt.armed["peers"],
        "secret": rt.secret,
        "host_id": hosts[0] if hosts else rt.me,
        "domain_log": str(journal.path) if journal is not None else "",
        "serve_pid": os.getpid(),
    }


def running(ts: Services) -> int:
    return process.running(state_dir(ts))


def arm(ts: Services, rt: Any) -> int:
    """Write the daemon's configuration; signal the running daemon, or start one: its pid."""
    where = state_dir(ts)
    process.write_config(where, config(ts, rt))
    pid = process.reload(where)
    if pid:
        return pid
    log = open(process.ha_dir(where) / "daemon.log", "ab")  # noqa: SIM115
    child = subprocess.Popen(
        [sys.executable, "-m", "xenstack.cli.ha_daemon", process.MARKER, "--state-dir", str(where)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        start_new_session=True,  # not a child that dies with serve
    )
    log.close()
    _children[child.pid] = child
    deadline = time.monotonic() + 30
    while not process.running(where):
        if child.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the HA daemon did not start (see {where}/ha/daemon.log)")
        time.sleep(0.02)
    return child.pid


def disarm(ts: Services, timeout: float = 15.0) -> None:
    """Stop the daemon (it resigns its lease) and wait until it is gone."""
    where = state_dir(ts)
    pid = process.signal_daemon(where, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid and process.running(where) and time.monotonic() < deadline:
        time.sleep(0.02)
    if pid and process.running(where):  # it hangs: its watchdog must not fence the host
        _kill_watchdog(where)
        os.kill(pid, signal.SIGKILL)
    child = _children.pop(pid, None)
    if child is not None:
        child.wait(timeout)


def _kill_watchdog(where: Path) -> None:
    try:
        pid = int(process.watchdog_path(where).read_text().strip() or "0")
    except (OSError, ValueError):
        return
    if pid > 0 and fence.is_ours(pid, str(where)) and fence.is_ours(pid, process.MARKER):
        os.kill(pid, signal.SIGKILL)
