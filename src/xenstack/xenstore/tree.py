"""The tree of nodes, copy-on-write, with the count of nodes each domain owns.

Nodes are never changed in place: a change puts a new :class:`Node` at its path (and a new
parent when the children change). A transaction works on a shallow copy of the mapping and
knows a conflict by identity: a node it touched is no longer the one it started from.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

from . import paths
from .errors import XsError
from .perms import DOM0_ONLY, Perms, owner


@dataclass(frozen=True, slots=True)
class Node:
    value: bytes
    perms: Perms
    children: tuple[str, ...] = ()

    def with_child(self, name: str) -> Node:
        return self if name in self.children else replace(self, children=(*self.children, name))

    def without_child(self, name: str) -> Node:
        return replace(self, children=tuple(c for c in self.children if c != name))


class Tree:
    """Absolute path -> :class:`Node`, and domid -> how many nodes it owns."""

    def __init__(self, nodes: dict[str, Node] | None = None, owned: dict[int, int] | None = None):
        self.nodes: dict[str, Node] = nodes if nodes is not None else {"/": Node(b"", DOM0_ONLY)}
        self.owned: dict[int, int] = owned if owned is not None else {0: len(self.nodes)}

    def copy(self) -> Tree:
        return Tree(dict(self.nodes), dict(self.owned))

    def get(self, path: str) -> Node | None:
        return self.nodes.get(path)

    def need(self, path: str) -> Node:
        node = self.nodes.get(path)
        if node is None:
            raise XsError("ENOENT")
        return node

    def put(self, path: str, node: Node | None) -> None:
        """Set (or, with None, drop) the node at ``path``, keeping the owners' counts."""
        old = self.nodes.get(path)
        if old is not None:
            self.owned[owner(old.perms)] -= 1
        if node is None:
            self.nodes.pop(path, None)
            return
        self.nodes[path] = node
        self.owned[owner(node.perms)] = self.owned.get(owner(node.perms), 0) + 1

    def nearest(self, path: str) -> tuple[str, Node]:
        """The deepest existing node on the way to ``path`` (``path`` itself if it exists)."""
        while path not in self.nodes:
            path = paths.parent(path)
        return path, self.nodes[path]

    def walk(self, top: str) -> Iterator[str]:
        """``top`` and every path under it, parents first."""
        node = self.nodes.get(top)
        if node is None:
            return
        yield top
        for name in node.children:
            yield from self.walk(f"{top.rstrip('/')}/{name}")
