"""VM import: an XVA stream becomes a halted VM with its disks, VBDs and VIFs.

The stream is read once, front to back, in worker threads; the objects are made on the event
loop. Order: ``ova.xml``, then the objects (VM, VDIs on the target SR, VBDs, VIFs), then each
disk's chunks into its new VDI. Any failure removes everything made so far and answers an
IMPORT_ERROR* error, as XAPI does. Used by ``PUT /import`` and by ``VM.import``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

from ...core.context import Context
from ...core.xmlrpc_values import value_text
from ...errors import ApiError
from ...storage import xva_metadata
from ...storage.errors import StreamError, VhdError
from ...storage.vhd import ByteSource, VhdImage
from ...storage.xva import (
    ChecksumMismatch,
    ChunkSink,
    PrematureEof,
    TarReader,
    UnexpectedFile,
    XvaError,
    image_writer,
    open_stream,
    read_metadata,
    receive_disk,
)
from ..registry import implements
from ..storage.sr_backend import drivers
from ..storage.vdi_files import _refresh_row, vdi_path
from .clone import Undo
from .export import Progress, object_ref, refusing, request_task, settle_task
from .import_objects import Plan, make_objects
from .lifecycle import update_allowed_operations


def stream_error(exc: BaseException) -> ApiError:
    """The XenAPI error for a stream that could not be read as an XVA."""
    if isinstance(exc, PrematureEof):
        return ApiError("IMPORT_ERROR_PREMATURE_EOF", [])
    if isinstance(exc, UnexpectedFile):
        return ApiError("IMPORT_ERROR_UNEXPECTED_FILE", [exc.expected, exc.found])
    if isinstance(exc, (ChecksumMismatch, XvaError, StreamError, VhdError)):
        return ApiError("IMPORT_ERROR", [str(exc)])
    if isinstance(exc, (ConnectionError, EOFError)):
        return ApiError("IMPORT_ERROR_PREMATURE_EOF", [])
    return ApiError("IMPORT_ERROR", [f"{type(exc).__name__}: {exc}"])


async def _in_thread(fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return await asyncio.to_thread(fn, *args, **kwargs)
    except ApiError:
        raise
    except (OSError, StreamError, VhdError, EOFError, ValueError) as exc:
        raise stream_error(exc) from None


async def import_xva(
    ctx: Context, source: ByteSource, sr: str, full_restore: bool, force: bool
) -> list[str]:
    """Import the XVA (plain, gzip- or zstd-compressed) read from ``source`` onto ``sr``; return the
    new VMs."""
    reader = TarReader(await _in_thread(open_stream, source))
    text = await _in_thread(read_metadata, reader)
    header = xva_metadata.decode(text)
    undo = Undo(ctx)
    try:
        plan = await make_objects(ctx, header, sr, full_restore, force, undo)
        progress = Progress(ctx.toolstack, ctx.task, sum(size for _, _, size in plan.disks))
        for prefix, vdi, size in plan.disks:
            await _receive(ctx, reader, prefix, vdi, size, force, progress)
        await _in_thread(reader.drain)
        _finish(ctx, plan)
    except BaseException:
        await undo.rollback()
        raise
    return plan.vms


async def _receive(
    ctx: Context,
    reader: TarReader,
    prefix: str,
    vdi: str,
    size: int,
    force: bool,
    progress: Progress,
) -> None:
    """One disk's chunks from the stream into the VDI's file (or nowhere, without a file)."""
    db = ctx.db
    found = vdi_path(drivers(ctx.toolstack), db, vdi)
    location = db.get("VDI", vdi)["location"]
    if not ctx.toolstack.storage.busy.try_claim([location]):
        raise ApiError("VDI_IN_USE", [vdi, "import"])
    try:
        await _in_thread(_copy_in, reader, prefix, size, found and found[1], force, progress)
    finally:
        ctx.toolstack.storage.busy.discard(location)
    if found is not None and db.exists("VDI", vdi):
        _refresh_row(db, vdi, found[0])


def _copy_in(
    reader: TarReader, prefix: str, size: int, path: str | None, force: bool, progress: Progress
) -> None:
    with contextlib.ExitStack() as stack:
        write: ChunkSink = lambda offset, data: None  # noqa: E731  (no file: data is checked only)
        if path is not None:
            image = stack.enter_context(VhdImage.open(path))
            write = image_writer(image)
        receive_disk(reader, prefix, size, write, progress.advance, force=force)
        if path is not None:
            image.flush()


def _finish(ctx: Context, plan: Plan) -> None:
    db = ctx.db
    with db.transaction():
        for vm in plan.vms:
            db.set("VM", vm, "current_operations", {})
            update_allowed_operations(db, vm)


# ---- PUT /import ------------------------------------------------------------------------


def _target_sr(db: Any, query: Mapping[str, str]) -> str:
    if query.get("sr_id"):
        sr = query["sr_id"]
        db.get("SR", sr)
    elif query.get("sr_uuid"):
        sr = object_ref(db, "SR", {"uuid": query["sr_uuid"]})
    else:
        pool = db.get("pool", db.refs("pool")[0])
        sr = pool["default_SR"]
        if not db.exists("SR", sr):
            raise ApiError("DEFAULT_SR_NOT_FOUND", [sr])
    return check_sr(db, sr)


def check_sr(db: Any, sr: str) -> str:
    if db.get("SR", sr)["content_type"] == "iso":
        raise ApiError("SR_OPERATION_NOT_SUPPORTED", [sr])
    return sr


async def open_import(toolstack: Any, query: Mapping[str, str]) -> VmImport:
    """Check the target SR and the task; ApiError otherwise (the session and its role were
    checked by the handler's guard, see ``api/rbac.py``)."""
    session = query.get("session_id", "")
    with refusing(toolstack, query):
        sr = _target_sr(toolstack.db, query)
        task, own = request_task(toolstack, query, session, "VM.import")
    ctx = Context(toolstack, session, task, method="VM.import")
    restore, force = query.get("restore") == "true", query.get("force") == "true"
    transfer = VmImport(ctx, sr, restore, force)
    transfer.own_task = own
    return transfer


class VmImport:
    """One ``PUT /import``; ``close`` settles the task with the new VMs or the error."""

    def __init__(self, ctx: Context, sr: str, restore: bool, force: bool) -> None:
        self.ctx, self.sr, self.restore, self.force = ctx, sr, restore, force
        self.vms: list[str] = []
        self.own_task = False  # made for this request (none came with it): forgotten at the end

    @property
    def headers(self) -> dict[str, str]:
        return {"task-id": str(self.ctx.task)}

    async def run(self, source: ByteSource) -> None:
        self.vms = await import_xva(self.ctx, source, self.sr, self.restore, self.force)
        await self.ctx.db.durable()  # the task says success only once the new VMs are on disk

    def close(self, error: ApiError | None) -> None:
        assert self.ctx.task is not None
        settle_task(self.ctx.db, self.ctx.task, error, value_text(self.vms), forget=self.own_task)


# ---- VM.import ---------------------------------------------------------------------------

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def open_url(url: str) -> Any:
    """A blocking reader of ``url``: a local file, or http(s) on this machine only."""
    import http.client
    import ssl
    import urllib.parse

    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme in ("", "file"):
        try:
            return open(parsed.path if parsed.scheme else url, "rb")
        except OSError as exc:
            raise ApiError("IMPORT_ERROR", [f"{url}: {exc.strerror}"]) from None
    if parsed.scheme not in ("http", "https") or parsed.hostname not in LOCAL_HOSTS:
        raise ApiError("IMPORT_ERROR", [f"{url}: only local files and local URLs are allowed"])
    conn: http.client.HTTPConnection
    if parsed.scheme == "https":
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        conn = http.client.HTTPSConnection(parsed.hostname, parsed.port, context=context)
    else:
        conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=600)
    target = parsed.path + (f"?{parsed.query}" if parsed.query else "")
    try:
        conn.request("GET", target or "/")
        response = conn.getresponse()
    except OSError as exc:
        raise ApiError("IMPORT_ERROR", [f"{url}: {exc}"]) from None
    if response.status != 200:
        conn.close()
        raise ApiError("IMPORT_ERROR", [f"{response.status} {response.reason}"])
    return response


@implements("VM.import")
async def import_(ctx: Context, url: str, sr: str, full_restore: bool, force: bool) -> list[str]:
    check_sr(ctx.db, sr)
    source = await asyncio.to_thread(open_url, url)
    try:
        return await import_xva(ctx, source, sr, full_restore, force)
    finally:
        await asyncio.to_thread(source.close)
