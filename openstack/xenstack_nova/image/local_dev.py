"""``vdi_local_dev``: the VDI attached to the compute VM itself (``VBD.plug``) and read or
written through the block device it appears as there (``/dev/<VBD.device>``). Downloads
stream the raw image onto the device; uploads read it back.

The compute VM is found as nova's XenAPI driver found it: ``/sys/hypervisor/uuid`` in a Xen
guest; else (no ``/sys/hypervisor``, or the all-zero uuid Xen gives dom0) through XenStore,
``xenstore-read domid`` then ``/local/domain/<domid>/vm`` (``/vm/<uuid>``). A nova-compute
in xenstack's control domain (dom0's tools on its ``PATH``, as ``xenstack shell`` sets them)
is its control domain, and the VDI appears as a loop device there.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from typing import Any

from nova import exception
from oslo_config import cfg

from .. import vm_utils
from .base import CHUNK, ImageHandler, check_format, disk_format, round_mib

CONF = cfg.CONF
DEVICE_TIMEOUT = 30.0


NO_UUID = "00000000-0000-0000-0000-000000000000"
SYS_UUID = "/sys/hypervisor/uuid"  # a Xen guest's own uuid


def this_vm_uuid() -> str:
    """The compute VM's own UUID: sysfs in a Xen guest, else XenStore (dom0)."""
    try:
        with open(SYS_UUID) as f:
            uuid = f.read().strip()
        if uuid and uuid != NO_UUID:
            return uuid
    except OSError:
        pass
    try:
        domid = _xenstore_read("domid")
        vm = _xenstore_read(f"/local/domain/{domid}/vm")
    except (OSError, subprocess.CalledProcessError) as exc:
        raise exception.NovaException(
            "vdi_local_dev needs nova-compute on its XenAPI host: in a guest or in dom0"
        ) from exc
    return vm.removeprefix("/vm/")


def _xenstore_read(path: str) -> str:
    done = subprocess.run(
        ["xenstore-read", path], capture_output=True, text=True, check=True, timeout=30
    )
    return done.stdout.strip()


class LocalDevHandler(ImageHandler):
    name = "vdi_local_dev"

    @contextlib.contextmanager
    def attached(self, vdi: str, read_only: bool) -> Iterator[str]:
        """The VDI plugged into the compute VM; yields its block device's path."""
        vm = str(self.session.call("VM.get_by_uuid", this_vm_uuid()))
        vbd = vm_utils.make_vbd(
            self.session, vm, vdi, vm_utils.free_userdevice(self.session, vm), read_only=read_only
        )
        try:
            self.session.call("VBD.plug", vbd)
            try:
                device = self.session.call("VBD.get_device", vbd)
                yield wait_device(f"/dev/{device}")
            finally:
                with vm_utils.ignore("DEVICE_ALREADY_DETACHED"):
                    self.session.call("VBD.unplug", vbd)
        finally:
            self.session.call("VBD.destroy", vbd)

    def download(self, context: Any, instance: Any, image_id: str, sr: str, min_size: int) -> str:
        meta = self.image_meta(context, image_id)
        if disk_format(meta)[0] not in ("raw",) and int(meta.get("size") or 0):
            check_format(meta, image_id)
            if disk_format(meta)[0] != "raw":
                raise exception.ImageUnacceptable(
                    image_id=image_id, reason="vdi_local_dev takes raw images"
                )
        size = round_mib(max(min_size, int(meta.get("size") or 0), 1))
        vdi = vm_utils.make_vdi(self.session, sr, f"{instance.name} root", size, "root")
        try:
            with self.attached(vdi, read_only=False) as dev, open(dev, "r+b") as out:
                for chunk in self.image_chunks(context, image_id):
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
        except BaseException:
            vm_utils.destroy_vdis(self.session, [vdi])
            raise
        return vdi

    def upload(
        self, context: Any, instance: Any, image_id: str, vdi: str, meta: dict[str, Any]
    ) -> None:
        size = int(self.session.call("VDI.get_virtual_size", vdi))
        with self.attached(vdi, read_only=True) as dev, open(dev, "rb") as src:

            def chunks() -> Iterator[bytes]:
                left = size
                while left > 0 and (chunk := src.read(min(CHUNK, left))):
                    left -= len(chunk)
                    yield chunk

            meta = {**meta, "disk_format": "raw", "container_format": "bare"}
            self.update_image(context, image_id, meta, chunks())


def wait_device(path: str) -> str:
    deadline = time.monotonic() + DEVICE_TIMEOUT
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise exception.NovaException(f"{path} did not appear")
        time.sleep(0.1)
    return path
