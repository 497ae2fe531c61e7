"""The garbage collector of a file SR's hidden VHD nodes.

Hidden nodes are the read-only bases snapshots and clones leave behind. One pass:

* a hidden node nobody depends on (no children) is deleted;
* a hidden node that is the only child of its parent is merged into that parent with the
  VHD library's journaled coalesce, its own children re-pointed at the parent;
* a VDI's leaf that is the only child of its hidden base is folded into it, the base
  becoming the VDI's file (:meth:`FileSr.fold_into_base`), so a VDI whose snapshots are
  all gone is one file again.

No tree holding a ``busy`` VDI (being imported, exported or served) is touched.

What a crash interrupted (coalesces, folds, snapshots half made, temporary files) is finished
or undone by :func:`recover_sr`, and only while nothing else uses the SR: a live pass must not
take a snapshot that is being made for the leftovers of one that crashed.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from xenstack.storage.errors import VhdError
from xenstack.storage.sr.filesr import SUFFIX, FileSr, hidden_marker
from xenstack.storage.vhd import VhdLayer, coalesce, recover
from xenstack.storage.vhd.chain import parent_path

log = logging.getLogger(__name__)


class ClaimSet(Protocol):
    """VDIs in use elsewhere: the GC claims a whole tree before merging in it."""

    def gc_claim(self, uuids: list[str]) -> bool: ...

    def gc_release(self, uuid: str) -> None: ...


@dataclass
class GcResult:
    deleted: list[str] = field(default_factory=list)
    coalesced: list[str] = field(default_factory=list)


def _parents(sr: FileSr) -> dict[str, str | None]:
    """node uuid -> parent node uuid (None for a base disk)."""
    parents: dict[str, str | None] = {}
    home = os.path.realpath(sr.directory)
    for node in sr.nodes():
        try:
            with VhdLayer.open(sr.path(node)) as layer:
                if layer.parent_uuid is None:
                    parents[node] = None
                else:
                    parent = parent_path(layer)
                    if os.path.dirname(os.path.realpath(parent)) != home:
                        continue  # a chain leading out of the SR: never merged into
                    parents[node] = os.path.basename(parent)[: -len(SUFFIX)]
        except (VhdError, FileNotFoundError):
            continue
    return parents


def _subtree(node: str, children: dict[str, list[str]]) -> list[str]:
    out, todo = [], [node]
    while todo:
        n = todo.pop()
        out.append(n)
        todo.extend(children.get(n, []))
    return out


def _unhide(sr: FileSr, node: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(hidden_marker(sr.directory, node))


def recover_sr(sr: FileSr) -> None:
    """Finish or undo what a crash interrupted in ``sr``.

    Contract: nothing else uses the SR meanwhile (at start-up before anything is served, or
    as it is plugged), since a snapshot in progress looks just like one a crash cut short.
    """
    sr.repair()
    recover(sr.directory)


def _being_made(sr: FileSr, node: str) -> bool:
    """A snapshot's base before its leaf is swapped in shares the leaf's file (a hard link):
    it has no children yet and must not be taken for an orphan."""
    try:
        return os.stat(sr.path(node)).st_nlink > 1
    except FileNotFoundError:
        return True


def collect_once(sr: FileSr, busy: ClaimSet | None = None) -> GcResult:
    """One GC pass over ``sr``; see the module docstring."""
    result = GcResult()
    parents = _parents(sr)
    children: dict[str, list[str]] = {}
    for node, parent in parents.items():
        if parent is not None:
            children.setdefault(parent, []).append(node)
    for node in parents:
        if not sr.is_hidden(node) or children.get(node) or _being_made(sr, node):
            continue
        if busy is not None and not busy.gc_claim([node]):
            continue
        try:
            os.unlink(sr.path(node))
            _unhide(sr, node)
        finally:
            if busy is not None:
                busy.gc_release(node)
        result.deleted.append(node)
    if result.deleted:
        return result  # parents may have lost their last child: look again next pass
    merged = _merge_one(sr, parents, children, busy)
    result.coalesced += [merged] if merged is not None else []
    return result


def _merge_one(
    sr: FileSr,
    parents: dict[str, str | None],
    children: dict[str, list[str]],
    busy: ClaimSet | None,
) -> str | None:
    """Do one merge (the tree changes: the caller looks again); the node merged, if any."""
    for node, parent in parents.items():
        if parent is None or len(children.get(parent, [])) != 1:
            continue
        hidden = sr.is_hidden(node)
        if not hidden and (children.get(node) or not sr.is_hidden(parent)):
            continue
        subtree = _subtree(node, children) + ([] if hidden else [parent])
        if busy is not None and not busy.gc_claim(subtree):
            continue
        try:
            if hidden:
                coalesce(sr.path(node), reparent=[sr.path(k) for k in children.get(node, [])])
                _unhide(sr, node)
            else:
                sr.fold_into_base(node, parent)
        finally:
            for n in subtree:
                if busy is not None:
                    busy.gc_release(n)
        return node if hidden else parent
    return None


@contextlib.contextmanager
def gc_active(lock_dir: str, sr_uuid: str) -> Iterator[None]:
    """Hold ``<lock_dir>/<sr_uuid>/gc_active`` locked while an SR's GC runs, as SM's cleanup
    holds its ``gc_active`` lock: whoever asks (``cleanup.py -q``, xenhost's ``query_gc``)
    tries the lock without blocking."""
    directory = os.path.join(lock_dir, sr_uuid)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd = os.open(os.path.join(directory, "gc_active"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # the lock goes with it


def gc_running(lock_dir: str, sr_uuid: str) -> bool:
    """Whether an SR's GC holds its ``gc_active`` lock now."""
    try:
        fd = os.open(os.path.join(lock_dir, sr_uuid, "gc_active"), os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def collect(sr: FileSr, busy: ClaimSet | None = None, *, recovering: bool = True) -> GcResult:
    """Run passes until nothing is left to do; return everything done.

    ``recovering`` first repairs what a crash left (:func:`recover_sr`): only for an SR that
    nothing else uses; the live GC of a serving toolstack passes False.
    """
    if recovering:
        recover_sr(sr)
    total = GcResult()
    while True:
        step = collect_once(sr, busy)
        if not step.deleted and not step.coalesced:
            return total
        total.deleted += step.deleted
        total.coalesced += step.coalesced
