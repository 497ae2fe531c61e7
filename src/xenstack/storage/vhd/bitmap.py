"""Sector bitmaps as Python integers.

On disk a block's bitmap has one bit per sector, most significant bit first (sector 0 is the
top bit of byte 0). In memory it is an ``int`` whose bit ``i`` is sector ``i`` of the block,
so set operations (union, intersection, difference) are single big-integer operations and a
run of sectors is found with a few of them, whatever the block size.
"""

from __future__ import annotations

from collections.abc import Iterator

from xenstack.storage.vhd.format import SECTOR

_REVERSE = bytes(int(f"{b:08b}"[::-1], 2) for b in range(256))


def bitmap_bytes(block_sectors: int) -> int:
    """Bytes the bitmap of a block of ``block_sectors`` takes on disk (whole sectors)."""
    return -(-block_sectors // (8 * SECTOR)) * SECTOR


def decode_bitmap(raw: bytes, block_sectors: int) -> int:
    """The mask for an on-disk bitmap; bits past ``block_sectors`` are ignored."""
    mask = int.from_bytes(raw.translate(_REVERSE), "little")
    return mask & ((1 << block_sectors) - 1)


def encode_bitmap(mask: int, size: int) -> bytes:
    """The ``size`` on-disk bytes for ``mask``."""
    return mask.to_bytes(size, "little").translate(_REVERSE)


def span(start: int, end: int) -> int:
    """The mask of sectors ``start`` (inclusive) to ``end`` (exclusive)."""
    return ((1 << (end - start)) - 1) << start


def runs(mask: int) -> Iterator[tuple[int, int]]:
    """Maximal runs of set bits, as ``(start, end)`` pairs in increasing order."""
    base = 0
    while mask:
        low = (mask & -mask).bit_length() - 1
        mask >>= low
        base += low
        ones = (~mask & (mask + 1)).bit_length() - 1
        yield base, base + ones
        mask >>= ones
        base += ones
