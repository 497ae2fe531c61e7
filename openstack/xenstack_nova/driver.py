"""``XenAPIDriver``: nova's ComputeDriver for a XenAPI host, a thin facade over
:mod:`vmops`, :mod:`volumeops`, :mod:`migrate` and :mod:`host`.

Configured as ``compute_driver = xenstack_ext.XenAPIDriver`` with the ``[xenserver]`` group
of :mod:`xenstack_nova.conf`. The connection is made on first use (``init_host`` or any call),
so that the driver can be built without its host.
"""

from __future__ import annotations

import threading
from typing import Any

from nova import exception
from nova.virt import driver
from oslo_config import cfg
from oslo_log import log as logging

from . import conf as xconf
from . import image as image_mod
from . import vif as vif_mod
from . import vm_utils
from .agent import GuestAgent
from .host import HostState
from .inspect_ops import Inspector
from .migrate import Migrations
from .session import XenAPISession
from .vmops import VMOps
from .volumeops import VolumeOps

CONF = cfg.CONF
xconf.register_opts(CONF)
LOG = logging.getLogger(__name__)


class _Connection:
    """Everything that needs the host: made once, on first use."""

    def __init__(self) -> None:
        x = CONF.xenserver
        self.session = XenAPISession(
            x.connection_url,
            x.connection_username,
            x.connection_password,
            x.connection_concurrent,
        )
        self.host = self._host()
        self.sr = self._sr()
        self.state = HostState(self.session, self.host, self.sr)
        self.images = image_mod.load(x.image_handler, self.session, self.host)
        self.vifs = vif_mod.load(x.vif_driver, self.session, self.host)
        self.volumes = VolumeOps(self.session, self.host, self.sr)
        self.vmops = VMOps(self.session, self.host, self.sr, self.images, self.vifs, self.volumes)
        self.migrations = Migrations(self.session, self.host, self.vmops)
        self.inspector = Inspector(self.session, self.host, self.vmops)

    def _host(self) -> str:
        uuid = CONF.xenserver.host_uuid
        if uuid:
            return str(self.session.call("host.get_by_uuid", uuid))
        with self.session.session() as sess:
            return str(sess.xenapi.session.get_this_host(sess._session))

    def _sr(self) -> str:
        """The SR ``[xenserver] sr_matching_filter`` picks."""
        spec = CONF.xenserver.sr_matching_filter
        if spec == "default-sr:true":
            pool = self.session.call("pool.get_all")[0]
            sr = self.session.call("pool.get_default_SR", pool)
            if sr != "OpaqueRef:NULL":
                return str(sr)
            raise exception.StorageRepositoryNotFound()
        kind, _, rest = spec.partition(":")
        key, _, value = rest.partition("=")
        if kind != "other-config":
            raise exception.NovaException(f"bad [xenserver] sr_matching_filter {spec!r}")
        for ref, rec in self.session.call("SR.get_all_records").items():
            if rec["other_config"].get(key) == value:
                return str(ref)
        raise exception.StorageRepositoryNotFound()


class XenAPIDriver(driver.ComputeDriver):
    """A nova compute driver for one host of a XenAPI pool."""

    capabilities = dict(
        driver.ComputeDriver.capabilities,
        supports_attach_interface=True,
        supports_migrate_to_same_host=True,
        supports_extend_volume=True,
        supports_image_type_raw=True,
        supports_image_type_vhd=True,
        supports_image_type_iso=False,
    )

    def __init__(self, virtapi: Any, read_only: bool = False) -> None:
        super().__init__(virtapi)
        self._conn: _Connection | None = None
        self._lock = threading.Lock()

    @property
    def conn(self) -> _Connection:
        if self._conn is None:
            with self._lock:
                if self._conn is None:
                    self._conn = _Connection()
        return self._conn

    @property
    def _ops(self) -> VMOps:
        return self.conn.vmops

    # --- host

    def init_host(self, host: str) -> None:
        conn = self.conn
        if CONF.xenserver.check_host and not conn.session.call("host.get_enabled", conn.host):
            LOG.warning("host %s is disabled in its pool", conn.state.hostname())

    def cleanup_host(self, host: str) -> None:
        if self._conn is not None:
            self._conn.session.close()

    def get_available_nodes(self, refresh: bool = False) -> list[str]:
        return [self.conn.state.hostname()]

    def get_available_resource(self, nodename: str) -> dict[str, Any]:
        return self.conn.state.available_resource()

    def update_provider_tree(
        self, provider_tree: Any, nodename: str, allocations: Any = None
    ) -> None:
        inventory = self.conn.state.inventory(
            CONF.reserved_host_memory_mb,
            CONF.reserved_host_disk_mb // 1024,
            CONF.reserved_host_cpus,
        )
        # the ratios placement holds already win over the initial ones (nova's precedence)
        ratios = self._get_allocation_ratios(provider_tree.data(nodename).inventory)
        for rc, inv in inventory.items():
            inv["allocation_ratio"] = ratios[rc]
        provider_tree.update_inventory(nodename, inventory)

    def get_host_ip_addr(self) -> str:
        return self.conn.state.address()

    def get_host_uptime(self) -> str:
        return self.conn.state.uptime()

    def get_host_cpu_stats(self) -> dict[str, Any]:
        return self.conn.state.cpu_stats()

    def set_host_enabled(self, enabled: bool) -> str:
        return self.conn.state.set_enabled(enabled)

    def host_power_action(self, action: str) -> str:
        try:
            return self.conn.state.power_action(action)
        except NotImplementedError as exc:  # raised here: nova's logs name this method
            raise NotImplementedError(str(exc)) from exc

    def host_maintenance_mode(self, host: str, mode: bool) -> str:
        conn = self.conn
        if mode:
            conn.session.call("host.disable", conn.host)
            conn.session.call("host.evacuate", conn.host)
            return "on_maintenance"
        conn.session.call("host.enable", conn.host)
        return "off_maintenance"

    # --- instances

    def list_instances(self) -> list[str]:
        return self._ops.list_instances()

    def list_instance_uuids(self) -> list[str]:
        return self._ops.list_instance_uuids()

    def instance_exists(self, instance: Any) -> bool:
        return self._ops.exists(instance)

    def get_info(self, instance: Any, use_cache: bool = True) -> Any:
        return self._ops.get_info(instance)

    def spawn(
        self,
        context: Any,
        instance: Any,
        image_meta: Any,
        injected_files: Any,
        admin_password: Any,
        allocations: Any,
        network_info: Any = None,
        block_device_info: Any = None,
        power_on: bool = True,
        accel_info: Any = None,
    ) -> None:
        self._ops.spawn(
            context,
            instance,
            image_meta,
            injected_files,
            admin_password,
            network_info,
            block_device_info,
            power_on,
        )

    def destroy(
        self,
        context: Any,
        instance: Any,
        network_info: Any,
        block_device_info: Any = None,
        destroy_disks: bool = True,
        destroy_secrets: bool = True,
    ) -> None:
        self._ops.destroy(instance, network_info, destroy_disks)

    def cleanup(
        self,
        context: Any,
        instance: Any,
        network_info: Any,
        block_device_info: Any = None,
        destroy_disks: bool = True,
        migrate_data: Any = None,
        destroy_vifs: bool = True,
        destroy_secrets: bool = True,
    ) -> None:
        if vm_utils.lookup(self.conn.session, instance.name) is None:
            return  # already gone (destroy removes everything the instance had)
        self._ops.destroy(instance, network_info, destroy_disks)

    def reboot(
        self,
        context: Any,
        instance: Any,
        network_info: Any,
        reboot_type: str,
        block_device_info: Any = None,
        bad_volumes_callback: Any = None,
        accel_info: Any = None,
        share_info: Any = None,
    ) -> None:
        self._ops.reboot(instance, reboot_type)

    def power_off(self, instance: Any, timeout: int = 0, retry_interval: int = 0) -> None:
        self._ops.power_off(instance, timeout, retry_interval)

    def power_on(
        self,
        context: Any,
        instance: Any,
        network_info: Any,
        block_device_info: Any = None,
        accel_info: Any = None,
        share_info: Any = None,
    ) -> None:
        self._ops.power_on(instance)

    def pause(self, instance: Any) -> None:
        self._ops.pause(instance)

    def unpause(self, instance: Any) -> None:
        self._ops.unpause(instance)

    def suspend(self, context: Any, instance: Any) -> None:
        self._ops.suspend(instance)

    def resume(
        self,
        context: Any,
        instance: Any,
        network_info: Any,
        block_device_info: Any = None,
        share_info: Any = None,
    ) -> None:
        self._ops.resume(instance)

    def resume_state_on_host_boot(
        self,
        context: Any,
        instance: Any,
        network_info: Any,
        share_info: Any = None,
        block_device_info: Any = None,
    ) -> None:
        self._ops.resume_state_on_host_boot(instance)

    def soft_delete(self, instance: Any) -> None:
        """A soft-deleted instance is powered off, its VM and disks kept until reclaimed."""
        vm_utils.hard_shutdown(self.conn.session, self._ops.vm(instance))

    def restore(self, instance: Any) -> None:
        vm_utils.start(self.conn.session, self._ops.vm(instance), self.conn.host)

    def poll_rebooting_instances(self, timeout: int, instances: list[Any]) -> None:
        self._ops.poll_rebooting_instances(timeout, instances)

    def snapshot(self, context: Any, instance: Any, image_id: str, update_task_state: Any) -> None:
        self._ops.snapshot(context, instance, image_id, update_task_state)

    def rescue(
        self,
        context: Any,
        instance: Any,
        network_info: Any,
        image_meta: Any,
        rescue_password: Any,
        block_device_info: Any,
        share_info: Any = None,
    ) -> None:
        self._ops.rescue(context, instance, network_info, image_meta, rescue_password)

    def unrescue(self, context: Any, instance: Any) -> None:
        if vm_utils.lookup(self.conn.session, instance.name + vm_utils.RESCUE_SUFFIX) is None:
            return  # not rescued: nothing to undo
        self._ops.unrescue(instance)

    def set_admin_password(self, instance: Any, new_pass: str) -> None:
        """Through the guest agent (the ``agent.py`` dom0 plug-in), where it is in use for
        the instance (its image says, else ``use_agent_default``)."""
        vm = self._ops.vm(instance)
        if vm_utils.power(self.conn.session, vm) != "Running":
            raise exception.InstanceNotRunning(instance_id=instance.uuid)
        if not self._ops.agent_enabled(instance):
            raise exception.InstanceAgentNotEnabled()
        guest = GuestAgent(self.conn.session, vm, CONF.xenserver.agent_timeout)
        guest.set_admin_password(instance, new_pass)

    def trigger_crash_dump(self, instance: Any) -> None:
        """An NMI to the guest (``VM.send_trigger(vm, "nmi")``), which makes a Linux guest
        with ``unknown_nmi_panic`` dump; a host without the call cannot."""
        vm = self._ops.vm(instance)
        if vm_utils.power(self.conn.session, vm) != "Running":
            raise exception.InstanceNotRunning(instance_id=instance.uuid)
        try:
            HostState._unsupported(lambda: self.conn.session.call("VM.send_trigger", vm, "nmi"))
        except NotImplementedError as exc:  # raised here: nova's logs name this method
            raise NotImplementedError(str(exc)) from exc

    def get_device_name_for_instance(self, instance: Any, bdms: Any, block_device_obj: Any) -> str:
        """The next free ``/dev/xvdX``: XenAPI userdevice N is xvd + the N-th letter."""
        vm = self._ops.vm(instance)
        device = int(vm_utils.free_userdevice(self.conn.session, vm))
        return "/dev/xvd" + chr(ord("a") + device)

    # --- devices

    def plug_vifs(self, instance: Any, network_info: Any) -> None:
        vm = self._ops.vm(instance)
        have = {
            self.conn.session.call("VIF.get_MAC", v).lower()
            for v in self.conn.session.call("VM.get_VIFs", vm)
        }
        for index, vif in enumerate(network_info or []):
            if str(vif["address"]).lower() not in have:
                self._plug(instance, vif, vm, index)

    def _plug(self, instance: Any, vif: Any, vm: str, index: int | None = None) -> str:
        session = self.conn.session
        if index is None or str(index) not in session.call("VM.get_allowed_VIF_devices", vm):
            allowed = session.call("VM.get_allowed_VIF_devices", vm)
            if not allowed:
                raise exception.InterfaceAttachFailed(instance_uuid=instance.uuid)
            index = int(sorted(allowed, key=int)[0])
        return self.conn.vifs.plug(instance, vif, vm, index)

    def unplug_vifs(self, instance: Any, network_info: Any) -> None:
        ref = vm_utils.lookup(self.conn.session, instance.name)
        if ref is None:
            return
        for vif in network_info or []:
            self.conn.vifs.unplug(instance, vif, ref)

    def attach_interface(self, context: Any, instance: Any, image_meta: Any, vif: Any) -> None:
        try:
            self._plug(instance, vif, self._ops.vm(instance))
        except exception.InstanceNotFound:
            raise
        except Exception as exc:
            LOG.exception("attaching %s to %s failed", vif["id"], instance.name)
            raise exception.InterfaceAttachFailed(instance_uuid=instance.uuid) from exc

    def detach_interface(self, context: Any, instance: Any, vif: Any) -> None:
        ref = vm_utils.lookup(self.conn.session, instance.name)
        if ref is None:
            raise exception.InstanceNotFound(instance_id=instance.uuid)
        try:
            self.conn.vifs.unplug(instance, vif, ref)
        except Exception as exc:
            raise exception.InterfaceDetachFailed(instance_uuid=instance.uuid) from exc

    def attach_volume(
        self,
        context: Any,
        connection_info: Any,
        instance: Any,
        mountpoint: str,
        disk_bus: Any = None,
        device_type: Any = None,
        encryption: Any = None,
    ) -> None:
        self.conn.volumes.attach(instance, connection_info, mountpoint)

    def detach_volume(
        self,
        context: Any,
        connection_info: Any,
        instance: Any,
        mountpoint: str,
        encryption: Any = None,
    ) -> None:
        self.conn.volumes.detach(instance, mountpoint)

    def swap_volume(
        self,
        context: Any,
        old_connection_info: Any,
        new_connection_info: Any,
        instance: Any,
        mountpoint: str,
        resize_to: int,
    ) -> None:
        self.conn.volumes.swap(
            instance, old_connection_info, new_connection_info, mountpoint, resize_to
        )

    def extend_volume(
        self, context: Any, connection_info: Any, instance: Any, requested_size: int
    ) -> int:
        self.conn.volumes.extend(connection_info, requested_size)
        return requested_size

    def get_volume_connector(self, instance: Any) -> dict[str, Any]:
        return self.conn.volumes.connector(instance)

    def get_instance_disk_info(self, instance: Any, block_device_info: Any = None) -> str:
        return self.conn.inspector.get_instance_disk_info(instance, block_device_info)

    def block_stats(self, instance: Any, disk_id: str) -> list[Any]:
        return self.conn.inspector.block_stats(instance, disk_id)

    def get_console_output(self, context: Any, instance: Any) -> str:
        return self.conn.inspector.get_console_output(context, instance)

    def get_vnc_console(self, context: Any, instance: Any) -> Any:
        return self.conn.inspector.get_vnc_console(context, instance)

    def get_serial_console(self, context: Any, instance: Any) -> Any:
        return self.conn.inspector.get_serial_console(context, instance)

    def get_spice_console(self, context: Any, instance: Any) -> Any:
        return self.conn.inspector.get_spice_console(context, instance)

    def get_mks_console(self, context: Any, instance: Any) -> Any:
        return self.conn.inspector.get_mks_console(context, instance)

    def get_diagnostics(self, instance: Any) -> dict[str, Any]:
        return self.conn.inspector.get_diagnostics(instance)

    def get_instance_diagnostics(self, instance: Any) -> Any:
        return self.conn.inspector.get_instance_diagnostics(instance)

    # --- resize

    def migrate_disk_and_power_off(
        self,
        context: Any,
        instance: Any,
        dest: str,
        flavor: Any,
        network_info: Any,
        block_device_info: Any = None,
        timeout: int = 0,
        retry_interval: int = 0,
    ) -> str:
        return self.conn.migrations.migrate_disk_and_power_off(
            instance, flavor, timeout, retry_interval
        )

    def finish_migration(
        self,
        context: Any,
        migration: Any,
        instance: Any,
        disk_info: str,
        network_info: Any,
        image_meta: Any,
        resize_instance: bool,
        allocations: Any,
        block_device_info: Any = None,
        power_on: bool = True,
        share_info: Any = None,
    ) -> None:
        self.conn.migrations.finish_migration(
            context, instance, disk_info, network_info, resize_instance, block_device_info, power_on
        )

    def confirm_migration(
        self, context: Any, migration: Any, instance: Any, network_info: Any
    ) -> None:
        self.conn.migrations.confirm_migration(instance)

    def finish_revert_migration(
        self,
        context: Any,
        instance: Any,
        network_info: Any,
        migration: Any,
        block_device_info: Any = None,
        power_on: bool = True,
        share_info: Any = None,
    ) -> None:
        self.conn.migrations.finish_revert_migration(instance, power_on)

    # --- live migration within the pool

    def check_can_live_migrate_destination(
        self,
        context: Any,
        instance: Any,
        src_compute_info: Any,
        dst_compute_info: Any,
        block_migration: bool = False,
        disk_over_commit: bool = False,
    ) -> Any:
        return self.conn.migrations.check_destination(instance, block_migration)

    def cleanup_live_migration_destination_check(self, context: Any, dest_check_data: Any) -> None:
        return None

    def check_can_live_migrate_source(
        self, context: Any, instance: Any, dest_check_data: Any, block_device_info: Any = None
    ) -> Any:
        return self.conn.migrations.check_source(instance, dest_check_data)

    def pre_live_migration(
        self,
        context: Any,
        instance: Any,
        block_device_info: Any,
        network_info: Any,
        disk_info: Any,
        migrate_data: Any,
    ) -> Any:
        return migrate_data  # one pool: the disks and networks are the pool's already

    def live_migration(
        self,
        context: Any,
        instance: Any,
        dest: str,
        post_method: Any,
        recover_method: Any,
        block_migration: bool = False,
        migrate_data: Any = None,
    ) -> None:
        self.conn.migrations.live_migration(
            context, instance, dest, post_method, recover_method, block_migration, migrate_data
        )

    def live_migration_abort(self, instance: Any) -> None:
        self.conn.migrations.abort(instance)

    def rollback_live_migration_at_destination(
        self,
        context: Any,
        instance: Any,
        network_info: Any,
        block_device_info: Any,
        destroy_disks: bool = True,
        migrate_data: Any = None,
    ) -> None:
        return None  # nothing was made at the destination: the VM never moved

    def post_live_migration(
        self, context: Any, instance: Any, block_device_info: Any, migrate_data: Any = None
    ) -> None:
        return None

    def post_live_migration_at_source(self, context: Any, instance: Any, network_info: Any) -> None:
        return None

    def post_live_migration_at_destination(
        self,
        context: Any,
        instance: Any,
        network_info: Any,
        block_migration: bool = False,
        block_device_info: Any = None,
    ) -> None:
        return None
