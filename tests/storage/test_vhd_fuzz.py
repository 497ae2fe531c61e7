"""Fuzzing the parser: damaged files open and read fine or raise VhdError, nothing else.

Mutations: bit flips, truncation, random BAT entries, random header/footer/locator fields
with a valid checksum (so validation past the checksum is exercised), and damaged VHD
streams for the importer. pytest-timeout turns a hang into a failure.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from storage_helpers import MIB, fill_pattern

from xenstack.storage.errors import StreamError, VhdError
from xenstack.storage.vhd import (
    VhdImage,
    create_dynamic,
    create_fixed,
    export_vhd_stream,
    import_vhd,
)
from xenstack.storage.vhd.format import DynamicHeader, Footer, ParentLocator

pytestmark = pytest.mark.timeout(120)
FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
READ_LIMIT = 4 * MIB


class Files(dict[str, bytes]):
    """File contents by name, with a short repr for hypothesis' failure reports."""

    def __repr__(self) -> str:
        return f"Files({sorted(self)})"


@pytest.fixture(scope="module")
def originals(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Valid files to damage: dynamic (2 MiB and 64 KiB blocks), fixed, and a child."""
    d = tmp_path_factory.mktemp("originals")
    create_dynamic(str(d / "dynamic.vhd"), 8 * MIB)
    create_dynamic(str(d / "small.vhd"), 2 * MIB, block_size=64 * 1024)
    create_fixed(str(d / "fixed.vhd"), MIB)
    for name in ("dynamic", "small", "fixed"):
        with VhdImage.open(str(d / f"{name}.vhd")) as image:
            fill_pattern(image, 9, 12, chunk=300_000)
    create_dynamic(str(d / "parent.vhd"), 8 * MIB)
    create_dynamic(str(d / "child.vhd"), parent=str(d / "parent.vhd"))
    with VhdImage.open(str(d / "child.vhd")) as image:
        fill_pattern(image, 10, 6)
    return Files({p.name: p.read_bytes() for p in d.iterdir()})


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory, originals: dict[str, bytes]) -> Path:
    d = tmp_path_factory.mktemp("fuzz")
    (d / "parent.vhd").write_bytes(originals["parent.vhd"])
    return d


def exercise(path: Path) -> None:
    """Open, read (bounded), list ranges and write; only VhdError may escape."""
    copy = path.with_suffix(".rw")
    shutil.copyfile(path, copy)
    try:
        with VhdImage.open(str(path), writable=False) as image:
            image.read(0, min(image.virtual_size, READ_LIMIT))
            budget = READ_LIMIT
            for offset, length in image.allocated_ranges():
                image.read(offset, min(length, budget))
                budget -= min(length, budget)
        with VhdImage.open(str(copy)) as image:
            if image.virtual_size:
                offset = image.virtual_size // 2
                # a caller's write stays inside the disk; only the file itself is hostile
                image.write(offset, (b"fuzz" * 300)[: image.virtual_size - offset])
    except VhdError:
        pass
    finally:
        os.unlink(copy)


names = st.sampled_from(["dynamic.vhd", "small.vhd", "fixed.vhd", "child.vhd"])


@FUZZ
@given(name=names, flips=st.lists(st.tuples(st.integers(0), st.integers(0, 7)), max_size=8))
def test_bit_flips(
    originals: dict[str, bytes], workdir: Path, name: str, flips: list[tuple[int, int]]
) -> None:
    raw = bytearray(originals[name])
    for at, bit in flips:
        raw[at % len(raw)] ^= 1 << bit
    (workdir / "x.vhd").write_bytes(raw)
    exercise(workdir / "x.vhd")


@FUZZ
@given(name=names, keep=st.integers(0))
def test_truncation(originals: dict[str, bytes], workdir: Path, name: str, keep: int) -> None:
    raw = originals[name]
    (workdir / "x.vhd").write_bytes(raw[: keep % len(raw)])
    exercise(workdir / "x.vhd")


entries = st.one_of(
    st.integers(0, 0xFFFFFFFF),
    st.integers(0, 64),
    st.sampled_from([0xFFFFFFFF, 0xFFFFFFFE, 0x7FFFFFFF]),
)


@FUZZ
@given(
    name=st.sampled_from(["dynamic.vhd", "small.vhd", "child.vhd"]),
    changes=st.lists(st.tuples(st.integers(0, 40), entries), min_size=1, max_size=4),
    shift=st.integers(-8, 8),
)
def test_random_bat_entries(
    originals: dict[str, bytes],
    workdir: Path,
    name: str,
    changes: list[tuple[int, int]],
    shift: int,
) -> None:
    raw = bytearray(originals[name])
    header = DynamicHeader.decode(bytes(raw[512:1536]))
    table = header.table_offset
    for index, value in changes:
        i = index % header.max_table_entries
        current = struct.unpack_from(">I", raw, table + 4 * i)[0]
        if value < 64 and current != 0xFFFFFFFF:
            value = min(max(current + shift, 0), 0xFFFFFFFF)  # near-miss of a valid entry
        struct.pack_into(">I", raw, table + 4 * i, value)
    (workdir / "x.vhd").write_bytes(raw)
    exercise(workdir / "x.vhd")


HEADER_FIELDS = {
    "table_offset": st.integers(0, 2**64 - 1),
    "max_table_entries": st.integers(0, 2**32 - 1),
    "block_size": st.one_of(
        st.integers(0, 2**32 - 1), st.sampled_from([1 << n for n in range(32)])
    ),
    "parent_uuid": st.uuids(),
    "parent_name": st.text(max_size=20),
}
FOOTER_FIELDS = {
    "current_size": st.one_of(
        st.integers(0, 2**64 - 1), st.integers(0, 2**20).map(lambda n: n * 512)
    ),
    "data_offset": st.one_of(st.integers(0, 2**64 - 1), st.integers(0, 8).map(lambda n: n * 512)),
    "disk_type": st.integers(0, 6),
    "features": st.integers(0, 7),
}


@FUZZ
@given(name=names, data=st.data())
def test_random_header_and_footer_fields(
    originals: dict[str, bytes], workdir: Path, name: str, data: st.DataObject
) -> None:
    raw = bytearray(originals[name])
    footer = Footer.decode(bytes(raw[-512:]))
    field = data.draw(st.sampled_from(sorted(FOOTER_FIELDS)))
    object.__setattr__(footer, field, data.draw(FOOTER_FIELDS[field]))
    if data.draw(st.booleans(), label="change the footer"):
        raw[-512:] = footer.encode()
        if data.draw(st.booleans(), label="and its copy"):
            raw[:512] = footer.encode()
    if name != "fixed.vhd":
        header = DynamicHeader.decode(bytes(raw[512:1536]))
        field = data.draw(st.sampled_from(sorted(HEADER_FIELDS)))
        object.__setattr__(header, field, data.draw(HEADER_FIELDS[field]))
        raw[512:1536] = header.encode()
    (workdir / "x.vhd").write_bytes(raw)
    exercise(workdir / "x.vhd")


@FUZZ
@given(
    locators=st.lists(
        st.builds(
            ParentLocator,
            st.sampled_from([0, 0x57327275, 0x57326B75, 0x4D616358, 0x12345678]),
            st.integers(0, 2**32 - 1),
            st.integers(0, 4096),
            st.one_of(st.integers(0, 2**64 - 1), st.integers(0, 64).map(lambda n: n * 512)),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_random_parent_locators(
    originals: dict[str, bytes], workdir: Path, locators: list[ParentLocator]
) -> None:
    raw = bytearray(originals["child.vhd"])
    header = DynamicHeader.decode(bytes(raw[512:1536]))
    new = locators + list(header.locators[len(locators) :])
    object.__setattr__(header, "locators", tuple(new))
    raw[512:1536] = header.encode()
    (workdir / "x.vhd").write_bytes(raw)
    exercise(workdir / "x.vhd")


@pytest.fixture(scope="module")
def stream(originals: dict[str, bytes], tmp_path_factory: pytest.TempPathFactory) -> Files:
    d = tmp_path_factory.mktemp("stream")
    (d / "a.vhd").write_bytes(originals["small.vhd"])
    with VhdImage.open(str(d / "a.vhd"), writable=False) as image:
        return Files(stream=b"".join(export_vhd_stream(image).chunks))


@FUZZ
@given(
    flips=st.lists(st.tuples(st.integers(0), st.integers(0, 7)), max_size=6),
    keep=st.one_of(st.none(), st.integers(0)),
)
def test_damaged_vhd_streams(
    stream: Files, workdir: Path, flips: list[tuple[int, int]], keep: int | None
) -> None:
    raw = bytearray(stream["stream"])
    for at, bit in flips:
        raw[at % 4096 if at % 2 else at % len(raw)] ^= 1 << bit  # favour the metadata
    if keep is not None:
        del raw[keep % len(raw) :]
    path = workdir / "dest.vhd"
    if path.exists():
        path.unlink()
    create_dynamic(str(path), 4 * MIB)
    with VhdImage.open(str(path)) as image, contextlib.suppress(VhdError, StreamError):
        import_vhd(io.BytesIO(bytes(raw)), image)
