"""One VHD file: its validated metadata, the BAT in memory, and sector I/O inside it.

A layer knows nothing about chains: it answers "which sectors of block ``b`` does this file
hold" (:meth:`VhdLayer.block_mask`) and reads or writes runs of sectors within one block.
Opening validates the whole layout (footers, header, BAT, parent locators, every allocated
block inside the file and disjoint from everything else) and raises ``VhdError`` otherwise.

Crash safety of writes (``kill -9`` at any instant leaves a valid file): a new block is
appended by first writing the footer at the new end of file, then the block's data and
bitmap, and only then the BAT entry that makes it visible. Until then it is unused space.
"""

from __future__ import annotations

import fcntl
import os
import uuid as uuidlib
from array import array
from bisect import insort

from xenstack.storage.errors import VhdError
from xenstack.storage.vhd import bitmap as bm
from xenstack.storage.vhd import layout
from xenstack.storage.vhd.format import (
    DEFAULT_BLOCK_SIZE,
    FOOTER_SIZE,
    HEADER_SIZE,
    SECTOR,
    UNALLOCATED,
    DiskType,
    DynamicHeader,
    Footer,
    ParentLocator,
    decode_locator_path,
)

_BITMAP_CACHE = 8192  # bitmaps kept per layer; a full one costs no more than an int


class VhdLayer:
    """One open VHD file (fixed, dynamic or differencing). Not thread-safe."""

    def __init__(self, path: str, fd: int, meta: layout.Layout, writable: bool) -> None:
        self.path = path
        self.writable = writable
        self.footer: Footer = meta.footer
        self.header: DynamicHeader | None = meta.header
        self.bat: array[int] = meta.bat
        self.file_size = meta.file_size
        self._fd = fd
        self._allocated = meta.allocated
        self._bitmaps: dict[int, int] = {}
        self.set_block_size(meta.header.block_size if meta.header else DEFAULT_BLOCK_SIZE)

    @classmethod
    def open(cls, path: str, *, writable: bool = False) -> VhdLayer:
        """Open and validate ``path``; VhdError if it is not a valid VHD file.

        A writable open takes an exclusive advisory lock (``flock``) for as long as the
        layer stays open: a second writer gets VhdError instead of corrupting the file.
        """
        fd = os.open(path, (os.O_RDWR if writable else os.O_RDONLY) | os.O_CLOEXEC)
        try:
            if writable:
                _lock(fd, path)
            return cls(path, fd, layout.load(fd), writable)
        except BaseException:
            os.close(fd)
            raise

    def close(self) -> None:
        """Release the file descriptor (idempotent)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> VhdLayer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def stat_size(self) -> int:
        """The file's current size on disk, as ``fstat`` reports it."""
        return os.fstat(self._fd).st_size

    def fsync(self) -> None:
        """Make everything written so far durable."""
        os.fsync(self._fd)

    def set_block_size(self, block_size: int) -> None:
        """Set the block geometry; only a fixed layer may take its chain's block size."""
        if self.header is not None and block_size != self.header.block_size:
            raise VhdError(f"{self.path}: block size differs from the rest of its chain")
        self.block_size = block_size
        self.block_sectors = block_size // SECTOR
        self.bitmap_size = bm.bitmap_bytes(self.block_sectors)
        self._full = (1 << self.block_sectors) - 1
        sectors = self.footer.current_size // SECTOR
        self.block_count = -(-sectors // self.block_sectors)
        tail = sectors % self.block_sectors
        self._last_mask = bm.span(0, tail) if tail else self._full

    @property
    def uuid(self) -> uuidlib.UUID:
        """The disk's identity (footer UUID)."""
        return self.footer.uuid

    @property
    def disk_type(self) -> DiskType:
        """Fixed, dynamic or differencing."""
        return self.footer.disk_type

    @property
    def virtual_size(self) -> int:
        """The disk's size in bytes as seen by a guest."""
        return self.footer.current_size

    @property
    def parent_uuid(self) -> uuidlib.UUID | None:
        """The parent's UUID for a differencing disk, else None."""
        if self.header is None or self.disk_type is not DiskType.DIFFERENCING:
            return None
        return self.header.parent_uuid

    def allocated_blocks(self) -> list[int]:
        """Indices of blocks present in this file, ascending (every block when fixed)."""
        if self.header is None:
            return list(range(self.block_count))
        return list(self._allocated)

    def block_mask(self, block: int) -> int:
        """The sectors of ``block`` this file holds, as a bitmap mask (see bitmap.py)."""
        if block >= self.block_count:
            return 0
        if self.header is None:
            mask = self._full
        else:
            mask = self._bitmaps.get(block, -1)
            if mask < 0:
                if self.bat[block] == UNALLOCATED:
                    return 0
                mask = self._load_bitmap(block)
        return mask if block < self.block_count - 1 else mask & self._last_mask

    def read_run(self, block: int, start: int, out: memoryview) -> None:
        """Fill ``out`` from the sectors of ``block`` from ``start``; they must be present."""
        pos = self._data_pos(block, start)
        if os.preadv(self._fd, [out], pos) != len(out):
            raise VhdError(f"{self.path}: short read at {pos} (truncated file?)")

    def write_run(self, block: int, start: int, data: memoryview) -> None:
        """Write whole sectors into ``block`` from sector ``start``, allocating if needed."""
        if self.header is None:
            self._pwrite(data, self._data_pos(block, start))
            return
        end = start + len(data) // SECTOR
        if self.bat[block] == UNALLOCATED:
            self._allocate(block, start, data)
            return
        self._pwrite(data, self._data_pos(block, start))
        old = self._raw_mask(block)
        new = old | bm.span(start, end)
        if new != old:
            self._pwrite(bm.encode_bitmap(new, self.bitmap_size), self.bat[block] * SECTOR)
            self._remember(block, new)

    def read_locator(self, loc: ParentLocator) -> str:
        """The parent path a locator stores (offsets were validated at open)."""
        raw = os.pread(self._fd, loc.data_length, loc.data_offset)
        if len(raw) != loc.data_length:
            raise VhdError(f"{self.path}: parent locator past end of file")
        return decode_locator_path(loc.platform_code, raw)

    def append_region(self, nbytes: int) -> int:
        """Reserve ``nbytes`` (whole sectors) at the end of the file; return its offset.

        The footer moves first, so the file stays valid; the region is unused until the
        caller points metadata at it.
        """
        pos = self.file_size - FOOTER_SIZE
        self._pwrite(self.footer.encode(), pos + nbytes)
        self.file_size = pos + nbytes + FOOTER_SIZE
        return pos

    def write_footer(self, footer: Footer) -> None:
        """Replace the footer at the end of the file, then its copy at offset 0."""
        raw = footer.encode()
        self._pwrite(raw, self.file_size - FOOTER_SIZE)
        if self.header is not None:
            self._pwrite(raw, 0)
        self.footer = footer
        self.set_block_size(self.block_size)

    def write_header(self, header: DynamicHeader, bat: array[int] | None = None) -> None:
        """Replace the dynamic header (one write: atomic for a crash of this process)."""
        self._pwrite(header.encode(), self.footer.data_offset)
        self.header = header
        if bat is not None:
            self.bat = bat

    def pwrite(self, data: bytes | memoryview, pos: int) -> None:
        """Raw write at ``pos``, for metadata updates by the operations module."""
        self._pwrite(data, pos)

    def pread(self, length: int, pos: int) -> bytes:
        """Raw read of exactly ``length`` bytes at ``pos``; VhdError if the file is short."""
        raw = os.pread(self._fd, length, pos)
        if len(raw) != length:
            raise VhdError(f"{self.path}: short read at {pos} (truncated file?)")
        return raw

    def _data_pos(self, block: int, start: int) -> int:
        if self.header is None:
            return (block * self.block_sectors + start) * SECTOR
        return self.bat[block] * SECTOR + self.bitmap_size + start * SECTOR

    def _raw_mask(self, block: int) -> int:
        mask = self._bitmaps.get(block, -1)
        return self._load_bitmap(block) if mask < 0 else mask

    def _load_bitmap(self, block: int) -> int:
        raw = self.pread(self.bitmap_size, self.bat[block] * SECTOR)
        mask = bm.decode_bitmap(raw, self.block_sectors)
        self._remember(block, mask)
        return mask

    def _remember(self, block: int, mask: int) -> None:
        if len(self._bitmaps) >= _BITMAP_CACHE:
            del self._bitmaps[next(iter(self._bitmaps))]
        self._bitmaps[block] = self._full if mask == self._full else mask

    def _allocate(self, block: int, start: int, data: memoryview) -> None:
        assert self.header is not None
        pos = self.append_region(self.bitmap_size + self.block_size)
        if pos // SECTOR >= UNALLOCATED:
            raise VhdError(f"{self.path}: file too large for a BAT entry")
        mask = bm.span(start, start + len(data) // SECTOR)
        bitmap = bm.encode_bitmap(mask, self.bitmap_size)
        if start == 0:
            self._pwritev([bitmap, data], pos)
        else:
            self._pwrite(data, pos + self.bitmap_size + start * SECTOR)
            self._pwrite(bitmap, pos)
        entry = (pos // SECTOR).to_bytes(4, "big")
        self._pwrite(entry, self.header.table_offset + 4 * block)
        self.bat[block] = pos // SECTOR
        insort(self._allocated, block)
        self._remember(block, mask)

    def _pwrite(self, data: bytes | memoryview, pos: int) -> None:
        self._pwritev([data], pos)

    def _pwritev(self, buffers: list[bytes | memoryview], pos: int) -> None:
        if not self.writable:
            raise VhdError(f"{self.path} is open read-only")
        total = sum(len(b) for b in buffers)
        done = os.pwritev(self._fd, buffers, pos)
        if done != total:  # a short write: finish it piecewise
            joined = b"".join(bytes(b) for b in buffers)
            while done < total:
                done += os.pwrite(self._fd, joined[done:], pos + done)


def _lock(fd: int, path: str) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise VhdError(f"{path} is already open for writing") from None


def read_footer(path: str) -> Footer:
    """Only the footer of ``path`` (cheap: for snapshots of huge disks); VhdError if bad."""
    return read_metadata(path)[0]


def read_metadata(path: str) -> tuple[Footer, DynamicHeader | None]:
    """The footer and dynamic header of ``path``, without the BAT; VhdError if bad."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        if size < FOOTER_SIZE:
            raise VhdError(f"{path}: too short to be a VHD ({size} bytes)")
        footer = Footer.decode(os.pread(fd, FOOTER_SIZE, size - FOOTER_SIZE))
        if footer.disk_type is DiskType.FIXED:
            return footer, None
        if footer.data_offset + HEADER_SIZE > size:
            raise VhdError(f"{path}: dynamic header offset outside the file")
        raw = os.pread(fd, HEADER_SIZE, footer.data_offset)
        return footer, DynamicHeader.decode(raw)
    finally:
        os.close(fd)
