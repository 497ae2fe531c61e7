"""The XVA format (XenServer's VM export): a plain tar stream, read and written in one pass.

Layout: ``ova.xml`` first (the metadata, produced by the caller), then for each disk, in the
order the caller gives, its data cut into 1 MiB chunks named ``<prefix>/<8-digit number>``,
each followed by its checksum file: ``<prefix>/<number>.xxhash`` (XXH64 of the chunk, 16
uppercase hex digits; what current XAPI writes) or ``<prefix>/<number>.checksum`` (SHA-1,
lowercase hex; older XAPI). The reader accepts both. Chunks that read as zeros are left out,
except the first and the last, whose presence tells the reader where a disk starts and ends.
Then the tar end-of-archive marker. The whole stream may be gzip- or zstd-compressed: the
reader recognises either magic and the writer compresses on request.

Representation and byte pumping only: nothing here knows about VMs or the database.
"""

from __future__ import annotations

import hashlib
import tarfile
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import xxhash
import zstandard

from xenstack.storage.buffers import is_zero
from xenstack.storage.errors import StreamError
from xenstack.storage.vhd import ByteSource, VhdImage
from xenstack.storage.vhd.importer import read_into

CHUNK = 1024 * 1024
BLOCK = 512
OVA_XML = "ova.xml"
MAX_METADATA = 64 * 1024 * 1024
XXHASH = ".xxhash"
SHA1 = ".checksum"
CHECKSUM_SUFFIXES = (XXHASH, SHA1)
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
END_OF_ARCHIVE = bytes(2 * BLOCK)
Chunk = bytes | bytearray | memoryview


class XvaError(StreamError):
    """The stream is not a valid XVA; ``str()`` is the reason."""


class PrematureEof(XvaError):
    """The stream ended before the archive did."""


class ChunkReader(Protocol):
    """A disk's contents by offset (a VHD image, or nothing for a disk without a file)."""

    virtual_size: int

    def chunk_numbers(self) -> list[int]: ...
    def read_chunk(self, offset: int, length: int) -> Chunk: ...


# ---- writing -----------------------------------------------------------------------------


def _padding(size: int) -> bytes:
    return bytes(-size % BLOCK)


def member(name: str, data: Chunk, mtime: int | None = None) -> list[Chunk]:
    """One tar member: header, data and padding."""
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(time.time()) if mtime is None else mtime
    info.mode = 0o644
    header = info.tobuf(format=tarfile.USTAR_FORMAT, encoding="utf-8", errors="strict")
    return [header, data, _padding(len(data))]


def chunk_name(prefix: str, number: int) -> str:
    return f"{prefix}/{number:08d}"


class ImageChunks:
    """A VHD image seen as XVA chunks: the ones some layer of the chain holds, plus the ends."""

    def __init__(self, image: VhdImage) -> None:
        self.image = image
        self.virtual_size = image.virtual_size

    def chunk_numbers(self) -> list[int]:
        numbers = {0, max(0, -(-self.virtual_size // CHUNK) - 1)}
        for offset, length in self.image.allocated_ranges():
            numbers.update(range(offset // CHUNK, -(-(offset + length) // CHUNK)))
        return sorted(numbers)

    def read_chunk(self, offset: int, length: int) -> Chunk:
        return self.image.read_view(offset, length)


@dataclass
class EmptyDisk:
    """A disk with no data to send (one without a file): zeros throughout."""

    virtual_size: int

    def chunk_numbers(self) -> list[int]:
        return sorted({0, max(0, -(-self.virtual_size // CHUNK) - 1)})

    def read_chunk(self, offset: int, length: int) -> Chunk:
        return bytes(length)


def checksum(suffix: str, data: Chunk) -> str:
    """The text of a chunk's checksum file of kind ``suffix`` (XXHASH or SHA1)."""
    if suffix == XXHASH:
        return f"{xxhash.xxh64_intdigest(data):016X}"
    return hashlib.sha1(data).hexdigest()


def disk_members(
    prefix: str, disk: ChunkReader, advance: Callable[[int], None], suffix: str = XXHASH
) -> Iterator[Chunk]:
    """The tar members of one disk; ``advance(n)`` is told of every ``n`` bytes covered.

    Each chunk's checksum file is of kind ``suffix``: XXHASH (as current XAPI) or SHA1.
    """
    numbers = disk.chunk_numbers()
    size = disk.virtual_size
    covered = 0
    for number in numbers:
        offset = number * CHUNK
        if offset >= size:
            break
        length = min(CHUNK, size - offset)
        data = disk.read_chunk(offset, length)
        ends = number == 0 or offset + length == size
        if ends or not is_zero(data):
            name = chunk_name(prefix, number)
            yield from member(name, data)
            yield from member(name + suffix, checksum(suffix, data).encode())
        advance(offset + length - covered)
        covered = offset + length


# ---- reading -----------------------------------------------------------------------------


class TarReader:
    """Forward-only tar member reader over a blocking byte source."""

    def __init__(self, source: ByteSource) -> None:
        self.source = source
        self.position = 0

    def _exact(self, out: memoryview) -> None:
        n = read_into(self.source, out)
        self.position += n
        if n != len(out):
            raise PrematureEof(f"the stream ends at byte {self.position}, inside the archive")

    def next_header(self) -> tarfile.TarInfo | None:
        """The next member's header, or None at the end-of-archive marker."""
        buf = bytearray(BLOCK)
        self._exact(memoryview(buf))
        if not any(buf):
            return None
        try:
            info = tarfile.TarInfo.frombuf(bytes(buf), "utf-8", "strict")
        except tarfile.HeaderError as exc:
            raise XvaError(f"bad tar header at byte {self.position - BLOCK}: {exc}") from None
        if not info.isreg():
            raise XvaError(f"unexpected tar member type for {info.name}")
        return info

    def read_data(self, info: tarfile.TarInfo, out: memoryview) -> memoryview:
        """The member's data (into ``out``, at least ``info.size`` long), padding skipped."""
        view = out[: info.size]
        self._exact(view)
        pad = -info.size % BLOCK
        if pad:
            self._exact(memoryview(bytearray(pad)))
        return view

    def drain(self) -> None:
        """Read the source to its end (the end-of-archive marker and record padding)."""
        while self.source.read(CHUNK):
            pass


def read_metadata(reader: TarReader) -> bytes:
    """The ``ova.xml`` text that must open the stream."""
    info = reader.next_header()
    if info is None or info.name != OVA_XML:
        raise UnexpectedFile(OVA_XML, "" if info is None else info.name)
    if info.size > MAX_METADATA:
        raise XvaError(f"{OVA_XML} is larger than {MAX_METADATA} bytes")
    return bytes(reader.read_data(info, memoryview(bytearray(info.size))))


class UnexpectedFile(XvaError):
    def __init__(self, expected: str, found: str) -> None:
        super().__init__(f"expected {expected}, found {found!r}")
        self.expected, self.found = expected, found


class ChecksumMismatch(XvaError):
    pass


ChunkSink = Callable[[int, memoryview], None]


def receive_disk(
    reader: TarReader,
    prefix: str,
    size: int,
    write: ChunkSink,
    advance: Callable[[int], None],
    *,
    force: bool = False,
) -> None:
    """Read one disk's chunks, checking names, order and checksums; ``write(offset, data)``.

    The disk is complete when a chunk reaches ``size``. A wrong checksum raises
    ChecksumMismatch unless ``force``.
    """
    buf = memoryview(bytearray(CHUNK))
    last, offset = -1, 0
    while offset < size:
        number, info = _next_chunk(reader, prefix, last)
        at = number * CHUNK
        if info.size > CHUNK or at + info.size > size:
            raise XvaError(f"chunk {info.name} lies outside the disk of {size} bytes")
        data = reader.read_data(info, buf)
        _check_sum(reader, info.name, data, force)
        write(at, data)
        advance(at + info.size - offset)
        last, offset = number, at + info.size


def _next_chunk(reader: TarReader, prefix: str, last: int) -> tuple[int, tarfile.TarInfo]:
    info = reader.next_header()
    if info is None:
        raise PrematureEof(f"the archive ends inside disk {prefix}")
    head, _, suffix = info.name.rpartition("/")
    if head != prefix or len(suffix) != 8 or not suffix.isdigit():
        raise UnexpectedFile(f"{prefix}/<chunk>", info.name)
    number = int(suffix)
    if number <= last:
        raise XvaError(f"chunk {info.name} comes after chunk {last}")
    return number, info


def _check_sum(reader: TarReader, name: str, data: memoryview, force: bool) -> None:
    info = reader.next_header()
    if info is None:
        raise PrematureEof(f"the archive ends before the checksum of {name}")
    suffix = info.name[len(name) :] if info.name.startswith(name + ".") else ""
    if not suffix:
        raise UnexpectedFile(name + XXHASH, info.name)
    if suffix not in CHECKSUM_SUFFIXES:
        raise XvaError(f"Found unsupported checksum file: {info.name}")
    if info.size > 128:
        raise XvaError(f"checksum file {info.name} is too large")
    got = bytes(reader.read_data(info, memoryview(bytearray(info.size)))).decode("latin-1")
    want = checksum(suffix, data)
    if got.strip().lower() != want.lower() and not force:
        raise ChecksumMismatch(
            f"Block {name} checksum failed: original = {got}; recomputed = {want}"
        )


def image_writer(image: VhdImage) -> ChunkSink:
    """Write chunks onto a fresh image, leaving all-zero chunks unallocated."""

    def write(offset: int, data: memoryview) -> None:
        if not is_zero(data):
            image.write(offset, data)

    return write


# ---- compression -------------------------------------------------------------------------


def gzip_chunks(chunks: Iterator[Chunk], level: int = 6) -> Iterator[bytes]:
    """The stream ``chunks`` make, gzip-compressed (one gzip member), in pieces."""
    packer = zlib.compressobj(level, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    for chunk in chunks:
        out = packer.compress(chunk)
        if out:
            yield out
    yield packer.flush()


def zstd_chunks(chunks: Iterator[Chunk], level: int = 3) -> Iterator[bytes]:
    """The stream ``chunks`` make, zstd-compressed (one frame), in pieces."""
    packer = zstandard.ZstdCompressor(level=level).compressobj()
    for chunk in chunks:
        out = packer.compress(chunk)
        if out:
            yield out
    yield packer.flush()


class _Prefixed:
    """A source with bytes already read from it put back in front."""

    def __init__(self, head: bytes, source: ByteSource) -> None:
        self.head, self.source = head, source

    def read(self, size: int, /) -> bytes:
        if self.head:
            out, self.head = self.head[:size], self.head[size:]
            return out
        return self.source.read(size)


class _Decompressed:
    """The decompressed bytes of a compressed stream of one or more concatenated frames
    (gzip members, zstd frames); each frame that has begun must end."""

    KIND = ""

    def __init__(self, source: ByteSource) -> None:
        self.source = source
        self.unpacker = self._unpacker()
        self.started = False  # the current frame has had input: its end must come
        self.pending, self.at = b"", 0
        self.carry = b""  # input read past the end of the last frame
        self.eof = False

    def _unpacker(self) -> Any:
        raise NotImplementedError

    def _decompress(self, data: bytes, want: int) -> bytes:
        raise NotImplementedError

    def read(self, size: int, /) -> bytes:
        while self.at >= len(self.pending) and not self.eof:
            self.pending, self.at = self._inflate(max(size, CHUNK)), 0
        out = self.pending[self.at : self.at + size]
        self.at += len(out)
        return out

    def _inflate(self, want: int) -> bytes:
        data = getattr(self.unpacker, "unconsumed_tail", b"") or self.carry
        data = data or self.source.read(CHUNK)
        self.carry = b""
        if not data:
            if self.started and not self.unpacker.eof:
                raise PrematureEof(f"the compressed stream ends inside a {self.KIND}")
            self.eof = True
            return b""
        if not self.started and not any(data):
            return b""  # zero padding after the last frame (as tape-style writers add)
        self.started = True
        out = self._decompress(data, want)
        if self.unpacker.eof:  # a frame ends: another may follow
            self.carry = self.unpacker.unused_data
            self.unpacker = self._unpacker()
            self.started = False
        return out


class GzipSource(_Decompressed):
    """The decompressed bytes of a gzip stream (several concatenated members allowed)."""

    KIND = "gzip member"

    def _unpacker(self) -> Any:
        return zlib.decompressobj(16 + zlib.MAX_WBITS)

    def _decompress(self, data: bytes, want: int) -> bytes:
        try:
            return self.unpacker.decompress(data, want)  # type: ignore[no-any-return]
        except zlib.error as exc:
            raise XvaError(f"bad gzip data: {exc}") from None


class ZstdSource(_Decompressed):
    """The decompressed bytes of a zstd stream (several concatenated frames allowed)."""

    KIND = "zstd frame"

    def _unpacker(self) -> Any:
        return zstandard.ZstdDecompressor().decompressobj()

    def _decompress(self, data: bytes, want: int) -> bytes:
        try:
            return bytes(self.unpacker.decompress(data))
        except zstandard.ZstdError as exc:
            raise XvaError(f"bad zstd data: {exc}") from None


def open_stream(source: ByteSource) -> ByteSource:
    """``source`` as a plain tar stream: a gzip- or zstd-compressed one is decompressed on
    the fly."""
    head = bytearray(len(ZSTD_MAGIC))
    n = read_into(source, memoryview(head))
    head_bytes = bytes(head[:n])
    rest = _Prefixed(head_bytes, source)
    if head_bytes.startswith(GZIP_MAGIC):
        return GzipSource(rest)
    if head_bytes == ZSTD_MAGIC:
        return ZstdSource(rest)
    return rest
