"""A private network for real test guests: a netns with a Linux bridge and a DHCP server.

``guest_network(prefix)`` makes the namespace ``<prefix><n>`` holding the bridge ``xenbr0``
(the bridge of the pool's first network, so the QEMU backend's default hooks put every VIF
tap on it), IP-less as XenServer's switch is, and a second namespace ``<prefix><n>d``
holding dnsmasq on a veth into the bridge (with TX checksum offload off on the DHCP side, or
guests never take the offer). QEMU runs in the first (``ToolstackConfig.netns`` /
``serve --netns``). Everything is removed again, by name, at the end.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class GuestNetwork:
    netns: str  # the switch's namespace: QEMU and its taps run here
    dhcp_netns: str
    bridge: str
    gateway: str  # the DHCP server's address
    leases: str  # dnsmasq's lease file


def _sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=60)


@contextmanager
def guest_network(prefix: str = "xq", bridge: str = "xenbr0") -> Iterator[GuestNetwork]:
    tag = secrets.token_hex(3)
    ns, dns = f"{prefix}{tag}", f"{prefix}{tag}d"
    sw, dh = f"{prefix}{tag}s", f"{prefix}{tag}h"
    made: list[str] = []
    pidfile = ""
    with tempfile.TemporaryDirectory(prefix=f"{prefix}-net-") as tmp:
        try:
            for name in (ns, dns):
                _sh("ip", "netns", "add", name)
                made.append(name)
                _sh("ip", "-n", name, "link", "set", "lo", "up")
            _sh("ip", "-n", ns, "link", "add", bridge, "type", "bridge", "stp_state", "0",
                "forward_delay", "0")  # fmt: skip
            _sh("ip", "-n", ns, "link", "set", bridge, "up")
            _sh(
                "ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{bridge}.disable_ipv6=1"
            )
            _sh("ip", "-n", ns, "link", "add", sw, "type", "veth", "peer", "name", dh, "netns", dns)
            _sh("ip", "-n", ns, "link", "set", sw, "master", bridge, "up")
            _sh("ip", "-n", dns, "addr", "add", "10.77.0.1/24", "dev", dh)
            _sh("ip", "-n", dns, "link", "set", dh, "up")
            _sh("ip", "netns", "exec", dns, "ethtool", "-K", dh, "tx", "off")
            leases, pidfile = os.path.join(tmp, "leases"), os.path.join(tmp, "dnsmasq.pid")
            _sh("ip", "netns", "exec", dns, "dnsmasq", "--conf-file=/dev/null", "--port=0",
                f"--interface={dh}", "--bind-interfaces",
                "--dhcp-range=10.77.0.100,10.77.0.250,255.255.255.0,1h",
                "--dhcp-authoritative", "--no-ping", f"--dhcp-leasefile={leases}",
                f"--pid-file={pidfile}")  # fmt: skip
            yield GuestNetwork(ns, dns, bridge, "10.77.0.1", leases)
        finally:
            if pidfile and os.path.exists(pidfile):
                with open(pidfile) as f:
                    pid = int(f.read().strip() or "0")
                if pid > 0:
                    subprocess.run(["kill", str(pid)], check=False)
            for name in reversed(made):
                subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)
