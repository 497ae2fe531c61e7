"""The simulator's guest agents: some time after a domain boots, its guest reports itself.

A simulated guest writes what XenServer's guest agent writes to its XenStore subtree
(``report(vm_id, domid, key, value)``, keys relative to ``/local/domain/<domid>``): its OS
(``data/os_*``, from the template's hint, ``DomainSpec.os_hint``), its memory
(``data/meminfo_*``, KiB), its PV drivers (``attr/PVAddons/*``), its interfaces' addresses
(``attr/vif/<device>/ipv4/0``), what it can be asked (``control/feature-*``), then
``data/updated``. Each interface gets an IPv4 address from its network's (simulated) DHCP:
``10.<network>.<hi>.<lo>``, where ``<network>`` numbers the networks in the order the
simulator first saw them and ``hi.lo`` is the lease's number on that network (from ten). A
lease is kept for the (network, VM, device) it was given to.

What dom0 writes for the guest reaches it through ``guest_write``
(:meth:`GuestAgents.acknowledge`). The guest's kernel answers a shutdown request at once,
agent or not, as a Linux PV guest's xenbus handler does: dom0 writes ``control/shutdown``,
the guest clears it. Its agent answers nova's requests (:mod:`.nova_agent`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from . import nova_agent
from .interface import DomainInfo

KeySink = Callable[[str, int, str, str | None], None]

PV_DRIVERS_VERSION = {"major": "9", "minor": "4", "micro": "0", "build": "100"}
PV_ADDONS_KEYS = {"major": "MajorVersion", "minor": "MinorVersion", "micro": "MicroVersion",
                  "build": "BuildVersion"}  # fmt: skip
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
KIB = 1024


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


OS_KEYS = {"name": "data/os_name", "uname": "data/os_uname", "distro": "data/os_distro",
           "major": "data/os_majorver", "minor": "data/os_minorver"}  # fmt: skip


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
    """One timer per VM whose guest has yet to report; ``report`` receives the keys it
    writes."""

    def __init__(self, delay: float, report: KeySink) -> None:
        self.delay = delay
        self.report = report
        self.dhcp = Dhcp()
        self.timers: dict[str, asyncio.TimerHandle] = {}
        self.states: dict[str, nova_agent.AgentState] = {}  # by VM: its agent's knowledge

    def boot(self, dom: DomainInfo, current: Callable[[str], DomainInfo | None]) -> None:
        """The guest of ``dom`` boots: it reports after the delay if ``current(vm_id)`` (the
        backend's domain of the VM then) is still this domain."""
        self.stop(dom.vm_id)
        state = self.states.get(dom.vm_id)
        if state is not None:  # a new domain: it reads its nodes afresh; its disk keeps the rest
            state.seen.clear()
            state.shared = ""
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
        for key, value in self.describe(dom).items():
            self.report(vm_id, domid, key, value)

    def describe(self, dom: DomainInfo) -> dict[str, str]:
        """The keys the guest of ``dom`` writes about itself, in the order it writes them."""
        keys = {OS_KEYS[k]: v for k, v in os_version(dom.os_hint).items()}
        keys["data/meminfo_total"] = str(dom.memory_actual // KIB)
        keys["data/meminfo_free"] = str(dom.memory_actual // KIB // 2)
        for name, value in PV_DRIVERS_VERSION.items():
            keys[f"attr/PVAddons/{PV_ADDONS_KEYS[name]}"] = value
        keys["attr/PVAddons/Installed"] = "1"
        for device, network in dom.vif_networks:
            keys[f"attr/vif/{device}/ipv4/0"] = self.dhcp.address(network, dom.vm_id, device)
        keys.update({f"control/{k}": v for k, v in FEATURES.items()})
        keys["data/updated"] = "1"
        return keys

    def acknowledge(self, dom: DomainInfo, key: str, value: str) -> None:
        """dom0 wrote ``key`` into the guest's subtree: a shutdown request is taken (the key
        cleared, as a Linux guest's xenbus handler does), an agent request answered, what
        else the guest reads (``vm-data/``, its devices) remembered."""
        if key == "control/shutdown":
            if value:
                self.report(dom.vm_id, dom.domid, key, "")
            return
        state = self.states.setdefault(dom.vm_id, nova_agent.AgentState())
        if key.startswith("data/host/") and key.count("/") == 2:

            def reply(k: str, v: str | None) -> None:
                self.report(dom.vm_id, dom.domid, k, v)

            nova_agent.answer(state, key.split("/")[2], value, reply)
        else:
            state.seen[key] = value
