"""The kernel side of ports: guest taps with XenServer's treatment, PIF devices, counters.

:class:`TapLinks` makes the host side of a guest interface a persistent tap (QEMU opens it
with ``script=no``): ``arp off``, ``multicast off``, MAC ``fe:ff:ff:ff:ff:ff``, no IPv6, the
network's MTU, up, as XenServer's vif script prepares a vif. :class:`Links` is the interface,
so that tests can stand a veth pair into a namespace of their own in for a guest's NIC.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import cast

from . import kernel
from .command import run
from .model import VIF_MAC, SwitchError


class Links:
    """The host sides of guest interfaces in ``netns``: persistent taps, made and prepared
    by kernel calls on a thread in the namespace (:mod:`.kernel`)."""

    def __init__(self, netns: str = "", ipv6_off_by_default: bool = False) -> None:
        self.netns = netns
        # a private namespace made with default disable_ipv6=1 needs no per-link setting
        self.ipv6_off_by_default = ipv6_off_by_default
        self.worker = kernel.NetnsWorker(netns)

    def ip(self, *args: str) -> list[str]:
        return ["ip", *(("-n", self.netns) if self.netns else ()), *args]

    async def _kernel(self, fn: Callable[..., object], *args: object) -> None:
        try:
            await self.worker.call(fn, *args)
        except OSError as exc:
            raise SwitchError(f"{getattr(fn, '__name__', fn)}{args}: {exc}") from None

    async def create(self, name: str, mac: str, mtu: int) -> None:
        """Make the link ``name`` exist (a tap here)."""
        await self._kernel(kernel.tap_create, name)

    async def make_vif(self, name: str, mac: str, mtu: int) -> None:
        """The host side of a guest interface, prepared as XenServer's vif script does."""
        await self.remove(name)
        await self.create(name, mac, mtu)
        await self._kernel(kernel.prepare_vif, name, VIF_MAC, mtu, not self.ipv6_off_by_default)

    async def remove(self, name: str) -> None:
        await self._kernel(kernel.tap_delete, name)

    async def quiet(self, name: str) -> None:
        """``arp off`` on a device that becomes a port of a userspace-datapath bridge (a
        PIF, a bond member): that datapath reads the device beside the kernel's stack, not
        in its place, so the kernel would otherwise answer ARP there for the addresses of the
        bridge's own port, from the device's MAC."""
        await self._kernel(kernel.set_noarp, name)

    async def set_mtu(self, name: str, mtu: int) -> None:
        await self._kernel(kernel.set_mtu, name, mtu)

    def shutdown(self) -> None:
        """Stop the namespace's worker thread (a later call starts another)."""
        self.worker.close()

    async def show(self) -> dict[str, dict[str, object]]:
        """Every link in the namespace: ``ip -j -s link`` by name."""
        out = await run(self.ip("-j", "-s", "link", "show"), check=False)
        try:
            return {str(link["ifname"]): link for link in json.loads(out or "[]")}
        except ValueError:
            return {}


_SYSFS = (
    ("address", "MAC"),
    ("carrier", "carrier"),
    ("speed", "speed"),
    ("mtu", "MTU"),
    ("duplex", "duplex"),
    ("device/vendor", "vendor_id"),
    ("device/device", "device_id"),
)


def kernel_nic(device: str, netns: str = "") -> dict[str, str]:
    """What the kernel says of a network device (sysfs): MAC, carrier, speed, MTU, duplex,
    and the vendor and device ids of a PCI NIC. In a namespace, its own sysfs is read
    (``ip netns exec`` mounts it) in one process. Empty when there is no such device."""
    if netns:
        return _kernel_nic_in(device, netns)
    base = Path("/sys/class/net") / device
    if not base.exists():
        return {}
    info: dict[str, str] = {}
    for key, name in _SYSFS:
        try:
            info[name] = (base / key).read_text().strip()
        except OSError:
            continue
    return info


def _kernel_nic_in(device: str, netns: str) -> dict[str, str]:
    if "/" in device or device.startswith("."):
        return {}
    base = f"/sys/class/net/{device}"
    argv = ["ip", "netns", "exec", netns, "grep", "-sH", ".", *(f"{base}/{k}" for k, _ in _SYSFS)]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    names = {f"{base}/{k}": name for k, name in _SYSFS}
    info: dict[str, str] = {}
    for line in out.splitlines():
        path, _, value = line.partition(":")
        if path in names:  # unreadable files (no speed while the link is down) are absent
            info[names[path]] = value.strip()
    return info


def read_links(netns: str = "") -> dict[str, dict[str, object]]:
    """Every link of ``netns`` as ``ip -j -s link`` gives it, read synchronously."""
    argv = ["ip", *(("-n", netns) if netns else ()), "-j", "-s", "link", "show"]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False).stdout
        return {str(link["ifname"]): link for link in json.loads(out or "[]")}
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return {}


def nic_facts(device: str, netns: str = "") -> dict[str, str]:
    """A device's MAC, carrier, MTU (``ip link``), and speed, duplex and PCI ids (sysfs, in
    its namespace); empty when the device does not exist."""
    link = read_links(netns).get(device)
    if link is None:
        return {}
    facts = {
        "MAC": str(link.get("address", "")),
        "carrier": "1" if "LOWER_UP" in cast(list[str], link.get("flags", [])) else "0",
        "MTU": str(link.get("mtu", 1500)),
    }
    return {**facts, **{k: v for k, v in kernel_nic(device, netns).items() if k not in facts}}
