"""VhdImage and the file operations: create, read/write, chains, resize, compact, validation."""

from __future__ import annotations

import os
import struct
import time
from pathlib import Path

import pytest
from storage_helpers import MIB, fill_pattern, random_data

from xenstack.storage.errors import VhdChainError, VhdError
from xenstack.storage.vhd import (
    DiskType,
    VhdImage,
    VhdLayer,
    compact,
    create_dynamic,
    create_fixed,
    read_footer,
    resize,
    set_parent,
)
from xenstack.storage.vhd.format import DynamicHeader, Footer, PlatformCode


def test_new_dynamic_disk_reads_zeros_and_is_small(tmp_path: Path) -> None:
    path = str(tmp_path / "a.vhd")
    create_dynamic(path, 64 * MIB)
    with VhdImage.open(path) as image:
        assert image.virtual_size == 64 * MIB
        assert image.read(0, 1 * MIB) == bytes(MIB)
        assert list(image.allocated_ranges()) == []
        assert image.physical_utilisation == os.path.getsize(path) < 64 * 1024
    raw = Path(path).read_bytes()
    assert raw[:512] == raw[-512:]  # the footer copy
    assert raw[512:520] == b"cxsparse"


def test_create_refuses_to_clobber_and_bad_sizes(tmp_path: Path) -> None:
    path = str(tmp_path / "a.vhd")
    create_dynamic(path, MIB)
    with pytest.raises(FileExistsError):
        create_dynamic(path, MIB)
    with pytest.raises(ValueError):
        create_dynamic(str(tmp_path / "b.vhd"), 1000)
    with pytest.raises(ValueError):
        create_dynamic(str(tmp_path / "c.vhd"), 2041 * 1024**3)
    with pytest.raises(ValueError):
        create_dynamic(str(tmp_path / "d.vhd"), MIB, block_size=3 * MIB)
    assert sorted(os.listdir(tmp_path)) == ["a.vhd"]


@pytest.mark.parametrize("kind", ["dynamic", "fixed"])
def test_unaligned_writes_read_back(tmp_path: Path, kind: str) -> None:
    path = str(tmp_path / "a.vhd")
    (create_dynamic if kind == "dynamic" else create_fixed)(path, 8 * MIB)
    with VhdImage.open(path) as image:
        model = fill_pattern(image, 7, 50, chunk=3 * MIB)
        assert image.read(0, image.virtual_size) == model
        image.write(2 * MIB - 3, b"abcdef")  # across a block boundary
        model[2 * MIB - 3 : 2 * MIB + 3] = b"abcdef"
        assert image.read(2 * MIB - 10, 20) == model[2 * MIB - 10 : 2 * MIB + 10]
    with VhdImage.open(path, writable=False) as image:
        assert image.read(0, image.virtual_size) == model


def test_out_of_range_io_is_a_value_error(tmp_path: Path) -> None:
    path = str(tmp_path / "a.vhd")
    create_dynamic(path, MIB)
    with VhdImage.open(path) as image:
        with pytest.raises(ValueError):
            image.read(MIB - 1, 2)
        with pytest.raises(ValueError):
            image.write(-1, b"x")
    with VhdImage.open(path, writable=False) as image, pytest.raises(VhdError):
        image.write(0, b"x")


def test_differencing_chain_reads_through_and_writes_to_leaf(tmp_path: Path) -> None:
    base, leaf = str(tmp_path / "base.vhd"), str(tmp_path / "leaf.vhd")
    create_dynamic(base, 8 * MIB)
    with VhdImage.open(base) as image:
        model = fill_pattern(image, 1, 30)
    base_bytes = Path(base).read_bytes()
    create_dynamic(leaf, parent=base)
    with VhdImage.open(leaf) as image:
        assert image.depth == 2
        assert image.read(0, 8 * MIB) == model
        image.write(100, b"leaf")
        model[100:104] = b"leaf"
        assert image.read(0, 8 * MIB) == model
    assert Path(base).read_bytes() == base_bytes  # the parent is never written


def test_child_records_parent_like_xenserver(tmp_path: Path) -> None:
    base, leaf = str(tmp_path / "base.vhd"), str(tmp_path / "leaf.vhd")
    base_uuid = create_dynamic(base, MIB)
    create_dynamic(leaf, parent=base)
    with VhdLayer.open(leaf) as layer:
        assert layer.disk_type is DiskType.DIFFERENCING
        assert layer.parent_uuid == base_uuid
        assert layer.header is not None
        assert layer.header.parent_name == "base.vhd"
        paths = {loc.platform_code: layer.read_locator(loc) for loc in layer.header.locators[:2]}
    assert paths == {PlatformCode.W2RU: "./base.vhd", PlatformCode.W2KU: base}


def test_child_takes_its_parents_size_and_block_size(tmp_path: Path) -> None:
    base, leaf = str(tmp_path / "base.vhd"), str(tmp_path / "leaf.vhd")
    create_dynamic(base, 3 * MIB, block_size=64 * 1024)
    create_dynamic(leaf, parent=base)
    with VhdImage.open(leaf) as image:
        assert (image.virtual_size, image.block_size) == (3 * MIB, 64 * 1024)


def test_chain_survives_a_move_of_the_whole_directory(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    base, leaf = str(tmp_path / "a" / "base.vhd"), str(tmp_path / "a" / "leaf.vhd")
    create_dynamic(base, MIB)
    create_dynamic(leaf, parent=base)
    os.rename(tmp_path / "a", tmp_path / "b")
    with VhdImage.open(str(tmp_path / "b" / "leaf.vhd")) as image:
        assert image.depth == 2


def test_missing_and_wrong_parents_are_chain_errors(tmp_path: Path) -> None:
    base, leaf = str(tmp_path / "base.vhd"), str(tmp_path / "leaf.vhd")
    create_dynamic(base, MIB)
    create_dynamic(leaf, parent=base)
    os.unlink(base)
    with pytest.raises(VhdChainError, match="not found"):
        VhdImage.open(leaf)
    create_dynamic(base, MIB)  # same name, another disk
    with pytest.raises(VhdChainError, match="expects"):
        VhdImage.open(leaf)


def test_chain_loop_is_detected(tmp_path: Path) -> None:
    a, b = str(tmp_path / "a.vhd"), str(tmp_path / "b.vhd")
    create_dynamic(a, MIB)
    create_dynamic(b, parent=a)
    os.rename(a, str(tmp_path / "a0.vhd"))
    a_uuid = create_dynamic(a, MIB, parent=b)  # a -> b, and b's parent is "a.vhd" ...
    set_parent(b, a)  # ... now b -> a: a loop
    assert read_footer(a).uuid == a_uuid
    with pytest.raises(VhdChainError, match="loop"):
        VhdImage.open(a)


def test_resize_grows_dynamic_beyond_its_bat(tmp_path: Path) -> None:
    path = str(tmp_path / "a.vhd")
    create_dynamic(path, 3 * MIB)
    with VhdImage.open(path) as image:
        model = fill_pattern(image, 3, 10)
    resize(path, 20 * MIB + 512)
    with VhdImage.open(path) as image:
        assert image.virtual_size == 20 * MIB + 512
        assert image.read(0, 3 * MIB) == model
        assert image.read(3 * MIB, 17 * MIB + 512) == bytes(17 * MIB + 512)
        image.write(20 * MIB - 100, b"z" * 612)
        assert image.read(20 * MIB - 100, 612) == b"z" * 612
    with pytest.raises(ValueError):
        resize(path, MIB)


def test_resize_fixed_keeps_data_and_zeroes_the_old_footer(tmp_path: Path) -> None:
    path = str(tmp_path / "a.vhd")
    create_fixed(path, MIB)
    with VhdImage.open(path) as image:
        image.write(0, b"x" * MIB)
        image.resize(2 * MIB)
        assert image.virtual_size == 2 * MIB
    with VhdImage.open(path) as image:
        assert image.read(0, 2 * MIB) == b"x" * MIB + bytes(MIB)
    assert os.path.getsize(path) == 2 * MIB + 512


def test_child_larger_than_parent_reads_zeros_past_the_parent(tmp_path: Path) -> None:
    base, leaf = str(tmp_path / "base.vhd"), str(tmp_path / "leaf.vhd")
    create_dynamic(base, 3 * MIB)
    with VhdImage.open(base) as image:
        image.write(0, b"\x01" * (3 * MIB))
    create_dynamic(leaf, 8 * MIB, parent=base)
    with VhdImage.open(leaf) as image:
        assert image.read(0, 8 * MIB) == b"\x01" * (3 * MIB) + bytes(5 * MIB)
        assert list(image.allocated_ranges()) == [(0, 3 * MIB)]


def test_compact_drops_zero_and_orphan_blocks(tmp_path: Path) -> None:
    path = str(tmp_path / "a.vhd")
    create_dynamic(path, 16 * MIB)
    with VhdImage.open(path) as image:
        image.write(0, bytes(4 * MIB))  # allocated but all zero
        image.write(8 * MIB, random_data(1, MIB))
        image.resize(64 * MIB)  # leaves the old BAT behind
        model = image.read(0, image.virtual_size)
    before = os.path.getsize(path)
    saved = compact(path)
    assert saved == before - os.path.getsize(path) > 4 * MIB
    with VhdImage.open(path) as image:
        assert image.read(0, image.virtual_size) == model
        assert list(image.allocated_ranges()) == [(8 * MIB, MIB)]


def test_compact_keeps_zero_blocks_of_a_differencing_disk(tmp_path: Path) -> None:
    base, leaf = str(tmp_path / "base.vhd"), str(tmp_path / "leaf.vhd")
    create_dynamic(base, 4 * MIB)
    with VhdImage.open(base) as image:
        image.write(0, b"\xff" * (4 * MIB))
    create_dynamic(leaf, parent=base)
    with VhdImage.open(leaf) as image:
        image.write(MIB, bytes(MIB))
        model = image.read(0, 4 * MIB)
    compact(leaf)
    with VhdImage.open(leaf) as image:
        assert image.read(0, 4 * MIB) == model


def test_snapshot_of_a_2tib_disk_is_fast_and_sparse(tmp_path: Path) -> None:
    base, leaf = str(tmp_path / "base.vhd"), str(tmp_path / "leaf.vhd")
    create_dynamic(base, 2040 * 1024**3)
    started = time.perf_counter()
    create_dynamic(leaf, parent=base)
    elapsed = time.perf_counter() - started
    assert elapsed < 0.5  # about 5 ms on a laptop; generous for loaded CI machines
    assert os.path.getsize(leaf) < 5 * MIB
    with VhdImage.open(leaf) as image:
        image.write(2000 * 1024**3, b"far")
        assert image.read(2000 * 1024**3, 3) == b"far"


# --- validation of damaged files ------------------------------------------------------


def _damage(path: str, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def _rewrite_header(path: str, **changes: int) -> None:
    raw = Path(path).read_bytes()
    header = DynamicHeader.decode(raw[512:1536])
    for name, value in changes.items():
        object.__setattr__(header, name, value)
    _damage(path, 512, header.encode())


@pytest.fixture
def written(tmp_path: Path) -> str:
    path = str(tmp_path / "a.vhd")
    create_dynamic(path, 8 * MIB)
    with VhdImage.open(path) as image:
        fill_pattern(image, 5, 10)
    return path


def test_bad_cookie_and_checksum(written: str) -> None:
    size = os.path.getsize(written)
    _damage(written, size - 512, b"conectiy")
    with pytest.raises(VhdError, match="cookie"):
        VhdImage.open(written)
    _damage(written, size - 512, b"conectix")
    _damage(written, size - 500, b"\x77")
    with pytest.raises(VhdError, match="checksum"):
        VhdImage.open(written)


def test_truncated_file(written: str) -> None:
    os.truncate(written, os.path.getsize(written) - 4096)
    with pytest.raises(VhdError):
        VhdImage.open(written)


@pytest.mark.parametrize(
    ("entry", "message"),
    [(0, "overlaps"), (2, "overlaps"), (3, "overlaps"), (0x7FFFFFFF, "end of the file")],
)
def test_bat_entries_pointing_at_metadata_or_outside(
    written: str, entry: int, message: str
) -> None:
    _damage(written, 1536 + 4, struct.pack(">I", entry))
    with pytest.raises(VhdError, match=message):
        VhdImage.open(written)


def test_two_bat_entries_for_one_block_overlap(written: str) -> None:
    raw = Path(written).read_bytes()
    entries = struct.unpack(">4I", raw[1536 : 1536 + 16])
    allocated = [e for e in entries if e != 0xFFFFFFFF]
    _damage(written, 1536, struct.pack(">II", allocated[0], allocated[0]))
    with pytest.raises(VhdError, match="overlaps"):
        VhdImage.open(written)


@pytest.mark.parametrize(
    "changes",
    [
        {"max_table_entries": 2},  # fewer than the 4 blocks of 8 MiB
        {"max_table_entries": 0xFFFFFFFF},
        {"table_offset": 1 << 40},
        {"block_size": 3 << 20},
        {"block_size": 1 << 30},
    ],
)
def test_absurd_header_fields(written: str, changes: dict[str, int]) -> None:
    _rewrite_header(written, **changes)
    with pytest.raises(VhdError):
        VhdImage.open(written)


def test_absurd_virtual_size(written: str) -> None:
    raw = Path(written).read_bytes()
    footer = Footer.decode(raw[-512:])
    object.__setattr__(footer, "current_size", 4096 * 1024**3)
    _damage(written, len(raw) - 512, footer.encode())
    with pytest.raises(VhdError, match="virtual size"):
        VhdImage.open(written)


def test_mismatched_footer_copy(written: str) -> None:
    raw = Path(written).read_bytes()
    footer = Footer.decode(raw[:512])
    object.__setattr__(footer, "disk_type", DiskType.FIXED)
    _damage(written, 0, footer.encode())
    with pytest.raises(VhdError, match="copy"):
        VhdImage.open(written)


def test_a_second_writer_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "a.vhd")
    create_dynamic(path, MIB)
    with VhdImage.open(path) as image:
        with pytest.raises(VhdError, match="already open for writing"):
            VhdImage.open(path)
        image.write(0, b"x")
        with VhdImage.open(path, writable=False) as reader:  # readers are not locked out
            assert reader.read(0, 1) == b"x"
    VhdImage.open(path).close()  # released on close
