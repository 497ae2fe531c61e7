"""nova's in-process cloud (its own functional fixtures: REST API, conductor, scheduler,
placement, a compute service with this driver) against a xenstack pool over the wire: boot,
stop, start, reboot, snapshot to an image, rebuild, resize (confirmed and reverted), delete.
Each step is checked on the XenAPI side too."""

from __future__ import annotations

# nova.tests before nova.test: in native-threading mode (OS_NOVA_DISABLE_EVENTLET_PATCHING=1)
# nova aborts with "eventlet library imported early" otherwise
from nova.tests.functional import integrated_helpers

# isort: split

import os
import sys
import time

import xenstack_nova.driver  # noqa: F401 - registers the [xenserver] options
import xenstack_server
from nova.tests import fixtures as nova_fixtures

SERVER: xenstack_server.XenstackServer | None = None


def setUpModule() -> None:
    global SERVER
    SERVER = xenstack_server.XenstackServer(plugin_dir=xenstack_server.PLUGIN_DIR).start()


def tearDownModule() -> None:
    if SERVER is not None:
        SERVER.stop()


def paste_config() -> str:
    """nova's api-paste.ini as the wheel installs it (under the venv's etc/)."""
    return os.path.join(sys.prefix, "etc", "nova", "api-paste.ini")


class XenstackCloudTest(integrated_helpers._IntegratedTestBase):
    ADMIN_API = True
    microversion = "latest"
    REQUIRES_LOCKING = False

    def setUp(self) -> None:
        super().setUp()
        self.addCleanup(lambda: xenstack_server.destroy_nova_vms(SERVER.session()))

    def _setup_compute_service(self) -> object:
        assert SERVER is not None
        self.flags(compute_driver="xenstack_ext.XenAPIDriver")
        self.flags(api_paste_config=paste_config(), group="wsgi")
        self.flags(allow_resize_to_same_host=True)
        for key, value in SERVER.flags().items():
            self.flags(**{key: value, "group": "xenserver"})
        return self._start_compute("compute")

    def xapi_vm(self, server: dict) -> dict:
        x = SERVER.session().xenapi
        name = server["OS-EXT-SRV-ATTR:instance_name"]
        refs = [r for r in x.VM.get_by_name_label(name) if not x.VM.get_is_a_snapshot(r)]
        self.assertEqual(1, len(refs), f"VMs named {name}")
        rec = x.VM.get_record(refs[0])
        rec["disks"] = {
            x.VBD.get_userdevice(v): x.VDI.get_virtual_size(x.VBD.get_VDI(v))
            for v in rec["VBDs"]
            if x.VBD.get_VDI(v) != "OpaqueRef:NULL"
        }
        return rec

    def test_server_lifecycle(self) -> None:
        server = self._create_server(networks="none")
        vm = self.xapi_vm(server)
        self.assertEqual("Running", vm["power_state"])
        self.assertEqual(server["id"], vm["other_config"]["nova_uuid"])
        self.assertEqual(str(1 << 30), vm["disks"]["0"])  # m1.tiny: 1 GB root

        server = self._stop_server(server)
        self.assertEqual("Halted", self.xapi_vm(server)["power_state"])
        server = self._start_server(server)
        self.assertEqual("Running", self.xapi_vm(server)["power_state"])

        domid = self.xapi_vm(server)["domid"]
        server = self._reboot_server(server, hard=True)
        self.assertNotEqual(domid, self.xapi_vm(server)["domid"])
        server = self._reboot_server(server)  # soft: a clean reboot once the agent is up
        self.assertEqual("Running", self.xapi_vm(server)["power_state"])

        self._snapshot_server(server, "snap-1")
        image = self._wait_for_image("snap-1")
        server = self._wait_for_server_parameter(server, {"OS-EXT-STS:task_state": None})
        # uploaded in the format of the image the server booted from (raw here)
        self.assertEqual(("raw", "bare"), (image["disk_format"], image["container_format"]))
        x = SERVER.session().xenapi
        self.assertEqual([], [r for r in x.VM.get_all() if x.VM.get_is_a_snapshot(r)])

        vm_before = self.xapi_vm(server)["uuid"]
        server = self._rebuild_server(server, self.glance.auto_disk_config_enabled_image["id"])
        after = self.xapi_vm(server)
        self.assertNotEqual(vm_before, after["uuid"])
        self.assertEqual("Running", after["power_state"])

        server = self._resize_server(server, "2")  # m1.small: 20 GB root
        self.assertEqual(str(20 << 30), self.xapi_vm(server)["disks"]["0"])
        server = self._revert_resize(server)
        self.assertEqual(str(1 << 30), self.xapi_vm(server)["disks"]["0"])
        server = self._resize_server(server, "2")
        server = self._confirm_resize(server)
        vm = self.xapi_vm(server)
        self.assertEqual(str(20 << 30), vm["disks"]["0"])
        self.assertEqual(str(2048 << 20), vm["memory_static_max"])
        self.assertEqual([], x.VM.get_by_name_label(vm["name_label"] + "-orig"))

        self._delete_server(server)
        self._wait_until_deleted(server)
        self.assertEqual([], x.VM.get_by_name_label(vm["name_label"]))

    def test_config_drive_is_a_read_only_vdi(self) -> None:
        self.flags(force_config_drive=True)
        server = self._create_server(networks="none")
        assert SERVER is not None
        session = SERVER.session()
        x = session.xenapi
        vm = self.xapi_vm(server)
        (vbd,) = [v for v in vm["VBDs"] if x.VBD.get_userdevice(v) == "3"]
        self.assertEqual("RO", x.VBD.get_mode(vbd))
        iso = xenstack_server.export_vdi(SERVER, session, x.VBD.get_VDI(vbd))
        self.assertEqual(b"CD001", iso[32769:32774])  # an ISO 9660 volume descriptor
        self.assertEqual(b"config-2", iso[32808:32816])  # cloud-init's config drive label
        self._delete_server(server)
        self._wait_until_deleted(server)
        self.assertEqual([], x.VM.get_by_name_label(vm["name_label"]))

    def _wait_for_image(self, name: str) -> dict:
        for _ in range(600):
            for image in self.glance.images.values():
                if image.get("name") == name and image.get("container_format") == "bare":
                    return image
            time.sleep(0.1)
        raise AssertionError(f"no image {name}")


_ = nova_fixtures
