"""Bonds, tunnels and counters over the wire, on both switches: a bond is one port of its
network's bridge over its members (mode as XenServer names it, links_up from the members'
links), a tunnel a GRE or VXLAN port to the remote the network names, VIF_metrics and
PIF_metrics from the switch and the kernel (the device's own namespace's sysfs)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from netwire import PIF_DEVICE, Host
from test_switch_wire import network, started, vm_on

from xenstack.testing.network import sh


def second_pif(host: Host) -> tuple[str, str]:
    """The host's two physical PIFs (on OVS the second is a device an administrator adds)."""
    x = host.x
    first = host.pif()
    if not host.real:
        (other,) = [
            r
            for r, row in x.PIF.get_all_records().items()
            if row["device"] == "eth1" and row["VLAN"] == "-1"
        ]
        return first, str(other)
    assert host.kit.spaces is not None
    host.kit.spaces.veth("xnp1", host.kit.netns, "xnp1p", host.phys_ns)
    (this,) = x.host.get_all()
    return first, str(x.PIF.introduce(this, "", "xnp1", True))


def sample(host: Host) -> None:
    assert host.pool.toolstack is not None
    toolstack = host.pool.toolstack
    host.run(toolstack.network.sampler.sample)


def test_a_bond_is_one_port_over_its_members(host: Host) -> None:
    x = host.x
    first, second = second_pif(host)
    members = {x.PIF.get_device(first), x.PIF.get_device(second)}
    net = network(x, "bonded")
    bond = x.Bond.create(net, [first, second], "", "active-backup", {})
    master = x.Bond.get_master(bond)
    port = host.ports()[x.PIF.get_device(master)]
    assert port.kind == "bond" and set(port.members) == members
    assert port.bridge == x.network.get_bridge(net) and port.options["mode"] == "active-backup"
    assert not members & set(host.ports())  # the members' own ports are gone
    x.Bond.set_mode(bond, "balance-slb")
    assert host.ports()[x.PIF.get_device(master)].options["mode"] == "balance-slb"
    sample(host)
    assert x.Bond.get_links_up(bond) == "2"
    if host.real:
        sh(["ip", "-n", host.phys_ns, "link", "set", "xnp1p", "down"])  # a cable pulled
        deadline_samples = 0
        while x.Bond.get_links_up(bond) != "1" and deadline_samples < 100:
            sample(host)
            deadline_samples += 1
        assert x.Bond.get_links_up(bond) == "1"
    device = x.PIF.get_device(master)
    # lacp as XenServer makes it: by source MAC unless hashing by TCP/UDP ports
    x.Bond.set_mode(bond, "lacp")
    options = host.ports()[device].options
    assert (options["mode"], options["bond_mode"]) == ("lacp", "balance-slb"), options
    x.Bond.set_property(bond, "hashing_algorithm", "tcpudp_ports")
    x.Bond.set_property(bond, "lacp-time", "fast")
    options = host.ports()[device].options
    assert (options["bond_mode"], options["lacp-time"]) == ("balance-tcp", "fast"), options
    x.Bond.destroy(bond)
    after = host.ports()
    assert device not in after and members <= set(after)


def test_a_tunnel_is_a_gre_port_to_the_networks_remote(host: Host) -> None:
    x = host.x
    transport = host.pif()
    x.PIF.reconfigure_ip(transport, "Static", "10.33.0.2", "255.255.255.0", "", "")
    net = network(x, "overlay", remote_ip="192.0.2.9", key="77")
    tunnel = x.tunnel.create(transport, net, "gre")
    access = x.tunnel.get_access_PIF(tunnel)
    port = host.ports()[x.PIF.get_device(access)]
    assert (port.kind, port.options["remote_ip"], port.options["key"]) == ("gre", "192.0.2.9", "77")
    assert port.bridge == x.network.get_bridge(net)
    device = x.PIF.get_device(access)
    x.tunnel.destroy(tunnel)
    assert device not in host.ports()


@pytest.mark.ovs
@pytest.mark.root
def test_vif_and_pif_metrics_from_the_switch_and_kernel(ovs_host: Host) -> None:
    from test_traffic_wire import address, pings

    x = ovs_host.x
    net = network(x, "counted")
    a_vm, a_vif = vm_on(x, net, "a")
    b_vm, _ = vm_on(x, net, "b")
    a = address(ovs_host, started(ovs_host, a_vm), "10.88.0.1/24")
    address(ovs_host, started(ovs_host, b_vm), "10.88.0.2/24")
    sample(ovs_host)
    metrics: dict[str, Any] = {}
    deadline = time.monotonic() + 60  # vswitchd refreshes interface statistics every 5 s
    while time.monotonic() < deadline:
        assert pings(a, "10.88.0.2", "-c", "20", "-i", "0.01", "-s", "1400")
        sample(ovs_host)
        metrics = x.VIF_metrics.get_record(x.VIF.get_metrics(a_vif))
        if float(metrics["io_write_kbs"]) > 0 and float(metrics["io_read_kbs"]) > 0:
            break
    assert float(metrics["io_write_kbs"]) > 0 and float(metrics["io_read_kbs"]) > 0
    pif = ovs_host.pif()
    assert x.PIF.get_device(pif) == PIF_DEVICE
    # read in the switch's namespace, where the device is: a veth says 10000 Mbit/s, full
    # duplex, and has no PCI vendor or device
    pif_metrics = x.PIF_metrics.get_record(x.PIF.get_metrics(pif))
    assert (pif_metrics["speed"], pif_metrics["duplex"]) == ("10000", True), pif_metrics
    assert pif_metrics["vendor_id"] == "" and pif_metrics["carrier"] is True
    sh(["ip", "-n", ovs_host.phys_ns, "link", "set", "xnp0p", "down"])
    (this,) = x.host.get_all()
    x.PIF.scan(this)  # refreshes the given devices' metrics from the kernel
    assert x.PIF_metrics.get_carrier(x.PIF.get_metrics(pif)) is False
