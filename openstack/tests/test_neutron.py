"""neutron's Open vSwitch agent (neutron 29, its own code: ``neutron_agent.py``) against
xenstack's OVSDB over TCP tags the ``vifN.M`` port of a VM the driver spawned with the local
VLAN of its network and installs the provider VLAN translation on the physical bridge
(``physnet1:xenbr0``), with ``minimize_polling`` true (the ``ovsdb-client monitor`` path) and
false.

The host is a simulated one on a private Open vSwitch (``ovs_xenstack.py``: daemons in an
``xo``-prefixed network namespace, veth stand-ins for the guests' NICs). The agent runs in
that namespace, where ovs-vswitchd calls its OpenFlow controller on 127.0.0.1; it reaches
xenstack's OVSDB TCP remote (ovsdb-server runs outside the namespace) through a plain TCP
relay, and ``OVS_RUNDIR`` gives its local ``ovs-vsctl`` calls dom0's OVSDB socket. Needs root
and the Open vSwitch tools; skipped otherwise (failed under CI).

``NeutronAgentGuestTest`` does the same with a real guest: the driver spawns the test guest
from the standalone Glance on a qemu host on Open vSwitch (``guest_host.py``), its QEMU tap
``vifN.0`` on ``br-int``; once the agent has tagged it and translated the tag to the provider
VLAN 1000, the guest's DHCP request crosses the physical bridge and the PIF to the segment's
DHCP server, and the guest's agent reports the address that server leased.
"""

from __future__ import annotations

# nova.tests before nova.test: in native-threading mode (OS_NOVA_DISABLE_EVENTLET_PATCHING=1)
# nova aborts with "eventlet library imported early" otherwise
from nova.tests.unit import utils as test_utils

# isort: split

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import glance_server
import guest_host
import xenstack_nova.driver
import xenstack_server
from nova import context as nova_context
from nova import objects, test
from nova.image import glance as nova_glance
from nova.network import model as network_model
from nova.tests import fixtures as nova_fixtures
from nova.virt import fake

HERE = os.path.dirname(os.path.abspath(__file__))
TOOLS = ("ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ovs-ofctl", "ovsdb-tool")
TIMEOUT = 120  # seconds: this machine's load swings


def missing() -> str:
    absent = [t for t in TOOLS if shutil.which(t) is None]
    if absent:
        return f"Open vSwitch tools missing: {absent}"
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    return ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait(fn, what: str, timeout: float = TIMEOUT):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


class NeutronAgentTest(test.TestCase):
    def setUp(self) -> None:
        super().setUp()
        reason = missing()
        if reason:
            if os.environ.get("CI"):
                self.fail(reason + " and CI is set: this test must run")
            self.skipTest(reason)
        self.tmp = tempfile.mkdtemp(prefix="xo-neutron-", dir=os.environ.get("XO_KEEP") or None)
        if not os.environ.get("XO_KEEP"):
            self.addCleanup(shutil.rmtree, self.tmp, True)
        self.start_host()
        self.ctxt = test_utils.get_test_admin_context()

    def start_host(self) -> None:
        env = dict(os.environ, PYTHONPATH=str(xenstack_server.REPO / "src"))
        python = os.environ.get("XENSTACK_PYTHON") or str(xenstack_server.REPO / ".venv/bin/python")
        self.host = subprocess.Popen(
            [python, os.path.join(HERE, "ovs_xenstack.py"), os.path.join(self.tmp, "s")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True,
        )  # fmt: skip
        self.addCleanup(self._stop_host)
        line = self.host.stdout.readline()  # type: ignore[union-attr]
        if not line:
            raise AssertionError("the xenstack host did not start")
        self.info = json.loads(line)
        self.useFixture(nova_fixtures.GlanceFixture(self))
        self.flags(connection_url=self.info["url"], group="xenserver")
        self.flags(connection_username="root", group="xenserver")
        self.flags(connection_password=self.info["password"], group="xenserver")
        self.flags(vif_driver="ovs", ovs_integration_bridge="br-int", group="xenserver")
        self.flags(sr_base_path=os.path.join(self.tmp, "s", "xs", "sr"), group="xenserver")

    def _stop_host(self) -> None:
        self.host.stdin.close()  # type: ignore[union-attr]
        try:
            self.host.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            self.host.kill()
            self.host.wait()

    def sh(self, *argv: str) -> str:
        out = subprocess.run(
            list(argv),
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        return out.stdout.strip() if out.returncode == 0 else ""

    def vsctl(self, *args: str) -> str:
        return self.sh("ovs-vsctl", f"--db=tcp:127.0.0.1:{self.info['ovsdb']}", *args)

    def spawn(self) -> tuple[network_model.VIF, str]:
        drv = xenstack_nova.driver.XenAPIDriver(fake.FakeVirtAPI())
        drv.init_host("xo-compute")
        self.addCleanup(drv.cleanup_host, "xo-compute")
        net = network_model.Network(id=str(uuid.uuid4()), bridge="br-int", label="net")
        mac = "fa:16:3e:" + ":".join(f"{b:02x}" for b in uuid.uuid4().bytes[:3])
        port = network_model.VIF(id=str(uuid.uuid4()), address=mac, network=net, type="ovs")
        instance = test_utils.get_test_instance(obj=True)
        image_meta = self.image(instance)
        drv.spawn(self.ctxt, instance, image_meta, [], None, {},
                  network_info=network_model.NetworkInfo([port]))  # fmt: skip
        x = drv.conn.session
        (vm,) = x.call("VM.get_by_name_label", instance.name)
        self.vm = vm
        name = f"vif{x.call('VM.get_domid', vm)}.0"
        return port, name

    def image(self, instance: object) -> object:
        return test_utils.get_test_image_object(None, instance)

    def agent(self, port: network_model.VIF, minimize: bool) -> subprocess.Popen:
        conf = os.path.join(self.tmp, "agent.ini")
        with open(conf, "w") as f:
            f.write(
                "[DEFAULT]\ntransport_url = fake:/\nhost = xo-compute\n"
                f"log_file = {os.path.join(self.tmp, 'agent.log')}\n"
                "[ovs]\nintegration_bridge = br-int\nbridge_mappings = physnet1:xenbr0\n"
                "datapath_type = netdev\n"  # xenstack's private switch is userspace
                f"ovsdb_connection = tcp:127.0.0.1:{self.info['ovsdb_in_ns']}\n"
                f"of_listen_address = 127.0.0.1\nof_listen_port = {free_port()}\n"
                f"[agent]\nminimize_polling = {str(minimize).lower()}\n"
                # the test runs as root: privsep's helpers start without sudo
                "root_helper = env\n"
                "[securitygroup]\nfirewall_driver = noop\n"
            )
        spec = {"id": port["id"], "mac": port["address"], "network_id": port["network"]["id"],
                "segmentation_id": 1000}  # fmt: skip
        bindir = os.path.dirname(sys.executable)  # privsep-helper, neutron's commands
        path = bindir + os.pathsep + os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        # dom0's local OVSDB socket, where the agent's ovs-vsctl calls look for it
        rundir = self.info["rundir"]
        env = dict(os.environ, XO_PORT=json.dumps(spec), PATH=path, OVS_RUNDIR=rundir)
        env.pop("OS_NOVA_DISABLE_EVENTLET_PATCHING", None)  # neutron's agent: its own mode
        out = open(os.path.join(self.tmp, "agent.out"), "w")  # noqa: SIM115 - closed in stop
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.info["netns"], sys.executable,
             os.path.join(HERE, "neutron_agent.py"), conf],
            stdout=out, stderr=subprocess.STDOUT, env=env, text=True,
        )  # fmt: skip

        def stop() -> None:  # the agent ignores SIGTERM (openstack.md §4)
            proc.send_signal(signal.SIGKILL)
            proc.wait(TIMEOUT)
            out.close()

        self.addCleanup(stop)
        return proc

    def _tags_the_port(self, minimize: bool) -> None:
        port, name = self.spawn()
        iface_id = wait(
            lambda: self.vsctl("get", "Interface", name, "external_ids:iface-id"),
            f"{name} on br-int",
        )
        self.assertEqual(port["id"], iface_id.strip('"'))
        self.assertEqual("br-int", self.vsctl("port-to-br", name))
        self.agent(port, minimize)
        tag = wait(lambda: self.vsctl("get", "Port", name, "tag").strip("[] ") or "",
                   f"the agent tagging {name}")  # fmt: skip
        self.assertGreaterEqual(int(tag), 1)
        # the agent may write the port's other_config in a later transaction than its tag
        other = wait(
            lambda: (lambda o: o if 'segmentation_id="1000"' in o else "")(
                self.vsctl("get", "Port", name, "other_config")
            ),
            f"the agent's network details on {name}",
        )
        self.assertIn("physical_network=physnet1", other)
        mgmt = os.path.join(self.info["rundir"], "xenbr0.mgmt")
        flow = f"dl_vlan={tag} actions=mod_vlan_vid:1000"
        wait(lambda: flow in self.sh("ovs-ofctl", "dump-flows", f"unix:{mgmt}"),
             "the provider VLAN translation on xenbr0")  # fmt: skip
        self.after_tagging(port)

    def after_tagging(self, port: network_model.VIF) -> None:
        """What a real guest shows once its port is wired (nothing for a veth stand-in)."""

    def test_agent_tags_the_port_minimize_polling(self) -> None:
        self._tags_the_port(minimize=True)

    def test_agent_tags_the_port_polling(self) -> None:
        self._tags_the_port(minimize=False)


GLANCE: glance_server.GlanceServer | None = None


def setUpModule() -> None:
    # here, not in a test: nova's tests give each test a temporary directory of its own
    global GLANCE
    if not guest_host.missing():
        GLANCE = glance_server.GlanceServer().start()


def tearDownModule() -> None:
    if GLANCE is not None:
        GLANCE.stop()


class NeutronAgentGuestTest(NeutronAgentTest):
    """The agent and a real guest the driver spawned from Glance (see the module)."""

    def useFixture(self, fixture):  # type: ignore[no-untyped-def]
        # nova's fake Glance stays out: the driver reads the standalone one
        if isinstance(fixture, nova_fixtures.GlanceFixture):
            return fixture
        return super().useFixture(fixture)

    def start_host(self) -> None:
        guest_host.skip_or_fail(self)
        assert GLANCE is not None
        self.guest_host = guest_host.shared()
        # the host serves the next test too: the guest goes, with its disks
        self.addCleanup(lambda: xenstack_server.destroy_nova_vms(self.guest_host.session()))
        self.info = self.guest_host.info
        self.flags(api_servers=[GLANCE.url], group="glance")
        for key, value in self.guest_host.flags().items():
            self.flags(**{key: value, "group": "xenserver"})
        self.flags(vif_driver="ovs", ovs_integration_bridge="br-int", group="xenserver")

    def image(self, instance: object) -> object:
        ctx = nova_context.RequestContext("n3", "n3", auth_token="x")
        try:
            image_id = guest_host.upload_guest_image(nova_glance.API(), ctx)
        except Exception as exc:
            assert GLANCE is not None
            raise AssertionError(f"{exc}: {GLANCE.log()}") from exc
        instance.image_ref = image_id  # type: ignore[attr-defined]
        instance.flavor.vcpus = 1  # type: ignore[attr-defined] # this host has 2 cores
        instance.flavor.memory_mb = 256  # type: ignore[attr-defined]
        self.ctxt = ctx  # the spawn reads the image with a token, as the project's own
        return objects.ImageMeta.from_dict({"id": image_id, "disk_format": "raw",
                                            "container_format": "bare"})  # fmt: skip

    def after_tagging(self, port: network_model.VIF) -> None:
        x = self.guest_host.session().xenapi
        ip = guest_host.guest_ip(x, self.vm)
        leased = wait(lambda: self.guest_host.leased(guest_host.PROVIDER_VLAN, port["address"]),
                      "the provider segment's lease")  # fmt: skip
        self.assertEqual(leased, ip)
        self.assertTrue(ip.startswith(self.info["subnets"][str(guest_host.PROVIDER_VLAN)] + "."))
