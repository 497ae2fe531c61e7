"""The HA daemon as a process of its own (``xenstack ha-daemon --state-dir DIR``).

On a host whose domains outlive its toolstack (QEMU), the liveness lease must not hang on
``xenstack serve`` alone: this process holds it, heartbeats the peers and fences the host
(its QEMUs, then serve) when it can renew neither its lease nor see a majority. Its files,
in ``<state>/ha/``: ``daemon.json`` (0600: etcd endpoints, lease key, timeout, peers'
addresses and pinned certificates, the pool secret, this host's uuid, serve's pid),
``daemon.pid`` and ``watchdog.pid`` (:mod:`.watchdog`). SIGHUP re-reads the configuration
(peers joined or ejected, etcd moved); SIGTERM resigns the lease and ends the process
(disarm).

This module holds what both sides share (paths, the config file, liveness of the pid) and
the heartbeat: a JSON-RPC call over TLS to a peer's pinned certificate. An answered
outgoing heartbeat counts as the peer seen: the process needs no listener.
"""

from __future__ import annotations

import contextlib
import os
import signal
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from .fence import is_ours

HEARTBEAT = "host.xenstack_ha_heartbeat"
MARKER = "ha-daemon"  # in the daemon's command line


def ha_dir(state_dir: Path) -> Path:
    return state_dir / "ha"


def config_path(state_dir: Path) -> Path:
    return ha_dir(state_dir) / "daemon.json"


def pid_path(state_dir: Path) -> Path:
    return ha_dir(state_dir) / "daemon.pid"


def watchdog_path(state_dir: Path) -> Path:
    return ha_dir(state_dir) / "watchdog.pid"


def write_config(state_dir: Path, config: dict[str, Any]) -> None:
    """Atomically, readable by its owner alone (it holds the pool secret)."""
    ha_dir(state_dir).mkdir(mode=0o700, exist_ok=True)
    final = config_path(state_dir)
    tmp = final.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(orjson.dumps(config))
    os.replace(tmp, final)


def read_config(state_dir: Path) -> dict[str, Any]:
    return dict(orjson.loads(config_path(state_dir).read_bytes()))


def running(state_dir: Path) -> int:
    """The daemon's pid if its pid file names a live daemon of this state dir, else 0."""
    try:
        pid = int(pid_path(state_dir).read_text().strip() or "0")
    except (OSError, ValueError):
        return 0
    return pid if pid > 0 and is_ours(pid, str(state_dir)) and is_ours(pid, MARKER) else 0


def signal_daemon(state_dir: Path, sig: int) -> int:
    pid = running(state_dir)
    if pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    return pid


def reload(state_dir: Path) -> int:
    return signal_daemon(state_dir, signal.SIGHUP)


@dataclass(slots=True)
class PeerLink:
    """One peer's heartbeat endpoint: TLS to its pinned certificate (plain HTTP on loopback
    when it has no HTTPS port, as :class:`~xenstack.impl.pool.peer.Peer`)."""

    address: str
    port: int
    tls_port: int = 0
    certificate: str = ""

    @classmethod
    def of(cls, wire: dict[str, Any]) -> PeerLink:
        return cls(
            str(wire["address"]),
            int(wire.get("port") or 0),
            int(wire.get("tls_port") or 0),
            str(wire.get("certificate") or ""),
        )

    def url(self) -> str:
        if self.tls_port:
            return f"https://{self.address}:{self.tls_port}/jsonrpc"
        return f"http://{self.address}:{self.port}/jsonrpc"

    def context(self) -> ssl.SSLContext | bool:
        if not self.tls_port:
            return False
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=self.certificate)
        ctx.check_hostname = False  # the pinned certificate is the identity
        return ctx


async def heartbeat(
    session: aiohttp.ClientSession, link: PeerLink, secret: str, me: str, timeout: float
) -> bool:
    """One heartbeat to ``link``: True if it answered without an error."""
    body = orjson.dumps({"jsonrpc": "2.0", "method": HEARTBEAT, "params": [secret, me], "id": 1})
    limits = aiohttp.ClientTimeout(total=timeout, sock_connect=timeout)
    headers = {"Content-Type": "application/json"}
    async with session.post(
        link.url(), data=body, headers=headers, ssl=link.context(), timeout=limits
    ) as reply:
        if reply.status != 200:
            return False
        return not orjson.loads(await reply.read()).get("error")
