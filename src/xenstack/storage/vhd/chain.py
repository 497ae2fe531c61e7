"""Differencing chains: finding parents, and reading sectors through a chain.

A chain is a list of layers, leaf first. A sector's content is taken from the first layer
whose bitmap has it; a sector no layer has reads as zeros. Parents are found like XenServer
and QEMU find them: the ``W2ru`` locator (path relative to the child's directory), then
``W2ku`` (absolute), then ``MacX``, then the parent's name in the child's directory; the file
found must carry the UUID the child records.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from xenstack.storage.errors import VhdChainError
from xenstack.storage.vhd import bitmap as bm
from xenstack.storage.vhd.format import SECTOR, PlatformCode
from xenstack.storage.vhd.layer import VhdLayer

MAX_DEPTH = 256
_LOCATOR_ORDER = (PlatformCode.W2RU, PlatformCode.W2KU, PlatformCode.MACX)
_zero_cache: dict[int, memoryview] = {}


def parent_path(layer: VhdLayer) -> str:
    """The path of ``layer``'s parent file; VhdChainError if no candidate exists."""
    header = layer.header
    if header is None or layer.parent_uuid is None:
        raise VhdChainError(f"{layer.path} is not a differencing disk")
    base = os.path.dirname(os.path.abspath(layer.path))
    candidates = [
        os.path.normpath(os.path.join(base, layer.read_locator(loc).replace("\\", "/")))
        for code in _LOCATOR_ORDER
        for loc in header.locators
        if loc.platform_code == code and loc.data_length
    ]
    if header.parent_name:
        candidates.append(os.path.join(base, header.parent_name))
    for candidate in candidates:
        if os.path.isfile(candidate):
            return candidate
    raise VhdChainError(
        f"parent {layer.parent_uuid} of {layer.path} not found (tried {candidates})"
    )


def open_chain(path: str, *, writable: bool = False) -> list[VhdLayer]:
    """Open ``path`` and all its ancestors, leaf first; only the leaf may be writable.

    Raises VhdChainError for a missing or mismatched parent, a loop or a chain deeper than
    MAX_DEPTH, and VhdError for any invalid file in it. On error nothing stays open.
    """
    layers: list[VhdLayer] = []
    try:
        layer = VhdLayer.open(path, writable=writable)
        seen: set[tuple[int, int]] = set()
        while True:
            st = os.stat(layer.path)
            if (st.st_dev, st.st_ino) in seen or any(x.uuid == layer.uuid for x in layers):
                layer.close()
                raise VhdChainError(f"loop in the chain of {path} at {layer.path}")
            seen.add((st.st_dev, st.st_ino))
            layers.append(layer)
            if layer.parent_uuid is None:
                break
            if len(layers) >= MAX_DEPTH:
                raise VhdChainError(f"chain of {path} is deeper than {MAX_DEPTH}")
            layer = _open_parent(layer)
        _unify_block_size(layers)
        return layers
    except BaseException:
        for opened in layers:
            opened.close()
        raise


def _open_parent(child: VhdLayer) -> VhdLayer:
    parent = VhdLayer.open(parent_path(child))
    if parent.uuid != child.parent_uuid:
        parent.close()
        raise VhdChainError(
            f"{parent.path} has UUID {parent.uuid}, {child.path} expects {child.parent_uuid}"
        )
    return parent


def _unify_block_size(layers: Sequence[VhdLayer]) -> None:
    dynamic = [layer for layer in layers if layer.header is not None]
    block_size = dynamic[0].block_size if dynamic else layers[0].block_size
    for layer in layers:
        layer.set_block_size(block_size)


def read_sectors(
    layers: Sequence[VhdLayer], sector: int, out: memoryview, *, zeroed: bool = False
) -> None:
    """Fill ``out`` (whole sectors) with the chain's content from ``sector`` on.

    ``zeroed`` says ``out`` already holds zeros, so holes need not be written.
    """
    per_block = layers[0].block_sectors
    done, total = 0, len(out) // SECTOR
    while done < total:
        block, lo = divmod(sector + done, per_block)
        hi = min(per_block, lo + total - done)
        base = (done - lo) * SECTOR  # where sector 0 of this block would land in ``out``
        need = bm.span(lo, hi)
        for layer in layers:
            have = layer.block_mask(block) & need
            if have:
                for a, z in bm.runs(have):
                    layer.read_run(block, a, out[base + a * SECTOR : base + z * SECTOR])
                need &= ~have
                if not need:
                    break
        if need and not zeroed:
            zeros = _zeros(per_block * SECTOR)
            for a, z in bm.runs(need):
                out[base + a * SECTOR : base + z * SECTOR] = zeros[: (z - a) * SECTOR]
        done += hi - lo


def block_mask(layers: Sequence[VhdLayer], block: int) -> int:
    """The sectors of ``block`` held by any layer of the chain."""
    mask = 0
    for layer in layers:
        mask |= layer.block_mask(block)
    return mask


def allocated_blocks(layers: Sequence[VhdLayer]) -> list[int]:
    """Blocks present in at least one layer, ascending."""
    if len(layers) == 1:
        return layers[0].allocated_blocks()
    found: set[int] = set()
    for layer in layers:
        found.update(layer.allocated_blocks())
    return sorted(found)


def _zeros(size: int) -> memoryview:
    zeros = _zero_cache.get(size)
    if zeros is None:
        zeros = _zero_cache[size] = memoryview(bytes(size))
    return zeros
