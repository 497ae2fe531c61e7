"""The VIF drivers against xenstack: the Open vSwitch one puts the neutron port id in the
VIF's ``other_config:nicira-iface-id`` on the integration bridge's network; the bridge one
joins the port's bridge, making a tagged network with ``VLAN.create`` on the physical PIF."""

from __future__ import annotations

# nova.tests before nova.test: in native-threading mode (OS_NOVA_DISABLE_EVENTLET_PATCHING=1)
# nova aborts with "eventlet library imported early" otherwise
from nova.tests.unit import utils as test_utils

# isort: split

import uuid

import xenstack_nova.driver
import xenstack_server
from nova import test
from nova.network import model as network_model
from nova.tests import fixtures as nova_fixtures
from nova.virt import fake

SERVER: xenstack_server.XenstackServer | None = None


def setUpModule() -> None:
    global SERVER
    SERVER = xenstack_server.XenstackServer().start()


def tearDownModule() -> None:
    if SERVER is not None:
        SERVER.stop()


def vif(bridge: str, vlan: int | None = None, physnet: str | None = None) -> network_model.VIF:
    meta = {}
    if vlan is not None:
        meta["vlan"] = vlan
    if physnet:
        meta["physical_network"] = physnet
    net = network_model.Network(id=str(uuid.uuid4()), bridge=bridge, label="net", meta=meta)
    mac = "fa:16:3e:" + ":".join(f"{b:02x}" for b in uuid.uuid4().bytes[:3])
    return network_model.VIF(id=str(uuid.uuid4()), address=mac, network=net, type="ovs")


class VifDriverTest(test.TestCase):
    def setUp(self) -> None:
        super().setUp()
        assert SERVER is not None
        self.useFixture(nova_fixtures.GlanceFixture(self))
        for key, value in SERVER.flags().items():
            self.flags(**{key: value, "group": "xenserver"})
        self.x = SERVER.session().xenapi
        self.addCleanup(lambda: xenstack_server.destroy_nova_vms(SERVER.session()))
        self.ctxt = test_utils.get_test_admin_context()

    def driver(self, name: str) -> xenstack_nova.driver.XenAPIDriver:
        self.flags(vif_driver=name, group="xenserver")
        drv = xenstack_nova.driver.XenAPIDriver(fake.FakeVirtAPI())
        self.addCleanup(drv.cleanup_host, "test")
        return drv

    def spawn(self, drv: xenstack_nova.driver.XenAPIDriver, vifs: list) -> tuple:
        instance = test_utils.get_test_instance(obj=True)
        image_meta = test_utils.get_test_image_object(None, instance)
        drv.spawn(
            self.ctxt,
            instance,
            image_meta,
            [],
            None,
            {},
            network_info=network_model.NetworkInfo(vifs),
        )
        (vm,) = self.x.VM.get_by_name_label(instance.name)
        return instance, vm

    def vif_records(self, vm: str) -> list[dict]:
        recs = [self.x.VIF.get_record(v) for v in self.x.VM.get_VIFs(vm)]
        return sorted(recs, key=lambda r: int(r["device"]))

    def test_ovs_vif_carries_the_neutron_port_id(self) -> None:
        drv = self.driver("ovs")
        port = vif("br-int")
        instance, vm = self.spawn(drv, [port])
        (rec,) = self.vif_records(vm)
        self.assertEqual(port["id"], rec["other_config"]["nicira-iface-id"])
        self.assertEqual(port["id"], rec["other_config"]["neutron-port-id"])
        self.assertEqual(port["address"], rec["MAC"])
        self.assertEqual("br-int", self.x.network.get_bridge(rec["network"]))
        self.assertTrue(rec["currently_attached"])

        extra = vif("br-int")
        drv.attach_interface(self.ctxt, instance, None, extra)
        recs = self.vif_records(vm)
        self.assertEqual(
            [port["id"], extra["id"]], [r["other_config"]["nicira-iface-id"] for r in recs]
        )
        self.assertTrue(recs[1]["currently_attached"])
        drv.detach_interface(self.ctxt, instance, extra)
        self.assertEqual(
            [port["id"]], [r["other_config"]["nicira-iface-id"] for r in self.vif_records(vm)]
        )

    def test_bridge_vif_on_an_existing_bridge(self) -> None:
        drv = self.driver("bridge")
        _instance, vm = self.spawn(drv, [vif("xenbr0")])
        (rec,) = self.vif_records(vm)
        self.assertEqual("xenbr0", self.x.network.get_bridge(rec["network"]))
        self.assertNotIn("nicira-iface-id", rec["other_config"])

    def test_bridge_vif_makes_a_vlan_on_the_physical_pif(self) -> None:
        drv = self.driver("bridge")
        _instance, vm = self.spawn(drv, [vif("xobr100", vlan=100, physnet="xenbr1")])
        (rec,) = self.vif_records(vm)
        self.assertEqual("xobr100", self.x.network.get_bridge(rec["network"]))
        (pif,) = self.x.network.get_PIFs(rec["network"])
        vlan = self.x.PIF.get_VLAN_master_of(pif)
        self.assertEqual("100", self.x.VLAN.get_tag(vlan))
        tagged = self.x.VLAN.get_tagged_PIF(vlan)
        self.assertEqual("xenbr1", self.x.network.get_bridge(self.x.PIF.get_network(tagged)))
        # a second port on the same network reuses it
        _i2, vm2 = self.spawn(drv, [vif("xobr100", vlan=100, physnet="xenbr1")])
        self.assertEqual(rec["network"], self.vif_records(vm2)[0]["network"])
