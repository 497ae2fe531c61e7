"""The test kit's networking: namespaces and veth pairs, stand-in guests, a ported simulator.

Until real guests run (the QEMU backend), a guest's NIC is stood in for by a veth pair: the
host side is ``vif<domid>.<device>`` in the switch's namespace, prepared as a tap would be,
and the guest side is ``eth0`` in a namespace of its own (:class:`VethGuests`). A
:class:`PortedSimulator` is the simulator with the port hooks a real backend calls: its
domains' VIFs become ports when they start and go when they stop. Every name made here
starts with the caller's prefix, and everything is removed by name at the end.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ..net.command import run
from ..net.links import Links
from ..xenops.interface import DomainInfo, DomainSpec, NicSpec
from ..xenops.simulator import SimulatorBackend


def sh(argv: Sequence[str], check: bool = True, timeout: float = 60) -> str:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")
    return done.stdout


def netns_exec(ns: str, *argv: str, check: bool = True, timeout: float = 60) -> str:
    return sh(["ip", "netns", "exec", ns, *argv], check=check, timeout=timeout)


class Namespaces:
    """Namespaces made for one test (all removed by :meth:`close`), named ``prefix``-based."""

    def __init__(self, prefix: str) -> None:
        self.prefix = f"{prefix}{secrets.token_hex(2)}"
        self.made: list[str] = []

    def name(self, role: str) -> str:
        return f"{self.prefix}-{role}"

    def add(self, role: str) -> str:
        ns = self.name(role)
        sh(["ip", "netns", "add", ns])
        self.made.append(ns)
        sh(["ip", "-n", ns, "link", "set", "lo", "up"])
        return ns

    def veth(self, a: str, ns_a: str, b: str, ns_b: str, mtu: int = 1500) -> None:
        """A veth pair ``a`` (in ``ns_a``) -- ``b`` (in ``ns_b``), both up, TX offload off."""
        sh(
            [
                "ip",
                "link",
                "add",
                a,
                "netns",
                ns_a,
                "mtu",
                str(mtu),
                "type",
                "veth",
                "peer",
                "name",
                b,
                "netns",
                ns_b,
                "mtu",
                str(mtu),
            ]
        )
        for ns, dev in ((ns_a, a), (ns_b, b)):
            sh(["ip", "-n", ns, "link", "set", dev, "up"])
            netns_exec(ns, "ethtool", "-K", dev, "tx", "off", check=False)

    def close(self) -> None:
        for ns in reversed(self.made):
            sh(["ip", "netns", "del", ns], check=False)
        self.made.clear()


@contextmanager
def namespaces(prefix: str) -> Iterator[Namespaces]:
    spaces = Namespaces(prefix)
    try:
        yield spaces
    finally:
        spaces.close()


class VethGuests(Links):
    """Guest interfaces as veth pairs: the guest side ``eth0`` sits in the namespace
    :meth:`guest_ns` names, with the VIF's MAC, so that tests can send from "the guest"."""

    def __init__(self, netns: str, prefix: str) -> None:
        super().__init__(netns)
        self.prefix = prefix
        self.guests: dict[str, str] = {}

    def guest_ns(self, name: str) -> str:
        """The namespace of the guest behind the host side ``name`` (``vif3.0``)."""
        return f"{self.prefix}-g{name[3:].replace('.', 'x')}"

    async def create(self, name: str, mac: str, mtu: int) -> None:
        ns = self.guest_ns(name)
        await run(["ip", "netns", "add", ns], check=False)
        self.guests[name] = ns
        await run(["ip", "-n", ns, "link", "set", "lo", "up"])
        await run(self.ip("link", "add", name, "type", "veth", "peer", "name", "eth0", "netns", ns))
        await run(["ip", "-n", ns, "link", "set", "eth0", "address", mac, "mtu", str(mtu), "up"])
        await run(["ip", "netns", "exec", ns, "ethtool", "-K", "eth0", "tx", "off"], check=False)

    async def remove(self, name: str) -> None:
        await run(self.ip("link", "del", "dev", name), check=False)
        ns = self.guests.pop(name, None)
        if ns is not None:
            await run(["ip", "netns", "del", ns], check=False)

    def close(self) -> None:
        for name, ns in list(self.guests.items()):
            sh(self.ip("link", "del", name), check=False)
            sh(["ip", "netns", "del", ns], check=False)
        self.guests.clear()
        self.shutdown()


class Capture:
    """``tcpdump`` of ``count`` frames matching ``expression`` on ``device`` in ``ns``, its
    socket open when the constructor returns; :meth:`lines` waits for them (``-e``: the
    link-level header, VLAN tags included, is printed)."""

    def __init__(
        self, ns: str, device: str, expression: str, count: int = 2, inbound: bool = False
    ) -> None:
        argv = ["tcpdump", "-l", "-nn", "-e", "-c", str(count), "-i", device]
        argv += [*(("-Q", "in") if inbound else ()), expression]
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stderr is not None
        for line in self.proc.stderr:  # "listening on DEV": the socket is open
            if "listening on" in line:
                return
        self.close()
        raise RuntimeError(f"tcpdump on {device} in {ns} did not start")

    def lines(self, timeout: float = 60.0) -> str:
        """What it printed once ``count`` frames came (or the timeout passed)."""
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.close()
            out, _ = self.proc.communicate()
        return out

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


_SEND = (
    "import socket,sys\ns=socket.socket(socket.AF_PACKET,socket.SOCK_RAW)\n"
    "s.bind((sys.argv[1],0))\ns.send(bytes.fromhex(sys.argv[2]))"
)


def send_frame(ns: str, device: str, frame: bytes) -> None:
    """Put one Ethernet frame, as it is (a VLAN tag included), on ``device`` in ``ns``."""
    netns_exec(ns, sys.executable, "-c", _SEND, device, frame.hex())


def arp_request(src_mac: str, src_ip: str, target_ip: str, vlan: int = -1) -> bytes:
    """A broadcast ARP request, 802.1Q-tagged with ``vlan`` when it is not -1."""
    mac = bytes.fromhex(src_mac.replace(":", ""))
    tag = struct.pack("!HH", 0x8100, vlan) if vlan >= 0 else b""
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + mac + socket.inet_aton(src_ip)
    arp += b"\0" * 6 + socket.inet_aton(target_ip)
    frame = b"\xff" * 6 + mac + tag + struct.pack("!H", 0x0806) + arp
    return frame.ljust(60 + len(tag), b"\0")


@dataclass(frozen=True, slots=True)
class Nic:
    """The part of a backend's NicSpec the toolstack's port hooks read."""

    device: str
    vif_id: str = ""


class PortedSimulator(SimulatorBackend):
    """The simulator, calling the toolstack's port hooks as a real backend does: before a
    domain starts (each VIF's port) and after it stops, and on VIF hotplug."""

    port_hooks: Any = None

    async def _plug_all(self, info: DomainInfo, spec: DomainSpec) -> None:
        if self.port_hooks is None:
            return
        for device in spec.vifs:
            await self.port_hooks.vif_plug(
                spec.vm_id, info.domid, Nic(device), f"vif{info.domid}.{device}"
            )

    async def _unplug_all(self, vm_id: str) -> None:
        dom = self.vm_info(vm_id)
        if self.port_hooks is None or dom is None:
            return
        for device in dom.vifs:
            await self.port_hooks.vif_unplug(
                vm_id, dom.domid, Nic(device), f"vif{dom.domid}.{device}"
            )

    async def vm_start(self, host_id: str, spec: DomainSpec, paused: bool) -> DomainInfo:
        info = await super().vm_start(host_id, spec, paused)
        try:
            await self._plug_all(info, spec)
        except BaseException:
            await super().vm_shutdown(spec.vm_id, False)
            raise
        return info

    async def vm_shutdown(self, vm_id: str, clean: bool) -> None:
        await self._unplug_all(vm_id)
        await super().vm_shutdown(vm_id, clean)

    async def vm_reboot(self, vm_id: str, clean: bool, spec: DomainSpec) -> DomainInfo:
        await self._unplug_all(vm_id)
        info = await super().vm_reboot(vm_id, clean, spec)
        await self._plug_all(info, spec)
        return info

    async def vif_plug(self, vm_id: str, device: str, nic: NicSpec | None = None) -> None:
        await super().vif_plug(vm_id, device, nic)
        dom = self.vm_info(vm_id)
        if self.port_hooks is not None and dom is not None:
            await self.port_hooks.vif_plug(
                vm_id, dom.domid, Nic(device), f"vif{dom.domid}.{device}"
            )

    async def vif_unplug(self, vm_id: str, device: str) -> None:
        dom = self.vm_info(vm_id)
        if self.port_hooks is not None and dom is not None:
            await self.port_hooks.vif_unplug(
                vm_id, dom.domid, Nic(device), f"vif{dom.domid}.{device}"
            )
        await super().vif_unplug(vm_id, device)


@dataclass
class SwitchKit:
    """A switch for one test: simulated, or Open vSwitch in a namespace of its own with
    private daemons and veth stand-in guests (``guests``)."""

    switch: Any
    spaces: Namespaces | None = None
    guests: VethGuests | None = None

    @property
    def netns(self) -> str:
        return str(self.switch.netns)


@contextmanager
def switch_for(kind: str, state_dir: Any, prefix: str) -> Iterator[SwitchKit]:
    """A fresh switch of ``kind`` (``simulated`` or ``openvswitch``); not started."""
    from ..net.ovs import OvsDaemons, OvsSwitch
    from ..net.simulated import SimulatedSwitch

    if kind == "simulated":
        yield SwitchKit(SimulatedSwitch())
        return
    spaces = Namespaces(prefix)
    guests: VethGuests | None = None
    daemons: OvsDaemons | None = None
    try:
        ns = spaces.add("sw")
        sh(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"])
        guests = VethGuests(ns, spaces.prefix)
        guests.ipv6_off_by_default = True
        daemons = OvsDaemons(state_dir, netns=ns, use_system=False)
        yield SwitchKit(OvsSwitch(daemons, guests), spaces, guests)
    finally:
        if daemons is not None:  # whatever a failed test left running, by its pid files
            asyncio.run(daemons.stop_stale())
            if daemons.rundir.is_symlink():
                daemons.rundir.unlink()
        if guests is not None:
            guests.close()
        spaces.close()
