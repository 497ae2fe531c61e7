"""One host's XenStore and the connections domains open to it.

Every operation goes through a :class:`Connection`, which is a domain's identity: dom0's is
privileged, a guest's sees and writes only what the permissions give it. Watches fire once at
registration and then for every change of their node or its subtree (a removal fires the
watches under it too), with their token, to watchers allowed to read the node. Changes made in
a transaction are seen by others only when it commits, and it commits only if nothing it
read or wrote was changed meanwhile (else ``EAGAIN``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, replace

from . import paths
from . import perms as p
from .errors import XsError
from .tree import Node, Tree

EventSink = Callable[[str, str], None]  # (path as the watcher names it, token)
WriteHook = Callable[[str, bytes | None], None]  # (absolute path, value or None: removed)


@dataclass(frozen=True, slots=True)
class Quota:
    """Xen's default per-domain limits (dom0 has none)."""

    nodes: int = 1000
    entry_size: int = 2048
    watches: int = 128
    transactions: int = 10


@dataclass(frozen=True, slots=True)
class Change:
    path: str
    perms: p.Perms  # of the node changed (before a removal): who may see the event
    removal: bool = False


@dataclass(slots=True)
class Watch:
    given: str  # as registered (relative, absolute or special)
    path: str  # absolute (or special)
    token: str


class View:
    """The tree an operation works on: the store's, or a transaction's copy that records the
    node it first found at every path it touched."""

    def __init__(self, tree: Tree, touched: dict[str, Node | None] | None = None) -> None:
        self.tree = tree
        self.touched = touched
        self.written: set[str] = set()
        self.changes: list[Change] = []

    def get(self, path: str) -> Node | None:
        node = self.tree.get(path)
        if self.touched is not None and path not in self.touched:
            self.touched[path] = node
        return node

    def put(self, path: str, node: Node | None) -> None:
        self.get(path)
        self.written.add(path)
        self.tree.put(path, node)


@dataclass(slots=True)
class Transaction:
    view: View
    owner: Connection


class XenStore:
    """The tree, the connections and their watches, the introduced domains."""

    def __init__(self, quota: Quota | None = None) -> None:
        self.tree = Tree()
        self.quota = quota or Quota()
        self.connections: list[Connection] = []
        self.transactions: dict[int, Transaction] = {}
        self.introduced: set[int] = {0}
        # Called with every node dom0 writes or removes, once it is in the tree (how a
        # backend's guest channel learns what the host wrote for its guest).
        self.dom0_writes: list[WriteHook] = []
        self._ids = itertools.count(1)
        self.dom0 = Connection(self, 0, True, None)  # the toolstack's own, without watches
        for path in ("/local", "/local/domain", "/vm", "/tool"):
            self.dom0.mkdir(path)

    def connect(self, domid: int, sink: EventSink | None = None) -> Connection:
        """A new connection for ``domid`` (dom0's is privileged); events go to ``sink``."""
        conn = Connection(self, domid, domid == 0, sink)
        self.connections.append(conn)
        return conn

    def as_domain(self, domid: int) -> Connection:
        """A connection acting as ``domid`` that watches nothing (a guest's writes)."""
        return Connection(self, domid, domid == 0, None)

    def fire(self, changes: list[Change]) -> None:
        for change in changes:
            for conn in list(self.connections):
                conn.notify(change)

    def fire_special(self, name: str) -> None:
        for conn in list(self.connections):
            if conn.privileged:
                for watch in list(conn.watches):
                    if watch.path == name:
                        conn.emit(watch.given, watch.token)

    def commit(self, tx_id: int) -> None:
        tx = self.transactions.pop(tx_id)
        view = tx.view
        assert view.touched is not None
        for path, node in view.touched.items():
            if self.tree.get(path) is not node:
                raise XsError("EAGAIN")
        for path in view.written:
            self.tree.put(path, view.tree.get(path))
        self.fire(view.changes)
        if tx.owner.privileged:
            self.dom0_wrote(view.changes)

    def dom0_wrote(self, changes: list[Change]) -> None:
        for change in changes:
            node = None if change.removal else self.tree.get(change.path)
            for hook in list(self.dom0_writes):
                hook(change.path, None if node is None else node.value)


class Connection:
    """A domain's connection: its identity, watches and transactions."""

    def __init__(self, store: XenStore, domid: int, privileged: bool, sink: EventSink | None):
        self.store = store
        self.domid = domid
        self.privileged = privileged
        self.sink = sink
        self.watches: list[Watch] = []
        self.tx_ids: set[int] = set()

    # -- identity ---------------------------------------------------------------------------

    def restrict(self, domid: int) -> None:
        """Drop dom0's rights and act as ``domid`` from now on (oxenstored's XS_RESTRICT)."""
        if not self.privileged:
            raise XsError("EPERM")
        self.domid, self.privileged = domid, domid == 0

    def close(self) -> None:
        for tx_id in list(self.tx_ids):
            self.store.transactions.pop(tx_id, None)
        self.tx_ids.clear()
        self.watches.clear()
        if self in self.store.connections:
            self.store.connections.remove(self)

    # -- plumbing ---------------------------------------------------------------------------

    def _view(self, tx_id: int) -> View:
        if tx_id == 0:
            return View(self.store.tree)
        tx = self.store.transactions.get(tx_id)
        if tx is None or tx.owner is not self:
            raise XsError("ENOENT")
        return tx.view

    def _done(self, view: View, tx_id: int) -> None:
        if tx_id == 0:
            self.store.fire(view.changes)
            if self.privileged:
                self.store.dom0_wrote(view.changes)
            view.changes.clear()

    def _check(self, node: Node, want: str) -> None:
        if not p.allowed(node.perms, self.domid, want, self.privileged):
            raise XsError("EACCES")

    def _path(self, path: str) -> str:
        return paths.resolve(path, self.domid)

    # -- reads ------------------------------------------------------------------------------

    def read(self, path: str, tx_id: int = 0) -> bytes:
        node = self._need(self._view(tx_id), self._path(path), p.READ)
        return node.value

    def directory(self, path: str, tx_id: int = 0) -> list[str]:
        return list(self._need(self._view(tx_id), self._path(path), p.READ).children)

    def get_perms(self, path: str, tx_id: int = 0) -> list[str]:
        node = self._need(self._view(tx_id), self._path(path), p.READ)
        return [str(perm) for perm in node.perms]

    def exists(self, path: str, tx_id: int = 0) -> bool:
        try:
            self.read(path, tx_id)
        except XsError as exc:
            if exc.name == "ENOENT":
                return False
            raise
        return True

    def _need(self, view: View, path: str, want: str) -> Node:
        node = view.get(path)
        if node is None:
            raise XsError("ENOENT")
        self._check(node, want)
        return node

    # -- writes -----------------------------------------------------------------------------

    def write(self, path: str, value: bytes, tx_id: int = 0) -> None:
        if not self.privileged and len(value) > self.store.quota.entry_size:
            raise XsError("ENOSPC")
        view, full = self._view(tx_id), self._path(path)
        node = view.get(full)
        if node is None:
            self._create(view, full, value)
        else:
            self._check(node, p.WRITE)
            view.put(full, replace(node, value=value))
        view.changes.append(Change(full, view.tree.need(full).perms))
        self._done(view, tx_id)

    def mkdir(self, path: str, tx_id: int = 0) -> None:
        view, full = self._view(tx_id), self._path(path)
        node = view.get(full)
        if node is not None:
            self._check(node, p.WRITE)
            return
        self._create(view, full, b"")
        view.changes.append(Change(full, view.tree.need(full).perms))
        self._done(view, tx_id)

    def _create(self, view: View, path: str, value: bytes) -> None:
        missing = [path]
        top = paths.parent(path)
        while view.get(top) is None:
            missing.append(top)
            top = paths.parent(top)
        parent = view.get(top)
        assert parent is not None
        self._check(parent, p.WRITE)
        quota = self.store.quota.nodes
        if not self.privileged and view.tree.owned.get(self.domid, 0) + len(missing) > quota:
            raise XsError("ENOSPC")
        for new in reversed(missing):
            perms = p.inherited(parent.perms, self.domid, self.privileged)
            view.put(top, parent.with_child(paths.basename(new)))
            parent = Node(value if new == path else b"", perms)
            view.put(new, parent)
            top = new

    def rm(self, path: str, tx_id: int = 0) -> None:
        view, full = self._view(tx_id), self._path(path)
        if full == "/":
            raise XsError("EINVAL")
        node = view.get(full)
        if node is None:
            if view.get(paths.parent(full)) is None:
                raise XsError("ENOENT")
            return
        self._check(node, p.WRITE)
        for sub in list(view.tree.walk(full)):
            view.put(sub, None)
        top = paths.parent(full)
        parent = view.get(top)
        assert parent is not None
        view.put(top, parent.without_child(paths.basename(full)))
        view.changes.append(Change(full, node.perms, removal=True))
        self._done(view, tx_id)

    def set_perms(self, path: str, entries: list[str], tx_id: int = 0) -> None:
        new = p.parse(entries)
        view, full = self._view(tx_id), self._path(path)
        node = self._need(view, full, p.WRITE)
        if not self.privileged and p.owner(node.perms) != self.domid:
            raise XsError("EACCES")
        view.put(full, replace(node, perms=new))
        view.changes.append(Change(full, new))
        self._done(view, tx_id)

    # -- transactions -----------------------------------------------------------------------

    def transaction_start(self) -> int:
        if not self.privileged and len(self.tx_ids) >= self.store.quota.transactions:
            raise XsError("ENOSPC")
        tx_id = next(self.store._ids)
        self.store.transactions[tx_id] = Transaction(View(self.store.tree.copy(), {}), self)
        self.tx_ids.add(tx_id)
        return tx_id

    def transaction_end(self, tx_id: int, commit: bool) -> None:
        tx = self.store.transactions.get(tx_id)
        if tx is None or tx.owner is not self:
            raise XsError("ENOENT")
        self.tx_ids.discard(tx_id)
        if commit:
            self.store.commit(tx_id)
        else:
            del self.store.transactions[tx_id]

    # -- watches ----------------------------------------------------------------------------

    def watch(self, path: str, token: str) -> None:
        full = path if path in paths.SPECIAL else self._path(path)
        if any(w.given == path and w.token == token for w in self.watches):
            raise XsError("EEXIST")
        if not self.privileged and len(self.watches) >= self.store.quota.watches:
            raise XsError("E2BIG")
        self.watches.append(Watch(path, full, token))
        self.emit(path, token)  # every watch fires once when it is set

    def unwatch(self, path: str, token: str) -> None:
        for watch in self.watches:
            if watch.given == path and watch.token == token:
                self.watches.remove(watch)
                return
        raise XsError("ENOENT")

    def reset_watches(self) -> None:
        self.watches.clear()

    def emit(self, path: str, token: str) -> None:
        if self.sink is not None:
            self.sink(path, token)

    def notify(self, change: Change) -> None:
        """Fire this connection's watches that ``change`` concerns and it may see."""
        if not p.allowed(change.perms, self.domid, p.READ, self.privileged):
            return
        for watch in list(self.watches):
            if watch.path in paths.SPECIAL:
                continue
            if paths.is_under(change.path, watch.path):
                fired = change.path
            elif change.removal and paths.is_under(watch.path, change.path):
                fired = watch.path
            else:
                continue
            relative = not watch.given.startswith("/")
            self.emit(paths.relative_to(fired, self.domid) if relative else fired, watch.token)

    # -- domains ----------------------------------------------------------------------------

    def introduce(self, domid: int) -> None:
        if not self.privileged:
            raise XsError("EACCES")
        if domid in self.store.introduced:
            return
        self.store.introduced.add(domid)
        self.store.fire_special(paths.INTRODUCE)

    def release(self, domid: int) -> None:
        if not self.privileged:
            raise XsError("EACCES")
        if domid == 0 or domid not in self.store.introduced:
            raise XsError("ENOENT" if domid else "EINVAL")
        self.store.introduced.discard(domid)
        for conn in list(self.store.connections):
            if conn.domid == domid and not conn.privileged:
                conn.close()
        self.store.fire_special(paths.RELEASE)

    def is_introduced(self, domid: int) -> bool:
        return domid in self.store.introduced
