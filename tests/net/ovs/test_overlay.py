"""VXLAN tunnels and LACP bonds between two hosts' switches, on the userspace datapath.

Each "host" is a private Open vSwitch (its own daemons) in a namespace of its own; veth
pairs between the two namespaces are the cables. A tunnel's underlay is xenbr0 (the PIF
and the address on the bridge's own port, as userspace tunnelling needs); a bond is one
port over two cables, in lacp mode (balance-tcp with LACP active, as XenServer makes it).
Guests are veth pairs into namespaces of their own (``VethGuests``).
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from systools import require_root, require_tool

from xenstack.net import BridgeSpec, VifSpec
from xenstack.net.ovs import OvsDaemons, OvsSwitch
from xenstack.testing.network import Capture, Namespaces, VethGuests, netns_exec, sh

pytestmark = [pytest.mark.ovs, pytest.mark.root, pytest.mark.slow]
PREFIX = "n4"


@pytest.fixture
def spaces() -> Iterator[Namespaces]:
    for tool in ("ovs-vsctl", "ovsdb-server", "ovs-vswitchd", "ovs-appctl", "tcpdump"):
        require_tool(tool)
    require_root()
    made = Namespaces(PREFIX)
    try:
        yield made
    finally:
        made.close()


@asynccontextmanager
async def two_hosts(spaces: Namespaces, state: Path) -> AsyncIterator[list[OvsSwitch]]:
    switches: list[OvsSwitch] = []
    try:
        for side in ("a", "b"):
            ns = spaces.add(side)
            netns_exec(ns, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
            guests = VethGuests(ns, f"{spaces.prefix}{side}")
            guests.ipv6_off_by_default = True
            sw = OvsSwitch(OvsDaemons(state / side, netns=ns, use_system=False), guests)
            switches.append(sw)
            await sw.start()
        yield switches
    finally:
        for sw in switches:
            await sw.stop()
            assert isinstance(sw.links, VethGuests)
            sw.links.close()


def cable(spaces: Namespaces, a: str, ns_a: str, b: str, ns_b: str) -> None:
    """A veth pair between two hosts' namespaces. Its ends become switch ports with no
    address, which the driver sets ``arp off`` (else the kernel beside the userspace datapath
    answers ARP for the bridge's address from the cable's own MAC, and the LACP test below
    loses its pings)."""
    spaces.veth(a, ns_a, b, ns_b)


def appctl(sw: OvsSwitch, *args: str) -> str:
    ctl = str(sw.daemons.rundir / "ovs-vswitchd.ctl")
    return sh(["ovs-appctl", "-t", ctl, *args], check=False)


def until(check: Callable[[], Any], seconds: float = 90.0) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        got = check()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(0.2)


def pings(ns: str, target: str) -> bool:
    for _ in range(5):  # the first may wait on ARP, MAC learning, the tunnel's neighbour
        done = subprocess.run(
            ["ip", "netns", "exec", ns, "ping", "-c", "1", "-W", "2", target],
            capture_output=True,
            timeout=60,
        )
        if done.returncode == 0:
            return True
    return False


async def underlay(switches: list[OvsSwitch], spaces: Namespaces, net: str) -> None:
    """xenbr0 on each host over one cable, with ``net``.1 and ``net``.2 on its own port."""
    a, b = switches
    cable(spaces, "n4ua", a.netns, "n4ub", b.netns)
    for i, (sw, pif) in enumerate(((a, "n4ua"), (b, "n4ub")), start=1):
        await sw.ensure_bridge(BridgeSpec("xenbr0", "pif", hwaddr=f"02:44:00:00:00:0{i}"))
        await sw.add_port("xenbr0", pif)
        sh(["ip", "-n", sw.netns, "addr", "add", f"{net}.{i}/24", "dev", "xenbr0"])
        sh(["ip", "-n", sw.netns, "link", "set", "xenbr0", "up"])


async def guest(sw: OvsSwitch, bridge: str, n: int, cidr: str) -> str:
    name = f"vif{n}.0"
    await sw.plug_vif(VifSpec(name, bridge, f"02:00:00:00:44:0{n}", 1400))
    assert isinstance(sw.links, VethGuests)
    ns = sw.links.guest_ns(name)
    netns_exec(ns, "ip", "addr", "add", cidr, "dev", "eth0")
    return ns


def test_traffic_crosses_a_vxlan_tunnel_between_two_hosts(
    spaces: Namespaces, tmp_path: Path
) -> None:
    async def body() -> None:
        async with two_hosts(spaces, tmp_path) as (a, b):
            await underlay([a, b], spaces, "10.44.0")
            assert pings(a.netns, "10.44.0.2")  # the underlay, and the tunnel's neighbour
            for sw, remote in ((a, "10.44.0.2"), (b, "10.44.0.1")):
                await sw.ensure_bridge(BridgeSpec("xapi1", "overlay"))
                options = {"remote_ip": remote, "key": "77"}
                await sw.add_port("xapi1", "n4vx0", kind="vxlan", options=options)
            port = (await a.ports())["n4vx0"]
            assert (port.kind, port.options["remote_ip"], port.options["key"]) == (
                "vxlan",
                "10.44.0.2",
                "77",
            )
            ga = await guest(a, "xapi1", 1, "10.99.0.1/24")
            await guest(b, "xapi1", 2, "10.99.0.2/24")
            # the frames on the cable are VXLAN (UDP 4789, VNI 77) carrying the guests' IPv4
            # (the inner EtherType at UDP offset 28: 8 of UDP, 8 of VXLAN, 12 of MACs)
            inner_ip = "udp port 4789 and udp[28:2] = 0x0800"
            capture = Capture(b.netns, "n4ub", inner_ip)
            try:
                assert pings(ga, "10.99.0.2")
                out = capture.lines()
            finally:
                capture.close()
            assert "VXLAN" in out and "vni 77" in out, out
            assert "10.99.0.1 > 10.99.0.2: ICMP echo request" in out, out
            # the guests' network is only the tunnel: without it they do not meet
            await a.remove_port("n4vx0")
            assert not pings(ga, "10.99.0.2")

    asyncio.run(body())


def lacp_members(sw: OvsSwitch, bond: str) -> dict[str, str]:
    """member -> its state words in ``ovs-appctl lacp/show`` ("current attached")."""
    found: dict[str, str] = {}
    for line in appctl(sw, "lacp/show", bond).splitlines():
        line = line.strip()
        if line.startswith("member:"):
            name, _, state = line[len("member:") :].strip().partition(":")
            found[name.strip()] = state.strip()
    return found


def test_an_lacp_bond_negotiates_and_survives_a_link_down(
    spaces: Namespaces, tmp_path: Path
) -> None:
    async def body() -> None:
        async with two_hosts(spaces, tmp_path) as (a, b):
            cable(spaces, "n4l0a", a.netns, "n4l0b", b.netns)
            cable(spaces, "n4l1a", a.netns, "n4l1b", b.netns)
            for i, (sw, side) in enumerate(((a, "a"), (b, "b")), start=1):
                await sw.ensure_bridge(BridgeSpec("xenbr0", "bond", hwaddr=f"02:45:00:00:00:0{i}"))
                members = (f"n4l0{side}", f"n4l1{side}")
                # LACPDUs every second rather than every 30 (XenServer's lacp-time=fast)
                options = {"mode": "lacp", "lacp-time": "fast"}
                await sw.add_port("xenbr0", "bond0", kind="bond", members=members, options=options)
                sh(["ip", "-n", sw.netns, "addr", "add", f"10.45.0.{i}/24", "dev", "xenbr0"])
                sh(["ip", "-n", sw.netns, "link", "set", "xenbr0", "up"])
            port = (await a.ports())["bond0"]
            assert port.kind == "bond" and port.options["mode"] == "lacp"
            assert port.options["bond_mode"] == "balance-tcp"  # no hashing_algorithm given
            assert port.options["lacp-time"] == "fast"
            link = sh(["ip", "-n", a.netns, "link", "show", "n4l0a"])
            assert "NOARP" in link, link
            negotiated = until(lambda: "active negotiated" in appctl(a, "lacp/show", "bond0"))
            assert negotiated, appctl(a, "lacp/show", "bond0")
            both = until(
                lambda: (
                    all("current" in s for s in lacp_members(a, "bond0").values())
                    and len(lacp_members(a, "bond0")) == 2
                )
            )
            assert both, appctl(a, "lacp/show", "bond0")
            assert pings(a.netns, "10.45.0.2")
            # a cable pulled: its member leaves the aggregate, the bond carries on
            sh(["ip", "-n", b.netns, "link", "set", "n4l1b", "down"])
            left = until(lambda: "current" not in lacp_members(a, "bond0").get("n4l1a", ""))
            assert left, appctl(a, "lacp/show", "bond0")
            assert "current" in lacp_members(a, "bond0")["n4l0a"]
            assert "may_enable: false" in appctl(a, "bond/show", "bond0")
            assert "active negotiated" in appctl(a, "lacp/show", "bond0")
            assert pings(a.netns, "10.45.0.2")
            for _ in range(300):  # vswitchd writes the link state back to OVSDB
                if (await a.ports())["bond0"].links_up == 1:
                    break
                await asyncio.sleep(0.2)
            assert (await a.ports())["bond0"].links_up == 1
            sh(["ip", "-n", b.netns, "link", "set", "n4l1b", "up"])
            back = until(lambda: "current" in lacp_members(a, "bond0").get("n4l1a", ""))
            assert back, appctl(a, "lacp/show", "bond0")

    asyncio.run(body())
