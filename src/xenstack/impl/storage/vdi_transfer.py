"""Disk transfers of VHD-backed VDIs (the local work behind ``/import_raw_vdi`` and
``/export_raw_vdi``): which file, the task's progress and outcome.

:func:`open_transfer` checks the VDI and claims the VDI; the returned
:class:`DiskTransfer` copies a byte stream in or out (blocking: run it in a thread) and
records progress and the result on the task given by ``task_id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

from ...core.context import Context
from ...core.objects import new_record
from ...core.xmlrpc_values import value_text
from ...errors import ApiError
from ...idl.types import Record
from ...storage.vhd import (
    ByteSource,
    VhdImage,
    changed_blocks,
    export_raw_chunks,
    export_vhd_stream,
    import_raw,
    import_vhd,
)
from ..vm.export import refusing, request_task, settle_task
from . import vdi as vdi_impl
from .sr_backend import drivers, file_sr

FORMATS = ("raw", "vhd")
Chunk = bytes | bytearray | memoryview
CHUNK = 4 * 1024 * 1024
PROGRESS_EVERY = 0.25  # seconds between task progress updates


def _vdi_ref(toolstack: Any, value: str) -> str:
    db = toolstack.db
    if db.exists("VDI", value):
        return value
    ref = db.table("VDI").by_uuid.get(value)
    if ref is None:
        raise ApiError("HANDLE_INVALID", ["VDI", value])
    return str(ref)


def _new_vdi(toolstack: Any, query: Mapping[str, str], fmt: str, length: int | None) -> str:
    """The VDI an import without one goes into (XAPI's "Imported VDI")."""
    db = toolstack.db
    sr = query.get("sr_id") or db.table("SR").by_uuid.get(query.get("sr_uuid", ""))
    if fmt != "raw":
        raise ApiError("INTERNAL_ERROR", ["Importing a VHD directly into an SR not yet supported"])
    if not sr or length is None:
        raise ApiError("INTERNAL_ERROR", ["Not enough info supplied to import"])
    db.get("SR", str(sr))  # HANDLE_INVALID for an unknown SR
    record = new_record(
        "VDI", name_label="Imported VDI", SR=str(sr), virtual_size=length, type="user"
    )
    return str(vdi_impl.create(Context(toolstack, query.get("session_id", "")), record))


async def open_transfer(
    toolstack: Any, query: Mapping[str, str], writing: bool, length: int | None = None
) -> DiskTransfer:
    """Check (and, for an export, claim); ApiError HANDLE_INVALID, FIELD_TYPE_ERROR...

    The session and its role were checked by the handler's guard (see ``api/rbac.py``). An
    import with no ``vdi`` but an ``sr_id`` (or ``sr_uuid``) goes into a new VDI of the
    body's length, as XAPI's does; raw only. A refusal fails the task the request names.
    """
    with refusing(toolstack, query):
        return _open(toolstack, query, writing, length)


def _open(
    toolstack: Any, query: Mapping[str, str], writing: bool, length: int | None
) -> DiskTransfer:
    session = query.get("session_id", "")
    fmt = query.get("format", "raw")
    if fmt not in FORMATS:
        raise ApiError("FIELD_TYPE_ERROR", ["format"])
    base = None
    if not writing and query.get("base"):  # a delta since this older snapshot (relative_to)
        base = toolstack.db.get("VDI", _vdi_ref(toolstack, query["base"]))
    label = "VDI.import" if writing else "VDI.export"
    task, own_task = request_task(toolstack, query, session, label)
    try:
        transfer = _transfer(toolstack, query, writing, length, task, base)
    except ApiError:
        if own_task:
            settle_task(toolstack.db, task, None, forget=True)
        raise
    transfer.own_task = own_task
    return transfer


def _transfer(
    toolstack: Any,
    query: Mapping[str, str],
    writing: bool,
    length: int | None,
    task: str,
    base: Record | None,
) -> DiskTransfer:
    """The checked transfer of an accepted request (its task made)."""
    fmt = query.get("format", "raw")
    if writing and not query.get("vdi"):
        vdi = _new_vdi(toolstack, query, fmt, length)
    else:
        vdi = _vdi_ref(toolstack, query.get("vdi", ""))
    row = toolstack.db.get("VDI", vdi)
    registry = drivers(toolstack)
    drv = file_sr(registry, toolstack.db, row["SR"])
    if drv is None:  # no VHD file: a sizes-only VDI has no data, an ISO no VHD
        raise ApiError("SR_OPERATION_NOT_SUPPORTED", [row["SR"]])
    if writing and row["read_only"]:
        raise ApiError("VDI_READONLY", [vdi])
    transfer = DiskTransfer(toolstack, vdi, drv.path(row["location"]), fmt, task)
    transfer.writing, transfer.location = writing, row["location"]
    if writing:
        return transfer  # the import claims the VDI once its body starts
    if base is not None:
        base_sr = file_sr(registry, toolstack.db, base["SR"])
        if base_sr is None:
            raise ApiError("SR_OPERATION_NOT_SUPPORTED", [base["SR"]])
        transfer.base_path = base_sr.path(base["location"])
        transfer.claimed_base = base["location"]
        toolstack.storage.busy.add(base["location"])  # the GC leaves its chain alone
    toolstack.storage.busy.add(row["location"])
    transfer.claimed = row["location"]
    return transfer


class DiskTransfer:
    """One claimed transfer; ``close`` (always) releases the VDI and settles the task."""

    def __init__(self, toolstack: Any, vdi: str, path: str, fmt: str, task: str) -> None:
        self.toolstack = toolstack
        self.vdi, self.path, self.format, self.task = vdi, path, fmt, task
        self.loop = asyncio.get_running_loop()
        self.claimed = ""
        self.location = ""
        self.base_path = ""  # an export relative to this older snapshot: only the changes
        self.claimed_base = ""
        self.writing = False
        self.own_task = False  # made for this request (none came with it): forgotten at the end
        self.expected = 0  # bytes the stream should carry (0: unknown)
        self._done = 0
        self._last = 0.0
        self._lock = threading.Lock()

    async def claim(self) -> None:
        """Take the VDI for an import (once its body starts), waiting out a GC pass that holds
        it; VDI_IN_USE if anything else does."""
        if not await self.toolstack.storage.busy.claim_waiting_for_gc(self.location):
            raise ApiError("VDI_IN_USE", [self.vdi, "import"])
        self.claimed = self.location

    # ---- progress, called from the worker thread ---------------------------------------

    def advance(self, nbytes: int) -> None:
        self._done += nbytes
        t = time.monotonic()
        if self.expected <= 0 or t - self._last < PROGRESS_EVERY:
            return
        self._last = t
        fraction = min(0.99, self._done / self.expected)
        self.loop.call_soon_threadsafe(self.toolstack.tasks.progress, self.task, fraction)

    # ---- the copies (blocking) ---------------------------------------------------------

    def import_from(self, source: ByteSource) -> int:
        with VhdImage.open(self.path) as image, _Writeback(self.path) as writeback:
            self.expected = self.expected or image.virtual_size
            counted = _Counting(source, self, writeback)
            if self.format == "vhd":  # as XAPI on file SRs: what the stream leaves out stays
                n = import_vhd(counted, image, prezeroed=True)
            else:
                n = import_raw(counted, image)
            image.flush()
        return n

    async def durable(self) -> None:
        """Wait until the database holds this transfer's rows on disk (a new VDI's)."""
        await self.toolstack.db.durable()

    def export_size(self) -> tuple[int, Iterator[Chunk]]:
        """(Content-Length, chunks) of the export; the images stay open until exhausted."""
        images = [VhdImage.open(self.path, writable=False)]
        if self.base_path:
            images.append(VhdImage.open(self.base_path, writable=False))
        image, base = images[0], images[1] if self.base_path else None
        if self.format == "vhd":
            stream = export_vhd_stream(image, base=base)
            size, chunks = stream.size, stream.chunks
        elif base is not None:
            size, chunks = image.virtual_size, _raw_blocks(image, changed_blocks(image, base))
        else:
            size, chunks = image.virtual_size, _raw_with_holes(image)
        self.expected = size
        return size, self._closing(images, chunks)

    def _closing(self, images: list[VhdImage], chunks: Iterator[Chunk]) -> Iterator[Chunk]:
        try:
            for chunk in chunks:
                self.advance(len(chunk))
                yield chunk
        finally:
            for image in images:
                image.close()
            self._release()  # before the last bytes reach the client: see disk_http._pump

    def _release(self) -> None:
        with self._lock:
            claimed, self.claimed = self.claimed, ""
            base, self.claimed_base = self.claimed_base, ""
        for location in (claimed, base):
            if location:
                self.toolstack.storage.busy.discard(location)

    # ---- the end ----------------------------------------------------------------------

    def close(self, error: ApiError | None) -> None:
        """Release the VDI, refresh its sizes after an import, settle the task."""
        db = self.toolstack.db
        self._release()
        if db.exists("VDI", self.vdi):
            from .vdi_files import _refresh_row  # the row follows its file

            drv = file_sr(drivers(self.toolstack), db, db.get("VDI", self.vdi)["SR"])
            if drv is not None:
                with contextlib.suppress(ApiError):  # the file went away (VDI.forget + rm)
                    _refresh_row(db, self.vdi, drv)
        result = value_text(self.vdi) if self.writing else ""  # XAPI's: the VDI imported
        settle_task(db, self.task, error, result, forget=self.own_task)


def _raw_with_holes(image: VhdImage) -> Iterator[Chunk]:
    """The whole disk as raw bytes; holes come from one shared zero buffer, never read."""
    return _raw(image.virtual_size, export_raw_chunks(image, CHUNK))


def _raw_blocks(image: VhdImage, blocks: list[int]) -> Iterator[Chunk]:
    """The whole disk as raw bytes where only ``blocks`` are read; zeros elsewhere."""
    size, block_size = image.virtual_size, image.block_size
    starts = (b * block_size for b in blocks)
    return _raw(size, ((a, image.read_view(a, min(block_size, size - a))) for a in starts))


def _raw(size: int, pieces: Iterator[tuple[int, Chunk]]) -> Iterator[Chunk]:
    """``size`` bytes: the ``(offset, data)`` pieces, ascending, and zeros between them."""
    zeros = memoryview(bytes(CHUNK))
    pos = 0
    for offset, data in pieces:
        yield from _zero_run(zeros, offset - pos)
        yield data
        pos = offset + len(data)
    yield from _zero_run(zeros, size - pos)


def _zero_run(zeros: memoryview, length: int) -> Iterator[Chunk]:
    while length > 0:
        n = min(length, len(zeros))
        yield zeros[:n]
        length -= n


class _Writeback:
    """Starts the kernel writing a file's dirty pages back every ``EVERY`` bytes of input,
    without waiting (``sync_file_range``), so the final fsync has little left to do."""

    EVERY = 64 * 1024 * 1024

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self._due = self.EVERY

    def __enter__(self) -> _Writeback:
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)

    def advance(self, done: int) -> None:
        if done < self._due or _sync_file_range is None:
            return
        self._due = done + self.EVERY
        _sync_file_range(self.fd, 0, 0, _SYNC_FILE_RANGE_WRITE)


def _libc_sync_file_range() -> Any:
    try:
        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (AttributeError, OSError):
        return None  # not Linux: the final fsync does all the work
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    return fn


_SYNC_FILE_RANGE_WRITE = 2
_sync_file_range = _libc_sync_file_range()


class _Counting:
    """A ByteSource that reports what went through it (to the task and the writeback)."""

    def __init__(self, source: ByteSource, transfer: DiskTransfer, writeback: _Writeback) -> None:
        self.source, self.transfer, self.writeback = source, transfer, writeback
        self.done = 0

    def _count(self, n: int) -> None:
        self.done += n
        self.transfer.advance(n)
        self.writeback.advance(self.done)

    def read(self, size: int, /) -> bytes:
        data = self.source.read(size)
        self._count(len(data))
        return data

    def readinto(self, out: memoryview) -> int:
        readinto = getattr(self.source, "readinto", None)
        if readinto is None:
            data = self.source.read(len(out))
            out[: len(data)] = data
            n = len(data)
        else:
            n = int(readinto(out))
        self._count(n)
        return n
