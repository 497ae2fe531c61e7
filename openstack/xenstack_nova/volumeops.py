"""Volumes as VDIs. A Cinder-style ``connection_info`` names its VDI by
``data['vdi_uuid']`` (``driver_volume_type`` ``xenstack_vdi``/``vdi``, a volume already in one
of the host's SRs); otherwise the volume is the VDI of the host's SR tagged with its volume
id (``other_config:nova_volume_id`` = the ``serial``), made on first attach. Volume VDIs are
never destroyed with an instance."""

from __future__ import annotations

import uuid
from typing import Any

from nova import block_device as nova_bdm
from oslo_config import cfg

from . import vm_utils
from .session import XenAPISession

CONF = cfg.CONF
MOUNT = "nova_mountpoint"
DEFAULT_SIZE_GB = 1


def _letter_device(mountpoint: str) -> int | None:
    name = nova_bdm.strip_dev(mountpoint or "")
    if len(name) >= 3 and name[-1].isalpha():
        return ord(name[-1]) - ord("a")
    return None


class VolumeOps:
    def __init__(self, session: XenAPISession, host: str, sr: str) -> None:
        self.session = session
        self.host = host
        self.sr = sr

    def volume_vdi(self, connection_info: dict[str, Any]) -> str:
        data = connection_info.get("data") or {}
        if data.get("vdi_uuid"):
            return str(self.session.call("VDI.get_by_uuid", data["vdi_uuid"]))
        key = str(
            connection_info.get("serial") or data.get("volume_id") or f"anonymous-{uuid.uuid4()}"
        )
        for ref in self.session.call("SR.get_VDIs", self.sr):
            other = self.session.call("VDI.get_other_config", ref)
            if other.get(vm_utils.NOVA_VOLUME) == key:
                return str(ref)
        size = int(data.get("size_gb") or DEFAULT_SIZE_GB) * vm_utils.GiB
        return vm_utils.make_vdi(
            self.session, self.sr, f"volume {key}", size, "volume", {vm_utils.NOVA_VOLUME: key}
        )

    def attach(
        self, instance: Any, connection_info: dict[str, Any], mountpoint: str, vm: str | None = None
    ) -> str:
        vm = vm or vm_utils.instance_vm(self.session, instance)
        vdi = self.volume_vdi(connection_info)
        allowed = set(self.session.call("VM.get_allowed_VBD_devices", vm))
        wanted = _letter_device(mountpoint)
        device = (
            str(wanted)
            if wanted is not None and str(wanted) in allowed
            else (vm_utils.free_userdevice(self.session, vm))
        )
        vbd = vm_utils.make_vbd(self.session, vm, vdi, device)
        self.session.call("VBD.add_to_other_config", vbd, MOUNT, mountpoint or "")
        if vm_utils.power(self.session, vm) == "Running":
            try:
                self.session.call("VBD.plug", vbd)
            except BaseException:
                self.session.call("VBD.destroy", vbd)
                raise
        return vbd

    def _vbd_at(self, vm: str, mountpoint: str) -> str | None:
        for vbd in self.session.call("VM.get_VBDs", vm):
            if self.session.call("VBD.get_other_config", vbd).get(MOUNT) == (mountpoint or ""):
                return str(vbd)
        return None

    def detach(self, instance: Any, mountpoint: str) -> None:
        ref = vm_utils.lookup(self.session, instance.name)
        if ref is None:
            return
        vbd = self._vbd_at(ref, mountpoint)
        if vbd is None:
            return
        if self.session.call("VBD.get_currently_attached", vbd):
            with vm_utils.ignore("DEVICE_ALREADY_DETACHED"):
                self.session.call("VBD.unplug", vbd)
        self.session.call("VBD.destroy", vbd)

    def swap(
        self,
        instance: Any,
        old: dict[str, Any],
        new: dict[str, Any],
        mountpoint: str,
        resize_to: int,
    ) -> None:
        vdi = self.volume_vdi(new)
        if resize_to:  # before it is plugged: XAPI resizes only a VDI no VM uses
            want = int(resize_to) * vm_utils.GiB
            if want > int(self.session.call("VDI.get_virtual_size", vdi)):
                self.session.call("VDI.resize", vdi, str(want))
        self.detach(instance, mountpoint)
        self.attach(
            instance,
            {
                **new,
                "data": {
                    **(new.get("data") or {}),
                    "vdi_uuid": self.session.call("VDI.get_uuid", vdi),
                },
            },
            mountpoint,
        )

    def extend(self, connection_info: dict[str, Any], new_size: int) -> None:
        vdi = self.volume_vdi(connection_info)
        self.session.call("VDI.resize", vdi, str(int(new_size)))

    def connector(self, instance: Any) -> dict[str, Any]:
        other = self.session.call("host.get_other_config", self.host)
        return {
            "ip": CONF.my_block_storage_ip,
            "initiator": other.get("iscsi_iqn", ""),
            "host": CONF.host,
        }

    # --- block_device_info at spawn and destroy

    def root_volume(self, block_device_info: dict[str, Any]) -> str | None:
        root_name = block_device_info.get("root_device_name")
        for bdm in block_device_info.get("block_device_mapping") or []:
            if root_name and bdm.get("mount_device") == root_name:
                return self.volume_vdi(bdm["connection_info"])
        return None

    def attach_all(
        self, instance: Any, vm: str, block_device_info: dict[str, Any], undo: Any
    ) -> None:
        root_name = block_device_info.get("root_device_name")
        for bdm in block_device_info.get("block_device_mapping") or []:
            info = bdm.get("connection_info")
            if not info:
                continue
            if root_name and bdm.get("mount_device") == root_name:
                vdi = self.volume_vdi(info)
                vbd = vm_utils.make_vbd(self.session, vm, vdi, 0, bootable=True)
            else:
                vbd = self.attach(instance, info, bdm.get("mount_device") or "", vm=vm)
            undo.add(lambda vbd=vbd: self.session.call("VBD.destroy", vbd))

    def detach_all(self, vm: str) -> None:
        """Unplug and forget the volume VBDs of ``vm`` (the VDIs stay)."""
        for vbd, _vdi, rec in vm_utils.vm_disks(self.session, vm):
            if (
                vm_utils.NOVA_VOLUME in rec["other_config"]
                or self.session.call("VBD.get_other_config", vbd).get(MOUNT) is not None
            ):
                if self.session.call("VBD.get_currently_attached", vbd):
                    with vm_utils.ignore("DEVICE_ALREADY_DETACHED"):
                        self.session.call("VBD.unplug", vbd)
                self.session.call("VBD.destroy", vbd)
