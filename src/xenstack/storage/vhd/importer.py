"""Importing raw bytes or a dynamic VHD stream into a disk.

Sources are read once, front to back, a block at a time: nothing holds the whole disk.
All-zero blocks are skipped wherever the destination already reads zeros. Afterwards the
destination reads exactly like the source over the source's length: zeros are written
where the destination's chain held data and the source has none.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from typing import Protocol

from xenstack.storage.buffers import aligned_buffer, is_zero
from xenstack.storage.errors import StreamError, VhdError
from xenstack.storage.vhd import bitmap as bm
from xenstack.storage.vhd.format import (
    FOOTER_SIZE,
    HEADER_SIZE,
    SECTOR,
    DiskType,
    DynamicHeader,
    Footer,
    check_bat_entries,
    decode_bat,
)
from xenstack.storage.vhd.image import VhdImage
from xenstack.storage.vhd.layout import BlockOrder

_SKIP = 1024 * 1024


class ByteSource(Protocol):
    """Anything with a blocking ``read(n)`` returning at most ``n`` bytes, b"" at EOF.

    If it also has ``readinto`` (files, sockets' ``makefile``), that is used instead.
    """

    def read(self, size: int, /) -> bytes: ...


def import_raw(source: ByteSource, image: VhdImage) -> int:
    """Copy ``source`` (raw bytes, read to EOF) onto ``image`` from offset 0; return bytes.

    StreamError if the source is longer than the disk.
    """
    block_size = image.block_size
    buf = aligned_buffer(block_size)
    offset = 0
    while True:
        n = read_into(source, buf)
        if n == 0:
            return offset
        if offset + n > image.virtual_size:
            raise StreamError(f"raw stream longer than the disk ({image.virtual_size} bytes)")
        _write_block(image, offset, buf[:n])
        offset += n
        if n < block_size:
            return offset


def import_raw_file(image: VhdImage, src_path: str) -> None:
    """Copy the raw file ``src_path`` onto ``image``, skipping its holes (SEEK_DATA)."""
    block_size = image.block_size
    buf = aligned_buffer(block_size)
    fd = os.open(src_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        if size > image.virtual_size:
            raise StreamError(f"{src_path} is larger than the disk")
        wanted = {b for b in image.allocated_blocks() if b * block_size < size}
        wanted.update(_data_blocks(fd, size, block_size))
        for block in sorted(wanted):
            offset = block * block_size
            n = min(block_size, size - offset)
            if os.preadv(fd, [buf[:n]], offset) != n:
                raise StreamError(f"{src_path} shrank while being read")
            _write_block(image, offset, buf[:n])
    finally:
        os.close(fd)


def copy_image(source: VhdImage, dest: VhdImage) -> None:
    """Make ``dest`` read exactly like ``source`` over ``source``'s length.

    Only blocks holding data in either chain are visited. ValueError if ``source`` is the
    larger disk.
    """
    size = source.virtual_size
    if size > dest.virtual_size:
        raise ValueError(f"a disk of {size} bytes does not fit in {dest.virtual_size}")
    block_size = dest.block_size
    wanted = {b for b in dest.allocated_blocks() if b * block_size < size}
    for offset, length in source.allocated_ranges():
        wanted.update(range(offset // block_size, -(-(offset + length) // block_size)))
    buf = aligned_buffer(block_size)
    for block in sorted(wanted):
        offset = block * block_size
        n = min(block_size, size - offset)
        data = buf[:n] if n % SECTOR == 0 else source.read_view(offset, n)
        if n % SECTOR == 0:
            source.readinto(offset, data)
        _write_block(dest, offset, data)


def _write_block(image: VhdImage, offset: int, data: memoryview) -> None:
    if is_zero(data) and not image.block_present(offset // image.block_size):
        return
    image.write(offset, data)


def _data_blocks(fd: int, size: int, block_size: int) -> Iterator[int]:
    """Indices of blocks overlapping data extents of a (sparse) file."""
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
            end = os.lseek(fd, start, os.SEEK_HOLE)
        except OSError as exc:
            if exc.errno == errno.ENXIO:
                return
            if exc.errno in (errno.EINVAL, errno.EOPNOTSUPP):
                start, end = pos, size  # no hole support: everything is data
            else:
                raise
        yield from range(start // block_size, -(-min(end, size) // block_size))
        pos = max(end, pos + 1)


def read_into(source: ByteSource, out: memoryview) -> int:
    """Fill ``out`` from ``source`` until full or EOF; return the bytes read."""
    readinto = getattr(source, "readinto", None)
    done = 0
    while done < len(out):
        if readinto is not None:
            n = readinto(out[done:])
        else:
            chunk = source.read(len(out) - done)
            n = len(chunk)
            out[done : done + n] = chunk
        if not n:
            break
        done += n
    return done


class _Reader:
    """A forward-only reader over a ByteSource that knows its position."""

    def __init__(self, source: ByteSource) -> None:
        self.source = source
        self.pos = 0

    def exact(self, n: int, what: str) -> bytes:
        buf = bytearray(n)
        self.exact_into(memoryview(buf), what)
        return bytes(buf)

    def exact_into(self, out: memoryview, what: str) -> None:
        n = read_into(self.source, out)
        self.pos += n
        if n != len(out):
            raise VhdError(f"VHD stream ends inside {what} at {self.pos}")

    def skip_to(self, pos: int, what: str) -> None:
        if pos < self.pos:
            raise VhdError(f"VHD stream has {what} at {pos}, behind the read position")
        while self.pos < pos:
            self.exact(min(_SKIP, pos - self.pos), what)

    def tail(self, n: int) -> bytes:
        """The last ``n`` bytes before EOF, reading everything left."""
        kept = b""
        while chunk := self.source.read(_SKIP):
            kept = (kept + chunk)[-n:]
            self.pos += len(chunk)
        return kept


def import_vhd(source: ByteSource, image: VhdImage, *, prezeroed: bool = False) -> int:
    """Copy a dynamic VHD stream (as ``export_vhd_stream`` makes) onto ``image``.

    By default the disk ends up exactly as the stream (what the stream leaves out reads as
    zeros). ``prezeroed`` is XAPI's mode on file-based SRs: only the sectors the stream holds
    are written and the rest of the disk is left as it is, which is how a delta (exported
    relative to a base) lands on a copy of its base.

    Returns the stream's virtual size. VhdError if the stream is not a valid dynamic VHD
    whose header, BAT and blocks come in file order (fixed and differencing streams are
    refused); StreamError if its virtual size exceeds the disk's.
    """
    reader = _Reader(source)
    footer = _stream_footer(reader.exact(FOOTER_SIZE, "the footer copy"))
    if footer.current_size > image.virtual_size:
        raise StreamError(f"VHD stream of {footer.current_size} bytes exceeds the disk")
    reader.skip_to(footer.data_offset, "the dynamic header")
    header = DynamicHeader.decode(reader.exact(HEADER_SIZE, "the dynamic header"))
    block_size = header.block_size
    bitmap_size = bm.bitmap_bytes(block_size // SECTOR)
    buf = aligned_buffer(bitmap_size + block_size)
    seen = bytearray(-(-header.max_table_entries // 8))  # one bit a block: bounded memory
    for sector, block in _stream_blocks(reader, footer, header):
        pos = sector * SECTOR
        reader.skip_to(pos, f"block {block}")
        reader.exact_into(buf, f"block {block}")
        mask = bm.decode_bitmap(bytes(buf[:bitmap_size]), block_size // SECTOR)
        data = buf[bitmap_size:]
        _import_block(image, footer.current_size, block * block_size, mask, data, prezeroed)
        seen[block >> 3] |= 1 << (block & 7)
    _final_footer(reader, footer)
    if not prezeroed:
        _zero_unseen(image, footer.current_size, block_size, seen)
    return footer.current_size


def _final_footer(reader: _Reader, first: Footer) -> None:
    """Check the stream's closing footer against its first copy.

    The footer normally follows the last block, and then the import ends with it instead of
    waiting for EOF: a client that streams without knowing the length declares a huge
    Content-Length and waits for the answer once it has sent the VHD (Xen Orchestra does).
    Anything else between the last block and the footer is read through to EOF.
    """
    buf = bytearray(FOOTER_SIZE)
    n = read_into(reader.source, memoryview(buf))
    reader.pos += n
    if n == FOOTER_SIZE and _same_disk(bytes(buf), first):
        return
    rest = reader.tail(FOOTER_SIZE)
    last = (bytes(buf[:n]) + rest)[-FOOTER_SIZE:]
    if len(last) < FOOTER_SIZE or not _same_disk(last, first):
        raise VhdError("the VHD stream's final footer does not match its first")


def _same_disk(raw: bytes, first: Footer) -> bool:
    try:
        end = Footer.decode(raw)
    except VhdError:
        return False
    return end.uuid == first.uuid and end.current_size == first.current_size


def _stream_footer(raw: bytes) -> Footer:
    try:
        footer = Footer.decode(raw)
    except VhdError as exc:
        raise VhdError(f"not a dynamic VHD stream: {exc}") from None
    if footer.disk_type is not DiskType.DYNAMIC:
        raise VhdError(f"only dynamic VHD streams can be imported, not {footer.disk_type.name}")
    return footer


def _stream_blocks(reader: _Reader, footer: Footer, header: DynamicHeader) -> BlockOrder:
    """``(sector, block)`` of the stream's blocks in stream order, checked disjoint first.

    The BAT is bounded (``check_bat_entries``) and its order kept packed (``BlockOrder``).
    """
    entries, block_size = header.max_table_entries, header.block_size
    check_bat_entries(entries, footer.current_size, block_size)
    reader.skip_to(header.table_offset, "the BAT")
    raw = reader.exact(4 * entries, "the BAT")
    blocks = BlockOrder(raw, decode_bat(raw))
    span = bm.bitmap_bytes(block_size // SECTOR) + block_size
    floor = reader.pos
    for sector, block in blocks:
        pos = sector * SECTOR
        if pos < floor:
            raise VhdError(f"block {block} at {pos} overlaps earlier data in the stream")
        floor = pos + span
    return blocks


def _import_block(
    image: VhdImage, src_size: int, start: int, mask: int, data: memoryview, prezeroed: bool
) -> None:
    """Write one stream block (``mask``: its bitmap) at byte ``start`` of ``image``."""
    if start >= src_size:
        return
    valid = min(len(data), src_size - start) // SECTOR
    mask &= bm.span(0, valid)
    if _dest_has_data(image, start, valid * SECTOR):
        if prezeroed:  # the sectors the stream holds, zeros included; the rest stays
            for a, z in bm.runs(mask):
                image.write(start + a * SECTOR, data[a * SECTOR : z * SECTOR])
            return
        for a, z in bm.runs(~mask & bm.span(0, valid)):
            data[a * SECTOR : z * SECTOR] = bytes((z - a) * SECTOR)
        image.write(start, data[: valid * SECTOR])
        return
    for a, z in bm.runs(mask):
        run = data[a * SECTOR : z * SECTOR]
        if not is_zero(run):
            image.write(start + a * SECTOR, run)


def _dest_has_data(image: VhdImage, start: int, length: int) -> bool:
    first, last = start // image.block_size, (start + length - 1) // image.block_size
    return any(image.block_present(b) for b in range(first, last + 1))


def _zero_unseen(image: VhdImage, src_size: int, block_size: int, seen: bytearray) -> None:
    """Write zeros where the destination holds data that the stream did not cover."""
    for dest_block in image.allocated_blocks():
        lo = dest_block * image.block_size
        hi = min(lo + image.block_size, src_size)
        for block in range(lo // block_size, -(-hi // block_size)):
            if not seen[block >> 3] >> (block & 7) & 1:
                a, z = max(lo, block * block_size), min(hi, (block + 1) * block_size)
                if a < z:
                    image.write(a, bytes(z - a))
