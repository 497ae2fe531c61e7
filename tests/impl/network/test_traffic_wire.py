"""Packets through Open vSwitch, set up over the wire (PyPI XenAPI SDK).

The guests are veth pairs whose guest side (``eth0``) sits in a namespace of its own, with the
VIF's MAC and the network's MTU (``xenstack.testing.network.VethGuests``): they stand in for
the test guest of the QEMU backend, and these tests move to real guests once it is merged.
Beyond the PIF (a veth the host was given with ``--pif``) is a "physical switch" namespace.
"""

from __future__ import annotations

import os
import subprocess
import time
from typing import Any

import pytest
from netwire import PHYS_DEVICE, Host
from test_switch_wire import network, started, vm_on

from xenstack.testing.network import netns_exec, sh

pytestmark = [pytest.mark.ovs, pytest.mark.root, pytest.mark.slow]


def guest(host: Host, name: str) -> str:
    assert host.kit.guests is not None
    return host.kit.guests.guest_ns(name)


def address(host: Host, name: str, cidr: str) -> str:
    ns = guest(host, name)
    netns_exec(ns, "ip", "addr", "flush", "dev", "eth0")
    netns_exec(ns, "ip", "addr", "add", cidr, "dev", "eth0")
    return ns


def pings(ns: str, target: str, *extra: str) -> bool:
    for _ in range(3):  # the first may wait on ARP and MAC learning
        done = subprocess.run(
            ["ip", "netns", "exec", ns, "ping", "-c", "1", "-W", "3", *extra, target],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if done.returncode == 0:
            return True
    return False


def lease(ns: str, tries: int = 4) -> str:
    """The address a DHCP server offers on ``ns``'s eth0 ("" when none answers)."""
    done = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            ns,
            "busybox",
            "udhcpc",
            "-i",
            "eth0",
            "-n",
            "-q",
            "-f",
            "-t",
            str(tries),
            "-T",
            "2",
            "-s",
            "/bin/true",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    for line in (done.stdout + done.stderr).splitlines():
        if "lease of" in line:
            return line.split("lease of", 1)[1].split()[0]
    return ""


def test_two_guests_on_an_internal_network_reach_each_other(ovs_host: Host) -> None:
    x = ovs_host.x
    net = network(x, "internal")
    a_vm, _ = vm_on(x, net, "a")
    b_vm, _ = vm_on(x, net, "b")
    a = address(ovs_host, started(ovs_host, a_vm), "10.50.0.1/24")
    address(ovs_host, started(ovs_host, b_vm), "10.50.0.2/24")
    assert pings(a, "10.50.0.2")
    x.VM.hard_shutdown(b_vm)
    assert not pings(a, "10.50.0.2")


def physical_switch_vlan(host: Host, tag: int, cidr: str) -> str:
    """A DHCP server's namespace on VLAN ``tag`` of the physical network beyond the PIF.

    This kernel has no 802.1Q module, so the physical switch is a bridge of its own in the
    same Open vSwitch (made with ovs-vsctl, unknown to xenstack): the PIF's far end is its
    trunk port and the server's veth an access port of ``tag``."""
    sw, spaces = host.kit.netns, host.kit.spaces
    assert spaces is not None
    vsctl = ["ovs-vsctl", f"--db={host.switch.daemons.remote}"]
    if "xnphys" not in sh([*vsctl, "list-br"]).split():
        sh(["ip", "-n", host.phys_ns, "link", "set", PHYS_DEVICE, "netns", sw])
        sh(["ip", "-n", sw, "link", "set", PHYS_DEVICE, "up"])
        sh(
            [
                *vsctl,
                "add-br",
                "xnphys",
                "--",
                "set",
                "bridge",
                "xnphys",
                "datapath_type=netdev",
                "--",
                "add-port",
                "xnphys",
                PHYS_DEVICE,
            ]
        )
    ns = spaces.add(f"dhcp{tag}")
    spaces.veth(f"xnd{tag}", sw, "eth0", ns)
    sh([*vsctl, "add-port", "xnphys", f"xnd{tag}", f"tag={tag}"])
    netns_exec(ns, "ip", "addr", "add", cidr, "dev", "eth0")
    return ns


def test_vlan_guest_gets_its_vlans_lease_and_no_other(ovs_host: Host) -> None:
    x = ovs_host.x
    dhcp = physical_switch_vlan(ovs_host, 100, "10.100.0.1/24")
    server = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            dhcp,
            "dnsmasq",
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--port=0",
            "--interface=eth0",
            "--bind-interfaces",
            "--dhcp-range=10.100.0.100,10.100.0.199,255.255.255.0,1h",
            "--dhcp-authoritative",
            "--no-ping",
            f"--dhcp-leasefile={ovs_host.pool.state_dir}/xn-leases",
            "--pid-file=",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        v100, v200 = network(x, "vlan100"), network(x, "vlan200")
        x.VLAN.create(ovs_host.pif(), "100", v100)
        x.VLAN.create(ovs_host.pif(), "200", v200)
        in_100 = guest(ovs_host, started(ovs_host, vm_on(x, v100, "on100")[0]))
        in_200 = guest(ovs_host, started(ovs_host, vm_on(x, v200, "on200")[0]))
        assert lease(in_100).startswith("10.100.0.")
        assert lease(in_200, tries=2) == ""
    finally:
        server.terminate()
        server.wait(30)


def test_locked_vif_cannot_spoof_another_ip(ovs_host: Host) -> None:
    x = ovs_host.x
    net = network(x, "locked")
    a_vm, a_vif = vm_on(x, net, "a")
    b_vm, _ = vm_on(x, net, "b")
    x.VIF.set_ipv4_allowed(a_vif, ["10.60.0.5"])
    x.VIF.set_locking_mode(a_vif, "locked")
    a = address(ovs_host, started(ovs_host, a_vm), "10.60.0.5/24")
    address(ovs_host, started(ovs_host, b_vm), "10.60.0.7/24")
    assert pings(a, "10.60.0.7")
    address(ovs_host, f"vif{x.VM.get_domid(a_vm)}.0", "10.60.0.6/24")  # spoofing
    netns_exec(a, "ip", "neigh", "flush", "all")
    assert not pings(a, "10.60.0.7")


def test_jumbo_frames_pass_unfragmented_only_on_a_9000_network(ovs_host: Host) -> None:
    x = ovs_host.x
    for mtu, passes in ((9000, True), (1500, False)):
        net = network(x, f"mtu{mtu}", mtu=mtu)
        a_vm, _ = vm_on(x, net, f"a{mtu}")
        b_vm, _ = vm_on(x, net, f"b{mtu}")
        a = address(ovs_host, started(ovs_host, a_vm), f"10.7{mtu // 1000}.0.1/24")
        address(ovs_host, started(ovs_host, b_vm), f"10.7{mtu // 1000}.0.2/24")
        assert pings(a, f"10.7{mtu // 1000}.0.2")
        assert pings(a, f"10.7{mtu // 1000}.0.2", "-M", "do", "-s", "8972") is passes


def test_ovs_tools_see_what_xenserver_shows(ovs_host: Host) -> None:
    x = ovs_host.x
    remote = ovs_host.switch.daemons.remote
    monitor = subprocess.Popen(
        ["ovsdb-client", "monitor", remote, "Open_vSwitch", "Interface", "name,ofport"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        net = network(x, "vlan300")
        x.VLAN.create(ovs_host.pif(), "300", net)
        name = started(ovs_host, vm_on(x, net)[0])
        seen = _read_until(monitor, name)
        assert any(name in line and line.split()[-1].isdigit() for line in seen)
    finally:
        monitor.terminate()
        monitor.wait(30)
    show = sh(["ovs-vsctl", f"--db={remote}", "show"])
    fake = x.network.get_bridge(net)
    assert "Bridge xenbr0" in show and f"Port {fake}" in show and "tag: 300" in show
    assert f'Port "{name}"' in show or f"Port {name}" in show
    ofshow = subprocess.run(
        ["ovs-ofctl", "show", "xenbr0"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "OVS_RUNDIR": str(ovs_host.switch.daemons.rundir)},
    ).stdout
    assert f"({name})" in ofshow and "(xnp0)" in ofshow and "(xenbr0)" in ofshow


def _read_until(proc: Any, text: str, timeout: float = 60.0) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if text in line and line.split()[-1].isdigit():
            return lines
    return lines
