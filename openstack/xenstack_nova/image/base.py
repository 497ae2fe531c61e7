"""What the handlers share: Glance through nova's image API, the host's HTTP disk handlers
under a XenAPI task, and the handler interface."""

from __future__ import annotations

import contextlib
import http.client
import os
import tempfile
import time
import urllib.parse
from collections.abc import Iterable, Iterator
from typing import Any

from nova import exception
from nova.image import glance

from .. import vm_utils
from ..session import XenAPISession

CHUNK = 1 << 20
TASK_TIMEOUT = 600.0


class ImageHandler:
    """Moves images between Glance and VDIs of the host's SR."""

    name = ""

    def __init__(self, session: XenAPISession, host: str) -> None:
        self.session = session
        self.host = host
        self.images = glance.API()

    def download(self, context: Any, instance: Any, image_id: str, sr: str, min_size: int) -> str:
        """The root VDI (at least ``min_size`` bytes) holding image ``image_id``."""
        raise NotImplementedError

    def upload(
        self, context: Any, instance: Any, image_id: str, vdi: str, meta: dict[str, Any]
    ) -> None:
        """Upload ``vdi`` (with its parents) as image ``image_id``, its metadata ``meta``."""
        raise NotImplementedError

    # --- Glance

    def image_meta(self, context: Any, image_id: str) -> dict[str, Any]:
        return dict(self.images.get(context, image_id))

    def image_chunks(self, context: Any, image_id: str) -> Iterator[bytes]:
        """The image's bytes as they come from Glance."""
        data = self.images.download(context, image_id)
        if data is not None:
            for chunk in data:
                if chunk:
                    yield bytes(chunk)
            return
        # an image service that only writes to a path (nova's in-process GlanceFixture)
        fd, path = tempfile.mkstemp(prefix="xenstack-nova-image-")
        os.close(fd)
        try:
            self.images.download(context, image_id, dest_path=path)
            with open(path, "rb") as f:
                while chunk := f.read(CHUNK):
                    yield chunk
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def update_image(
        self, context: Any, image_id: str, meta: dict[str, Any], data: Iterable[bytes] | None
    ) -> None:
        body = ChunkFile(iter(data)) if data is not None else None
        self.images.update(context, image_id, meta, data=body, purge_props=False)

    # --- the host's HTTP handlers

    @contextlib.contextmanager
    def task(self, label: str) -> Iterator[str]:
        ref = self.session.call("task.create", label, "xenstack-nova image transfer")
        try:
            yield str(ref)
        finally:
            with vm_utils.ignore("HANDLE_INVALID"):
                self.session.call("task.destroy", ref)

    def wait_task(self, task: str) -> str:
        deadline = time.monotonic() + TASK_TIMEOUT
        delay = 0.02
        while True:
            rec = self.session.call("task.get_record", task)
            if rec["status"] == "success":
                return str(rec["result"])
            if rec["status"] in ("failure", "cancelled"):
                raise exception.NovaException(f"disk transfer failed: {rec['error_info']}")
            if time.monotonic() > deadline:
                raise exception.NovaException("disk transfer timed out")
            time.sleep(delay)
            delay = min(delay * 2, 0.5)

    def _connection(self) -> tuple[http.client.HTTPConnection, str]:
        url = urllib.parse.urlsplit(self.session.url)
        cls = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
        return cls(url.hostname or "127.0.0.1", url.port, timeout=TASK_TIMEOUT), url.path

    def put_vdi(self, vdi: str, fmt: str, chunks: Iterable[bytes]) -> None:
        """Stream ``chunks`` into ``vdi`` through ``PUT /import_raw_vdi`` (chunked)."""
        with self.task("import_raw_vdi") as task:
            with self.session.http_url("/import_raw_vdi", vdi=vdi, format=fmt, task_id=task) as u:
                conn, _ = self._connection()
                try:
                    target = urllib.parse.urlsplit(u)
                    conn.request(
                        "PUT",
                        f"{target.path}?{target.query}",
                        body=iter(chunks),
                        headers={"Content-Type": "application/octet-stream"},
                        encode_chunked=True,
                    )
                    resp = conn.getresponse()
                    body = resp.read()
                    if resp.status != 200:
                        raise exception.NovaException(
                            f"import_raw_vdi answered {resp.status}: {body[:200]!r}"
                        )
                finally:
                    conn.close()
            self.wait_task(task)

    @contextlib.contextmanager
    def get_vdi(self, vdi: str, fmt: str) -> Iterator[tuple[int, Iterator[bytes]]]:
        """``(length, chunks)`` of ``GET /export_raw_vdi`` for ``vdi``."""
        with self.task("export_raw_vdi") as task:
            with self.session.http_url("/export_raw_vdi", vdi=vdi, format=fmt, task_id=task) as u:
                conn, _ = self._connection()
                try:
                    target = urllib.parse.urlsplit(u)
                    conn.request("GET", f"{target.path}?{target.query}")
                    resp = conn.getresponse()
                    if resp.status != 200:
                        raise exception.NovaException(
                            f"export_raw_vdi answered {resp.status}: {resp.read(200)!r}"
                        )
                    length = int(resp.getheader("Content-Length") or -1)

                    def chunks() -> Iterator[bytes]:
                        while chunk := resp.read(CHUNK):
                            yield chunk

                    yield length, chunks()
                finally:
                    conn.close()
            self.wait_task(task)


class ChunkFile:
    """A read-only file over an iterator of byte chunks (what glanceclient uploads from)."""

    def __init__(self, chunks: Iterator[bytes], first: bytes = b"") -> None:
        self.buf = first
        self.chunks = chunks

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self.buf) < n:
            try:
                self.buf += next(self.chunks)
            except StopIteration:
                break
        if n < 0:
            n = len(self.buf)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def __iter__(self) -> Iterator[bytes]:
        if self.buf:
            yield self.buf
            self.buf = b""
        yield from self.chunks


def identity_headers(context: Any) -> dict[str, str]:
    """The headers a dom0 plug-in forwards to Glance on the user's behalf."""
    return {
        "X-Auth-Token": str(getattr(context, "auth_token", "") or ""),
        "X-Roles": ",".join(getattr(context, "roles", []) or []),
        "X-Tenant-Id": str(getattr(context, "project_id", "") or ""),
        "X-User-Id": str(getattr(context, "user_id", "") or ""),
        "X-Identity-Status": "Confirmed",
    }


def round_mib(size: int) -> int:
    return -(-size // vm_utils.MiB) * vm_utils.MiB


def disk_format(meta: dict[str, Any]) -> tuple[str, str]:
    return str(meta.get("disk_format") or "raw"), str(meta.get("container_format") or "bare")


def check_format(meta: dict[str, Any], image_id: str) -> None:
    fmt, container = disk_format(meta)
    if fmt == "vhd" or (fmt in ("raw", "iso") and container in ("bare", "ovf")):
        return
    if fmt in ("raw",):
        return
    raise exception.ImageUnacceptable(
        image_id=image_id,
        reason=f"disk_format {fmt}, container_format {container}: only raw and vhd images",
    )
