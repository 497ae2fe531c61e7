"""Operations on existing VHD files: resize, re-parent, compact.

Each keeps the file valid after a crash at any point: new metadata is written into fresh
space at the end of the file (the footer moving first) and switched to with a single
header or footer write. Callers must not have the file open in a ``VhdImage`` meanwhile,
except through :meth:`grow_layer` on that image's own leaf.
"""

from __future__ import annotations

import os
from array import array
from dataclasses import replace

from xenstack.storage.errors import VhdError
from xenstack.storage.vhd import bitmap as bm
from xenstack.storage.vhd.create import (
    TABLE_OFFSET,
    ParentLink,
    dynamic_metadata,
    locator_space,
    parent_link,
    write_new_file,
)
from xenstack.storage.vhd.format import (
    FOOTER_SIZE,
    LOCATOR_COUNT,
    SECTOR,
    UNALLOCATED,
    DiskType,
    DynamicHeader,
    ParentLocator,
    PlatformCode,
    bat_size,
    check_bat_entries,
    check_virtual_size,
    encode_bat_entries,
)
from xenstack.storage.vhd.layer import VhdLayer


def resize(path: str, new_size: int) -> None:
    """Grow the disk at ``path`` to ``new_size`` bytes (ValueError to shrink or overflow)."""
    with VhdLayer.open(path, writable=True) as layer:
        grow_layer(layer, new_size)


def grow_layer(layer: VhdLayer, new_size: int) -> None:
    """Grow an open, writable layer to ``new_size`` bytes; a no-op if already that size."""
    if new_size < layer.virtual_size:
        raise ValueError(f"cannot shrink {layer.path} from {layer.virtual_size} to {new_size}")
    try:
        check_virtual_size(new_size)
        check_bat_entries(-(-new_size // layer.block_size), new_size, layer.block_size)
    except VhdError as exc:
        raise ValueError(str(exc)) from None
    if new_size == layer.virtual_size:
        return
    if layer.header is None:
        old_footer_at = layer.file_size - FOOTER_SIZE
        footer = layer.footer.resized(new_size)
        layer.pwrite(footer.encode(), new_size)  # the new end first: the file stays valid
        layer.pwrite(bytes(FOOTER_SIZE), old_footer_at)  # that sector is now data: zeros
        layer.file_size = new_size + FOOTER_SIZE
        layer.write_footer(footer)
        return
    needed = -(-new_size // layer.block_size)
    if needed > layer.header.max_table_entries:
        _grow_bat(layer, layer.header, needed)
    layer.write_footer(layer.footer.resized(new_size))


def _grow_bat(layer: VhdLayer, header: DynamicHeader, entries: int) -> None:
    bat = array("I", layer.bat)
    bat.extend([UNALLOCATED] * (entries - len(bat)))
    table = bat_size(entries)
    pos = layer.append_region(table)
    raw = encode_bat_entries(bat)
    layer.pwrite(raw + b"\xff" * (table - len(raw)), pos)
    layer.write_header(replace(header, table_offset=pos, max_table_entries=entries), bat)


def set_parent(child_path: str, parent_path: str) -> None:
    """Point the differencing disk ``child_path`` at ``parent_path`` (UUID, name, locators).

    Idempotent. New locator data goes into fresh space unless unchanged, and the switch is
    one header write, so a crash leaves either the old or the new parent recorded.
    """
    link = parent_link(child_path, parent_path)
    with VhdLayer.open(child_path, writable=True) as layer:
        header = layer.header
        if header is None or layer.disk_type is not DiskType.DIFFERENCING:
            raise VhdError(f"{child_path} is not a differencing disk")
        locators = [_place_locator(layer, header, code, data) for code, data in link.locators]
        locators += [ParentLocator()] * (LOCATOR_COUNT - len(locators))
        new = replace(
            header,
            parent_uuid=link.uuid,
            parent_timestamp=link.timestamp,
            parent_name=link.name,
            locators=tuple(locators),
        )
        if new != header:
            layer.write_header(new)
        layer.fsync()


def _place_locator(
    layer: VhdLayer, header: DynamicHeader, code: PlatformCode, data: bytes
) -> ParentLocator:
    for loc in header.locators:
        same = loc.platform_code == code and loc.data_length == len(data)
        if same and layer.pread(len(data), loc.data_offset) == data:
            return loc
    space = locator_space(code, data)
    pos = layer.append_region(space)
    layer.pwrite(data.ljust(space, b"\0"), pos)
    return ParentLocator(code, space // SECTOR, len(data), pos)


def compact(path: str) -> int:
    """Rewrite ``path`` without unused space; return the bytes saved.

    Drops blocks with an empty bitmap and, in a disk without parent, blocks whose present
    sectors are all zeros, plus any space no metadata points at. Identity (UUID, parent
    link) is kept, so children stay valid. The new file replaces the old with one rename.
    """
    tmp = path + ".compact"
    before = os.stat(path).st_size
    with VhdLayer.open(path) as layer:
        if layer.header is None:
            return 0
        if os.path.exists(tmp):
            os.unlink(tmp)
        _write_compacted(layer, layer.header, tmp)
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(os.path.abspath(path)))
    return before - os.stat(path).st_size


def _write_compacted(layer: VhdLayer, header: DynamicHeader, tmp: str) -> None:
    link = _link_of(layer, header) if layer.parent_uuid is not None else None
    new_header, chunks = dynamic_metadata(header.max_table_entries, layer.block_size, link)
    footer_raw = replace(layer.footer, data_offset=FOOTER_SIZE).encode()
    write_new_file(tmp, [footer_raw, new_header.encode(), *chunks])
    pos = FOOTER_SIZE + len(new_header.encode()) + sum(len(c) for c in chunks)
    bat = array("I", [UNALLOCATED]) * header.max_table_entries
    span = layer.bitmap_size + layer.block_size
    fd = os.open(tmp, os.O_WRONLY | os.O_CLOEXEC)
    try:
        for block in layer.allocated_blocks():
            raw = layer.pread(span, layer.bat[block] * SECTOR)
            if _worth_keeping(layer, block, raw):
                os.pwrite(fd, raw, pos)
                bat[block] = pos // SECTOR
                pos += span
        os.pwrite(fd, encode_bat_entries(bat), TABLE_OFFSET)
        os.pwrite(fd, footer_raw, pos)
        os.fsync(fd)
    finally:
        os.close(fd)


def _worth_keeping(layer: VhdLayer, block: int, raw: bytes) -> bool:
    mask = layer.block_mask(block)
    if not mask or layer.parent_uuid is not None:
        return mask != 0
    base = layer.bitmap_size
    return any(
        raw[base + a * SECTOR : base + z * SECTOR].count(0) != (z - a) * SECTOR
        for a, z in bm.runs(mask)
    )


def _link_of(layer: VhdLayer, header: DynamicHeader) -> ParentLink:
    known = {int(code) for code in PlatformCode if code != PlatformCode.NONE}
    locators = tuple(
        (PlatformCode(loc.platform_code), layer.pread(loc.data_length, loc.data_offset))
        for loc in header.locators
        if loc.platform_code in known
    )
    return ParentLink(header.parent_uuid, header.parent_timestamp, header.parent_name, locators)


def fsync_dir(directory: str) -> None:
    """Make renames and unlinks in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
