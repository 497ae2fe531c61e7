"""nova's in-process cloud (its own functional fixtures: REST API, conductor, scheduler,
placement, a compute service with this driver) booting a real guest on a qemu host: the
image comes from the standalone Glance (the test guest as a bootable raw disk, streamed in
through ``vdi_remote_stream``), the server reaches ``ACTIVE`` once the guest's agent has
reported, with the address DHCP gave its port's MAC; then it is stopped, started and
deleted, the QEMU gone with it. One guest at a time (``guest_host.py``)."""

from __future__ import annotations

# nova.tests before nova.test: in native-threading mode (OS_NOVA_DISABLE_EVENTLET_PATCHING=1)
# nova aborts with "eventlet library imported early" otherwise
from nova.tests.functional import integrated_helpers

# isort: split

import glance_server
import guest_host
import xenstack_nova.driver  # noqa: F401 - registers the [xenserver] options
import xenstack_server
from nova import context as nova_context
from nova.image import glance as nova_glance
from nova.tests import fixtures as nova_fixtures
from test_functional import paste_config

HOST: guest_host.QemuHost | None = None
GLANCE: glance_server.GlanceServer | None = None


def setUpModule() -> None:
    global HOST, GLANCE
    if guest_host.missing():
        return
    GLANCE = glance_server.GlanceServer().start()
    HOST = guest_host.shared()


def tearDownModule() -> None:
    if GLANCE is not None:
        GLANCE.stop()


class XenstackGuestCloudTest(integrated_helpers._IntegratedTestBase):
    ADMIN_API = True
    microversion = "latest"
    REQUIRES_LOCKING = False

    def useFixture(self, fixture):  # type: ignore[no-untyped-def]
        # nova's fake Glance stays out: the API, conductor and driver use the standalone one
        if isinstance(fixture, nova_fixtures.GlanceFixture):
            return fixture
        return super().useFixture(fixture)

    def setUp(self) -> None:
        guest_host.skip_or_fail(self)
        # the functional API's contexts carry no token, and the standalone Glance asks for
        # none (no Keystone): any token lets nova's Glance client send its requests
        self.stub_out(
            "nova.context._ContextAuthPlugin.get_token",
            lambda plugin, *args, **kwargs: plugin.auth_token or "n3-no-keystone",
        )
        super().setUp()
        assert HOST is not None
        self.addCleanup(lambda: xenstack_server.destroy_nova_vms(HOST.session()))

    def _setup_compute_service(self) -> object:
        assert HOST is not None and GLANCE is not None
        self.flags(compute_driver="xenstack_ext.XenAPIDriver")
        self.flags(api_paste_config=paste_config(), group="wsgi")
        self.flags(api_servers=[GLANCE.url], group="glance")
        for key, value in HOST.flags().items():
            self.flags(**{key: value, "group": "xenserver"})
        # the guest's port on the host's untagged network (DHCP beyond the PIF)
        self.flags(vif_driver="ovs", ovs_integration_bridge="xenbr0", group="xenserver")
        return self._start_compute("compute")

    def _wait(self, server: dict, status: str) -> dict:
        """The server once its status is ``status`` and no task runs (a real guest's
        steps take seconds: nova's helpers wait five)."""
        retries = int(guest_host.WAIT / 0.5)
        params = {"status": status, "OS-EXT-STS:task_state": None}
        return self._wait_for_server_parameter(server, params, max_retries=retries)

    def test_real_guest_lifecycle(self) -> None:
        assert HOST is not None
        # the image belongs to the project the API's requests come from
        ctx = nova_context.RequestContext("n3", self.api.project_id, auth_token="x")
        image = guest_host.upload_guest_image(nova_glance.API(), ctx)
        net = self.neutron.network_1["id"]
        server = self._create_server(
            image_uuid=image, flavor_id="1", networks=[{"uuid": net}], expected_state="BUILD"
        )
        server = self._wait(server, "ACTIVE")
        x = HOST.session().xenapi
        (vm,) = x.VM.get_by_name_label(server["OS-EXT-SRV-ATTR:instance_name"])
        self.assertEqual("Running", x.VM.get_power_state(vm))
        # ACTIVE came after the agent: its report is there already, with the leased address
        metrics = x.VM_guest_metrics.get_record(x.VM.get_guest_metrics(vm))
        self.assertTrue(metrics["PV_drivers_version"])
        (vif,) = x.VM.get_VIFs(vm)
        mac = x.VIF.get_MAC(vif)
        port = x.VIF.get_other_config(vif)["nicira-iface-id"]  # the neutron port it is
        self.assertEqual(self.neutron._ports[port]["mac_address"], mac)
        ip = guest_host.guest_ip(x, vm)
        self.assertEqual(guest_host.until(lambda: HOST.leased(0, mac), "the lease"), ip)
        self.assertTrue(ip.startswith(HOST.info["subnets"]["0"] + "."), ip)

        self.api.post_server_action(server["id"], {"os-stop": None})
        server = self._wait(server, "SHUTOFF")
        self.assertEqual("Halted", x.VM.get_power_state(vm))
        self.api.post_server_action(server["id"], {"os-start": None})
        server = self._wait(server, "ACTIVE")
        self.assertEqual("Running", x.VM.get_power_state(vm))
        self.assertEqual(ip, guest_host.guest_ip(x, vm))

        self._delete_server(server)
        self.assertEqual([], x.VM.get_by_name_label(server["OS-EXT-SRV-ATTR:instance_name"]))
