"""VHD on-disk structures: the footer, the dynamic header, parent locators, the BAT.

Representation only: these functions turn bytes into values and back, and decide nothing
about files, layouts or chains. Decoding is strict: a wrong cookie, a bad checksum, an
unknown version, type or feature bit, or a field outside what the specification allows
raises :class:`~xenstack.storage.errors.VhdError`. All integers are big-endian on disk.

Reference: Microsoft, "Virtual Hard Disk Image Format Specification", version 1.0.
"""

from __future__ import annotations

import enum
import struct
import sys
import time
import uuid
from array import array
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from xenstack.storage.errors import VhdError

SECTOR = 512
FOOTER_SIZE = 512
HEADER_SIZE = 1024
DEFAULT_BLOCK_SIZE = 2 * 1024 * 1024
MIN_BLOCK_SIZE = 4096
MAX_BLOCK_SIZE = 256 * 1024 * 1024
MAX_VIRTUAL_SIZE = 2040 * 1024**3  # the largest disk the specification's tools allow
# The most BAT entries a file may declare: the BAT of the largest disk at XenServer's 2 MiB
# block size (4 MiB of BAT). Smaller blocks thus cap the disk (4 KiB blocks: 3.98 GiB), which
# bounds the memory a parsed image may cost whatever its header claims.
MAX_BAT_ENTRIES = -(-MAX_VIRTUAL_SIZE // DEFAULT_BLOCK_SIZE)
NO_OFFSET = 0xFFFF_FFFF_FFFF_FFFF
UNALLOCATED = 0xFFFF_FFFF  # a BAT entry for a block that is not in the file
FORMAT_VERSION = 0x0001_0000
FEATURE_TEMPORARY = 0x1
FEATURE_RESERVED = 0x2  # the specification says this bit is always set
VHD_EPOCH = 946_684_800  # 2000-01-01T00:00:00Z as a Unix time
FOOTER_COOKIE = b"conectix"
HEADER_COOKIE = b"cxsparse"
CREATOR_APP = b"tap\x00"  # XenServer's; QEMU then trusts current_size over the CHS geometry
CREATOR_VERSION = 0x0001_0003
CREATOR_OS = b"Wi2k"
LOCATOR_COUNT = 8

_FOOTER = struct.Struct(">8sIIQI4sI4sQQHBBII16sB427s")
_FOOTER_CHECKSUM_AT = 64
_HEADER = struct.Struct(">8sQQIIII16sII512s")
_HEADER_CHECKSUM_AT = 36
_LOCATOR = struct.Struct(">IIIIQ")
NIL_UUID = uuid.UUID(int=0)


class DiskType(enum.IntEnum):
    """The footer's disk type field."""

    FIXED = 2
    DYNAMIC = 3
    DIFFERENCING = 4


class PlatformCode(enum.IntEnum):
    """Parent locator platform codes this library reads and writes."""

    NONE = 0
    W2RU = 0x5732_7275  # "W2ru": path relative to the child, UTF-16LE
    W2KU = 0x5732_6B75  # "W2ku": absolute path, UTF-16LE
    MACX = 0x4D61_6358  # "MacX": file:// URL, UTF-8 (read only)


class Geometry(NamedTuple):
    """Cylinders, heads and sectors per track, as the footer stores them."""

    cylinders: int
    heads: int
    sectors: int


def checksum(buf: bytes, at: int) -> int:
    """One's complement of the byte sum of ``buf``, skipping the 4-byte field at ``at``."""
    total = sum(buf) - sum(buf[at : at + 4])
    return ~total & 0xFFFF_FFFF


def geometry_for_size(size: int) -> Geometry:
    """CHS geometry for a disk of ``size`` bytes, by the specification's algorithm."""
    total = min(size // SECTOR, 65535 * 16 * 255)
    if total >= 65535 * 16 * 63:
        spt, heads = 255, 16
        cth = total // spt
    else:
        spt = 17
        cth = total // spt
        heads = max((cth + 1023) // 1024, 4)
        if cth >= heads * 1024 or heads > 16:
            spt, heads = 31, 16
            cth = total // spt
        if cth >= heads * 1024:
            spt, heads = 63, 16
            cth = total // spt
    return Geometry(cth // heads, heads, spt)


def to_vhd_time(unix_time: float) -> int:
    """Seconds since 2000-01-01 UTC, clamped to the field's range."""
    return min(max(int(unix_time) - VHD_EPOCH, 0), 0xFFFF_FFFF)


def now_vhd_time() -> int:
    """The current time as a VHD timestamp."""
    return to_vhd_time(time.time())


@dataclass(frozen=True)
class Footer:
    """The 512-byte footer at the end of every VHD (and copied at offset 0 when dynamic)."""

    disk_type: DiskType
    current_size: int
    uuid: uuid.UUID
    data_offset: int = NO_OFFSET
    original_size: int = -1  # -1: same as current_size
    timestamp: int = field(default_factory=now_vhd_time)
    geometry: Geometry | None = None  # None: computed from current_size
    features: int = FEATURE_RESERVED
    creator_app: bytes = CREATOR_APP
    creator_version: int = CREATOR_VERSION
    creator_os: bytes = CREATOR_OS
    saved_state: bool = False

    def __post_init__(self) -> None:
        if self.original_size < 0:
            object.__setattr__(self, "original_size", self.current_size)
        if self.geometry is None:
            object.__setattr__(self, "geometry", geometry_for_size(self.current_size))

    def resized(self, new_size: int) -> Footer:
        """This footer for a disk grown to ``new_size`` (new geometry, same identity)."""
        return replace(self, current_size=new_size, geometry=geometry_for_size(new_size))

    def encode(self) -> bytes:
        """The 512 bytes of this footer, checksum included."""
        geo = self.geometry or geometry_for_size(self.current_size)
        raw = _FOOTER.pack(
            FOOTER_COOKIE, self.features, FORMAT_VERSION, self.data_offset, self.timestamp,
            self.creator_app, self.creator_version, self.creator_os, self.original_size,
            self.current_size, geo.cylinders, geo.heads, geo.sectors, int(self.disk_type), 0,
            self.uuid.bytes, int(self.saved_state), bytes(427),
        )  # fmt: skip
        return _with_checksum(raw, _FOOTER_CHECKSUM_AT)

    @classmethod
    def decode(cls, buf: bytes) -> Footer:
        """Parse a footer; raise VhdError unless it is a valid one."""
        if len(buf) != FOOTER_SIZE:
            raise VhdError(f"footer is {len(buf)} bytes, expected {FOOTER_SIZE}")
        f = _FOOTER.unpack(buf)
        if f[0] != FOOTER_COOKIE:
            raise VhdError(f"bad footer cookie {f[0]!r}")
        _check_sum(buf, _FOOTER_CHECKSUM_AT, f[14], "footer")
        if f[2] != FORMAT_VERSION:
            raise VhdError(f"unsupported VHD format version {f[2]:#x}")
        if f[1] & ~(FEATURE_TEMPORARY | FEATURE_RESERVED):
            raise VhdError(f"unknown VHD feature bits {f[1]:#x}")
        if f[13] not in DiskType._value2member_map_:
            raise VhdError(f"unsupported VHD disk type {f[13]}")
        if f[16] > 1:
            raise VhdError(f"bad saved-state flag {f[16]}")
        check_virtual_size(f[9])
        disk_type = DiskType(f[13])
        if disk_type is DiskType.FIXED and f[3] != NO_OFFSET:
            raise VhdError(f"fixed disk with data offset {f[3]:#x}")
        return cls(
            disk_type=disk_type, current_size=f[9], uuid=uuid.UUID(bytes=f[15]),
            data_offset=f[3], original_size=f[8], timestamp=f[4],
            geometry=Geometry(f[10], f[11], f[12]), features=f[1], creator_app=f[5],
            creator_version=f[6], creator_os=f[7], saved_state=bool(f[16]),
        )  # fmt: skip


def check_virtual_size(size: int) -> None:
    """Raise VhdError unless ``size`` is a whole number of sectors within the VHD maximum."""
    if size % SECTOR or not 0 <= size <= MAX_VIRTUAL_SIZE:
        raise VhdError(f"virtual size {size} is not a multiple of {SECTOR} up to 2040 GiB")


@dataclass(frozen=True)
class ParentLocator:
    """One parent locator entry: where in the file a path to the parent is stored."""

    platform_code: int = PlatformCode.NONE
    data_space: int = 0  # as stored: sectors by the spec, bytes by some writers
    data_length: int = 0
    data_offset: int = 0

    @property
    def space_bytes(self) -> int:
        """Bytes reserved for the locator's data (either unit on disk, as libvhd reads it)."""
        if self.data_space < SECTOR:
            return self.data_space * SECTOR
        return self.data_space

    def encode(self) -> bytes:
        """The 24 bytes of this entry."""
        return _LOCATOR.pack(
            self.platform_code, self.data_space, self.data_length, 0, self.data_offset
        )

    @classmethod
    def decode(cls, buf: bytes) -> ParentLocator:
        """Parse one 24-byte entry (its target is checked by the file layout, not here)."""
        code, space, length, _reserved, offset = _LOCATOR.unpack(buf)
        loc = cls(code, space, length, offset)
        if code == PlatformCode.NONE:
            return loc
        if space >= SECTOR and space % SECTOR:
            raise VhdError(f"parent locator data space {space} is not whole sectors")
        if length > loc.space_bytes:
            raise VhdError(f"parent locator length {length} exceeds its space")
        return loc


@dataclass(frozen=True)
class DynamicHeader:
    """The 1024-byte header of dynamic and differencing disks."""

    table_offset: int
    max_table_entries: int
    block_size: int = DEFAULT_BLOCK_SIZE
    parent_uuid: uuid.UUID = NIL_UUID
    parent_timestamp: int = 0
    parent_name: str = ""
    locators: tuple[ParentLocator, ...] = (ParentLocator(),) * LOCATOR_COUNT

    def encode(self) -> bytes:
        """The 1024 bytes of this header, checksum included."""
        name = self.parent_name.encode("utf-16-be")
        if len(name) > 512:
            raise ValueError("parent name longer than 256 UTF-16 code units")
        locs = list(self.locators) + [ParentLocator()] * (LOCATOR_COUNT - len(self.locators))
        raw = _HEADER.pack(
            HEADER_COOKIE, NO_OFFSET, self.table_offset, FORMAT_VERSION,
            self.max_table_entries, self.block_size, 0, self.parent_uuid.bytes,
            self.parent_timestamp, 0, name.ljust(512, b"\0"),
        ) + b"".join(loc.encode() for loc in locs[:LOCATOR_COUNT]) + bytes(256)  # fmt: skip
        return _with_checksum(raw, _HEADER_CHECKSUM_AT)

    @classmethod
    def decode(cls, buf: bytes) -> DynamicHeader:
        """Parse a dynamic header; raise VhdError unless it is a valid one."""
        if len(buf) != HEADER_SIZE:
            raise VhdError(f"dynamic header is {len(buf)} bytes, expected {HEADER_SIZE}")
        h = _HEADER.unpack_from(buf)
        if h[0] != HEADER_COOKIE:
            raise VhdError(f"bad dynamic header cookie {h[0]!r}")
        _check_sum(buf, _HEADER_CHECKSUM_AT, h[6], "dynamic header")
        if h[1] != NO_OFFSET:
            raise VhdError(f"dynamic header data offset {h[1]:#x} is not unused")
        if h[3] != FORMAT_VERSION:
            raise VhdError(f"unsupported dynamic header version {h[3]:#x}")
        check_block_size(h[5])
        at = _HEADER.size
        locators = tuple(
            ParentLocator.decode(buf[at + i * _LOCATOR.size : at + (i + 1) * _LOCATOR.size])
            for i in range(LOCATOR_COUNT)
        )
        return cls(
            table_offset=h[2], max_table_entries=h[4], block_size=h[5],
            parent_uuid=uuid.UUID(bytes=h[7]), parent_timestamp=h[8],
            parent_name=decode_utf16(h[10], "utf-16-be"), locators=locators,
        )  # fmt: skip


def check_block_size(block_size: int) -> None:
    """Raise VhdError unless ``block_size`` is a power of two in the supported range."""
    if block_size & (block_size - 1) or not MIN_BLOCK_SIZE <= block_size <= MAX_BLOCK_SIZE:
        raise VhdError(f"unsupported block size {block_size}")


def check_bat_entries(entries: int, virtual_size: int, block_size: int) -> None:
    """Raise VhdError unless a BAT of ``entries`` covers the disk and stays within bounds.

    At least one entry per block of the disk; at most :data:`MAX_BAT_ENTRIES`, and no more
    than the largest disk needs at this block size.
    """
    needed = -(-virtual_size // block_size)
    most = min(MAX_BAT_ENTRIES, -(-MAX_VIRTUAL_SIZE // block_size))
    if not needed <= entries <= most:
        raise VhdError(f"BAT of {entries} entries for {needed} blocks (at most {most})")


def decode_utf16(raw: bytes, encoding: str) -> str:
    """Decode a NUL-padded UTF-16 field; raise VhdError if it is not valid UTF-16."""
    if len(raw) % 2:
        raise VhdError("odd-length UTF-16 field")
    end = next((i for i in range(0, len(raw), 2) if raw[i : i + 2] == b"\0\0"), len(raw))
    try:
        return raw[:end].decode(encoding)
    except UnicodeDecodeError as exc:
        raise VhdError(f"invalid UTF-16 text: {exc}") from None


def encode_locator_path(code: int, path: str) -> bytes:
    """The bytes a locator of platform ``code`` stores for ``path``."""
    if code == PlatformCode.MACX:
        return ("file://" + path).encode()
    return path.encode("utf-16-le")


def decode_locator_path(code: int, raw: bytes) -> str:
    """The path stored by a locator of platform ``code``; VhdError if undecodable."""
    if code == PlatformCode.MACX:
        try:
            text = raw.rstrip(b"\0").decode()
        except UnicodeDecodeError as exc:
            raise VhdError(f"invalid MacX parent locator: {exc}") from None
        return text.removeprefix("file://")
    return decode_utf16(raw, "utf-16-le")


def bat_size(entries: int) -> int:
    """Bytes the BAT of ``entries`` entries occupies, padded to whole sectors."""
    return -(-entries * 4 // SECTOR) * SECTOR


def decode_bat(raw: bytes) -> array[int]:
    """The BAT as an array of native unsigned 32-bit sector offsets."""
    bat = array("I", raw)
    if sys.byteorder == "little":
        bat.byteswap()
    return bat


def encode_bat_entries(entries: array[int]) -> bytes:
    """Big-endian bytes for a run of BAT entries."""
    out = array("I", entries)
    if sys.byteorder == "little":
        out.byteswap()
    return out.tobytes()


def _with_checksum(raw: bytes, at: int) -> bytes:
    value = checksum(raw, at)
    return raw[:at] + value.to_bytes(4, "big") + raw[at + 4 :]


def _check_sum(buf: bytes, at: int, stored: int, what: str) -> None:
    expected = checksum(buf, at)
    if stored != expected:
        raise VhdError(f"bad {what} checksum {stored:#010x}, expected {expected:#010x}")
