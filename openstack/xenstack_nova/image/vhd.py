"""The little of the VHD format the image handlers need: a footer's sizes and type, turning
a differencing disk into a dynamic one (so a chain can be applied base first onto one VDI),
and the gzip tar framing Glance's ``container_format=ovf`` images use (``0.vhd`` is the leaf,
``1.vhd`` its parent...)."""

from __future__ import annotations

import struct
import tarfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

FOOTER = 512
DYNAMIC = 3
DIFFERENCING = 4
COOKIE = b"conectix"


@dataclass(frozen=True)
class Footer:
    disk_type: int
    current_size: int


def read_footer(f: BinaryIO) -> Footer:
    """The footer copy at the start of a dynamic or differencing VHD file."""
    f.seek(0)
    raw = f.read(FOOTER)
    if len(raw) < FOOTER or raw[:8] != COOKIE:
        raise ValueError("not a VHD file")
    return Footer(struct.unpack(">I", raw[60:64])[0], struct.unpack(">Q", raw[48:56])[0])


def _checksum(footer: bytes) -> int:
    return ~(sum(footer[:64]) + sum(footer[68:])) & 0xFFFFFFFF


def make_dynamic(f: BinaryIO) -> None:
    """Rewrite both footer copies of a differencing VHD as a dynamic disk's: the blocks it
    holds are then read as the whole disk, which is what applying it over its parent needs."""
    for where in (0, -FOOTER):
        f.seek(where, 0 if where == 0 else 2)
        pos = f.tell()
        raw = bytearray(f.read(FOOTER))
        if raw[:8] != COOKIE:
            raise ValueError("VHD footer missing")
        raw[60:64] = struct.pack(">I", DYNAMIC)
        raw[64:68] = struct.pack(">I", _checksum(bytes(raw)))
        f.seek(pos)
        f.write(raw)


def tar_gz_stream(name: str, size: int, chunks: Iterable[bytes]) -> Iterator[bytes]:
    """A gzip'd tar holding one member ``name`` of ``size`` bytes taken from ``chunks``,
    produced as it is read (nothing spooled)."""
    gz = zlib.compressobj(6, zlib.DEFLATED, 31)
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    yield gz.compress(info.tobuf(format=tarfile.GNU_FORMAT))
    sent = 0
    for chunk in chunks:
        sent += len(chunk)
        out = gz.compress(chunk)
        if out:
            yield out
    if sent != size:
        raise OSError(f"export ended after {sent} of {size} bytes")
    pad = (-size) % tarfile.BLOCKSIZE
    yield gz.compress(b"\0" * (pad + 2 * tarfile.BLOCKSIZE))
    end = (-(tarfile.BLOCKSIZE + size + pad + 2 * tarfile.BLOCKSIZE)) % tarfile.RECORDSIZE
    yield gz.compress(b"\0" * end) + gz.flush()
