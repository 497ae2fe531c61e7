"""Two xenstack hosts cabled to each other, set up over the wire with the XenAPI SDK.

Each host is a toolstack on a private Open vSwitch in a namespace of its own, given one
NIC (``--pif xnp0``); the two NICs are the ends of one veth pair, the cable between the
hosts.

- VXLAN: on each, ``PIF.reconfigure_ip`` puts the transport address on xenbr0, a network
  names the other host as its ``remote_ip``, ``tunnel.create(..., "vxlan")`` makes the
  tunnel port, and a guest (a veth stand-in) on that network pings the other host's guest:
  its frames cross the cable as VXLAN (captured there).
- LACP: a second cable (``PIF.introduce``d on both), ``Bond.create(..., "lacp")`` over
  both NICs on each host: the bond negotiates (``ovs-appctl lacp/show``), a pulled cable
  leaves it (``links_up`` 1) and the hosts still reach each other over the other.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from netwire import PIF_DEVICE, Host, need_ovs, start_host
from test_switch_wire import network, started, vm_on
from test_traffic_wire import address, pings

from xenstack.testing.network import Capture, sh, switch_for

pytestmark = [pytest.mark.ovs, pytest.mark.root, pytest.mark.slow]


@pytest.fixture
def two_hosts(tmp_path: Path) -> Iterator[tuple[Host, Host]]:
    need_ovs()
    with contextlib.ExitStack() as stack:
        kits = [
            stack.enter_context(switch_for("openvswitch", tmp_path / side, "n4"))
            for side in ("a", "b")
        ]
        spaces = kits[0].spaces
        assert spaces is not None
        spaces.veth(PIF_DEVICE, kits[0].netns, PIF_DEVICE, kits[1].netns)  # the cable
        hosts = [
            stack.enter_context(contextlib.contextmanager(start_host)(kit, tmp_path / side))
            for kit, side in zip(kits, ("a", "b"), strict=True)
        ]
        yield hosts[0], hosts[1]


def test_guests_on_two_hosts_meet_through_a_vxlan_tunnel(two_hosts: tuple[Host, Host]) -> None:
    guests = []
    tunnels = []
    for n, host in enumerate(two_hosts, start=1):
        x = host.x
        transport = host.pif()
        x.PIF.reconfigure_ip(transport, "Static", f"10.46.0.{n}", "255.255.255.0", "", "")
        net = network(x, "overlay", remote_ip=f"10.46.0.{3 - n}", key="46")
        tunnel = x.tunnel.create(transport, net, "vxlan")
        tunnels.append((x, tunnel))
        port = host.ports()[x.PIF.get_device(x.tunnel.get_access_PIF(tunnel))]
        assert (port.kind, port.options["remote_ip"]) == ("vxlan", f"10.46.0.{3 - n}")
        vm, _ = vm_on(x, net, f"guest{n}")
        guests.append(address(host, started(host, vm), f"10.99.1.{n}/24"))
    b = two_hosts[1]
    capture = Capture(b.kit.netns, PIF_DEVICE, "udp port 4789 and udp[28:2] = 0x0800", 2)
    try:
        assert pings(guests[0], "10.99.1.2")
        seen = capture.lines()
    finally:
        capture.close()
    assert "VXLAN" in seen and "vni 46" in seen and "10.99.1.1 > 10.99.1.2: ICMP echo" in seen
    x, tunnel = tunnels[0]
    x.tunnel.destroy(tunnel)  # the guests' only way to meet
    assert not pings(guests[0], "10.99.1.2")


def test_an_lacp_bond_between_two_hosts_negotiates_and_survives_a_cable(
    two_hosts: tuple[Host, Host],
) -> None:
    a, b = two_hosts
    assert a.kit.spaces is not None
    a.kit.spaces.veth("xnp1", a.kit.netns, "xnp1", b.kit.netns)  # the second cable
    bonds = []
    for n, host in enumerate(two_hosts, start=1):
        x = host.x
        (this,) = x.host.get_all()
        second = x.PIF.introduce(this, "", "xnp1", True)
        net = network(x, "bonded")
        props = {"lacp-time": "fast", "hashing_algorithm": "tcpudp_ports"}
        bond = x.Bond.create(net, [host.pif(), second], "", "lacp", props)
        master = x.Bond.get_master(bond)
        x.PIF.reconfigure_ip(master, "Static", f"10.47.0.{n}", "255.255.255.0", "", "")
        port = host.ports()[x.PIF.get_device(master)]
        assert (port.options["mode"], port.options["bond_mode"]) == ("lacp", "balance-tcp")
        assert port.options["lacp-time"] == "fast"
        bonds.append((host, bond, x.PIF.get_device(master)))
    host, bond, device = bonds[0]
    assert until(lambda: "status: active negotiated" in lacp_show(host, device)), lacp_show(
        host, device
    )
    assert until(lambda: lacp_show(host, device).count(": current attached") == 2)
    assert pings(a.kit.netns, "10.47.0.2")
    sh(["ip", "-n", b.kit.netns, "link", "set", "xnp1", "down"])  # a cable pulled
    assert until(lambda: lacp_show(host, device).count(": current attached") == 1)
    assert until(lambda: links_up(host, bond) == "1"), lacp_show(host, device)
    assert pings(a.kit.netns, "10.47.0.2")
    host.x.Bond.set_property(bond, "hashing_algorithm", "src_mac")
    assert host.ports()[device].options["bond_mode"] == "balance-slb"


def lacp_show(host: Host, device: str) -> str:
    ctl = str(host.switch.daemons.rundir / "ovs-vswitchd.ctl")
    return sh(["ovs-appctl", "-t", ctl, "lacp/show", device], check=False)


def links_up(host: Host, bond: str) -> str:
    assert host.pool.toolstack is not None
    host.run(host.pool.toolstack.network.sampler.sample)
    return str(host.x.Bond.get_links_up(bond))


def until(check: Callable[[], object], seconds: float = 90.0) -> bool:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True
