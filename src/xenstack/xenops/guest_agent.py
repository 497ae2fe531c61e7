"""The simulator's guest agents: some time after a domain boots, its guest reports itself.

A simulated guest says it runs the OS its VM's template hinted at (``DomainSpec.os_hint``),
that its PV drivers are up to date, that it can be asked to shut down, reboot and suspend,
and that each of its interfaces got an IPv4 address from its network's (simulated) DHCP:
``10.<network>.<hi>.<lo>``, where ``<network>`` numbers the networks in the order the
simulator first saw them and ``hi.lo`` is the lease's number on that network (from ten). A
lease is kept for the (network, VM, device) it was given to.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from .interface import DomainInfo, GuestReport

PV_DRIVERS_VERSION = {"major": "9", "minor": "4", "micro": "0", "build": "100"}
FEATURES = {
    "feature-shutdown": "1",
    "feature-poweroff": "1",
    "feature-reboot": "1",
    "feature-suspend": "1",
    "feature-vcpu-hotplug": "1",
    "feature-balloon": "1",
    "has-vendor-device": "0",
    "platform-feature-multiprocessor-suspend": "1",
}
FIRST_LEASE = 10


def os_version(hint: str) -> dict[str, str]:
    """What a guest booted from a template hinting ``hint`` says it runs."""
    hint = hint.lower() or "linux"
    if "win" in hint:
        return {"distro": "windows", "name": "Microsoft Windows", "major": "10", "minor": "0"}
    distro = hint.split("-")[0].replace("like", "") or "linux"
    major = "".join(ch for ch in hint.split("-")[-1] if ch.isdigit()) or "1"
    return {
        "distro": distro,
        "name": f"{distro.capitalize()} {major}",
        "major": major,
        "minor": "0",
        "uname": "6.1.0-xenstack-amd64",
    }


class Dhcp:
    """Stable addresses for the guests' interfaces, per network."""

    def __init__(self) -> None:
        self.networks: dict[str, int] = {}
        self.leases: dict[tuple[str, str, str], int] = {}

    def address(self, network: str, vm_id: str, device: str) -> str:
        index = self.networks.setdefault(network, len(self.networks)) % 256
        key = (network, vm_id, device)
        if key not in self.leases:
            taken = sum(1 for n, _, _ in self.leases if n == network)
            self.leases[key] = FIRST_LEASE + taken
        lease = self.leases[key]
        return f"10.{index}.{(lease >> 8) & 0xFF}.{lease & 0xFF}"


class GuestAgents:
    """One timer per VM whose guest has yet to report; ``report`` receives what it says."""

    def __init__(self, delay: float, report: Callable[[GuestReport], None]) -> None:
        self.delay = delay
        self.report = report
        self.dhcp = Dhcp()
        self.timers: dict[str, asyncio.TimerHandle] = {}

    def boot(self, dom: DomainInfo, current: Callable[[str], DomainInfo | None]) -> None:
        """The guest of ``dom`` boots: it reports after the delay if ``current(vm_id)`` (the
        backend's domain of the VM then) is still this domain."""
        self.stop(dom.vm_id)
        loop = asyncio.get_running_loop()
        self.timers[dom.vm_id] = loop.call_later(
            max(0.0, self.delay), self._fire, dom.vm_id, dom.domid, current
        )

    def stop(self, vm_id: str) -> None:
        """The guest is gone (shut down, suspended, reset): it reports nothing."""
        timer = self.timers.pop(vm_id, None)
        if timer is not None:
            timer.cancel()

    def _fire(self, vm_id: str, domid: int, current: Callable[[str], DomainInfo | None]) -> None:
        self.timers.pop(vm_id, None)
        dom = current(vm_id)
        if dom is None or dom.domid != domid:
            return
        self.report(self.describe(dom))

    def describe(self, dom: DomainInfo) -> GuestReport:
        """What the guest of ``dom`` says about itself."""
        networks: dict[str, str] = {}
        for device, network in dom.vif_networks:
            ip = self.dhcp.address(network, dom.vm_id, device)
            networks[f"{device}/ip"] = ip
            networks[f"{device}/ipv4/0"] = ip
        return GuestReport(
            vm_id=dom.vm_id,
            domid=dom.domid,
            os_version=os_version(dom.os_hint),
            pv_drivers_version=dict(PV_DRIVERS_VERSION),
            networks=networks,
            features=dict(FEATURES),
        )
