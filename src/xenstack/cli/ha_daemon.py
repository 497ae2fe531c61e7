"""``xenstack ha-daemon --state-dir DIR``: a QEMU host's HA daemon, a process of its own.

It composes :class:`~xenstack.ha.daemon.HaDaemon` with the lease in etcd, heartbeats to the
peers (:mod:`xenstack.ha.process`) and the fence of :mod:`xenstack.ha.fence` (this host's
QEMUs, then ``xenstack serve``), from ``DIR/ha/daemon.json``. It imports little (no
toolstack) so that it starts fast; ``python -m xenstack.cli.ha_daemon`` runs it directly.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp

from ..db.etcd import EtcdLoop, Lease
from ..ha import fence, process, watchdog
from ..ha.daemon import HaConfig, HaDaemon

log = logging.getLogger("xenstack.ha-daemon")
FENCED = 75


def fence_host(state_dir: Path) -> list[str]:
    """Kill this host's QEMUs (journaled), then its serve; the vms stopped. The config is
    read afresh: serve's pid changes when it restarts."""
    cfg = process.read_config(state_dir)
    run_root = str(state_dir / "run" / "qemu")
    stopped = fence.kill_domains(run_root, str(cfg["host_id"]), str(cfg.get("domain_log", "")))
    fence.kill_process(int(cfg.get("serve_pid") or 0), str(state_dir))
    return stopped


class Daemon:
    def __init__(
        self, state_dir: Path, config: dict[str, Any], dog: watchdog.Watchdog | None = None
    ) -> None:
        self.state_dir = state_dir
        self.config = config
        self.etcd = EtcdLoop(str(config["etcd"]))
        self.lease = Lease(self.etcd, str(config["key"]), math.ceil(float(config["timeout"])))
        self.links: dict[str, process.PeerLink] = {}
        ha_config = HaConfig(float(config["timeout"]), [])
        self.ha = HaDaemon(ha_config, self.renew, self.ping, self.fence)
        self.watchdog = dog
        if dog is not None:
            self.ha.kick = dog.kick
        self.session: aiohttp.ClientSession | None = None
        self.urls = str(config["etcd"])
        self.reload(config)

    def reload(self, config: dict[str, Any]) -> None:
        me = str(config["me"])
        self.config = config
        self.links = {u: process.PeerLink.of(w) for u, w in config["peers"].items() if u != me}
        self.ha.config.peers = sorted(self.links)

    async def renew(self) -> bool:
        return await asyncio.to_thread(self._renew_sync)

    def _renew_sync(self) -> bool:
        if self.urls != self.config["etcd"]:  # the cluster moved (SIGHUP): a new client
            self.urls = str(self.config["etcd"])
            old, self.etcd = self.etcd, EtcdLoop(self.urls)
            self.lease.etcd = self.etcd
            old.close()  # its thread and channels, not left behind
            log.warning("HA: etcd moved to %s; the old client closed", self.urls)
        if self.lease.lease_id and self.lease.renew() > 0:
            return True
        etcd = self.etcd
        grant = etcd.run(etcd.client.lease.grant(self.lease.ttl), 5)  # type: ignore[union-attr]
        self.lease.lease_id = int(grant.ID)
        etcd.run(etcd.kv.put(self.lease.key, str(self.config["me"]), lease=self.lease.lease_id), 5)
        return True

    async def ping(self, peer: str) -> bool:
        if self.session is None:
            self.session = aiohttp.ClientSession()
        link, cfg = self.links[peer], self.config
        within = float(cfg["timeout"]) / 4
        return await process.heartbeat(self.session, link, cfg["secret"], cfg["me"], within)

    async def fence(self) -> None:
        stopped = fence_host(self.state_dir)
        if self.watchdog is not None:
            self.watchdog.disarm()  # done already
        log.error("HA: fenced; killed %s and the toolstack", stopped)
        logging.shutdown()
        os._exit(FENCED)  # nothing may wait for etcd here: it is unreachable

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        reread = lambda: self.reload(process.read_config(self.state_dir))  # noqa: E731
        loop.add_signal_handler(signal.SIGHUP, reread)
        self.ha.start()
        await stop.wait()
        await self.ha.stop()
        if self.watchdog is not None:
            self.watchdog.disarm()
        if self.session is not None:
            await self.session.close()
        await asyncio.to_thread(self.lease.resign)
        await asyncio.to_thread(self.etcd.close)


def run(state_dir: Path) -> int:
    state_dir = state_dir.absolute()
    process.pid_path(state_dir).write_text(f"{os.getpid()}\n")
    config = process.read_config(state_dir)
    deadline = HaConfig(float(config["timeout"]), []).fence_after
    dog = watchdog.start(deadline, lambda: _watchdog_fence(state_dir))  # before any thread
    process.watchdog_path(state_dir).write_text(f"{dog.pid}\n")
    try:
        asyncio.run(Daemon(state_dir, config, dog).run())
    finally:
        if process.pid_path(state_dir).read_text().strip() == str(os.getpid()):
            process.pid_path(state_dir).unlink()
    return 0


def _watchdog_fence(state_dir: Path) -> None:
    stopped = fence_host(state_dir)
    log.error("HA: the daemon is gone or hangs: the watchdog fenced %s", stopped)


def cmd(args: argparse.Namespace) -> int:
    return run(Path(args.state_dir))


def add_parser(sub: Any) -> None:
    p = sub.add_parser(process.MARKER, help="a QEMU host's HA daemon (started by serve)")
    p.add_argument("--state-dir", required=True)
    p.set_defaults(func=cmd)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    os.umask(0o077)
    ap = argparse.ArgumentParser(prog="xenstack")
    add_parser(ap.add_subparsers(dest="command", required=True))
    args = ap.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
