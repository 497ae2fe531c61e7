"""The switch interface on both drivers: bridges, fake VLAN bridges, VIF ports, locking
rules, QoS, MTU, bonds and tunnels. What has no packets behaves the same on the simulator
and on Open vSwitch; on OVS, ``ovs-vsctl`` reads what the driver wrote as on XenServer."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Awaitable, Callable
from typing import Any

from xenstack.net import BridgeSpec, Locking, VifSpec
from xenstack.net import flows as flowlib
from xenstack.testing.network import SwitchKit

MAC = "02:16:3e:00:00:01"
IDS = (("attached-mac", MAC), ("iface-id", "vif-1"), ("xs-vif-uuid", "vif-1"))


def on(kit: SwitchKit, body: Callable[[Any], Awaitable[None]]) -> None:
    async def main() -> None:
        await kit.switch.start()
        try:
            await body(kit.switch)
        finally:
            await kit.switch.stop()

    asyncio.run(main())


def vsctl(kit: SwitchKit, *args: str) -> str:
    remote = kit.switch.daemons.remote
    done = subprocess.run(
        ["ovs-vsctl", f"--db={remote}", *args], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


async def two_bridges(sw: Any) -> None:
    await sw.ensure_bridge(BridgeSpec("xenbr0", "net-0", mtu=9000, hwaddr="02:58:00:00:00:01"))
    await sw.ensure_bridge(BridgeSpec("xapi1", "net-100", parent="xenbr0", tag=100, mtu=9000))


def test_bridges_and_fake_vlan_bridges(kit: SwitchKit) -> None:
    async def body(sw: Any) -> None:
        await two_bridges(sw)
        bridges = await sw.bridges()
        assert bridges["xenbr0"].external_ids["xs-network-uuids"] == "net-0"
        assert bridges["xenbr0"].hwaddr == "02:58:00:00:00:01"
        assert bridges["xenbr0"].mtu == 9000
        assert (bridges["xapi1"].parent, bridges["xapi1"].tag) == ("xenbr0", 100)
        assert bridges["xapi1"].external_ids["xs-network-uuids"] == "net-100"
        await sw.ensure_bridge(BridgeSpec("xenbr0", "net-0", mtu=1500))  # brought to spec
        assert (await sw.bridges())["xenbr0"].mtu == 1500
        await sw.destroy_bridge("xapi1")
        assert set(await sw.bridges()) == {"xenbr0"}

    on(kit, body)


def test_vif_port_on_a_fake_bridge(kit: SwitchKit) -> None:
    async def body(sw: Any) -> None:
        await two_bridges(sw)
        spec = VifSpec("vif3.0", "xapi1", MAC, 9000, IDS, Locking(), qos_kbps=1000)
        port = await sw.plug_vif(spec)
        assert port.ofport > 0
        seen = (await sw.ports())["vif3.0"]
        assert (seen.bridge, seen.parent, seen.tag) == ("xapi1", "xenbr0", 100)
        assert seen.external_ids == dict(IDS)
        assert (seen.mtu, seen.policing_kbps) == (9000, 1000)
        if kit.spaces is not None:
            assert vsctl(kit, "port-to-br", "vif3.0") == "xapi1"
            assert vsctl(kit, "br-to-parent", "xapi1") == "xenbr0"
            assert vsctl(kit, "br-to-vlan", "xapi1") == "100"
            assert vsctl(kit, "get", "interface", "vif3.0", "external_ids:attached-mac") == (
                f'"{MAC}"'
            )
            link = subprocess.run(
                ["ip", "-n", kit.netns, "-d", "link", "show", "vif3.0"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            assert "NOARP" in link and "fe:ff:ff:ff:ff:ff" in link  # the vif-script treatment
        await sw.unplug_vif("vif3.0")
        assert "vif3.0" not in await sw.ports()

    on(kit, body)


def test_locked_vif_rules_as_setup_vif_rules(kit: SwitchKit) -> None:
    async def body(sw: Any) -> None:
        await two_bridges(sw)
        locking = Locking("locked", MAC, ("10.100.0.5",))
        port = await sw.plug_vif(VifSpec("vif4.0", "xapi1", MAC, 1500, IDS, locking))
        flows = await sw.flows("xapi1")
        assert sum("priority=4000" in f and "in_port=" in f for f in flows) == 1
        dhcp = await sw.trace("xenbr0", flowlib.dhcp_discover(port.ofport, MAC))
        own = await sw.trace(
            "xenbr0", flowlib.arp_request(port.ofport, MAC, "10.100.0.5", "10.100.0.1")
        )
        spoof = await sw.trace(
            "xenbr0", flowlib.arp_request(port.ofport, MAC, "10.100.0.9", "10.100.0.1")
        )
        assert (dhcp.verdict, own.verdict, spoof.verdict) == ("forward", "forward", "drop")
        assert "4000" in spoof.flow
        await sw.set_locking("vif4.0", "xapi1", Locking("unlocked", MAC))
        again = await sw.trace(
            "xenbr0", flowlib.arp_request(port.ofport, MAC, "10.100.0.9", "10.100.0.1")
        )
        assert again.verdict == "forward"
        await sw.set_locking("vif4.0", "xapi1", Locking("disabled", MAC))
        assert "vif4.0" not in await sw.ports()  # as XenServer: off every bridge

    on(kit, body)


def test_disabled_vif_is_on_no_bridge(kit: SwitchKit) -> None:
    async def body(sw: Any) -> None:
        await two_bridges(sw)
        await sw.plug_vif(VifSpec("vif5.0", "xenbr0", MAC, 1500, IDS, Locking("disabled", MAC)))
        assert "vif5.0" not in await sw.ports()

    on(kit, body)


def test_bond_and_tunnel_ports(kit: SwitchKit) -> None:
    async def body(sw: Any) -> None:
        await sw.ensure_bridge(BridgeSpec("xenbr0", "net-0"))
        if kit.spaces is not None:
            for dev in ("xnb0", "xnb1"):
                subprocess.run(
                    [
                        "ip",
                        "-n",
                        kit.netns,
                        "link",
                        "add",
                        dev,
                        "type",
                        "veth",
                        "peer",
                        "name",
                        f"{dev}p",
                    ],
                    check=True,
                )
        await sw.add_port(
            "xenbr0",
            "bond0",
            kind="bond",
            members=("xnb0", "xnb1"),
            options={"mode": "active-backup"},
        )
        bond = (await sw.ports())["bond0"]
        assert (bond.kind, bond.members, bond.options["mode"]) == (
            "bond",
            ("xnb0", "xnb1"),
            "active-backup",
        )
        await sw.set_port("bond0", options={"mode": "balance-slb"})
        assert (await sw.ports())["bond0"].options["mode"] == "balance-slb"
        await sw.add_port("xenbr0", "tunnel0", kind="gre", options={"remote_ip": "192.0.2.7"})
        tunnel = (await sw.ports())["tunnel0"]
        assert (tunnel.kind, tunnel.options["remote_ip"]) == ("gre", "192.0.2.7")
        if kit.spaces is not None:
            assert vsctl(kit, "get", "port", "bond0", "bond_mode") == "balance-slb"
        await sw.remove_port("bond0")
        assert "bond0" not in await sw.ports()

    on(kit, body)


def test_mtu_and_qos_change_on_a_live_port(kit: SwitchKit) -> None:
    async def body(sw: Any) -> None:
        await two_bridges(sw)
        await sw.plug_vif(VifSpec("vif6.0", "xenbr0", MAC, 1500, IDS))
        await sw.set_qos("vif6.0", 2048)
        await sw.set_mtu("vif6.0", 9000)
        port = (await sw.ports())["vif6.0"]
        assert (port.policing_kbps, port.mtu) == (2048, 9000)
        assert port.tag == -1 and port.bridge == "xenbr0"

    on(kit, body)
