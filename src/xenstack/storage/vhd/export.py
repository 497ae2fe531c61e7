"""Exporting a chain as raw bytes or as a dynamic VHD stream.

Nothing here holds a whole disk in memory: exports are generators of chunks, and they are
sparse-aware (only the ranges, or blocks, that some layer of the chain holds).
"""

from __future__ import annotations

import os
import uuid as uuidlib
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from xenstack.storage.buffers import aligned_buffer, is_zero
from xenstack.storage.errors import VhdError
from xenstack.storage.vhd import bitmap as bm
from xenstack.storage.vhd.create import TABLE_OFFSET, dynamic_metadata
from xenstack.storage.vhd.format import (
    FOOTER_SIZE,
    SECTOR,
    UNALLOCATED,
    DiskType,
    Footer,
    encode_bat_entries,
)
from xenstack.storage.vhd.image import VhdImage

CHUNK = 4 * 1024 * 1024


@dataclass
class ExportStream:
    """A byte stream of known total ``size`` (for Content-Length), produced lazily."""

    size: int
    chunks: Iterator[bytes | bytearray | memoryview]


def export_raw_chunks(image: VhdImage, chunk_size: int = CHUNK) -> Iterator[tuple[int, memoryview]]:
    """``(offset, data)`` for every range held in the chain, at most ``chunk_size`` each.

    Everything not yielded reads as zeros.
    """
    for offset, length in image.allocated_ranges():
        end = offset + length
        while offset < end:
            n = min(chunk_size, end - offset)
            yield offset, image.read_view(offset, n)
            offset += n


def iter_raw(image: VhdImage, chunk_size: int = CHUNK) -> Iterator[memoryview]:
    """The whole disk as contiguous raw bytes (zeros included), ``chunk_size`` at a time."""
    for offset in range(0, image.virtual_size, chunk_size):
        yield image.read_view(offset, min(chunk_size, image.virtual_size - offset))


def export_raw_file(image: VhdImage, dest_path: str) -> None:
    """Write the disk to ``dest_path`` as a sparse raw file (all-zero chunks left as holes)."""
    buf = aligned_buffer(CHUNK)
    fd = os.open(dest_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.ftruncate(fd, image.virtual_size)
        for offset, length in image.allocated_ranges():
            for at in range(offset, offset + length, CHUNK):
                data = buf[: min(CHUNK, offset + length - at)]
                image.readinto(at, data)
                if not is_zero(data):
                    _pwrite_all(fd, data, at)
    finally:
        os.close(fd)


def changed_blocks(image: VhdImage, base: VhdImage) -> list[int]:
    """The blocks whose content may differ between two chains of one family (a disk and an
    older snapshot of it): those held by a layer that is in one chain and not the other."""
    if image.block_size != base.block_size:
        raise VhdError("a delta needs chains of one block size")
    mine = {os.path.realpath(layer.path) for layer in image.layers}
    theirs = {os.path.realpath(layer.path) for layer in base.layers}
    found: set[int] = set()
    for layer in image.layers:
        if os.path.realpath(layer.path) not in theirs:
            found.update(layer.allocated_blocks())
    for layer in base.layers:
        if os.path.realpath(layer.path) not in mine:
            found.update(layer.allocated_blocks())
    count = -(-image.virtual_size // image.block_size)
    return sorted(b for b in found if b < count)


def export_vhd_stream(
    image: VhdImage, *, disk_uuid: uuidlib.UUID | None = None, base: VhdImage | None = None
) -> ExportStream:
    """The chain flattened into one dynamic VHD, as a stream (layout computed up front).

    Blocks come in ascending order right after the BAT; only blocks holding data appear.
    With ``base`` (an older snapshot of the disk) the stream is a delta, as XAPI's
    ``relative_to``: only the blocks that changed since, each whole (every sector present),
    so that importing it over a copy of ``base`` gives the disk.
    """
    if base is not None:
        delta = changed_blocks(image, base)
        full = bm.span(0, image.block_size // SECTOR)
        return _stream(image, delta, lambda _: full, disk_uuid)
    blocks = [b for b in image.allocated_blocks() if image.block_mask(b)]
    return _stream(image, blocks, image.block_mask, disk_uuid)


def _stream(
    image: VhdImage, blocks: list[int], mask: Callable[[int], int], disk_uuid: uuidlib.UUID | None
) -> ExportStream:
    size, block_size = image.virtual_size, image.block_size
    entries = -(-size // block_size)
    footer = Footer(DiskType.DYNAMIC, size, disk_uuid or uuidlib.uuid4(), data_offset=FOOTER_SIZE)
    header, chunks = dynamic_metadata(entries, block_size, None)
    data_start = TABLE_OFFSET + len(chunks[0])
    bitmap_size = bm.bitmap_bytes(block_size // SECTOR)
    span = bitmap_size + block_size
    bat = _bat_for(entries, blocks, data_start, span)
    table = encode_bat_entries(bat).ljust(len(chunks[0]), b"\xff")
    prefix = [footer.encode(), header.encode(), table]
    total = data_start + len(blocks) * span + FOOTER_SIZE
    return ExportStream(total, _vhd_chunks(image, prefix, blocks, mask, bitmap_size, footer))


def _bat_for(entries: int, blocks: list[int], data_start: int, span: int) -> array[int]:
    bat = array("I", [UNALLOCATED]) * entries
    for i, block in enumerate(blocks):
        bat[block] = (data_start + i * span) // SECTOR
    return bat


def _vhd_chunks(
    image: VhdImage,
    prefix: list[bytes],
    blocks: list[int],
    mask: Callable[[int], int],
    bitmap_size: int,
    footer: Footer,
) -> Iterator[bytes | bytearray | memoryview]:
    yield from prefix
    block_size = image.block_size
    for block in blocks:
        yield bm.encode_bitmap(mask(block), bitmap_size)
        data = aligned_buffer(block_size)
        start = block * block_size
        valid = min(block_size, image.virtual_size - start)
        image.readinto(start, data[:valid])
        yield data
    yield footer.encode()


def export_vhd_file(image: VhdImage, dest_path: str) -> None:
    """Write :func:`export_vhd_stream` of ``image`` to ``dest_path``."""
    stream = export_vhd_stream(image)
    fd = os.open(dest_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        position = 0
        for chunk in stream.chunks:
            _pwrite_all(fd, chunk, position)
            position += len(chunk)
    finally:
        os.close(fd)


def _pwrite_all(fd: int, data: bytes | bytearray | memoryview, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n
