"""``xe vdi-import`` and ``xe vdi-export``: a disk's contents over HTTP, with a progress bar.

Like XenServer's xe: a task is created, the bytes go to ``PUT /import_raw_vdi`` or come from
``GET /export_raw_vdi`` (``format=raw`` by default, or ``vhd``), and the task's outcome is
the command's. The progress bar is drawn on stderr only when stderr is a terminal.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time

from .client import XenApiError
from .context import Ctx
from .output import CliError
from .registry import command

CHUNK = 1 << 20
FORMATS = ("raw", "vhd")

TYPE_CHECKING = False
if TYPE_CHECKING:
    import http.client
    from typing import BinaryIO


class Progress:
    """A one-line progress bar on stderr, redrawn at most ten times a second."""

    def __init__(self, total: int, label: str) -> None:
        self.total, self.label = total, label
        self.done = 0
        self.start = self.last = time.monotonic()
        self.enabled = sys.stderr.isatty()

    def advance(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.enabled and now - self.last >= 0.1:
            self.last = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        fraction = min(1.0, self.done / self.total) if self.total else 0.0
        rate = self.done / max(now - self.start, 1e-6) / (1 << 20)
        bar = "#" * int(fraction * 30)
        sys.stderr.write(f"\r{self.label} [{bar:<30}] {fraction * 100:5.1f}% {rate:8.1f} MiB/s")
        sys.stderr.flush()

    def finish(self) -> None:
        if self.enabled:
            self._draw(time.monotonic())
            sys.stderr.write("\n")
            sys.stderr.flush()


def _connection(ctx: Ctx) -> http.client.HTTPConnection:
    import http.client
    import socket

    client = ctx.client
    if not client.unix_path:
        return http.client.HTTPConnection(client.host, client.port, timeout=600)
    conn = http.client.HTTPConnection("localhost", timeout=600)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(client.unix_path)
    conn.sock = sock
    return conn


def _target(ctx: Ctx, endpoint: str, vdi: str, fmt: str, task: str) -> str:
    from urllib.parse import urlencode

    query = {"session_id": ctx.client.session, "task_id": task, "vdi": vdi, "format": fmt}
    return f"/{endpoint}?{urlencode(query)}"


def _format(ctx: Ctx) -> str:
    fmt = ctx.get("format", "raw") or "raw"
    if fmt not in FORMATS:
        raise CliError(f"Unknown format '{fmt}': expected raw or vhd")
    return fmt


def _settle(ctx: Ctx, task: str, status: int) -> None:
    """Raise the task's error (or the HTTP status) unless the transfer succeeded."""
    try:
        outcome = ctx.call("task.get_status", task)
        error = ctx.call("task.get_error_info", task)
    finally:
        with contextlib.suppress(XenApiError):
            ctx.call("task.destroy", task)
    if outcome == "failure" and error:
        raise XenApiError(str(error[0]), [str(p) for p in error[1:]])
    if status != 200:
        raise CliError(f"The server answered HTTP {status}")


def _send(conn: http.client.HTTPConnection, source: BinaryIO, progress: Progress) -> int:
    """Send the body, then the HTTP status (0 if the server hung up without one)."""
    try:
        while chunk := source.read(CHUNK):
            conn.send(chunk)
            progress.advance(len(chunk))
    except OSError:
        pass  # the server stopped reading: its answer (or the task) says why
    try:
        response = conn.getresponse()  # answered at once; the answer ends with the import
        response.read()
        return response.status
    except OSError:
        return 0


@command(
    "vdi-import",
    reqd="uuid filename",
    optn="format",
    help="Write a file (raw or VHD) onto a VDI.",
)
def vdi_import(ctx: Ctx) -> None:
    vdi = ctx.ref_by_uuid("VDI", ctx.req("uuid"))
    fmt, filename = _format(ctx), ctx.req("filename")
    try:
        source: BinaryIO = open(filename, "rb")  # noqa: SIM115  (closed below)
    except OSError as exc:
        raise CliError(f"Cannot open {filename}: {exc.strerror}") from None
    task = str(ctx.call("task.create", "VDI import", filename))
    with source:
        size = os.fstat(source.fileno()).st_size
        progress = Progress(size, "Importing")
        conn = _connection(ctx)
        conn.putrequest("PUT", _target(ctx, "import_raw_vdi", vdi, fmt, task))
        conn.putheader("Content-Length", str(size))
        conn.endheaders()
        status = _send(conn, source, progress)
        conn.close()
    progress.finish()
    _settle(ctx, task, status)


@command(
    "vdi-export",
    reqd="uuid filename",
    optn="format",
    help="Write a VDI's contents (raw or VHD) to a file.",
)
def vdi_export(ctx: Ctx) -> None:
    vdi = ctx.ref_by_uuid("VDI", ctx.req("uuid"))
    fmt, filename = _format(ctx), ctx.req("filename")
    task = str(ctx.call("task.create", "VDI export", filename))
    conn = _connection(ctx)
    conn.request("GET", _target(ctx, "export_raw_vdi", vdi, fmt, task))
    response = conn.getresponse()
    if response.status == 200:
        progress = Progress(int(response.getheader("Content-Length") or 0), "Exporting")
        try:
            with open(filename, "wb") as dest:
                while chunk := response.read(CHUNK):
                    dest.write(chunk)
                    progress.advance(len(chunk))
        except OSError as exc:
            raise CliError(f"Cannot write {filename}: {exc.strerror}") from None
        progress.finish()
    conn.close()
    _settle(ctx, task, response.status)
