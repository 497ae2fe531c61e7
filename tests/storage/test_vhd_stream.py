"""Raw and VHD exports and imports, without QEMU (the QEMU cross-checks are in test_vhd_qemu)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from storage_helpers import MIB, fill_pattern, random_data

from xenstack.storage.errors import StreamError, VhdError
from xenstack.storage.vhd import (
    VhdImage,
    create_dynamic,
    export_raw_chunks,
    export_raw_file,
    export_vhd_file,
    export_vhd_stream,
    import_raw,
    import_raw_file,
    import_vhd,
    iter_raw,
)


def test_raw_chunks_cover_exactly_the_data(chain3: tuple[str, bytearray]) -> None:
    leaf, model = chain3
    rebuilt = bytearray(len(model))
    with VhdImage.open(leaf, writable=False) as image:
        for offset, data in export_raw_chunks(image, chunk_size=MIB):
            assert len(data) <= MIB
            rebuilt[offset : offset + len(data)] = data
        assert b"".join(iter_raw(image, chunk_size=3 * MIB)) == model
    assert rebuilt == model


def test_raw_file_export_is_sparse(tmp_path: Path) -> None:
    path = str(tmp_path / "a.vhd")
    create_dynamic(path, 64 * MIB)
    with VhdImage.open(path) as image:
        image.write(10 * MIB, random_data(1, MIB))
        export_raw_file(image, str(tmp_path / "a.raw"))
        assert (tmp_path / "a.raw").read_bytes() == image.read(0, 64 * MIB)
    assert os.stat(tmp_path / "a.raw").st_blocks * 512 < 4 * MIB


def test_vhd_stream_round_trip(chain3: tuple[str, bytearray], tmp_path: Path) -> None:
    leaf, model = chain3
    with VhdImage.open(leaf, writable=False) as image:
        stream = export_vhd_stream(image)
        raw = b"".join(stream.chunks)
    assert len(raw) == stream.size
    (tmp_path / "flat.vhd").write_bytes(raw)
    with VhdImage.open(str(tmp_path / "flat.vhd"), writable=False) as image:
        assert image.depth == 1
        assert image.read(0, image.virtual_size) == model
    create_dynamic(str(tmp_path / "dest.vhd"), len(model))
    with VhdImage.open(str(tmp_path / "dest.vhd")) as image:
        assert import_vhd(io.BytesIO(raw), image) == len(model)
        assert image.read(0, len(model)) == model


def test_vhd_stream_of_an_empty_disk_has_no_blocks(tmp_path: Path) -> None:
    create_dynamic(str(tmp_path / "a.vhd"), 100 * MIB)
    with VhdImage.open(str(tmp_path / "a.vhd")) as image:
        export_vhd_file(image, str(tmp_path / "b.vhd"))
    assert os.path.getsize(tmp_path / "b.vhd") < 4096


def test_import_raw_skips_zero_blocks_and_accepts_short_streams(tmp_path: Path) -> None:
    data = bytes(4 * MIB) + random_data(2, MIB + 100)
    create_dynamic(str(tmp_path / "a.vhd"), 8 * MIB)
    with VhdImage.open(str(tmp_path / "a.vhd")) as image:
        assert import_raw(io.BytesIO(data), image) == len(data)
        assert image.read(0, len(data)) == data
        assert image.allocated_blocks() == [2]


def test_import_overwrites_existing_data_with_zeros(tmp_path: Path) -> None:
    """Zeros in the source must hide what the destination's chain held there."""
    base, leaf = str(tmp_path / "base.vhd"), str(tmp_path / "leaf.vhd")
    create_dynamic(base, 8 * MIB)
    with VhdImage.open(base) as image:
        image.write(0, b"\xee" * (8 * MIB))
    create_dynamic(leaf, parent=base)
    source = bytearray(8 * MIB)
    source[5 * MIB : 5 * MIB + 10] = b"0123456789"
    (tmp_path / "src.raw").write_bytes(source)
    with VhdImage.open(leaf) as image:
        import_raw_file(image, str(tmp_path / "src.raw"))
        assert image.read(0, 8 * MIB) == source
    with VhdImage.open(leaf) as image:
        image.write(0, b"\xdd" * (8 * MIB))
        import_raw(io.BytesIO(bytes(source)), image)
        assert image.read(0, 8 * MIB) == source


def test_vhd_import_zeroes_what_the_stream_lacks(tmp_path: Path) -> None:
    create_dynamic(str(tmp_path / "src.vhd"), 8 * MIB)
    with VhdImage.open(str(tmp_path / "src.vhd")) as image:
        image.write(3 * MIB, b"abc")
        stream = b"".join(export_vhd_stream(image).chunks)
        expected = image.read(0, 8 * MIB)
    create_dynamic(str(tmp_path / "dest.vhd"), 8 * MIB)
    with VhdImage.open(str(tmp_path / "dest.vhd")) as image:
        image.write(0, b"\x11" * (8 * MIB))
        import_vhd(io.BytesIO(stream), image)
        assert image.read(0, 8 * MIB) == expected


def test_import_raw_file_uses_holes(tmp_path: Path) -> None:
    with open(tmp_path / "sparse.raw", "wb") as f:
        f.truncate(512 * MIB)
        f.seek(300 * MIB)
        f.write(b"data")
    create_dynamic(str(tmp_path / "a.vhd"), 512 * MIB)
    with VhdImage.open(str(tmp_path / "a.vhd")) as image:
        import_raw_file(image, str(tmp_path / "sparse.raw"))
        assert image.allocated_blocks() == [150]
        assert image.read(300 * MIB, 4) == b"data"


def test_streams_larger_than_the_disk_are_refused(tmp_path: Path) -> None:
    create_dynamic(str(tmp_path / "big.vhd"), 4 * MIB)
    with VhdImage.open(str(tmp_path / "big.vhd")) as image:
        fill_pattern(image, 1, 3)
        stream = b"".join(export_vhd_stream(image).chunks)
    create_dynamic(str(tmp_path / "small.vhd"), 2 * MIB)
    with VhdImage.open(str(tmp_path / "small.vhd")) as image:
        with pytest.raises(StreamError):
            import_raw(io.BytesIO(bytes(3 * MIB)), image)
        with pytest.raises(StreamError):
            import_vhd(io.BytesIO(stream), image)
        with pytest.raises(VhdError, match="not a dynamic VHD stream"):
            import_vhd(io.BytesIO(bytes(4096)), image)
    with VhdImage.open(str(tmp_path / "big.vhd")) as image:
        with pytest.raises(VhdError, match="ends inside"):
            import_vhd(io.BytesIO(stream[:2000]), image)
        with pytest.raises(VhdError, match="ends inside"):
            import_vhd(io.BytesIO(stream[: len(stream) // 2]), image)


def test_vhd_stream_with_another_block_size(tmp_path: Path) -> None:
    create_dynamic(str(tmp_path / "src.vhd"), 5 * MIB + 512, block_size=64 * 1024)
    with VhdImage.open(str(tmp_path / "src.vhd")) as image:
        model = fill_pattern(image, 6, 30, chunk=100_000)
        stream = b"".join(export_vhd_stream(image).chunks)
    create_dynamic(str(tmp_path / "dest.vhd"), 6 * MIB)
    with VhdImage.open(str(tmp_path / "dest.vhd")) as image:
        image.write(0, b"\x55" * (6 * MIB))
        import_vhd(io.BytesIO(stream), image)
        assert image.read(0, len(model)) == model
        assert image.read(len(model), 6 * MIB - len(model)) == b"\x55" * (6 * MIB - len(model))
