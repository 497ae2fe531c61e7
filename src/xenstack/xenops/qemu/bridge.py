"""The default switch hooks of the QEMU backend: taps on a Linux bridge.

When the composition root hands the backend no :class:`PortHooks` (the Open vSwitch ones
live in ``net/``), a VIF's tap is prepared the way XenServer's vif script prepares it (its
``add_to_bridge``: no ARP, no multicast, MAC ``fe:ff:ff:ff:ff:ff``, no IPv6, the network's
MTU) and enslaved to the Linux bridge named like the network's bridge, when there is one. All
of it happens in the network namespace the toolstack was told to use, if any.
"""

from __future__ import annotations

import asyncio
import os

from ..interface import NicSpec, XenopsError

HOST_SIDE_MAC = "fe:ff:ff:ff:ff:ff"


async def run(*argv: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise XenopsError(f"{' '.join(argv)}: {err.decode(errors='replace').strip()}")
    return out.decode()


async def run_batch(argv: list[str], script: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await proc.communicate(script.encode())
    if proc.returncode != 0:
        raise XenopsError(f"{' '.join(argv)}: {err.decode(errors='replace').strip()}")


class LinuxBridgeHooks:
    """Taps in ``netns`` (or the toolstack's own namespace), on Linux bridges."""

    def __init__(self, netns: str = "") -> None:
        self.netns = netns

    def _ip(self) -> list[str]:
        return ["ip", "-n", self.netns] if self.netns else ["ip"]

    async def vif_plug(self, vm_id: str, domid: int, nic: NicSpec, tap: str) -> None:
        bridged = bool(nic.bridge) and await self._is_bridge(nic.bridge)
        await self.vif_unplug(vm_id, domid, nic, tap)  # a tap left by a domain long gone
        lines = [
            f"tuntap add dev {tap} mode tap vnet_hdr",
            f"link set dev {tap} arp off multicast off address {HOST_SIDE_MAC}"
            f" mtu {nic.mtu or 1500}",
            *([f"link set dev {tap} master {nic.bridge}"] if bridged else []),
        ]
        await run_batch([*self._ip(), "-batch", "-"], "\n".join(lines) + "\n")
        sysctl = f"net.ipv6.conf.{tap.replace('.', '/')}.disable_ipv6=1"
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        await run(*prefix, "sysctl", "-qw", sysctl)
        await run(*self._ip(), "link", "set", "dev", tap, "up")

    async def vif_unplug(self, vm_id: str, domid: int, nic: NicSpec, tap: str) -> None:
        proc = await asyncio.create_subprocess_exec(
            *self._ip(), "link", "del", "dev", tap,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        await proc.wait()

    async def _is_bridge(self, name: str) -> bool:
        if not self.netns:
            return os.path.isdir(f"/sys/class/net/{name}/bridge")
        try:
            out = await run(*self._ip(), "-d", "-o", "link", "show", "dev", name)
        except XenopsError:
            return False
        return " bridge " in out
