"""Each host's XenStore, and the two ways keys cross between it and a backend's guests.

A guest's agent channel (``Backend.on_guest_keys``) writes into its host's XenStore as that
domain, with its rights; what dom0 writes for a guest to read (requests, ``vm-data/``, its
devices) goes back down the channel (``Backend.guest_write``). Guest metrics are derived from
each store (``impl.vm.guest_metrics.watch``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable

from ..core.clock import Clock
from ..db.store import Database
from ..impl.vm import guest_metrics, xenstore_nodes
from ..xenops.interface import Backend, XenopsError
from ..xenstore import XenStore, XsError

log = logging.getLogger(__name__)


class XenStores:
    """The XenStore of every host this toolstack runs, made at first use."""

    def __init__(self, db: Database, clock: Clock, backend: Callable[[], Backend]) -> None:
        self.db, self.clock, self.backend = db, clock, backend
        self.stores: dict[str, XenStore] = {}

    def of(self, host: str) -> XenStore:
        """``host``'s XenStore, its guest metrics derived from it."""
        store = self.stores.get(host)
        if store is None:
            store = self.stores[host] = XenStore()
            guest_metrics.watch(self.db, self.clock, store, host)
            store.dom0_writes.append(functools.partial(self.to_guest, store))
        return store

    def to_guest(self, store: XenStore, path: str, value: bytes | None) -> None:
        """A dom0 write a guest must read: sent down the backend's guest channel too."""
        found = xenstore_nodes.guest_key(store, self.db, path)
        if found is None or value is None:
            return
        vm, key = found
        task = asyncio.get_running_loop().create_task(
            self.backend().guest_write(vm, key, value.decode(errors="replace"))
        )
        task.add_done_callback(_guest_write_done)

    def guest_key(self, vm_id: str, domid: int, key: str, value: str | None) -> None:
        """A key a guest wrote over its agent channel: written into its host's XenStore as
        that domain, with its rights (a key it may not write is dropped)."""
        row = self.db.table("VM").rows.get(vm_id)
        store = None
        if row is None:  # a pool member's domain (no row here): where the master's nodes went
            top = f"/local/domain/{domid}"
            store = next((s for s in self.stores.values() if top in s.tree.nodes), None)
        elif row["domid"] == domid and self.db.exists("host", row["resident_on"]):
            store = self.of(row["resident_on"])
        if store is None:
            return
        guest = store.as_domain(domid)
        try:
            guest.write(key, value.encode()) if value is not None else guest.rm(key)
        except XsError as exc:
            log.info("guest %s: %s not written: %s", domid, key, exc.name)


def _guest_write_done(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        exc = task.exception()
        if not isinstance(exc, XenopsError):
            log.warning("guest channel: %r", exc)
