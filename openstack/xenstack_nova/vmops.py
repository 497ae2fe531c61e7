"""Instance lifecycle on the XenAPI host: spawn (undone completely on failure), destroy,
power, snapshot, rescue, resize within the host. The driver (``driver.py``) is a thin facade
over this class and :mod:`volumeops`/:mod:`migrate`."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

from nova import exception
from nova.api.metadata import base as instance_metadata
from nova.compute import task_states
from nova.virt import configdrive, hardware
from oslo_config import cfg
from oslo_log import log as logging

from . import vif as vif_mod
from . import vm_utils
from .image import ImageHandler
from .image.base import round_mib
from .session import XenAPISession

CONF = cfg.CONF
LOG = logging.getLogger(__name__)
GiB = vm_utils.GiB
MiB = vm_utils.MiB

# userdevices of an instance's disks (the old driver's layout)
ROOT, SWAP, EPHEMERAL, CONFIG_DRIVE, RESCUE_ORIGINAL = 0, 1, 2, 3, 1
SERIAL_KEY = "hvm_serial"


class Undo:
    """Steps to take back, newest first, if the block fails."""

    def __init__(self) -> None:
        self.steps: list[Callable[[], Any]] = []

    def add(self, fn: Callable[[], Any]) -> None:
        self.steps.append(fn)

    def run(self) -> None:
        for fn in reversed(self.steps):
            try:
                fn()
            except Exception:  # keep undoing: report, do not mask the original failure
                LOG.exception("undoing a failed step")


@contextlib.contextmanager
def undoing() -> Iterator[Undo]:
    undo = Undo()
    try:
        yield undo
    except BaseException:
        undo.run()
        raise


class VMOps:
    def __init__(
        self,
        session: XenAPISession,
        host: str,
        sr: str,
        images: ImageHandler,
        vifs: vif_mod.VIFDriver,
        volumes: Any,
    ) -> None:
        self.session = session
        self.host = host
        self.sr = sr
        self.images = images
        self.vifs = vifs
        self.volumes = volumes

    # --- lookups

    def vm(self, instance: Any, suffix: str = "") -> str:
        return vm_utils.instance_vm(self.session, instance, suffix)

    def list_instances(self) -> list[str]:
        names = []
        for rec in self._nova_vms():
            names.append(rec["name_label"])
        return names

    def list_instance_uuids(self) -> list[str]:
        uuids = []
        for rec in self._nova_vms():
            name = rec["name_label"]
            if name.endswith((vm_utils.RESCUE_SUFFIX, vm_utils.ORIG_SUFFIX)):
                continue
            uuids.append(rec["other_config"][vm_utils.NOVA_UUID])
        return uuids

    def _nova_vms(self) -> list[dict[str, Any]]:
        expr = 'field "is_a_template" = "false" and field "is_a_snapshot" = "false"'
        out = []
        for rec in self.session.call("VM.get_all_records_where", expr).values():
            if rec["is_control_domain"] or vm_utils.NOVA_UUID not in rec["other_config"]:
                continue
            out.append(rec)
        return out

    def get_info(self, instance: Any) -> hardware.InstanceInfo:
        vm = self.vm(instance)
        state = vm_utils.power(self.session, vm)
        return hardware.InstanceInfo(state=vm_utils.POWER_STATES.get(state, 0), internal_id=vm)

    def exists(self, instance: Any) -> bool:
        return vm_utils.lookup(self.session, instance.name) is not None

    # --- spawn

    def spawn(
        self,
        context: Any,
        instance: Any,
        image_meta: Any,
        injected_files: list[Any],
        admin_password: str | None,
        network_info: Any,
        block_device_info: dict[str, Any] | None,
        power_on: bool = True,
        name: str | None = None,
    ) -> str:
        with undoing() as undo:
            vm = self._build(
                context, instance, image_meta, network_info, block_device_info, undo, name
            )
            if configdrive.required_by(instance):
                self._config_drive(
                    context, instance, vm, network_info, admin_password, undo, injected_files
                )
            if power_on:
                vm_utils.start(self.session, vm, self.host)
                self.wait_agent(instance, vm)
            return vm

    def _build(
        self,
        context: Any,
        instance: Any,
        image_meta: Any,
        network_info: Any,
        block_device_info: dict[str, Any] | None,
        undo: Undo,
        name: str | None,
        root: str | None = None,
    ) -> str:
        flavor = instance.flavor
        vm = vm_utils.make_vm(self.session, instance, name or instance.name, flavor)
        undo.add(lambda: vm_utils.destroy_vm(self.session, vm, destroy_disks=False))
        if CONF.serial_console.enabled:
            self.session.call("VM.add_to_platform", vm, SERIAL_KEY, self._serial_spec())
        volume_root = self.volumes.root_volume(block_device_info) if block_device_info else None
        if root is None and volume_root is None:
            image_id = image_meta.id if "id" in image_meta else instance.image_ref
            root = self.images.download(
                context, instance, image_id, self.sr, int(flavor.root_gb) * GiB
            )
            undo.add(lambda: vm_utils.destroy_vdis(self.session, [root]))
        if root is not None:
            self._tag(root, instance, "root")
            vm_utils.make_vbd(self.session, vm, root, ROOT, bootable=True)
        if int(flavor.swap or 0):
            self._blank_disk(instance, vm, "swap", int(flavor.swap) * MiB, SWAP, undo)
        if int(flavor.ephemeral_gb or 0):
            self._blank_disk(
                instance, vm, "ephemeral", int(flavor.ephemeral_gb) * GiB, EPHEMERAL, undo
            )
        if block_device_info:
            self.volumes.attach_all(instance, vm, block_device_info, undo)
        for index, vif in enumerate(network_info or []):
            self.vifs.plug(instance, vif, vm, index)
        return vm

    def _serial_spec(self) -> str:
        """``platform:hvm_serial`` for a new VM: its serial port served over TCP by the
        device model (XenServer's way to reach an HVM guest's serial console), on a port of
        ``[serial_console] port_range`` no other VM of the pool uses."""
        low, _, high = str(CONF.serial_console.port_range).partition(":")
        used = set()
        expr = 'field "is_a_template" = "false"'
        for rec in self.session.call("VM.get_all_records_where", expr).values():
            port = serial_port(rec["platform"].get(SERIAL_KEY, ""))
            if port:
                used.add(port)
        for port in range(int(low), int(high) + 1):
            if port not in used:
                address = self.session.call("host.get_address", self.host)
                return f"tcp:{address}:{port},server,nowait"
        raise exception.SocketPortRangeExhaustedException(host=self.host)

    def serial_console(self, instance: Any) -> tuple[str, int]:
        vm = self.vm(instance)
        spec = self.session.call("VM.get_platform", vm).get(SERIAL_KEY, "")
        port = serial_port(spec)
        if not port:
            raise exception.ConsoleTypeUnavailable(console_type="serial")
        return spec.split(":")[1], port

    def _tag(self, vdi: str, instance: Any, disk_type: str) -> None:
        other = self.session.call("VDI.get_other_config", vdi)
        other.update({vm_utils.NOVA_UUID: instance.uuid, vm_utils.NOVA_DISK: disk_type})
        self.session.call("VDI.set_other_config", vdi, other)

    def _blank_disk(
        self, instance: Any, vm: str, kind: str, size: int, device: int, undo: Undo
    ) -> str:
        vdi = vm_utils.make_vdi(
            self.session,
            self.sr,
            f"{instance.name} {kind}",
            round_mib(size),
            kind,
            {vm_utils.NOVA_UUID: instance.uuid},
        )
        undo.add(lambda: vm_utils.destroy_vdis(self.session, [vdi]))
        vm_utils.make_vbd(self.session, vm, vdi, device)
        return vdi

    def _config_drive(
        self,
        context: Any,
        instance: Any,
        vm: str,
        network_info: Any,
        admin_password: str | None,
        undo: Undo,
        injected_files: list[Any],
    ) -> None:
        """The config drive (an ISO 9660 image, ``config-2``) as a read-only VDI."""
        extra_md = {"admin_pass": admin_password} if admin_password else {}
        md = instance_metadata.InstanceMetadata(
            instance,
            content=injected_files,
            extra_md=extra_md,
            network_info=network_info,
        )
        tmp = tempfile.mkdtemp(prefix="xenstack-nova-cd-")
        try:
            path = os.path.join(tmp, "configdrive")
            with configdrive.ConfigDriveBuilder(instance_md=md) as builder:
                builder.make_drive(path)
            size = os.path.getsize(path)
            vdi = vm_utils.make_vdi(
                self.session,
                self.sr,
                f"{instance.name} config drive",
                round_mib(size),
                "config_drive",
                {vm_utils.NOVA_UUID: instance.uuid},
            )
            undo.add(lambda: vm_utils.destroy_vdis(self.session, [vdi]))
            self.images.put_vdi(vdi, "raw", _file_chunks(path))
            vm_utils.make_vbd(self.session, vm, vdi, CONFIG_DRIVE, read_only=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @staticmethod
    def agent_enabled(instance: Any) -> bool:
        """The image's ``xenapi_use_agent`` (or ``os_xenapi_use_agent``), else the default."""
        props = instance.system_metadata or {}
        use = props.get("image_xenapi_use_agent", props.get("image_os_xenapi_use_agent"))
        if use is None:
            return bool(CONF.xenserver.use_agent_default)
        return str(use).lower() in ("true", "1", "yes")

    def wait_agent(self, instance: Any, vm: str) -> dict[str, Any] | None:
        """Wait for the guest agent where it is in use (the image says, else the default)."""
        if not self.agent_enabled(instance):
            return None
        metrics = vm_utils.wait_agent(self.session, vm, CONF.xenserver.agent_timeout)
        if metrics is None:
            LOG.warning(
                "the guest agent of %s did not report in %s s",
                instance.name,
                CONF.xenserver.agent_timeout,
            )
        return metrics

    # --- destroy

    def destroy(self, instance: Any, network_info: Any, destroy_disks: bool = True) -> None:
        suffixes = [vm_utils.RESCUE_SUFFIX, ""]
        if instance.task_state != task_states.RESIZE_REVERTING:
            # a revert destroys the resized VM only: the original comes back
            suffixes.append(vm_utils.ORIG_SUFFIX)
        for suffix in suffixes:
            ref = vm_utils.lookup(self.session, instance.name + suffix)
            if ref is None:
                continue
            if suffix == "":
                self.volumes.detach_all(ref)
            vm_utils.destroy_vm(self.session, ref, destroy_disks)

    # --- power

    def reboot(self, instance: Any, reboot_type: str) -> None:
        vm = self.vm(instance)
        state = vm_utils.power(self.session, vm)
        if state != "Running":
            vm_utils.start(self.session, vm, self.host)
            return
        if reboot_type == "SOFT":
            try:
                self.session.call("VM.clean_reboot", vm)
                return
            except Exception as exc:
                from .session import failure_code

                if failure_code(exc) not in ("VM_LACKS_FEATURE", "VM_MISSING_PV_DRIVERS"):
                    raise
                LOG.info("soft reboot of %s refused (%s): rebooting hard", instance.name, exc)
        self.session.call("VM.hard_reboot", vm)

    def power_off(self, instance: Any, timeout: float = 0, retry_interval: float = 0) -> None:
        vm = self.vm(instance)
        if timeout and vm_utils.clean_shutdown(self.session, vm, timeout, retry_interval):
            return
        vm_utils.hard_shutdown(self.session, vm)

    def power_on(self, instance: Any) -> None:
        vm_utils.start(self.session, self.vm(instance), self.host)

    def pause(self, instance: Any) -> None:
        vm = self.vm(instance)
        if vm_utils.power(self.session, vm) == "Running":
            self.session.call("VM.pause", vm)

    def unpause(self, instance: Any) -> None:
        vm = self.vm(instance)
        if vm_utils.power(self.session, vm) == "Paused":
            self.session.call("VM.unpause", vm)

    def suspend(self, instance: Any) -> None:
        vm = self.vm(instance)
        state = vm_utils.power(self.session, vm)
        if state == "Paused":
            self.session.call("VM.unpause", vm)
        if state in ("Running", "Paused"):
            vm_utils.wait_agent(self.session, vm, CONF.xenserver.agent_timeout)
            self.session.call("VM.suspend", vm)

    def resume(self, instance: Any) -> None:
        vm = self.vm(instance)
        if vm_utils.power(self.session, vm) == "Suspended":
            self.session.call("VM.resume_on", vm, self.host, False, False)

    def resume_state_on_host_boot(self, instance: Any) -> None:
        """After the host restarted: bring the VM back up, as nova's other drivers do."""
        vm = self.vm(instance)
        if vm_utils.power(self.session, vm) != "Running":
            vm_utils.start(self.session, vm, self.host)

    def poll_rebooting_instances(self, timeout: int, instances: list[Any]) -> None:
        """Instances stuck in a reboot for longer than ``timeout`` s are rebooted hard."""
        from oslo_utils import timeutils

        for item in instances:
            # nova's generic suite hands (instance, network_info) pairs
            instance = item[0] if isinstance(item, tuple) else item
            updated = instance.updated_at
            if updated and not timeutils.is_older_than(updated, timeout):
                continue
            ref = vm_utils.lookup(self.session, instance.name)
            if ref is None:
                continue
            LOG.info("%s has been rebooting for over %s s: rebooting hard", instance.name, timeout)
            if vm_utils.power(self.session, ref) == "Running":
                self.session.call("VM.hard_reboot", ref)
            else:
                vm_utils.start(self.session, ref, self.host)

    # --- snapshot

    def snapshot(
        self, context: Any, instance: Any, image_id: str, update_task_state: Callable[..., Any]
    ) -> None:
        ref = vm_utils.lookup(self.session, instance.name)
        if ref is None or vm_utils.power(self.session, ref) == "Halted":
            raise exception.InstanceNotRunning(instance_id=instance.uuid)
        update_task_state(task_state=task_states.IMAGE_PENDING_UPLOAD)
        snap = self.session.call("VM.snapshot", ref, f"{instance.name} snapshot {image_id}")
        try:
            snap_root = vm_utils.root_vdi(self.session, snap)
            update_task_state(
                task_state=task_states.IMAGE_UPLOADING,
                expected_state=task_states.IMAGE_PENDING_UPLOAD,
            )
            base = instance.system_metadata.get("image_disk_format") or "vhd"
            meta = {
                "disk_format": "raw" if base == "raw" else "vhd",
                "properties": {"os_type": instance.os_type or "linux"},
            }
            self.images.upload(context, instance, image_id, snap_root, meta)
        finally:
            vdis = [vdi for _vbd, vdi, _r in vm_utils.vm_disks(self.session, snap)]
            self.session.call("VM.destroy", snap)
            vm_utils.destroy_vdis(self.session, vdis)

    # --- rescue

    def rescue(
        self,
        context: Any,
        instance: Any,
        network_info: Any,
        image_meta: Any,
        rescue_password: str | None,
    ) -> None:
        """A rescue VM booting the rescue image, the instance's root as its second disk."""
        name = instance.name + vm_utils.RESCUE_SUFFIX
        if vm_utils.lookup(self.session, name) is not None:
            raise exception.InstanceNotRescuable(
                instance_id=instance.uuid, reason="already in rescue"
            )
        vm = self.vm(instance)
        vm_utils.hard_shutdown(self.session, vm)
        root = vm_utils.root_vdi(self.session, vm)
        with undoing() as undo:
            undo.add(lambda: vm_utils.start(self.session, vm, self.host))
            image_id = image_meta.id if "id" in image_meta else instance.image_ref
            rescue_vdi = self.images.download(
                context, instance, image_id, self.sr, int(instance.flavor.root_gb) * GiB
            )
            undo.add(lambda: vm_utils.destroy_vdis(self.session, [rescue_vdi]))
            self._tag(rescue_vdi, instance, "rescue")
            rvm = vm_utils.make_vm(self.session, instance, name, instance.flavor)
            undo.add(lambda: vm_utils.destroy_vm(self.session, rvm, destroy_disks=False))
            vm_utils.make_vbd(self.session, rvm, rescue_vdi, ROOT, bootable=True)
            vm_utils.make_vbd(self.session, rvm, root, RESCUE_ORIGINAL)
            self.session.call("VM.add_to_other_config", rvm, "nova_rescue_of", vm)
            for index, vif in enumerate(network_info or []):
                self.vifs.plug(instance, vif, rvm, index)
            vm_utils.start(self.session, rvm, self.host)

    def unrescue(self, instance: Any) -> None:
        rvm = vm_utils.lookup(self.session, instance.name + vm_utils.RESCUE_SUFFIX)
        if rvm is None:
            raise exception.InstanceNotInRescueMode(instance_id=instance.uuid)
        vm_utils.hard_shutdown(self.session, rvm)
        own = [
            vdi
            for _vbd, vdi, rec in vm_utils.vm_disks(self.session, rvm)
            if rec["other_config"].get(vm_utils.NOVA_DISK) == "rescue"
        ]
        self.session.call("VM.destroy", rvm)
        vm_utils.destroy_vdis(self.session, own)
        vm_utils.start(self.session, self.vm(instance), self.host)


def serial_port(spec: str) -> int | None:
    """The TCP port of a ``tcp:HOST:PORT,server,nowait`` serial spec."""
    if not spec.startswith("tcp:"):
        return None
    port = spec.split(",")[0].rsplit(":", 1)[-1]
    return int(port) if port.isdigit() else None


def _file_chunks(path: str) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            yield chunk
