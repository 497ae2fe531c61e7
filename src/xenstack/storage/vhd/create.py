"""Creating VHD files: fixed, dynamic, and differencing children (snapshots and clones).

A new dynamic file is laid out like XenServer's and QEMU's: footer copy at 0, dynamic header
at 512, BAT at 1536 (all entries 0xFFFFFFFF), parent locator data, footer. The whole file is
written with one ``pwritev`` into a file created with ``O_EXCL`` (never clobbering), and
removed again if anything fails. Creating a child costs O(BAT size) bytes written: about
4 MiB for a 2 TiB parent, from one shared buffer of 0xFF entries (a BAT cannot be a hole:
unallocated entries must read 0xFFFFFFFF).
"""

from __future__ import annotations

import os
import uuid as uuidlib
from dataclasses import dataclass

from xenstack.storage.errors import VhdError
from xenstack.storage.vhd.format import (
    DEFAULT_BLOCK_SIZE,
    FOOTER_SIZE,
    HEADER_SIZE,
    MAX_VIRTUAL_SIZE,
    SECTOR,
    DiskType,
    DynamicHeader,
    Footer,
    ParentLocator,
    PlatformCode,
    bat_size,
    check_bat_entries,
    check_block_size,
    check_virtual_size,
    encode_locator_path,
    to_vhd_time,
)
from xenstack.storage.vhd.layer import read_footer, read_metadata

TABLE_OFFSET = FOOTER_SIZE + HEADER_SIZE
_LOCATOR_RESERVE = {PlatformCode.W2RU: 2 * SECTOR, PlatformCode.W2KU: 4 * SECTOR}


@dataclass(frozen=True)
class ParentLink:
    """What a child records about its parent: identity, name and locator paths."""

    uuid: uuidlib.UUID
    timestamp: int
    name: str
    locators: tuple[tuple[PlatformCode, bytes], ...]


def parent_link(child_path: str, parent_path: str) -> ParentLink:
    """The link a child at ``child_path`` needs to find ``parent_path`` (read: its footer)."""
    footer = read_footer(parent_path)
    child_dir = os.path.dirname(os.path.abspath(child_path))
    absolute = os.path.abspath(parent_path)
    relative = os.path.relpath(absolute, child_dir)
    if not relative.startswith("."):
        relative = "./" + relative
    return ParentLink(
        uuid=footer.uuid,
        timestamp=to_vhd_time(os.stat(parent_path).st_mtime),
        name=os.path.basename(absolute),
        locators=(
            (PlatformCode.W2RU, encode_locator_path(PlatformCode.W2RU, relative)),
            (PlatformCode.W2KU, encode_locator_path(PlatformCode.W2KU, absolute)),
        ),
    )


def locator_space(code: PlatformCode, data: bytes) -> int:
    """Bytes to reserve for a locator's data: room for a somewhat longer path later."""
    needed = -(-len(data) // SECTOR) * SECTOR
    return max(needed, _LOCATOR_RESERVE.get(code, SECTOR))


def create_dynamic(
    path: str,
    size: int | None = None,
    *,
    parent: str | None = None,
    block_size: int | None = None,
    disk_uuid: uuidlib.UUID | None = None,
) -> uuidlib.UUID:
    """Create a dynamic VHD, or a differencing one over ``parent``; return its UUID.

    ``size`` (bytes, whole sectors, at most 2040 GiB) defaults to the parent's size, and
    ``block_size`` to the parent's (2 MiB without parent). Raises FileExistsError if
    ``path`` exists, VhdError if the parent is not a valid VHD, ValueError for a bad size
    or block size.
    """
    link = parent_link(path, parent) if parent is not None else None
    if parent is not None:
        parent_footer, parent_header = read_metadata(parent)
        size = parent_footer.current_size if size is None else size
        if block_size is None and parent_header is not None:
            block_size = parent_header.block_size
    if size is None:
        raise ValueError("a disk without parent needs a size")
    block_size = block_size or DEFAULT_BLOCK_SIZE
    _check_new_size(size, block_size)
    entries = -(-size // block_size)
    disk_type = DiskType.DIFFERENCING if link else DiskType.DYNAMIC
    footer = Footer(disk_type, size, disk_uuid or uuidlib.uuid4(), data_offset=FOOTER_SIZE)
    header, chunks = dynamic_metadata(entries, block_size, link)
    write_new_file(path, [footer.encode(), header.encode(), *chunks, footer.encode()])
    return footer.uuid


_UNALLOCATED_TABLE = b"\xff" * bat_size(-(-MAX_VIRTUAL_SIZE // DEFAULT_BLOCK_SIZE))


def _empty_table(nbytes: int) -> bytes | memoryview:
    """``nbytes`` of 0xFF BAT entries: a view of one shared buffer when big enough."""
    if nbytes <= len(_UNALLOCATED_TABLE):
        return memoryview(_UNALLOCATED_TABLE)[:nbytes]
    return b"\xff" * nbytes


def dynamic_metadata(
    entries: int, block_size: int, link: ParentLink | None
) -> tuple[DynamicHeader, list[bytes | memoryview]]:
    """The header for a fresh layout, and the bytes from TABLE_OFFSET to the footer."""
    table = bat_size(entries)
    chunks: list[bytes | memoryview] = [_empty_table(table)]
    pos = TABLE_OFFSET + table
    locators: list[ParentLocator] = []
    for code, data in link.locators if link else ():
        space = locator_space(code, data)
        locators.append(ParentLocator(code, space // SECTOR, len(data), pos))
        chunks.append(data.ljust(space, b"\0"))
        pos += space
    header = DynamicHeader(
        table_offset=TABLE_OFFSET,
        max_table_entries=entries,
        block_size=block_size,
        parent_uuid=link.uuid if link else uuidlib.UUID(int=0),
        parent_timestamp=link.timestamp if link else 0,
        parent_name=link.name if link else "",
        locators=tuple(locators) + (ParentLocator(),) * (8 - len(locators)),
    )
    return header, chunks


def create_fixed(path: str, size: int, *, disk_uuid: uuidlib.UUID | None = None) -> uuidlib.UUID:
    """Create a fixed VHD of ``size`` bytes (a sparse file of zeros); return its UUID."""
    _check_new_size(size, DEFAULT_BLOCK_SIZE)
    footer = Footer(DiskType.FIXED, size, disk_uuid or uuidlib.uuid4())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        os.ftruncate(fd, size)
        _pwrite_all(fd, [footer.encode()], size)
    except BaseException:
        os.unlink(path)
        raise
    finally:
        os.close(fd)
    return footer.uuid


def write_new_file(path: str, chunks: list[bytes | memoryview]) -> None:
    """Create ``path`` exclusively holding ``chunks`` back to back; remove it on failure."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        _pwrite_all(fd, chunks, 0)
    except BaseException:
        os.unlink(path)
        raise
    finally:
        os.close(fd)


def _check_new_size(size: int, block_size: int) -> None:
    try:
        check_virtual_size(size)
        check_block_size(block_size)
        check_bat_entries(-(-size // block_size), size, block_size)
    except VhdError as exc:
        raise ValueError(str(exc)) from None


def _pwrite_all(fd: int, chunks: list[bytes | memoryview], pos: int) -> None:
    total = sum(len(c) for c in chunks)
    done = os.pwritev(fd, chunks, pos)
    if done < total:
        rest = b"".join(bytes(c) for c in chunks)[done:]
        while rest:
            n = os.pwrite(fd, rest, pos + done)
            rest, done = rest[n:], done + n
