"""What a parsed VHD may cost: a crafted header cannot make the parser allocate memory far
beyond a small bound, whether the image comes as a file or as an upload stream.

Limits under test (``xenstack.storage.vhd.format``): at most ``MAX_BAT_ENTRIES`` BAT entries
(the BAT of a 2040 GiB disk at 2 MiB blocks), at least one per block of the disk; the block
size a power of two from 4 KiB to 256 MiB.
"""

from __future__ import annotations

import http.client
import struct
import time
import tracemalloc
import urllib.parse
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from storage_helpers import MIB

from xenstack.storage.errors import VhdError
from xenstack.storage.vhd import VhdImage, VhdLayer, create_dynamic, import_vhd
from xenstack.storage.vhd.format import (
    MAX_BAT_ENTRIES,
    SECTOR,
    DiskType,
    DynamicHeader,
    Footer,
    bat_size,
)
from xenstack.testing import RunningPool

SMALL_BLOCK = 4096
BAT_AT = 1536


def _metadata(entries: int, block_size: int, size: int) -> tuple[bytes, bytes]:
    """(footer copy + header, footer) of a dynamic VHD whose BAT lies at 1536."""
    footer = Footer(DiskType.DYNAMIC, size, uuid.uuid4(), data_offset=512).encode()
    header = DynamicHeader(BAT_AT, entries, block_size).encode()
    return footer + header, footer


def _bat(entries: int, sector_of: Callable[[int], int]) -> bytes:
    raw = bytearray(b"\xff" * bat_size(entries))
    for i in range(entries):
        struct.pack_into(">I", raw, 4 * i, sector_of(i))
    return bytes(raw)


def _peak(work: Callable[[], object]) -> tuple[int, BaseException | None]:
    """Peak bytes Python allocated while running ``work``, and what it raised."""
    tracemalloc.start()
    try:
        work()
        raised: BaseException | None = None
    except Exception as exc:
        raised = exc
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak, raised


def _crafted_stream(entries: int) -> bytes:
    """The attack: 4 KiB blocks, every BAT entry allocated (all at one sector)."""
    head, footer = _metadata(entries, SMALL_BLOCK, entries * SMALL_BLOCK)
    data_at = (BAT_AT + bat_size(entries)) // SECTOR
    return head + _bat(entries, lambda _i: data_at) + footer


def test_a_crafted_bat_stream_is_refused_in_bounded_memory(tmp_path: Path) -> None:
    stream = _crafted_stream(2 * MAX_BAT_ENTRIES)  # 8 MiB of BAT
    create_dynamic(str(tmp_path / "d.vhd"), 8 * 1024**3)
    with VhdImage.open(str(tmp_path / "d.vhd")) as image:
        source = _Source(stream)
        peak, raised = _peak(lambda: import_vhd(source, image))
    assert isinstance(raised, VhdError) and "BAT of" in str(raised)
    assert peak < 2 * MIB, f"{peak} bytes to refuse a {len(stream)}-byte stream"


def test_a_bat_at_the_limit_costs_a_few_bytes_per_entry(tmp_path: Path) -> None:
    """A legal-sized BAT whose blocks all overlap: refused, with no object per block."""
    stream = _crafted_stream(MAX_BAT_ENTRIES)
    create_dynamic(str(tmp_path / "d.vhd"), 8 * 1024**3)
    with VhdImage.open(str(tmp_path / "d.vhd")) as image:
        source = _Source(stream)
        peak, raised = _peak(lambda: import_vhd(source, image))
    assert isinstance(raised, VhdError) and "overlaps" in str(raised)
    assert peak < 24 * MAX_BAT_ENTRIES, f"{peak} bytes for {MAX_BAT_ENTRIES} entries"


def _every_block_present(path: Path, entries: int) -> None:
    """A dynamic VHD of 4 KiB blocks with every block present (a sparse file)."""
    head, footer = _metadata(entries, SMALL_BLOCK, entries * SMALL_BLOCK)
    first = (BAT_AT + bat_size(entries)) // SECTOR
    span = SMALL_BLOCK // SECTOR + 1  # one bitmap sector, then the data
    with open(path, "wb") as f:
        f.write(head + _bat(entries, lambda i: first + i * span))
        f.seek((first + entries * span) * SECTOR)
        f.write(footer)


def test_a_file_with_every_entry_allocated_opens_in_bounded_memory(tmp_path: Path) -> None:
    """Every block present: a few bytes per BAT entry, no object per block. Measured as the
    cost of each further entry between an eighth and a quarter of the largest BAT (tracing
    every allocation makes the parse ten times slower); the largest opens too."""
    peaks = []
    sizes = (MAX_BAT_ENTRIES // 8, MAX_BAT_ENTRIES // 4)
    for entries in sizes:
        _every_block_present(tmp_path / f"{entries}.vhd", entries)
        peak, raised = _peak(lambda e=entries: VhdLayer.open(str(tmp_path / f"{e}.vhd")).close())
        assert raised is None
        peaks.append(peak)
    per_entry = (peaks[1] - peaks[0]) / (sizes[1] - sizes[0])
    assert per_entry < 24, f"{per_entry:.1f} bytes per further BAT entry ({peaks})"
    _every_block_present(tmp_path / "largest.vhd", MAX_BAT_ENTRIES)  # a sparse 4.8 GB file
    with VhdLayer.open(str(tmp_path / "largest.vhd")) as layer:
        assert len(layer.allocated_blocks()) == MAX_BAT_ENTRIES


def test_more_entries_than_the_limit_are_refused(tmp_path: Path) -> None:
    entries = MAX_BAT_ENTRIES + 1  # a valid layout, all unallocated, but past the bound
    head, footer = _metadata(entries, SMALL_BLOCK, entries * SMALL_BLOCK)
    path = tmp_path / "x.vhd"
    path.write_bytes(head + b"\xff" * bat_size(entries) + footer)
    with pytest.raises(VhdError, match="BAT of"):
        VhdLayer.open(str(path))
    with pytest.raises(ValueError, match="BAT of"):  # and we never make such a file
        create_dynamic(str(tmp_path / "y.vhd"), entries * SMALL_BLOCK, block_size=SMALL_BLOCK)


class _Source:
    def __init__(self, data: bytes) -> None:
        self._data, self._at = memoryview(data), 0

    def read(self, n: int, /) -> bytes:
        chunk = self._data[self._at : self._at + n]
        self._at += len(chunk)
        return bytes(chunk)


def _upload(pool: RunningPool, session: Any, vdi: str, body: bytes) -> list[str]:
    """PUT /import_raw_vdi?format=vhd with its own task; the task's error_info."""
    task = session.xenapi.task.create("vhd upload", "")
    query = {"session_id": session._session, "vdi": vdi, "format": "vhd", "task_id": task}
    conn = http.client.HTTPConnection("127.0.0.1", pool.port, timeout=120)
    conn.request("PUT", "/import_raw_vdi?" + urllib.parse.urlencode(query), body=body)
    conn.getresponse().read()
    conn.close()
    deadline = time.monotonic() + 60
    while session.xenapi.task.get_status(task) == "pending":
        assert time.monotonic() < deadline, "the upload's task never finished"
        time.sleep(0.02)
    assert session.xenapi.task.get_status(task) == "failure"
    return list(session.xenapi.task.get_error_info(task))


def test_an_upload_of_a_crafted_vhd_fails_as_a_bad_vhd_does(
    session: Any, xenstack_pool: RunningPool
) -> None:
    x = session.xenapi
    sr = x.pool.get_default_SR(x.pool.get_all()[0])
    record = {"SR": sr, "virtual_size": str(8 * 1024**3), "type": "user", "name_label": "t"}
    record |= {"name_description": ""}
    vdi = x.VDI.create(record | {"sharable": False, "read_only": False, "other_config": {}})
    bad_cookie = b"x" * 512 + _crafted_stream(8)[512:]
    expected = _upload(xenstack_pool, session, vdi, bad_cookie)
    stream = _crafted_stream(2 * MAX_BAT_ENTRIES)
    peak, raised = _peak(lambda: _upload(xenstack_pool, session, vdi, stream))
    assert raised is None, raised
    assert _upload(xenstack_pool, session, vdi, stream) == expected
    assert peak < 4 * len(stream), f"{peak} bytes in the process for a {len(stream)}-byte upload"
