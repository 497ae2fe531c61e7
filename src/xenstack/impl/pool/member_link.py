"""The master's links to its members' toolstacks, each reached over TLS with the pool secret.

:class:`MemberLinks` keeps one :class:`_Remote` per member host: its :class:`~.peer.Peer`,
and what the member last reported of that host's backend (free memory, domains, saved
images, counters). Every call is a batch (:mod:`.wire_backend`): the synchronous changes
queued since the last one go first, in order, and every answer carries a fresh snapshot of
the member's hosts, from which the synchronous queries of the backend interface are answered.
:class:`.remote_backend.PoolBackend` routes the backend's operations over these links.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from ...xenops.interface import DomainInfo, DomainStats, XenopsError
from . import membership
from .peer import CALL_TIMEOUT, Peer
from .remote import Unreachable
from .wire_backend import BACKEND_CALL, domain_info, dump, raise_failure

if TYPE_CHECKING:
    from ...core.context import Services

# what waits on a guest (its shutdown, its release of a device) takes the backend's own
# deadline for it (a QEMU's clean shutdown: 120 s), and some
GUEST_TIMEOUT = 150.0
GUEST_WAITS = ("vm_shutdown", "vm_reboot", "vbd_unplug", "vif_unplug")
MIGRATION_TIMEOUT = 330.0  # a backend's own migration deadline (QEMU's: 300 s), and some
REFRESH_TIMEOUT = 10.0  # a member's state at a (re)start; a cut one fails its connect sooner


class MemberUnreachable(XenopsError):
    """The member that must do the work does not answer."""


PeerOf = Callable[[str], "tuple[Peer, str] | None"]  # host id -> (peer, pool secret)


@dataclass(slots=True)
class _Remote:
    """What the master knows of one member host's backend."""

    peer: Peer
    secret: str
    memory_free: int = 0
    domains: dict[str, DomainInfo] = field(default_factory=dict)
    images: set[str] = field(default_factory=set)
    stats: dict[str, DomainStats] = field(default_factory=dict)  # its domains' counters
    queued: list[list[Any]] = field(default_factory=list)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class MemberLinks:
    """The member hosts a master reaches, by host id, and the calls that reach them."""

    def __init__(self, peer_of: PeerOf) -> None:
        self.peer_of = peer_of
        self.remotes: dict[str, _Remote] = {}
        self.calls = 0  # batches sent to members (for tests and benchmarks)
        # host, {domid: [path, value]}: what a member's guest agents wrote (xenstore_mirror)
        self.on_agent_nodes: Callable[[str, dict[str, Any]], None] | None = None

    def remote(self, host_id: str) -> _Remote | None:
        """The member host ``host_id`` is, or None for a host of this backend."""
        found = self.remotes.get(host_id)
        if found is not None:
            return found
        peer = self.peer_of(host_id)
        if peer is None:
            return None
        found = self.remotes[host_id] = _Remote(peer[0], peer[1])
        return found

    def is_remote(self, host_id: str) -> bool:
        return self.remote(host_id) is not None

    async def _send(
        self, host_id: str, name: str, *args: Any, timeout: float = CALL_TIMEOUT
    ) -> Any:
        rem = self.remote(host_id)
        assert rem is not None
        async with rem.lock:
            ops, rem.queued = [*rem.queued, [name, [dump(a) for a in args]]], []
            try:
                batch = orjson.dumps(ops).decode()
                raw = await rem.peer.call(BACKEND_CALL, rem.secret, batch, timeout=timeout)
            except Unreachable as exc:
                rem.queued = ops[:-1] + rem.queued  # the queued changes are sent next time
                raise MemberUnreachable(f"host {host_id}: {exc}") from exc
            self.calls += 1
        answer = orjson.loads(raw)
        self._learn(rem.peer, answer["snapshot"])
        if self.on_agent_nodes is not None:
            for host, found in answer.get("guest", {}).items():
                mine = self.remotes.get(host)
                if mine is not None and mine.peer.url == rem.peer.url:
                    self.on_agent_nodes(host, found)
        if answer["failure"] is not None:
            raise_failure(answer["failure"])
        return answer["results"][-1]

    def _learn(self, peer: Peer, snapshot: dict[str, Any]) -> None:
        """Cache what a member reported of the hosts it runs for this pool."""
        images = set(snapshot["images"])
        for host, rem in self.remotes.items():
            if rem.peer.url != peer.url:
                continue
            rem.images = images
            state = snapshot["hosts"].get(host)
            if state is not None:
                rem.memory_free = int(state["memory_free"])
                rem.domains = {d["vm_id"]: domain_info(d) for d in state["domains"]}

    def _queue(self, host_id: str, name: str, *args: Any) -> None:
        rem = self.remote(host_id)
        assert rem is not None
        rem.queued.append([name, [dump(a) for a in args]])
        with contextlib.suppress(RuntimeError):  # no loop: sent with the next batch
            asyncio.get_running_loop().create_task(self._flush(host_id))

    async def _flush(self, host_id: str, timeout: float = CALL_TIMEOUT) -> None:
        with contextlib.suppress(XenopsError):
            await self._send(host_id, "snapshot", timeout=timeout)

    async def refresh(self) -> None:
        """Ask every known member host for its backend's state, all at once and briefly
        (members that do not answer keep what was known): a master taking over must not
        wait on the host it replaces, which may be cut off."""
        hosts = list(self.remotes)
        await asyncio.gather(*(self._flush(host, REFRESH_TIMEOUT) for host in hosts))

    async def repoint(self, host_id: str) -> bool:
        """Member ``host_id``'s toolstack listens elsewhere now (it restarted): reach it
        there from now on, with what was known of it, and ask it what it runs; whether it
        answered."""
        old = self.remotes.pop(host_id, None)
        rem = self.remote(host_id)
        if old is not None:
            await old.peer.close()
            if rem is not None:
                rem.queued = old.queued + rem.queued
                rem.memory_free, rem.domains, rem.images = old.memory_free, old.domains, old.images
        if rem is None:
            return False
        try:
            await self._send(host_id, "snapshot", timeout=REFRESH_TIMEOUT)
        except XenopsError:
            return False
        return True

    async def on_member(self, host_id: str, name: str, *args: Any) -> Any:
        """Operation ``name`` (of :data:`.wire_backend.OPERATIONS`) on member ``host_id``."""
        return await self._send(host_id, name, *args)

    async def forget(self, host_id: str) -> None:
        rem = self.remotes.pop(host_id, None)
        if rem is not None:
            await rem.peer.close()


def peers_of(ts: Services) -> PeerOf:
    """host id -> (the member toolstack that runs it, the pool secret), from what the master
    keeps of its members (:mod:`.membership`); None for a host this toolstack runs."""
    cache: dict[str, tuple[dict[str, Any], Peer]] = {}

    def peer_of(host_id: str) -> tuple[Peer, str] | None:
        db = ts.db
        if host_id == ts.this_host or not db.exists("host", host_id):
            return None
        where = membership.members(ts.persistence).get(db.get("host", host_id)["uuid"])
        if where is None:
            return None
        known = cache.get(host_id)
        if known is None or known[0] != where:  # new, or it listens elsewhere now
            known = cache[host_id] = (where, Peer.of(where))
        return known[1], membership.pool_secret(ts.persistence)

    return peer_of


def deadline(name: str) -> float:
    """How long the master waits for a member's backend operation ``name``: what moves a
    domain's memory (a migration's send, a suspend, a resume, a checkpoint's image) lasts as
    long as the memory takes; what waits on the guest, as long as the guest may take."""
    if name.startswith(("vm_migrate", "vm_suspend", "vm_resume", "vm_save_image")):
        return MIGRATION_TIMEOUT
    return GUEST_TIMEOUT if name in GUEST_WAITS else CALL_TIMEOUT
