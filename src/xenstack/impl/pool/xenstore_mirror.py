"""A member's own XenStore holds the nodes of the domains it runs.

The master writes a domain's nodes (``/local/domain/<domid>``, ``/vm/<uuid>``) into its
copy of the host's XenStore (:mod:`..vm.xenstore_nodes`); for a host that is a toolstack of
its own, the same nodes, values and permissions go to that member with its next backend
batch (the ``xenstore_nodes`` operation), and are removed there when the domain goes or
moves away, so the member's XenStore (its ``run/xenstored/socket``, where its guests and
dom0 tools look) matches where the domain runs. Later dom0 writes are not mirrored.

The other way, what a member's guests' agents write (``data``, ``attr``, ``control`` of
each domain) comes back with every answer of the member (:func:`agent_nodes`) and goes
into the master's copy of that host's store (:func:`take_agent_nodes`), where the
master's watch derives the VM's guest metrics as for its own domains.
"""

from __future__ import annotations

import contextlib
from typing import Any

from ...xenstore import XenStore, XsError

Nodes = list[list[Any]]  # [path, value (latin-1 text), permissions]


def dump(store: XenStore, tops: list[str]) -> Nodes:
    """Every node under ``tops`` (parents first) with its value and permissions."""
    found: Nodes = []
    for top in tops:
        for path in store.tree.walk(top):
            value = store.dom0.read(path).decode("latin-1")
            found.append([path, value, store.dom0.get_perms(path)])
    return found


def apply(store: XenStore, domid: int, tops: list[str], nodes: Nodes | None) -> None:
    """On the member: replace the nodes under ``tops`` with ``nodes`` and introduce the
    domain, or (``nodes`` None) remove them and release it."""
    dom0 = store.dom0
    if not all(_domain_node(t, domid) for t in tops):
        raise ValueError(f"not a domain's nodes: {tops}")
    for top in tops:
        with contextlib.suppress(XsError):
            dom0.rm(top)
    if nodes is None:
        with contextlib.suppress(XsError):
            dom0.release(domid)
        return
    for path, value, perms in nodes:
        if not any(str(path) == t or str(path).startswith(t + "/") for t in tops):
            continue  # only what the operation names
        dom0.write(str(path), str(value).encode("latin-1"))
        dom0.set_perms(str(path), [str(p) for p in perms])
    dom0.introduce(domid)


def _domain_node(top: str, domid: int) -> bool:
    """``/local/domain/<domid>`` (never dom0's) or a ``/vm/<uuid>``."""
    if top == f"/local/domain/{domid}":
        return domid > 0
    return top.startswith("/vm/") and top.count("/") == 2 and len(top) > 4


AGENT_DIRS = ("data", "attr", "control")  # what a guest's agent writes (guest_metrics')


def agent_nodes(store: XenStore, domids: list[int]) -> dict[str, list[list[str]]]:
    """On the member: domid -> [path, value] of what its guest's agent wrote."""
    found: dict[str, list[list[str]]] = {}
    for domid in domids:
        nodes = []
        for top in (f"/local/domain/{domid}/{d}" for d in AGENT_DIRS):
            for path in store.tree.walk(top):
                with contextlib.suppress(XsError):
                    nodes.append([path, store.dom0.read(path).decode("latin-1")])
        if nodes:
            found[str(domid)] = nodes
    return found


def take_agent_nodes(store: XenStore, found: dict[str, list[list[str]]]) -> None:
    """On the master: write into its copy of the member host's store what changed."""
    dom0 = store.dom0
    for domid, nodes in found.items():
        if not domid.isdigit() or int(domid) <= 0:
            continue
        tops = tuple(f"/local/domain/{domid}/{d}" for d in AGENT_DIRS)
        for path, value in nodes:
            if not any(path == t or path.startswith(t + "/") for t in tops):
                continue
            new = str(value).encode("latin-1")
            try:
                same = dom0.read(path) == new
            except XsError:
                same = False
            if not same:
                dom0.write(path, new)
