"""Liveness and fencing of one host, as xhad does with a statefile and a network heartbeat.

:class:`HaDaemon` renews its host's liveness lease (in etcd: the statefile's part) every
quarter of ``timeout`` and heartbeats every peer over the network. A host whose lease cannot
be renewed and that sees no majority of the pool (itself included) fences itself: it
hard-stops all its domains and stops answering as a pool member, *before* its lease can
expire (``timeout`` after the last renewal that was sent, less a margin), so that nobody
restarts its VMs while they still run. A host that loses the lease's store but still sees a
majority keeps its guests running (HA degraded, as XenServer survives a lost statefile):
the master does not declare a host dead while it still hears its heartbeat.

Its three collaborators are protocols, handed in by the composition root:

- ``lease``: ``renew() -> bool`` (False or an exception: not renewed);
- ``ping(peer) -> bool``: one heartbeat to a peer (True if it answered);
- ``fence()``: hard-stop every domain of this host, then stop serving;

and ``kick()``, called after every round (a watchdog's: :mod:`xenstack.ha.watchdog`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass(slots=True)
class HaConfig:
    timeout: float  # seconds (ha-config:timeout)
    peers: list[str]  # the other hosts' ids (uuids)
    margin: float = 0.0  # seconds before the lease's expiry that a fence must come by

    @property
    def interval(self) -> float:
        return self.timeout / 4

    @property
    def fence_after(self) -> float:
        """Seconds without a renewal after which a host with no majority fences."""
        return self.timeout - (self.margin or max(0.5, self.timeout / 4))


@dataclass
class HaDaemon:
    config: HaConfig
    renew: Callable[[], Awaitable[bool]]
    ping: Callable[[str], Awaitable[bool]]
    fence: Callable[[], Awaitable[None]]
    clock: Callable[[], float] = time.monotonic
    kick: Callable[[], None] = lambda: None
    last_renewed: float = 0.0  # when the last successful renewal was *sent*
    seen: dict[str, float] = field(default_factory=dict)  # peer -> last heard (either way)
    fenced: bool = False
    degraded: bool = False  # the lease cannot be renewed but a majority is seen
    _task: asyncio.Task[None] | None = None

    def heard(self, peer: str) -> None:
        """A peer's heartbeat arrived."""
        self.seen[peer] = self.clock()

    def sees(self, peer: str) -> bool:
        return self.clock() - self.seen.get(peer, -1e9) <= self.config.timeout / 2

    def majority(self) -> bool:
        """This host and the peers it sees make more than half the pool."""
        total = len(self.config.peers) + 1
        seen = 1 + sum(1 for p in self.config.peers if self.sees(p))
        return 2 * seen > total

    def start(self) -> None:
        self.last_renewed = self.clock()
        self._task = asyncio.create_task(self.run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def run(self) -> None:
        while not self.fenced:
            began = self.clock()
            await self.tick()
            self.kick()
            await asyncio.sleep(max(0.0, self.config.interval - (self.clock() - began)))

    async def tick(self) -> None:
        """One round: renew, heartbeat every peer, fence if alone and the lease is at risk."""
        interval = self.config.interval
        within = interval * 0.8  # a round ends within its interval: a check every interval
        sent = self.clock()
        renewal = asyncio.ensure_future(self._renew(within))
        pings = [asyncio.ensure_future(self._ping(p, within)) for p in self.config.peers]
        renewed = await renewal
        await asyncio.gather(*pings)
        if renewed:
            self.last_renewed = sent
            self.degraded = False
            return
        alone = not self.majority()
        late = self.clock() - self.last_renewed >= self.config.fence_after - interval
        if alone and late:
            log.error("HA: no lease and no majority of peers: fencing this host")
            self.fenced = True
            await self.fence()
        elif not alone:
            self.degraded = True

    async def _renew(self, within: float) -> bool:
        try:
            return await asyncio.wait_for(self.renew(), within)
        except Exception as exc:
            log.warning("HA: lease not renewed: %r", exc)
            return False

    async def _ping(self, peer: str, within: float) -> None:
        with contextlib.suppress(Exception):
            if await asyncio.wait_for(self.ping(peer), within):
                self.heard(peer)
