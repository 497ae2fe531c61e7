"""Networks made real over the wire (PyPI XenAPI SDK), on the simulated switch and on Open
vSwitch: VIF ports with XenServer's external ids when a VM starts, VLAN fake bridges, live
VIF.move and locking, MTU, QoS, PIFs only among the given devices, start-up repairs."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import Iterator
from typing import Any

from netwire import PIF_DEVICE, Host, start_host

from xenstack.net import BridgeSpec, VifSpec
from xenstack.net import flows as flowlib
from xenstack.testing import vm_from_template
from xenstack.testing.network import sh


def network(x: Any, label: str, mtu: int = 0, **other: str) -> str:
    return str(
        x.network.create(
            {
                "name_label": label,
                "name_description": "",
                "MTU": str(mtu),
                "other_config": other,
                "tags": [],
            }
        )
    )


def vm_on(x: Any, net: str, label: str = "vm", **vif: Any) -> tuple[str, str]:
    vm = vm_from_template(x, label)
    record = {
        "device": "0",
        "network": net,
        "VM": vm,
        "MAC": "",
        "MTU": "1500",
        "other_config": {},
        "qos_algorithm_type": "",
        "qos_algorithm_params": {},
    }
    record.update(vif)
    return vm, str(x.VIF.create(record))


def started(host: Host, vm: str) -> str:
    host.x.VM.start(vm, False, True)
    return f"vif{host.x.VM.get_domid(vm)}.0"


def test_vif_port_with_xenserver_external_ids(host: Host) -> None:
    x = host.x
    net = network(x, "private")
    vm, vif = vm_on(
        x,
        net,
        other_config={"nicira-iface-id": "neutron-port-1"},
        qos_algorithm_type="ratelimit",
        qos_algorithm_params={"kbps": "4096"},
    )
    name = started(host, vm)
    port = host.ports()[name]
    bridge = x.network.get_bridge(net)
    assert bridge.startswith("xapi") and port.bridge == bridge and port.ofport > 0
    assert port.external_ids == {
        "attached-mac": x.VIF.get_MAC(vif),
        "iface-id": "neutron-port-1",
        "iface-status": "active",
        "xs-vif-uuid": x.VIF.get_uuid(vif),
        "xs-vm-uuid": x.VM.get_uuid(vm),
        "xs-network-uuid": x.network.get_uuid(net),
        "vm-id": x.VM.get_uuid(vm),
    }
    assert port.policing_kbps == 4096
    assert host.bridges()[bridge].external_ids["xs-network-uuids"] == x.network.get_uuid(net)
    x.VM.hard_shutdown(vm)
    assert name not in host.ports()


def test_vlan_is_a_fake_bridge_and_its_ports_carry_the_tag(host: Host) -> None:
    x = host.x
    net = network(x, "vlan100", mtu=9000)
    x.VLAN.create(host.pif(), "100", net)
    bridge = x.network.get_bridge(net)
    parent = x.network.get_bridge(x.PIF.get_network(host.pif()))
    fake = host.bridges()[bridge]
    assert (fake.parent, fake.tag, fake.mtu) == (parent, 100, 9000)
    vm, _ = vm_on(x, net)
    name = started(host, vm)
    assert name in host.ports(), (name, host.ports())
    port = host.ports()[name]
    assert (port.bridge, port.parent, port.tag, port.mtu) == (bridge, parent, 100, 9000)
    if host.real:
        # the host's PIF is the given device on its bridge, and nothing else was taken
        assert host.ports()[PIF_DEVICE].bridge == parent
        remote = host.switch.daemons.remote
        show = subprocess.run(
            ["ovs-vsctl", f"--db={remote}", "show"], capture_output=True, text=True, check=True
        ).stdout
        assert f"Bridge {parent}" in show and "tag: 100" in show


def test_vif_move_and_locking_live(host: Host) -> None:
    x = host.x
    first, second = network(x, "first"), network(x, "second", mtu=9000)
    vm, vif = vm_on(x, first)
    name = started(host, vm)
    x.VIF.move(vif, second)
    port = host.ports()[name]
    assert (port.bridge, port.mtu) == (x.network.get_bridge(second), 9000)
    mac = x.VIF.get_MAC(vif)
    x.VIF.set_ipv4_allowed(vif, ["10.9.0.5"])
    x.VIF.set_locking_mode(vif, "locked")
    bridge = x.network.get_bridge(second)
    ofport = host.ports()[name].ofport

    def verdict(ip: str) -> str:
        packet = flowlib.arp_request(ofport, mac, ip, "10.9.0.1")
        return str(host.run(lambda: host.switch.trace(bridge, packet)).verdict)

    assert (verdict("10.9.0.5"), verdict("10.9.0.6")) == ("forward", "drop")
    x.VIF.add_ipv4_allowed(vif, "10.9.0.6")
    assert verdict("10.9.0.6") == "forward"
    x.VIF.set_locking_mode(vif, "disabled")
    assert name not in host.ports()
    x.VIF.set_locking_mode(vif, "network_default")
    assert host.ports()[name].bridge == bridge
    assert verdict("10.9.0.77") == "forward"


def test_network_destroy_removes_its_bridge(host: Host) -> None:
    x = host.x
    net = network(x, "short-lived")
    vm, vif = vm_on(x, net)
    started(host, vm)
    bridge = x.network.get_bridge(net)
    assert bridge in host.bridges()
    x.VM.hard_shutdown(vm)
    x.VIF.destroy(vif)
    x.network.destroy(net)
    assert bridge not in host.bridges()


def test_start_up_repairs_drift_and_leaves_the_rest(machine: Any) -> None:
    kit, state, phys = machine
    with contextlib.ExitStack() as stack:
        host = stack.enter_context(_started(kit, state, phys))
        x = host.x
        net = network(x, "kept")
        vm, vif = vm_on(x, net)
        name = started(host, vm)
        bridge = x.network.get_bridge(net)
    # while the toolstack is down: a bridge deleted by hand (its ports go with it), a port
    # left from a VM that died, a stale bridge of ours, and someone else's bridge

    async def drift() -> None:
        sw = kit.switch
        await sw.start()
        try:
            await sw.destroy_bridge(bridge)
            await sw.ensure_bridge(BridgeSpec("xnforeign"))
            await sw.ensure_bridge(BridgeSpec("xapi99", "no-such-network"))
            await sw.plug_vif(
                VifSpec(
                    "vif99.0",
                    "xnforeign",
                    "02:00:00:00:00:99",
                    external_ids=(("xs-vif-uuid", "gone"),),
                )
            )
        finally:
            await sw.stop()

    asyncio.run(drift())
    with _started(kit, state, phys) as host:
        repairs = host.pool.toolstack.network.repairs
        assert bridge in repairs.bridges_made and name in repairs.ports_made
        assert "xapi99" in repairs.bridges_removed and "vif99.0" in repairs.ports_removed
        bridges, ports = host.bridges(), host.ports()
        assert "xnforeign" in bridges and "xapi99" not in bridges
        assert ports[name].bridge == bridge
        assert ports[name].external_ids["xs-vif-uuid"] == host.x.VIF.get_uuid(vif)
        assert "vif99.0" not in ports
        assert host.x.VM.get_power_state(vm) == "Running"


@contextlib.contextmanager
def _started(kit: Any, state: Any, phys: str) -> Iterator[Host]:
    made = start_host(kit, state, phys)
    try:
        yield next(made)
    finally:
        made.close()


def test_pifs_only_among_the_given_devices(ovs_host: Host) -> None:
    x = ovs_host.x
    devices = {r["device"] for r in x.PIF.get_all_records().values() if r["physical"]}
    assert devices == {PIF_DEVICE}
    (this,) = x.host.get_all()
    x.PIF.scan(this)
    assert {r["device"] for r in x.PIF.get_all_records().values() if r["physical"]} == devices
    pif = ovs_host.pif()
    metrics = x.PIF_metrics.get_record(x.PIF.get_metrics(pif))
    assert metrics["carrier"] is True
    assert x.PIF.get_MAC(pif) and x.PIF.get_MAC(pif) != "fe:ff:ff:ff:ff:ff"
    x.PIF.reconfigure_ip(pif, "Static", "10.31.0.2", "255.255.255.0", "", "")
    bridge = x.network.get_bridge(x.PIF.get_network(pif))
    shown = subprocess.run(
        ["ip", "-n", ovs_host.kit.netns, "addr", "show", bridge],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "10.31.0.2/24" in shown


def test_pif_gets_a_dhcp_lease_from_beyond_it(ovs_host: Host) -> None:
    x = ovs_host.x
    ns = ovs_host.phys_ns
    sh(["ip", "-n", ns, "addr", "add", "10.44.0.1/24", "dev", "xnp0p"])
    server = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            ns,
            "dnsmasq",
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--port=0",
            "--interface=xnp0p",
            "--bind-interfaces",
            "--dhcp-authoritative",
            "--dhcp-range=10.44.0.50,10.44.0.60,255.255.255.0,1h",
            "--no-ping",
            f"--dhcp-leasefile={ovs_host.pool.state_dir}/xn-pif-leases",
            "--pid-file=",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        pif = ovs_host.pif()
        x.PIF.reconfigure_ip(pif, "DHCP", "", "", "", "")
        address = x.PIF.get_IP(pif)
        assert address.startswith("10.44.0.") and x.PIF.get_netmask(pif) == "255.255.255.0"
        bridge = x.network.get_bridge(x.PIF.get_network(pif))
        shown = sh(["ip", "-n", ovs_host.kit.netns, "addr", "show", bridge])
        assert f"{address}/24" in shown
    finally:
        server.terminate()
        server.wait(30)
