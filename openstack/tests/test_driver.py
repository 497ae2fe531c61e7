"""What nova's generic suite does not check, against xenstack: a failed spawn leaves nothing
behind, power_off asks the guest first, live migration between two hosts of a pool (one
nova-compute each) moves the running VM, and the guest's console log is read through the
host's console.py plug-in."""

from __future__ import annotations

# nova.tests before nova.test: in native-threading mode (OS_NOVA_DISABLE_EVENTLET_PATCHING=1)
# nova aborts with "eventlet library imported early" otherwise
from nova.tests.unit import utils as test_utils

# isort: split

import io
import os
import uuid

import xenstack_nova.driver
import xenstack_server
from nova import exception, test
from nova.network import model as network_model
from nova.tests import fixtures as nova_fixtures
from nova.virt import fake

SERVER: xenstack_server.XenstackServer | None = None


def setUpModule() -> None:
    global SERVER
    SERVER = xenstack_server.XenstackServer(
        hosts=2, plugin_dir=xenstack_server.PLUGIN_DIR, extra_args=["--shared-sr"]
    ).start()


def tearDownModule() -> None:
    if SERVER is not None:
        SERVER.stop()


class DriverTest(test.TestCase):
    def setUp(self) -> None:
        super().setUp()
        assert SERVER is not None
        self.glance = self.useFixture(nova_fixtures.GlanceFixture(self))
        for key, value in SERVER.flags().items():
            self.flags(**{key: value, "group": "xenserver"})
        self.x = SERVER.session().xenapi
        self.addCleanup(lambda: xenstack_server.destroy_nova_vms(SERVER.session()))
        self.ctxt = test_utils.get_test_admin_context()
        hosts = sorted(self.x.host.get_all_records().items(), key=lambda h: h[1]["name_label"])
        self.hosts = [ref for ref, _rec in hosts]
        # instance disks on the pool's shared SR, so that VMs can move between its hosts
        for sr, rec in self.x.SR.get_all_records().items():
            if rec["shared"] and rec["content_type"] != "iso" and rec["type"] != "iso":
                self.x.SR.add_to_other_config(sr, "xo-nova", "true")
                self.addCleanup(self.x.SR.remove_from_other_config, sr, "xo-nova")
        self.flags(sr_matching_filter="other-config:xo-nova=true", group="xenserver")

    def driver(self, host: str) -> xenstack_nova.driver.XenAPIDriver:
        self.flags(host_uuid=self.x.host.get_uuid(host), group="xenserver")
        drv = xenstack_nova.driver.XenAPIDriver(fake.FakeVirtAPI())
        drv.init_host("test")  # connects now, on this host
        self.addCleanup(drv.cleanup_host, "test")
        return drv

    def spawn(
        self,
        drv: xenstack_nova.driver.XenAPIDriver,
        image_id: str | None = None,
        network_info: list | None = None,
    ) -> object:
        instance = test_utils.get_test_instance(obj=True)
        if image_id:
            instance.image_ref = image_id
            instance.save()
        image_meta = test_utils.get_test_image_object(None, instance)
        drv.spawn(
            self.ctxt,
            instance,
            image_meta,
            [],
            None,
            {},
            network_info=network_model.NetworkInfo(network_info or []),
        )
        return instance

    def footprint(self) -> tuple[set[str], set[str], set[str]]:
        return (set(self.x.VM.get_all()), set(self.x.VDI.get_all()), set(self.x.VIF.get_all()))

    def test_failed_spawn_is_undone_completely(self) -> None:
        drv = self.driver(self.hosts[0])
        before = self.footprint()
        # fails in the image handler, after the VM is made
        qcow2 = self.glance.create(
            None,
            {"name": "q", "disk_format": "qcow2", "container_format": "bare"},
            data=io.BytesIO(b"QFI\xfb" + bytes(508)),
        )
        self.assertRaises(exception.ImageUnacceptable, self.spawn, drv, qcow2["id"])
        self.assertEqual(before, self.footprint())
        # fails on the second VIF, after the disks, their VBDs and the first VIF
        self.flags(vif_driver="bridge", group="xenserver")
        drv2 = xenstack_nova.driver.XenAPIDriver(fake.FakeVirtAPI())
        self.addCleanup(drv2.cleanup_host, "test")
        ok = network_model.VIF(
            id=str(uuid.uuid4()),
            address="fa:16:3e:00:00:01",
            network=network_model.Network(bridge="xenbr0", meta={}),
        )
        bad = network_model.VIF(
            id=str(uuid.uuid4()),
            address="fa:16:3e:00:00:02",
            network=network_model.Network(bridge="xo-nowhere", meta={}),
        )
        self.assertRaises(exception.NetworkNotFoundForBridge, self.spawn, drv2, None, [ok, bad])
        self.assertEqual(before, self.footprint())

    def test_power_off_asks_the_guest_first(self) -> None:
        drv = self.driver(self.hosts[0])
        instance = self.spawn(drv)
        (vm,) = self.x.VM.get_by_name_label(instance.name)
        calls: list[str] = []
        real_call = drv.conn.session.call

        def spy(method: str, *args: object) -> object:
            calls.append(method)
            return real_call(method, *args)

        drv.conn.session.call = spy  # type: ignore[method-assign]
        drv.power_off(instance, timeout=30, retry_interval=1)
        self.assertEqual("Halted", self.x.VM.get_power_state(vm))
        # the guest agent had reported: a clean shutdown, no hard one
        self.assertIn("VM.clean_shutdown", calls)
        self.assertNotIn("VM.hard_shutdown", calls)
        drv.power_off(instance)  # and again: nothing to do
        drv.power_on(self.ctxt, instance, [])
        drv.power_on(self.ctxt, instance, [])
        self.assertEqual("Running", self.x.VM.get_power_state(vm))

    def test_live_migration_between_hosts_of_the_pool(self) -> None:
        source, dest = self.driver(self.hosts[0]), self.driver(self.hosts[1])
        instance = self.spawn(source)
        (vm,) = self.x.VM.get_by_name_label(instance.name)
        self.assertEqual(self.hosts[0], self.x.VM.get_resident_on(vm))
        data = dest.check_can_live_migrate_destination(self.ctxt, instance, {}, {})
        data = source.check_can_live_migrate_source(self.ctxt, instance, data)
        data = dest.pre_live_migration(self.ctxt, instance, None, [], None, data)
        calls = []
        source.live_migration(
            self.ctxt,
            instance,
            "host2",
            lambda *a, **k: calls.append("post"),
            lambda *a, **k: calls.append("recover"),
            migrate_data=data,
        )
        self.assertEqual(["post"], calls)
        self.assertEqual(self.hosts[1], self.x.VM.get_resident_on(vm))
        self.assertEqual("Running", self.x.VM.get_power_state(vm))
        self.assertEqual([instance.name], dest.list_instances())
        # a destination outside the pool is refused before anything moves
        self.assertRaises(
            exception.MigrationPreCheckError,
            dest.check_can_live_migrate_destination,
            self.ctxt,
            instance,
            {},
            {},
            block_migration=True,
        )

    def test_console_output_through_the_console_plugin(self) -> None:
        assert SERVER is not None
        drv = self.driver(self.hosts[0])
        instance = self.spawn(drv)
        (vm,) = self.x.VM.get_by_name_label(instance.name)
        self.assertEqual("", drv.get_console_output(self.ctxt, instance))
        log = "Debian GNU/Linux 12 xo ttyS0\nxo login: \u00e9\n"
        os.makedirs(SERVER.console_dir, exist_ok=True)
        path = os.path.join(SERVER.console_dir, f"console.{self.x.VM.get_domid(vm)}")
        with open(path, "w") as f:
            f.write(log)
        self.assertEqual(log, drv.get_console_output(self.ctxt, instance))
