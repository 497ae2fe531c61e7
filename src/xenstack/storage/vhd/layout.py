"""Loading and validating the layout of one VHD file.

:func:`load` reads the footer, the footer copy, the dynamic header and the BAT, and checks
that every structure the file points at lies inside it and that none overlap: footer copy,
header, BAT, parent locator data, each allocated block (bitmap + data) and the final footer.
Anything else raises ``VhdError``; memory used is bounded by the file's own size.
"""

from __future__ import annotations

import os
from array import array
from dataclasses import dataclass

from xenstack.storage.errors import VhdError
from xenstack.storage.vhd.bitmap import bitmap_bytes
from xenstack.storage.vhd.format import (
    FOOTER_SIZE,
    HEADER_SIZE,
    MAX_VIRTUAL_SIZE,
    SECTOR,
    UNALLOCATED,
    DiskType,
    DynamicHeader,
    Footer,
    PlatformCode,
    decode_bat,
)

_SCAN = 4096  # bytes of BAT compared at once when looking for allocated entries
_ALL_FF = b"\xff" * _SCAN

Region = tuple[int, int, str]  # start, end (exclusive), what


@dataclass
class Layout:
    """What :func:`load` found: validated metadata and the BAT (native integers)."""

    footer: Footer
    header: DynamicHeader | None
    bat: array[int]
    allocated: list[int]  # block indices with a BAT entry, ascending
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
        return Layout(footer, None, array("I"), [], size)
    header = _load_header(fd, footer, size)
    raw_bat = _load_bat(fd, footer, header, size)
    bat = decode_bat(raw_bat)
    allocated = _allocated_indices(raw_bat, bat)
    block_span = bitmap_bytes(header.block_size // SECTOR) + header.block_size
    starts = sorted(bat[i] * SECTOR for i in allocated)
    check_disjoint(_metadata(footer, header, size), starts, block_span, size)
    return Layout(footer, header, bat, allocated, size)


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
    entries, block = header.max_table_entries, header.block_size
    needed = -(-footer.current_size // block)
    if not needed <= entries <= -(-MAX_VIRTUAL_SIZE // block):
        raise VhdError(f"BAT of {entries} entries for {needed} blocks")
    if header.table_offset + 4 * entries > size - FOOTER_SIZE:
        raise VhdError(f"BAT at {header.table_offset:#x} runs past the end of the file")
    return _pread(fd, 4 * entries, header.table_offset)


def _allocated_indices(raw: bytes, bat: array[int]) -> list[int]:
    found: list[int] = []
    for base in range(0, len(raw), _SCAN):
        piece = raw[base : base + _SCAN]
        if piece == _ALL_FF[: len(piece)]:
            continue
        first = base // 4
        found.extend(i for i in range(first, first + len(piece) // 4) if bat[i] != UNALLOCATED)
    return found


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


def check_disjoint(meta: list[Region], starts: list[int], block_span: int, limit: int) -> None:
    """Raise VhdError if any region or block overlaps another or ends past ``limit``.

    ``starts`` are the sorted byte offsets of blocks of ``block_span`` bytes each.
    """
    meta.sort()
    prev_end, prev_what = 0, "the start of the file"
    i = 0
    for start in [*starts, None]:
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
