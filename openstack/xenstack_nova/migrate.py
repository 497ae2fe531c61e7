"""Resize within the pool's storage (the instance's disks copied, the old VM kept as
``<name>-orig`` until the resize is confirmed or reverted) and live migration between hosts
of one pool (``VM.pool_migrate``)."""

from __future__ import annotations

import threading
from typing import Any

from nova import exception
from nova.objects import base as obj_base
from nova.objects import fields, migrate_data
from oslo_log import log as logging
from oslo_serialization import jsonutils

from . import vm_utils
from .session import XenAPISession
from .vmops import SWAP, VMOps, undoing

LOG = logging.getLogger(__name__)
GiB = vm_utils.GiB


@obj_base.NovaObjectRegistry.register
class XenapiLiveMigrateData(migrate_data.LiveMigrateData):
    """What the destination's check tells the source: the host to migrate to."""

    VERSION = "1.0"
    fields = {
        "destination_host_uuid": fields.StringField(),
        "block_migration": fields.BooleanField(default=False),
    }


class Migrations:
    def __init__(self, session: XenAPISession, host: str, vmops: VMOps) -> None:
        self.session = session
        self.host = host
        self.vmops = vmops
        self.tasks: dict[str, str] = {}  # instance uuid -> the pool_migrate task
        self._lock = threading.Lock()

    # --- resize

    def migrate_disk_and_power_off(
        self, instance: Any, flavor: Any, timeout: float, retry_interval: float
    ) -> str:
        old = instance.flavor
        if int(flavor.root_gb) < int(old.root_gb) or int(flavor.ephemeral_gb) < int(
            old.ephemeral_gb
        ):
            raise exception.InstanceFaultRollback(
                exception.ResizeError(reason="disks cannot be made smaller")
            )
        vm = self.vmops.vm(instance)
        self.vmops.power_off(instance, timeout, retry_interval)
        disks: dict[str, str] = {}
        with undoing() as undo:
            for vbd, vdi, rec in vm_utils.vm_disks(self.session, vm):
                device = str(self.session.call("VBD.get_userdevice", vbd))
                kind = rec["other_config"].get(vm_utils.NOVA_DISK)
                if vm_utils.NOVA_VOLUME in rec["other_config"] or kind in (
                    "swap",
                    "config_drive",
                    None,
                ):
                    continue
                copy = self.session.call("VDI.copy", vdi, rec["SR"])
                undo.add(lambda copy=copy: vm_utils.destroy_vdis(self.session, [copy]))
                disks[device] = self.session.call("VDI.get_uuid", copy)
            self.session.call("VM.set_name_label", vm, instance.name + vm_utils.ORIG_SUFFIX)
        return jsonutils.dumps({"disks": disks})

    def finish_migration(
        self,
        context: Any,
        instance: Any,
        disk_info: str,
        network_info: Any,
        resize_instance: bool,
        block_device_info: Any,
        power_on: bool,
    ) -> None:
        disks = jsonutils.loads(disk_info or "{}").get("disks", {})
        flavor = instance.flavor
        refs = {dev: str(self.session.call("VDI.get_by_uuid", u)) for dev, u in disks.items()}
        with undoing() as undo:
            vm = vm_utils.make_vm(self.session, instance, instance.name, flavor)
            undo.add(lambda: vm_utils.destroy_vm(self.session, vm, destroy_disks=False))
            for device, vdi in sorted(refs.items()):
                kind = self.session.call("VDI.get_other_config", vdi).get(vm_utils.NOVA_DISK)
                want = {"root": flavor.root_gb, "ephemeral": flavor.ephemeral_gb}.get(kind)
                if resize_instance and want:
                    size = int(want) * GiB
                    if size > int(self.session.call("VDI.get_virtual_size", vdi)):
                        self.session.call("VDI.resize", vdi, str(size))
                vm_utils.make_vbd(self.session, vm, vdi, device, bootable=device == "0")
            if int(flavor.swap or 0):
                self.vmops._blank_disk(
                    instance, vm, "swap", int(flavor.swap) * vm_utils.MiB, SWAP, undo
                )
            if block_device_info:
                self.vmops.volumes.attach_all(instance, vm, block_device_info, undo)
            for index, vif in enumerate(network_info or []):
                self.vmops.vifs.plug(instance, vif, vm, index)
            if power_on:
                vm_utils.start(self.session, vm, self.host)

    def confirm_migration(self, instance: Any) -> None:
        orig = vm_utils.lookup(self.session, instance.name + vm_utils.ORIG_SUFFIX)
        if orig is not None:
            self.vmops.volumes.detach_all(orig)
            vm_utils.destroy_vm(self.session, orig, destroy_disks=True)

    def finish_revert_migration(self, instance: Any, power_on: bool) -> None:
        orig = vm_utils.lookup(self.session, instance.name + vm_utils.ORIG_SUFFIX)
        new = vm_utils.lookup(self.session, instance.name)
        if orig is None:
            if new is not None and power_on:
                vm_utils.start(self.session, new, self.host)
            return
        if new is not None:
            self.vmops.volumes.detach_all(new)
            vm_utils.destroy_vm(self.session, new, destroy_disks=True)
        self.session.call("VM.set_name_label", orig, instance.name)
        if power_on:
            vm_utils.start(self.session, orig, self.host)

    # --- live migration

    def host_by_name(self, name: str) -> str:
        for ref, rec in self.session.call("host.get_all_records").items():
            if name in (rec["hostname"], rec["name_label"], rec["uuid"]):
                return str(ref)
        raise exception.MigrationPreCheckError(reason=f"{name} is not a host of this pool")

    def check_destination(self, instance: Any, block_migration: bool) -> XenapiLiveMigrateData:
        if block_migration:
            raise exception.MigrationPreCheckError(
                reason="block migration between pools is not supported"
            )
        data = XenapiLiveMigrateData()
        data.destination_host_uuid = self.session.call("host.get_uuid", self.host)
        data.block_migration = False
        return data

    def check_source(self, instance: Any, dest_check: Any) -> Any:
        vm = self.vmops.vm(instance)
        if vm_utils.power(self.session, vm) != "Running":
            raise exception.InstanceNotRunning(instance_id=instance.uuid)
        dest = self.session.call("host.get_by_uuid", dest_check.destination_host_uuid)
        self.session.call("VM.assert_can_boot_here", vm, dest)
        return dest_check

    def live_migration(
        self,
        context: Any,
        instance: Any,
        dest: str,
        post: Any,
        recover: Any,
        block_migration: bool,
        data: Any,
    ) -> None:
        try:
            vm = self.vmops.vm(instance)
            if data is not None and "destination_host_uuid" in data:
                host = str(self.session.call("host.get_by_uuid", data.destination_host_uuid))
            else:
                host = self.host_by_name(dest)
            task = self.session.call("Async.VM.pool_migrate", vm, host, {"live": "true"})
            with self._lock:
                self.tasks[instance.uuid] = task
            try:
                self._wait(task)
            finally:
                with self._lock:
                    self.tasks.pop(instance.uuid, None)
                with vm_utils.ignore("HANDLE_INVALID"):
                    self.session.call("task.destroy", task)
        except Exception:
            LOG.exception("live migration of %s to %s failed", instance.name, dest)
            recover(context, instance, dest, migrate_data=data)
            raise
        post(context, instance, dest, block_migration, data)

    def _wait(self, task: str) -> None:
        import time

        delay = 0.02
        while True:
            rec = self.session.call("task.get_record", task)
            if rec["status"] == "success":
                return
            if rec["status"] in ("failure", "cancelled"):
                raise exception.MigrationError(reason=str(rec["error_info"]))
            time.sleep(delay)
            delay = min(delay * 2, 0.5)

    def abort(self, instance: Any) -> None:
        """Cancel the instance's migration in progress (nothing to do if there is none)."""
        with self._lock:
            task = self.tasks.get(instance.uuid)
        if task is not None:
            self.session.call("task.cancel", task)
