"""A virtual disk as a guest sees it: a VHD chain read as one, written into its leaf.

``VhdImage.open(path)`` opens the file and all its ancestors. Reads go through the chain
(sectors held nowhere read as zeros); writes go into the leaf only, allocating blocks as
needed. A write that covers part of a sector first reads that sector through the chain.
Every method is synchronous and blocking; an image is not thread-safe. One writer at a time
(a writable open locks the leaf); a reader sees the metadata as it was when it opened.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import TracebackType

from xenstack.storage.buffers import aligned_buffer
from xenstack.storage.vhd import bitmap as bm
from xenstack.storage.vhd import chain, ops
from xenstack.storage.vhd.format import SECTOR
from xenstack.storage.vhd.layer import VhdLayer


class VhdImage:
    """An open VHD chain. Use as a context manager or call :meth:`close`."""

    def __init__(self, layers: list[VhdLayer]) -> None:
        self.layers = layers
        self.leaf = layers[0]
        self._closed = False

    @classmethod
    def open(cls, path: str, *, writable: bool = True) -> VhdImage:
        """Open ``path`` and its parents. VhdError (or VhdChainError) if any is invalid."""
        return cls(chain.open_chain(path, writable=writable))

    def close(self) -> None:
        """Close every file of the chain (idempotent)."""
        for layer in self.layers:
            layer.close()
        self._closed = True

    def __enter__(self) -> VhdImage:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def path(self) -> str:
        """The leaf file's path."""
        return self.leaf.path

    @property
    def virtual_size(self) -> int:
        """Size of the disk in bytes, as the leaf's footer says."""
        return self.leaf.virtual_size

    @property
    def physical_utilisation(self) -> int:
        """Bytes the leaf file takes (its size), as XenServer reports for a VHD VDI."""
        return self.leaf.stat_size()

    @property
    def block_size(self) -> int:
        """The chain's block size in bytes (2 MiB unless created otherwise)."""
        return self.leaf.block_size

    @property
    def depth(self) -> int:
        """Number of files in the chain (1 for a disk without parent)."""
        return len(self.layers)

    def read(self, offset: int, length: int) -> bytearray:
        """``length`` bytes at ``offset``; ValueError if the range is outside the disk."""
        return bytearray(self.read_view(offset, length))

    def read_view(self, offset: int, length: int) -> memoryview:
        """Like :meth:`read`, without a copy: a fresh view into a page-aligned buffer."""
        self._check_range(offset, length)
        first = offset // SECTOR
        last = -(-(offset + length) // SECTOR)
        buf = aligned_buffer((last - first) * SECTOR)
        chain.read_sectors(self.layers, first, buf, zeroed=True)
        head = offset % SECTOR
        return buf[head : head + length]

    def readinto(self, offset: int, out: memoryview) -> None:
        """Fill ``out`` (whole sectors, at a sector-aligned ``offset``) from the disk."""
        if offset % SECTOR or len(out) % SECTOR:
            raise ValueError("readinto needs sector-aligned offset and length")
        self._check_range(offset, len(out))
        chain.read_sectors(self.layers, offset // SECTOR, out)

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        """Write ``data`` at ``offset`` into the leaf; ValueError outside the disk."""
        view = memoryview(data).cast("B")
        self._check_range(offset, len(view))
        head = offset % SECTOR
        if head:
            take = min(SECTOR - head, len(view))
            self._patch_sector(offset - head, head, view[:take])
            view, offset = view[take:], offset + take
        whole = len(view) - len(view) % SECTOR
        if whole:
            self._write_sectors(offset // SECTOR, view[:whole])
        if whole < len(view):
            self._patch_sector(offset + whole, 0, view[whole:])

    def resize(self, new_size: int) -> None:
        """Grow the disk (its leaf) to ``new_size`` bytes; ValueError to shrink."""
        ops.grow_layer(self.leaf, new_size)

    def flush(self) -> None:
        """Make the leaf's writes durable (fsync)."""
        self.leaf.fsync()

    def block_present(self, block: int) -> bool:
        """Whether any layer of the chain holds any sector of ``block``."""
        return chain.block_mask(self.layers, block) != 0

    def allocated_blocks(self) -> list[int]:
        """Blocks (of ``block_size``) that hold data somewhere in the chain, ascending."""
        count = -(-self.virtual_size // self.block_size)
        return [b for b in chain.allocated_blocks(self.layers) if b < count]

    def block_mask(self, block: int) -> int:
        """Sectors of ``block`` held somewhere in the chain (bit ``i`` is sector ``i``)."""
        return chain.block_mask(self.layers, block)

    def allocated_ranges(self) -> Iterator[tuple[int, int]]:
        """Maximal ``(offset, length)`` byte ranges held somewhere in the chain, ascending.

        Everything outside them reads as zeros, so they are all a sparse export needs.
        """
        per_block = self.leaf.block_sectors
        limit = self.virtual_size // SECTOR
        pending: tuple[int, int] | None = None
        for block in self.allocated_blocks():
            base = block * per_block
            for a, z in bm.runs(self.block_mask(block)):
                start, end = base + a, min(base + z, limit)
                if pending and pending[1] == start:
                    pending = (pending[0], end)
                    continue
                if pending:
                    yield pending[0] * SECTOR, (pending[1] - pending[0]) * SECTOR
                pending = (start, end)
        if pending:
            yield pending[0] * SECTOR, (pending[1] - pending[0]) * SECTOR

    def _check_range(self, offset: int, length: int) -> None:
        if self._closed:
            raise ValueError("I/O on a closed VhdImage")
        if offset < 0 or length < 0 or offset + length > self.virtual_size:
            raise ValueError(f"range {offset}+{length} outside a disk of {self.virtual_size} bytes")

    def _patch_sector(self, sector_offset: int, at: int, data: memoryview) -> None:
        sector = self.read(sector_offset, SECTOR)
        sector[at : at + len(data)] = data
        self._write_sectors(sector_offset // SECTOR, memoryview(sector))

    def _write_sectors(self, sector: int, data: memoryview) -> None:
        per_block = self.leaf.block_sectors
        done, total = 0, len(data) // SECTOR
        while done < total:
            block, lo = divmod(sector + done, per_block)
            count = min(per_block - lo, total - done)
            self.leaf.write_run(block, lo, data[done * SECTOR : (done + count) * SECTOR])
            done += count
