"""VHD structures: encode/decode round trips, checksums, geometry, bitmaps."""

from __future__ import annotations

import uuid
from array import array

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xenstack.storage.errors import VhdError
from xenstack.storage.vhd import bitmap as bm
from xenstack.storage.vhd.format import (
    MAX_VIRTUAL_SIZE,
    SECTOR,
    DiskType,
    DynamicHeader,
    Footer,
    Geometry,
    ParentLocator,
    PlatformCode,
    checksum,
    decode_bat,
    encode_bat_entries,
    geometry_for_size,
)

sizes = st.integers(0, MAX_VIRTUAL_SIZE // SECTOR).map(lambda n: n * SECTOR)
uuids = st.uuids()


@given(st.sampled_from(list(DiskType)), sizes, uuids, st.integers(0, 2**32 - 1))
def test_footer_round_trip(disk_type: DiskType, size: int, disk_uuid: uuid.UUID, ts: int) -> None:
    data_offset = 0xFFFF_FFFF_FFFF_FFFF if disk_type is DiskType.FIXED else 512
    footer = Footer(disk_type, size, disk_uuid, data_offset=data_offset, timestamp=ts)
    raw = footer.encode()
    assert len(raw) == 512
    assert raw[:8] == b"conectix"
    assert Footer.decode(raw) == footer


def test_footer_checksum_is_ones_complement_of_byte_sum() -> None:
    raw = Footer(DiskType.DYNAMIC, 1 << 30, uuid.uuid4(), data_offset=512).encode()
    stored = int.from_bytes(raw[64:68], "big")
    assert stored == ~(sum(raw[:64]) + sum(raw[68:])) & 0xFFFFFFFF
    assert checksum(raw, 64) == stored


@given(st.integers(0, 511), st.integers(1, 255))
def test_footer_any_corruption_is_rejected(at: int, flip: int) -> None:
    raw = bytearray(Footer(DiskType.DYNAMIC, 1 << 30, uuid.uuid4(), data_offset=512).encode())
    raw[at] ^= flip  # any single-byte change alters the byte sum, or the checksum itself
    with pytest.raises(VhdError):
        Footer.decode(bytes(raw))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("disk_type", 5, "disk type"),
        ("current_size", MAX_VIRTUAL_SIZE + SECTOR, "virtual size"),
        ("current_size", 1000, "virtual size"),
        ("features", 0x10, "feature"),
    ],
)
def test_footer_rejects_bad_fields(field: str, value: int, message: str) -> None:
    footer = Footer(DiskType.DYNAMIC, 1 << 20, uuid.uuid4(), data_offset=512)
    object.__setattr__(footer, field, value)
    with pytest.raises(VhdError, match=message):
        Footer.decode(footer.encode())


locators = st.builds(
    ParentLocator,
    st.sampled_from([PlatformCode.W2RU, PlatformCode.W2KU]),
    st.integers(1, 64),
    st.integers(0, 512),
    st.integers(0, 2**40).map(lambda n: n * SECTOR),
)


@given(
    st.integers(0, 2**40).map(lambda n: n * SECTOR),
    st.integers(0, 2**20),
    st.integers(12, 28).map(lambda n: 1 << n),
    uuids,
    st.text(max_size=255).filter(lambda s: len(s.encode("utf-16-be")) <= 512 and "\0" not in s),
    st.lists(locators, max_size=8),
)
def test_header_round_trip(
    table: int, entries: int, block: int, parent: uuid.UUID, name: str, locs: list[ParentLocator]
) -> None:
    header = DynamicHeader(
        table_offset=table, max_table_entries=entries, block_size=block, parent_uuid=parent,
        parent_timestamp=12345, parent_name=name,
        locators=tuple(locs) + (ParentLocator(),) * (8 - len(locs)),
    )  # fmt: skip
    raw = header.encode()
    assert len(raw) == 1024
    assert DynamicHeader.decode(raw) == header


@pytest.mark.parametrize("block", [3 << 20, 2048, 1 << 29, 0])
def test_header_rejects_bad_block_size(block: int) -> None:
    raw = DynamicHeader(table_offset=1536, max_table_entries=1, block_size=block).encode()
    with pytest.raises(VhdError, match="block size"):
        DynamicHeader.decode(raw)


def test_header_parent_name_is_utf16_big_endian() -> None:
    raw = DynamicHeader(1536, 1, parent_name="ab.vhd").encode()
    assert raw[64 : 64 + 12] == "ab.vhd".encode("utf-16-be")


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (64 * 1024 * 1024, Geometry(963, 8, 17)),
        (2 * 1024**3, Geometry(4161, 16, 63)),
        (MAX_VIRTUAL_SIZE, Geometry(65535, 16, 255)),
        (127 * 1024 * 1024, Geometry(1019, 15, 17)),
    ],
)
def test_geometry_follows_the_specification(size: int, expected: Geometry) -> None:
    assert geometry_for_size(size) == expected


@given(st.lists(st.integers(0, 0xFFFF_FFFF), max_size=300))
def test_bat_round_trip(entries: list[int]) -> None:
    raw = encode_bat_entries(array("I", entries))
    assert raw == b"".join(e.to_bytes(4, "big") for e in entries)
    assert list(decode_bat(raw)) == entries


@given(st.integers(3, 14).map(lambda n: 1 << n), st.data())
def test_bitmap_round_trip_and_runs(sectors: int, data: st.DataObject) -> None:
    mask = data.draw(st.integers(0, (1 << sectors) - 1))
    size = bm.bitmap_bytes(sectors)
    raw = bm.encode_bitmap(mask, size)
    assert len(raw) % SECTOR == 0
    assert bm.decode_bitmap(raw, sectors) == mask
    for i in range(min(sectors, 64)):  # MSB first: sector 0 is the top bit of byte 0
        assert bool(raw[i // 8] & (0x80 >> (i % 8))) == bool(mask >> i & 1)
    rebuilt = 0
    previous_end = -1
    for start, end in bm.runs(mask):
        assert start > previous_end  # maximal and ascending
        rebuilt |= bm.span(start, end)
        previous_end = end
    assert rebuilt == mask
