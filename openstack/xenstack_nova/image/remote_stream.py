"""``vdi_remote_stream``: nova-compute streams images itself, between Glance and the host's
``PUT /import_raw_vdi`` / ``GET /export_raw_vdi`` (each under a XenAPI task). No dom0
plug-in is involved, so it works with any XenAPI host nova-compute can reach over HTTP.

Raw images are streamed as they come. VHD images (``container_format=ovf``: a gzip tar of
``0.vhd`` (the leaf), ``1.vhd`` (its parent)...) are unpacked to temporary files, then applied
onto one VDI base first, each differencing disk relabelled dynamic so that only the sectors it
holds land over its parent's. Snapshots go up as a single-member ``0.vhd`` tar (or raw bytes
for an instance booted from a raw image), exported from the VDI as one coalesced disk.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from typing import Any

from nova import exception

from .. import vm_utils
from . import vhd
from .base import CHUNK, ChunkFile, ImageHandler, check_format, disk_format, round_mib


class RemoteStreamHandler(ImageHandler):
    name = "vdi_remote_stream"

    def download(self, context: Any, instance: Any, image_id: str, sr: str, min_size: int) -> str:
        meta = self.image_meta(context, image_id)
        chunks = self.image_chunks(context, image_id)
        first = next(chunks, b"")
        fmt, container = disk_format(meta)
        label = f"{instance.name} root"
        if not first:  # an image without data: a blank root disk of the flavor's size
            return vm_utils.make_vdi(self.session, sr, label, round_mib(max(min_size, 1)), "root")
        check_format(meta, image_id)
        if fmt == "vhd" or container == "ovf":
            return self._download_vhd(first, chunks, sr, label, min_size)
        size = round_mib(max(min_size, int(meta.get("size") or 0)))
        vdi = vm_utils.make_vdi(self.session, sr, label, size, "root")
        try:
            self.put_vdi(vdi, "raw", _prepend(first, chunks))
        except BaseException:
            vm_utils.destroy_vdis(self.session, [vdi])
            raise
        return vdi

    def _download_vhd(
        self, first: bytes, chunks: Iterator[bytes], sr: str, label: str, min_size: int
    ) -> str:
        workdir = tempfile.mkdtemp(prefix="xenstack-nova-vhd-")
        try:
            files = _untar_vhds(ChunkFile(chunks, first), workdir)
            with open(files[0], "rb") as leaf:
                size = vhd.read_footer(leaf).current_size
            vdi = vm_utils.make_vdi(self.session, sr, label, round_mib(max(size, min_size)), "root")
            try:
                for path in reversed(files):  # the base first, the leaf last
                    with open(path, "r+b") as f:
                        if vhd.read_footer(f).disk_type == vhd.DIFFERENCING:
                            vhd.make_dynamic(f)
                    self.put_vdi(vdi, "vhd", _file_chunks(path))
            except BaseException:
                vm_utils.destroy_vdis(self.session, [vdi])
                raise
            return vdi
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def upload(
        self, context: Any, instance: Any, image_id: str, vdi: str, meta: dict[str, Any]
    ) -> None:
        raw = meta.get("disk_format") == "raw"
        with self.get_vdi(vdi, "raw" if raw else "vhd") as (length, chunks):
            if raw:
                data: Iterator[bytes] = chunks
                meta = {**meta, "container_format": "bare"}
            else:
                data = vhd.tar_gz_stream("0.vhd", length, chunks)
                meta = {**meta, "disk_format": "vhd", "container_format": "ovf"}
            self.update_image(context, image_id, meta, data)
            for _ in data:  # an image service that ignored the data: finish the export
                pass


def _prepend(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest


def _file_chunks(path: str) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


_MEMBER = re.compile(r"^(?:\./)?(\d+)\.vhd$")


def _untar_vhds(stream: Any, workdir: str) -> list[str]:
    """The VHD members of an ovf tar, written to ``workdir``, leaf (``0.vhd``) first."""
    found: dict[int, str] = {}
    with tarfile.open(fileobj=stream, mode="r|*") as tar:
        for member in tar:
            match = _MEMBER.match(member.name)
            if not member.isfile() or match is None:
                continue
            path = os.path.join(workdir, f"{int(match.group(1))}.vhd")
            src = tar.extractfile(member)
            if src is None:
                continue
            with contextlib.closing(src), open(path, "wb") as out:
                shutil.copyfileobj(src, out, CHUNK)
            found[int(match.group(1))] = path
    if not found or sorted(found) != list(range(len(found))):
        raise exception.ImageUnacceptable(image_id="", reason="no 0.vhd..N.vhd chain in the tar")
    return [found[i] for i in range(len(found))]
