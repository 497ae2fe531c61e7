"""Journaled coalesce: merge a differencing disk into its parent, then drop it.

Steps, each recorded in a journal file next to the child before it starts:

1. ``copy``: every sector the child holds is written into the parent (growing the parent
   first if the child is larger), then the parent is fsync'ed. Re-running this is harmless
   because the child is untouched and keeps masking the parent for its own children.
2. ``relink``: each of the child's children is re-pointed at the parent (idempotent).
3. ``delete``: the child is removed, then the journal.

A crash (even ``kill -9``) at any point is repaired by :func:`recover`, which re-runs the
recorded step and the ones after it. Contract: the parent has no children other than the
child (they would see the child's data appear), and nothing has these files open.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from xenstack.storage.buffers import aligned_buffer
from xenstack.storage.errors import VhdChainError, VhdError
from xenstack.storage.vhd import bitmap as bm
from xenstack.storage.vhd.chain import open_chain
from xenstack.storage.vhd.format import SECTOR
from xenstack.storage.vhd.layer import VhdLayer
from xenstack.storage.vhd.ops import fsync_dir, grow_layer, set_parent

JOURNAL_SUFFIX = ".coalesce-journal"
_STEPS = ("copy", "relink", "delete")


def journal_path(child_path: str) -> str:
    """Where the journal of a coalesce of ``child_path`` lives."""
    return os.path.abspath(child_path) + JOURNAL_SUFFIX


def coalesce(child_path: str, *, reparent: Sequence[str] = ()) -> str:
    """Merge ``child_path`` into its parent, re-point ``reparent`` at the parent, delete it.

    ``reparent`` lists the child's own children, if any. Returns the parent's path.
    Raises VhdError/VhdChainError (before changing anything) if the chain is invalid.
    """
    chain = open_chain(child_path)
    try:
        if len(chain) < 2:
            raise VhdChainError(f"{child_path} has no parent to coalesce into")
        parent = os.path.abspath(chain[1].path)
    finally:
        for layer in chain:
            layer.close()
    for grandchild in reparent:
        with VhdLayer.open(grandchild) as layer:
            if layer.parent_uuid != chain[0].uuid:
                raise VhdChainError(f"{grandchild} is not a child of {child_path}")
    record: dict[str, Any] = {
        "child": os.path.abspath(child_path),
        "parent": parent,
        "reparent": [os.path.abspath(p) for p in reparent],
        "step": "copy",
    }
    _save(journal_path(child_path), record)
    _run(journal_path(child_path), record)
    return parent


def recover(directory: str) -> list[str]:
    """Finish every interrupted coalesce under ``directory``; return the children merged.

    Also removes temporary files left by interrupted journal writes and compactions.
    """
    names = sorted(os.listdir(directory))
    for name in names:
        if name.endswith((JOURNAL_SUFFIX + ".tmp", ".compact")):
            os.unlink(os.path.join(directory, name))
    finished = []
    for name in names:
        if name.endswith(JOURNAL_SUFFIX):
            path = os.path.join(directory, name)
            record = _load(path)
            _run(path, record)
            finished.append(str(record["child"]))
    return finished


def _run(journal: str, record: dict[str, Any]) -> None:
    child, parent = str(record["child"]), str(record["parent"])
    if record["step"] == "copy":
        if not os.path.exists(child):
            raise VhdChainError(f"journal {journal}: child {child} vanished before its copy")
        _copy_into_parent(child, parent)
        _advance(journal, record, "relink")
    if record["step"] == "relink":
        for grandchild in record["reparent"]:
            set_parent(str(grandchild), parent)
        _advance(journal, record, "delete")
    if os.path.exists(child):
        os.unlink(child)
    os.unlink(journal)
    fsync_dir(os.path.dirname(journal))


def _copy_into_parent(child_path: str, parent_path: str) -> None:
    with VhdLayer.open(child_path) as child, VhdLayer.open(parent_path, writable=True) as dest:
        if child.parent_uuid != dest.uuid:
            raise VhdChainError(f"{parent_path} is not the parent of {child_path}")
        dest.set_block_size(child.block_size)
        grow_layer(dest, max(dest.virtual_size, child.virtual_size))
        for block in child.allocated_blocks():
            _copy_block(child, dest, block)
        dest.fsync()


def _copy_block(child: VhdLayer, dest: VhdLayer, block: int) -> None:
    mask = child.block_mask(block)
    if not mask:
        return
    data = aligned_buffer(child.block_size)
    runs = list(bm.runs(mask))
    first, last = runs[0][0], runs[-1][1]
    child.read_run(block, first, data[first * SECTOR : last * SECTOR])
    for a, z in runs:
        dest.write_run(block, a, data[a * SECTOR : z * SECTOR])


def _advance(journal: str, record: dict[str, Any], step: str) -> None:
    record["step"] = step
    _save(journal, record)


def _save(journal: str, record: dict[str, Any]) -> None:
    tmp = journal + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(record, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, journal)
    fsync_dir(os.path.dirname(journal))


def _load(journal: str) -> dict[str, Any]:
    try:
        with open(journal, encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError) as exc:
        raise VhdError(f"unreadable coalesce journal {journal}: {exc}") from None
    if not isinstance(record, dict) or record.get("step") not in _STEPS:
        raise VhdError(f"invalid coalesce journal {journal}")
    return record
