"""``vdi_local_dev``: nova-compute runs in a guest of the host it drives; a VDI is attached to
that guest (the compute VM, ``/sys/hypervisor/uuid``) and read or written through the block
device it appears as. Downloads stream the raw image onto the device; uploads read it back.

This needs a real Xen guest (a ``/dev/xvdX`` appears on plug), which neither CI nor a
simulated host provides: the handler is tested against a stand-in compute VM whose "block
device" is the disk's file, found through the SR directory (see openstack/tests).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from typing import Any

from nova import exception
from oslo_config import cfg

from .. import vm_utils
from .base import CHUNK, ImageHandler, check_format, disk_format, round_mib

CONF = cfg.CONF
DEVICE_TIMEOUT = 30.0


def this_vm_uuid() -> str:
    """The compute VM's own UUID (a Xen guest knows it from sysfs)."""
    override = os.environ.get("XENSTACK_NOVA_COMPUTE_VM_UUID")
    if override:
        return override
    try:
        with open("/sys/hypervisor/uuid") as f:
            return f.read().strip()
    except OSError as exc:
        raise exception.NovaException(
            "vdi_local_dev needs nova-compute to run in a guest of its XenAPI host"
        ) from exc


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
                yield wait_device(self._device_path(vdi, str(device)))
            finally:
                with vm_utils.ignore("DEVICE_ALREADY_DETACHED"):
                    self.session.call("VBD.unplug", vbd)
        finally:
            self.session.call("VBD.destroy", vbd)

    def _device_path(self, vdi: str, device: str) -> str:
        override = os.environ.get("XENSTACK_NOVA_DEVICE_DIR")  # the tests' stand-in devices
        if override:
            return os.path.join(override, self.session.call("VDI.get_uuid", vdi) + ".raw")
        return f"/dev/{device}"

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
