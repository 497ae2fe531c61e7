"""VM export (the local work behind ``GET /export``): an XVA of a halted VM and its disks.

:func:`open_export` checks the VM, takes the VM's ``export`` operation and
builds ``ova.xml`` (on the event loop, where the database lives); :class:`VmExport` then
produces the tar stream from the disk files (blocking: run it in worker threads) and settles
the task. Shared by the import: the request's task and its progress reporting.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator, Mapping
from typing import Any

from ...core.access import check_task, fail_named_task
from ...core.context import Context
from ...core.ids import now
from ...db.store import Database
from ...errors import ApiError
from ...storage import xva_metadata
from ...storage.vhd import VhdImage
from ...storage.xva import (
    END_OF_ARCHIVE,
    OVA_XML,
    Chunk,
    ChunkReader,
    EmptyDisk,
    ImageChunks,
    disk_members,
    gzip_chunks,
    member,
    zstd_chunks,
)
from .. import operations
from ..storage.sr_backend import drivers
from ..storage.vdi_files import vdi_path

PROGRESS_EVERY = 0.25  # seconds between task progress updates


def object_ref(db: Database, cls: str, query: Mapping[str, str]) -> str:
    """The object named by ``ref=`` or ``uuid=``; HANDLE_INVALID or UUID_INVALID."""
    ref = query.get("ref")
    if ref is not None:
        db.get(cls, ref)
        return ref
    uuid = query.get("uuid", "")
    found = db.table(cls).by_uuid.get(uuid)
    if found is None:
        raise ApiError("UUID_INVALID", [cls, uuid])
    return str(found)


def request_task(
    toolstack: Any, query: Mapping[str, str], session: str, label: str
) -> tuple[str, bool]:
    """The request's ``task_id`` (checked), or a new task of its own (True), which is
    forgotten once the request is over (see :func:`settle_task`), as XAPI's handler tasks."""
    task = query.get("task_id")
    if task:  # one the session may modify only, lest a transfer settle another's task
        check_task(toolstack, session, task)
        return task, False
    return str(toolstack.tasks.create(Context(toolstack, session), label)), True


@contextlib.contextmanager
def refusing(toolstack: Any, query: Mapping[str, str]) -> Iterator[None]:
    """While a request is opened: a refusal fails the task the request names (the session's
    own), so that no task waits forever for a transfer that never starts."""
    try:
        yield
    except ApiError as err:
        fail_named_task(toolstack, query, err)
        raise


def settle_task(
    db: Database, task: str, error: ApiError | None, result: str = "", *, forget: bool = False
) -> None:
    """Record the outcome; ``forget`` a task the request did not bring (XAPI's own task for
    an HTTP handler lasts as long as the handler)."""
    if not db.exists("task", task) or db.get("task", task)["status"] != "pending":
        return
    with db.transaction():
        if forget:
            db.destroy("task", task)
            return
        db.update(
            "task",
            task,
            status="success" if error is None else "failure",
            progress=1.0,
            finished=now(),
            result=result if error is None else "",
            error_info=[] if error is None else error.description,
            allowed_operations=[],
        )


class Progress:
    """Byte counts from worker threads, turned into the task's progress now and then."""

    def __init__(self, toolstack: Any, task: str | None, total: int) -> None:
        self.toolstack, self.task, self.total = toolstack, task, total
        self.loop = asyncio.get_running_loop()
        self.done = 0
        self._last = 0.0

    def advance(self, nbytes: int) -> None:
        self.done += nbytes
        t = time.monotonic()
        if self.task is None or self.total <= 0 or t - self._last < PROGRESS_EVERY:
            return
        self._last = t
        fraction = min(0.99, self.done / self.total)
        self.loop.call_soon_threadsafe(self.toolstack.tasks.progress, self.task, fraction)


def compression(query: Mapping[str, str]) -> str | None:
    """What ``use_compression=`` asks for: "gzip" (``true`` or ``gzip``), "zstd", or None
    (any other value, as XAPI reads them)."""
    value = query.get("use_compression", "")
    if value in ("true", "gzip"):
        return "gzip"
    return "zstd" if value == "zstd" else None


def _disks(db: Database, chosen: xva_metadata.Selection) -> list[tuple[str, str]]:
    """(export id, VDI) of the disks whose data goes in the stream, in stream order."""
    out = []
    for cls, ref in chosen.order:
        if cls != "VDI":
            continue
        if db.get("SR", db.get("VDI", ref)["SR"])["content_type"] == "iso":
            continue
        if all(db.get("VBD", v)["type"] == "CD" for v in db.get("VDI", ref)["VBDs"]):
            continue
        out.append((chosen.ids[ref], ref))
    return sorted(out)


async def open_export(toolstack: Any, query: Mapping[str, str]) -> VmExport:
    """Check, lock and describe; ApiError HANDLE_INVALID, VM_BAD_POWER_STATE...

    The session and its role were checked by the handler's guard (see ``api/rbac.py``)."""
    with refusing(toolstack, query):
        return _open_export(toolstack, query)


def _open_export(toolstack: Any, query: Mapping[str, str]) -> VmExport:
    session = query.get("session_id", "")
    db = toolstack.db
    vm = object_ref(db, "VM", query)
    task, own = request_task(toolstack, query, session, "VM.export")
    export = VmExport(toolstack, vm, task)
    export.own_task = own
    try:
        export.compression = compression(query)
        # Not a message: the HTTP handler marks its own operation, as XAPI's export.ml does.
        operations.begin(db, "VM", vm, "export", task)
        export.locks.callback(operations.end, db, "VM", vm, task)
        chosen = xva_metadata.select_vm(db, vm)
        export.metadata = xva_metadata.encode(db, chosen, toolstack.this_host)
        for prefix, vdi in _disks(db, chosen):
            location = db.get("VDI", vdi)["location"]
            toolstack.storage.busy.add(location)
            export.locks.callback(toolstack.storage.busy.discard, location)
            found = vdi_path(drivers(toolstack), db, vdi)
            size = int(db.get("VDI", vdi)["virtual_size"])
            export.disks.append((prefix, found[1] if found else None, size))
    except ApiError as err:
        export.close(err)
        raise
    export.progress = Progress(toolstack, task, sum(size for _, _, size in export.disks))
    return export


class VmExport:
    """One export in progress; ``close`` (always) releases the VM and settles the task."""

    def __init__(self, toolstack: Any, vm: str, task: str) -> None:
        self.toolstack, self.vm, self.task = toolstack, vm, task
        self.compression: str | None = None  # "gzip" or "zstd": the whole stream
        self.own_task = False  # made for this request (none came with it): forgotten at the end
        self.locks = contextlib.ExitStack()
        self.metadata = b""
        self.disks: list[tuple[str, str | None, int]] = []
        self.progress: Progress | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {
            "task-id": self.task,
            "Content-Disposition": 'attachment; filename="export.xva"',
        }

    def chunks(self) -> Iterator[Chunk]:
        """The XVA as a stream of byte chunks (blocking; nothing holds a whole disk)."""
        if self.compression == "gzip":
            return gzip_chunks(self._tar())
        if self.compression == "zstd":
            return zstd_chunks(self._tar())
        return self._tar()

    def _tar(self) -> Iterator[Chunk]:
        assert self.progress is not None
        yield from member(OVA_XML, self.metadata)
        for prefix, path, size in self.disks:
            with contextlib.ExitStack() as stack:
                reader: ChunkReader = EmptyDisk(size)
                if path is not None:
                    reader = ImageChunks(stack.enter_context(VhdImage.open(path, writable=False)))
                yield from disk_members(prefix, reader, self.progress.advance)
        yield END_OF_ARCHIVE

    def close(self, error: ApiError | None) -> None:
        self.locks.close()
        settle_task(self.toolstack.db, self.task, error, forget=self.own_task)
