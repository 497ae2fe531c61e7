"""What a switch is asked to build and what it reports, as small data classes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..errors import XenstackError

VIF_MAC = "fe:ff:ff:ff:ff:ff"  # the host side of every guest tap, as XenServer's vif script sets
LOCKING_MODES = ("unlocked", "locked", "disabled")
BOND_MODES = {"balance-slb": "balance-slb", "active-backup": "active-backup", "lacp": "balance-tcp"}
# Bond.properties that become the port's other_config on Open vSwitch, as XenServer sets them
BOND_OTHER_CONFIG = ("lacp-time", "lacp-fallback-ab", "lacp-aggregation-key")


def bond_columns(options: Mapping[str, str]) -> tuple[str, str, dict[str, str]]:
    """(bond_mode, lacp, other_config) of a bond port in XenServer's ``mode`` with its
    properties: an lacp bond hashes by source MAC (balance-slb) unless its
    ``hashing_algorithm`` is ``tcpudp_ports`` (balance-tcp, also when none is given)."""
    mode = options.get("mode", "balance-slb")
    other = {k: options[k] for k in BOND_OTHER_CONFIG if options.get(k)}
    if mode != "lacp":
        return BOND_MODES.get(mode, mode), "off", {}
    hashing = options.get("hashing_algorithm", "")
    return ("balance-slb" if hashing == "src_mac" else "balance-tcp"), "active", other


def bond_view(options: Mapping[str, str]) -> dict[str, str]:
    """A bond port's options as a switch reports them: XenServer's ``mode``, Open vSwitch's
    ``bond_mode`` and the LACP settings that reach the port."""
    bond_mode, _, other = bond_columns(options)
    return {"mode": options.get("mode", "balance-slb"), "bond_mode": bond_mode, **other}


TUNNEL_PROTOCOLS = ("gre", "vxlan")


class SwitchError(XenstackError):
    """The switch refused or failed an operation (the message says what and why)."""


@dataclass(frozen=True, slots=True)
class BridgeSpec:
    """A bridge for one network: real (``parent`` "") or a fake VLAN bridge on ``parent``."""

    name: str
    network_uuid: str = ""  # bridge external_ids:xs-network-uuids
    parent: str = ""
    tag: int = -1
    mtu: int = 1500
    hwaddr: str = ""  # pinned bridge MAC (other-config:hwaddr), real bridges only


@dataclass(frozen=True, slots=True)
class Locking:
    """A VIF's effective locking: ``mode`` is unlocked, locked or disabled."""

    mode: str = "unlocked"
    mac: str = ""
    ipv4: tuple[str, ...] = ()
    ipv6: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class VifSpec:
    """A guest's interface as a port: ``name`` is ``vif<domid>.<device>``."""

    name: str
    bridge: str
    mac: str  # the guest's MAC (attached-mac)
    mtu: int = 1500
    external_ids: tuple[tuple[str, str], ...] = ()
    locking: Locking = Locking()
    qos_kbps: int = 0  # ingress policing rate, 0 for none


@dataclass(slots=True)
class PortState:
    """A port as the switch has it. ``bridge`` is the bridge ``ovs-vsctl port-to-br`` names
    (a fake bridge for a port tagged with its VLAN), ``parent`` the real bridge holding it."""

    name: str
    bridge: str
    parent: str
    tag: int = -1
    ofport: int = -1
    kind: str = "system"  # system, internal, tap, gre, vxlan, bond
    external_ids: dict[str, str] = field(default_factory=dict)
    mtu: int = 1500
    link_up: bool = True
    policing_kbps: int = 0
    stats: dict[str, int] = field(default_factory=dict)
    members: tuple[str, ...] = ()  # a bond's interfaces
    options: dict[str, str] = field(default_factory=dict)
    links_up: int = 0  # interfaces of the port whose link is up (a bond's live members)


@dataclass(slots=True)
class BridgeState:
    name: str
    parent: str = ""
    tag: int = -1
    mtu: int = 1500
    external_ids: dict[str, str] = field(default_factory=dict)
    hwaddr: str = ""


@dataclass(frozen=True, slots=True)
class TraceResult:
    """Where a packet entering a port goes: ``verdict`` is ``drop`` or ``forward``."""

    verdict: str
    flow: str  # the flow that decided it
    text: str  # the switch's own account (ofproto/trace output for OVS)


def vif_name(domid: int, device: str | int) -> str:
    """XenServer's name of a guest interface's host side."""
    return f"vif{domid}.{device}"
