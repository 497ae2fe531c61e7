"""Loading and validating the layout of one VHD file.

:func:`load` reads the footer, the footer copy, the dynamic header and the BAT, and checks
that every structure the file points at lies inside it and that none overlap: footer copy,
header, BAT, parent locator data, each allocated block (bitmap + data) and the final footer.
Anything else raises ``VhdError``. Memory is bounded whatever the header claims: the BAT
has at most ``MAX_BAT_ENTRIES`` entries (4 MiB) and must lie inside the file, and what is
derived from it is kept packed (:func:`allocated_indices`, :class:`BlockOrder`): about 16
bytes per BAT entry at most, never a Python object per block.
"""

from __future__ import annotations

import heapq
import itertools
import os
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from xenstack.storage.errors import VhdError
from xenstack.storage.vhd.bitmap import bitmap_bytes
from xenstack.storage.vhd.format import (
    FOOTER_SIZE,
    HEADER_SIZE,
    SECTOR,
    UNALLOCATED,
    DiskType,
    DynamicHeader,
    Footer,
    PlatformCode,
    check_bat_entries,
    decode_bat,
)

_SCAN = 4096  # bytes of BAT compared at once when looking for allocated entries
_ALL_FF = b"\xff" * _SCAN
_RUN = 1 << 15  # blocks sorted at once: the transient Python list stays under 2 MiB

Region = tuple[int, int, str]  # start, end (exclusive), what


@dataclass
class Layout:
    """What :func:`load` found: validated metadata and the BAT (native integers)."""

    footer: Footer
    header: DynamicHeader | None
    bat: array[int]
    allocated: array[int]  # block indices with a BAT entry, ascending
    file_size: int


def load(fd: int) -> Layout:
    """Read and validate the VHD open on ``fd``; VhdError if anything is wrong."""
    size = os.fstat(fd).st_size
    if size < FOOTER_SIZE or size % SECTOR:
        raise VhdError(f"file size {size} is not a whole number of sectors (truncated?)")
    footer = Footer.decode(_pread(fd, FOOTER_SIZE, size - FOOTER_SIZE))
    if footer.disk_type is DiskType.FIXED:
        if size != footer.current_size + FOOTER_SIZE:
            raise VhdError(f"fixed disk of {footer.current_size} bytes in a {size}-byte file")
        return Layout(footer, None, array("I"), array("I"), size)
    header = _load_header(fd, footer, size)
    raw = _load_bat(fd, footer, header, size)
    bat = decode_bat(raw)
    block_span = bitmap_bytes(header.block_size // SECTOR) + header.block_size
    starts = (sector * SECTOR for sector, _ in BlockOrder(raw, bat))
    check_disjoint(_metadata(footer, header, size), starts, block_span, size)
    return Layout(footer, header, bat, allocated_indices(raw, bat), size)


def _pread(fd: int, length: int, pos: int) -> bytes:
    raw = os.pread(fd, length, pos)
    if len(raw) != length:
        raise VhdError(f"short read of {length} bytes at {pos} (truncated file?)")
    return raw


def _load_header(fd: int, footer: Footer, size: int) -> DynamicHeader:
    at = footer.data_offset
    if at < FOOTER_SIZE or at + HEADER_SIZE > size - FOOTER_SIZE:
        raise VhdError(f"dynamic header offset {at:#x} outside the file")
    try:
        copy = Footer.decode(_pread(fd, FOOTER_SIZE, 0))
    except VhdError as exc:
        raise VhdError(f"footer copy at offset 0: {exc}") from None
    if copy.uuid != footer.uuid or copy.disk_type != footer.disk_type:
        raise VhdError("footer copy at offset 0 does not match the footer")
    return DynamicHeader.decode(_pread(fd, HEADER_SIZE, at))


def _load_bat(fd: int, footer: Footer, header: DynamicHeader, size: int) -> bytes:
    entries = header.max_table_entries
    check_bat_entries(entries, footer.current_size, header.block_size)
    if header.table_offset + 4 * entries > size - FOOTER_SIZE:
        raise VhdError(f"BAT at {header.table_offset:#x} runs past the end of the file")
    return _pread(fd, 4 * entries, header.table_offset)


def _scan(raw: bytes, bat: array[int]) -> Iterator[tuple[int, int]]:
    """``(index, sector)`` of the allocated entries of ``bat`` (decoded from ``raw``),
    ascending; stretches of unallocated entries are skipped by comparing raw bytes."""
    for base in range(0, len(raw), _SCAN):
        piece = raw[base : base + _SCAN]
        if piece == _ALL_FF[: len(piece)]:
            continue
        for i in range(base // 4, (base + len(piece)) // 4):
            if bat[i] != UNALLOCATED:
                yield i, bat[i]


def allocated_indices(raw: bytes, bat: array[int]) -> array[int]:
    """The indices of ``bat``'s allocated entries, ascending, packed 4 bytes each."""
    return array("I", (i for i, _ in _scan(raw, bat)))


class BlockOrder:
    """A BAT's allocated blocks in file order, as ``(sector, block)`` pairs.

    Held as sorted runs of packed ``sector << 32 | block`` integers (8 bytes a block) and
    merged lazily on each iteration, so that ordering a million blocks never builds a
    million tuples.
    """

    def __init__(self, raw: bytes, bat: array[int]) -> None:
        self._runs: list[array[int]] = []
        packed = ((sector << 32) | i for i, sector in _scan(raw, bat))
        while run := sorted(itertools.islice(packed, _RUN)):
            self._runs.append(array("Q", run))

    def __len__(self) -> int:
        return sum(len(run) for run in self._runs)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for packed in heapq.merge(*self._runs):
            yield packed >> 32, packed & 0xFFFF_FFFF


def _metadata(footer: Footer, header: DynamicHeader, size: int) -> list[Region]:
    regions: list[Region] = [
        (0, FOOTER_SIZE, "the footer copy"),
        (footer.data_offset, footer.data_offset + HEADER_SIZE, "the dynamic header"),
        (header.table_offset, header.table_offset + 4 * header.max_table_entries, "the BAT"),
        (size - FOOTER_SIZE, size, "the footer"),
    ]
    if footer.disk_type is DiskType.DIFFERENCING:
        for n, loc in enumerate(header.locators):
            if loc.platform_code != PlatformCode.NONE and loc.space_bytes:
                end = loc.data_offset + loc.space_bytes
                regions.append((loc.data_offset, end, f"parent locator {n}"))
    return [r for r in regions if r[1] > r[0]]


def check_disjoint(meta: list[Region], starts: Iterable[int], block_span: int, limit: int) -> None:
    """Raise VhdError if any region or block overlaps another or ends past ``limit``.

    ``starts`` are the ascending byte offsets of blocks of ``block_span`` bytes each
    (consumed once, never stored).
    """
    meta.sort()
    prev_end, prev_what = 0, "the start of the file"
    i = 0
    ends: list[int | None] = [None]
    for start in itertools.chain(starts, ends):
        while i < len(meta) and (start is None or meta[i][0] <= start):
            m_start, m_end, what = meta[i]
            if m_start < prev_end:
                raise VhdError(f"{what} at {m_start:#x} overlaps {prev_what}")
            prev_end, prev_what = m_end, what
            i += 1
        if start is None:
            break
        if start < prev_end:
            raise VhdError(f"block at {start:#x} overlaps {prev_what} (bad BAT entry)")
        prev_end, prev_what = start + block_span, f"the block at {start:#x}"
    if prev_end > limit:
        raise VhdError(f"{prev_what} ends past the end of the file")
