"""802.1Q on the wire beyond the PIF, with no 802.1Q module in this kernel.

Open vSwitch's userspace datapath tags and untags frames itself, so the veth standing for
the NIC carries real 802.1Q frames: a capture (``tcpdump -e``) on the far end, in the
"physical switch" namespace, sees a VLAN network's frames tagged with its VLAN, the
untagged network's without a tag; and a tagged frame put on the wire there reaches only the
guest of that VLAN, whose answer comes back tagged. (The kernel here can neither make a
VLAN device nor decode the tag itself: the capture reads it from the packet socket's
metadata, as tcpdump does on any Linux host.)
"""

from __future__ import annotations

import pytest
from netwire import PHYS_DEVICE, Host
from test_switch_wire import network, started, vm_on
from test_traffic_wire import address, pings

from xenstack.testing.network import Capture, arp_request, netns_exec, send_frame

pytestmark = [pytest.mark.ovs, pytest.mark.root, pytest.mark.slow]
PEER_MAC = "02:99:00:00:00:01"


def rx_packets(ns: str) -> int:
    return int(netns_exec(ns, "cat", "/sys/class/net/eth0/statistics/rx_packets").strip())


def test_vlan_frames_cross_the_pif_tagged_and_only_to_their_vlan(ovs_host: Host) -> None:
    x, phys = ovs_host.x, ovs_host.phys_ns
    pif = ovs_host.pif()
    v100, v200 = network(x, "v100"), network(x, "v200")
    x.VLAN.create(pif, "100", v100)
    x.VLAN.create(pif, "200", v200)
    guests = {}
    for label, net in (("a", v100), ("b", v200), ("c", x.PIF.get_network(pif))):
        vm, vif = vm_on(x, net, label)
        # the same address on both VLANs: only the tag tells them apart
        ip = "10.100.0.7" if label == "c" else "10.100.0.5"
        guests[label] = (address(ovs_host, started(ovs_host, vm), f"{ip}/24"), x.VIF.get_MAC(vif))
    # outwards: each guest's ARP leaves the PIF with its network's tag, or with none
    captures = {
        "a": Capture(phys, PHYS_DEVICE, "vlan 100 and arp", 1),
        "b": Capture(phys, PHYS_DEVICE, "vlan 200 and arp", 1),
        "c": Capture(phys, PHYS_DEVICE, "arp and not vlan", 1),
    }
    try:
        for label in captures:
            assert not pings(guests[label][0], "10.100.0.99")  # nobody: ARP goes out
        seen = {label: capture.lines() for label, capture in captures.items()}
    finally:
        for capture in captures.values():
            capture.close()
    for label, tag in (("a", 100), ("b", 200)):
        line = seen[label]
        assert f"{guests[label][1]} > ff:ff:ff:ff:ff:ff, ethertype 802.1Q (0x8100)" in line, line
        assert f"vlan {tag}, p 0, ethertype ARP" in line and "who-has 10.100.0.99" in line, line
    assert guests["c"][1] in seen["c"] and "802.1Q" not in seen["c"], seen["c"]
    # inwards: a request tagged 100 is answered by VLAN 100's guest only, tagged 100
    for label, tag in (("a", 100), ("b", 200)):
        other = guests["b" if label == "a" else "a"][0]
        before = rx_packets(other)
        reply = Capture(phys, PHYS_DEVICE, f"vlan {tag} and arp", 1, inbound=True)
        try:
            send_frame(phys, PHYS_DEVICE, arp_request(PEER_MAC, "10.100.0.99", "10.100.0.5", tag))
            line = reply.lines()
        finally:
            reply.close()
        assert f"{guests[label][1]} > {PEER_MAC}, ethertype 802.1Q (0x8100)" in line, line
        assert f"vlan {tag}," in line and "Reply 10.100.0.5 is-at" in line, line
        assert rx_packets(other) == before  # the other VLAN's guest never saw the request
