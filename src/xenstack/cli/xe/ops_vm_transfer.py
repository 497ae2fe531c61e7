"""``xe vm-export`` and ``xe vm-import``: a VM as an XVA file, with a progress bar.

As XenServer's xe does: a task is created, the XVA comes from ``GET /export`` or goes to
``PUT /import``, and the task's outcome is the command's (vm-import prints the new VM's uuid,
vm-export "Export succeeded"). The bar is drawn on stderr only when it is a terminal.
"""

from __future__ import annotations

import os
import re
from urllib.parse import urlencode

from .context import Ctx
from .ops_common import vm_op
from .ops_vdi_transfer import CHUNK, Progress, _connection, _send, _settle
from .output import CliError
from .registry import command

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import BinaryIO

    from .select import Row

_REF = re.compile(r"OpaqueRef:[0-9A-Za-z-]+")


def _export_one(ctx: Ctx, vm: str, filename: str, compression: str | None) -> None:
    task = str(ctx.call("task.create", "VM export", filename))
    query = {"session_id": ctx.client.session, "task_id": task, "ref": vm}
    if compression is not None:
        query["use_compression"] = compression
    conn = _connection(ctx)
    conn.request("GET", f"/export?{urlencode(query)}")
    response = conn.getresponse()
    if response.status == 200:
        progress = Progress(_disk_total(ctx, vm), "Exporting")
        try:
            with open(filename, "wb") as dest:
                while chunk := response.read(CHUNK):
                    dest.write(chunk)
                    progress.advance(len(chunk))
        except OSError as exc:
            raise CliError(f"Cannot write {filename}: {exc.strerror}") from None
        progress.done = max(progress.done, progress.total)  # holes were never sent
        progress.finish()
    conn.close()
    _settle(ctx, task, response.status)


def _disk_total(ctx: Ctx, vm: str) -> int:
    """What the bar measures the export against: the disks' sizes (a sparse export is less)."""
    total = 0
    for vbd in ctx.call("VM.get_VBDs", vm):
        record = ctx.call("VBD.get_record", vbd)
        if record["type"] != "CD" and not record["empty"]:
            total += int(ctx.call("VDI.get_virtual_size", record["VDI"]))
    return total


def _compression(ctx: Ctx) -> str | None:
    """What ``compress=`` asks for, as XAPI's CLI reads it: true/gzip, zstd, else none."""
    value = ctx.get("compress")
    if value in ("true", "gzip"):
        return "gzip"
    return "zstd" if value == "zstd" else None


@command(
    "vm-export",
    reqd="filename",
    optn="vm compress preserve-power-state",
    flags="standard vm",
    help="Export a halted VM (its configuration and disks) to an XVA file; compress=true "
    "(or gzip) compresses it with gzip, compress=zstd with zstd. vm-import reads plain and "
    "compressed files alike.",
)
def vm_export(ctx: Ctx) -> None:
    filename = ctx.req("filename")
    compression = _compression(ctx)

    def op(row: Row) -> None:
        _export_one(ctx, row[0], filename, compression)

    vm_op(ctx, op, ["filename", "compress", "preserve-power-state"], multiple=False)
    ctx.printer.lines(["Export succeeded"])


@command(
    "vm-import",
    reqd="filename",
    optn="sr-uuid preserve force",
    help="Import a VM from an XVA file (plain, gzip- or zstd-compressed) onto sr-uuid= or the "
    "pool's default SR; preserve=true keeps MAC addresses and other identities, force=true "
    "accepts bad checksums. Prints the new VM's uuid.",
)
def vm_import(ctx: Ctx) -> None:
    filename = ctx.req("filename")
    query = {"session_id": ctx.client.session}
    if ctx.get("sr-uuid"):
        query["sr_id"] = ctx.ref_by_uuid("SR", ctx.req("sr-uuid"))
    query |= {"restore": str(ctx.flag("preserve")).lower(), "force": str(ctx.flag("force")).lower()}
    try:
        source: BinaryIO = open(filename, "rb")  # noqa: SIM115  (closed below)
    except OSError as exc:
        raise CliError(f"Cannot open {filename}: {exc.strerror}") from None
    task = str(ctx.call("task.create", "VM import", filename))
    query["task_id"] = task
    with source:
        size = os.fstat(source.fileno()).st_size
        progress = Progress(size, "Importing")
        conn = _connection(ctx)
        conn.putrequest("PUT", f"/import?{urlencode(query)}")
        conn.putheader("Content-Length", str(size))
        conn.endheaders()
        status = _send(conn, source, progress)
        conn.close()
    progress.finish()
    result = str(ctx.call("task.get_result", task))
    _settle(ctx, task, status)
    ctx.printer.lines([ctx.uuid_of("VM", ref) for ref in _REF.findall(result)])
