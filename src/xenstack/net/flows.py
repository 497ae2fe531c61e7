"""OpenFlow rules as XenServer's ``setup-vif-rules`` makes them, and a small matcher.

:func:`locking_flows` gives the ``ovs-ofctl add-flow`` text of a locked VIF's rules (cookie 1,
on the real bridge): DHCP from its MAC, ARP from its MAC for no address or an allowed one, IP
from an allowed address, neighbour discovery for allowed IPv6 addresses, the rest dropped.
A disabled VIF is not on any bridge at all (as on XenServer); an unlocked one has no rules.

:func:`evaluate` matches a packet (a dict of OpenFlow fields) against flow texts, so that the
simulated switch can answer a trace with the same rules OVS is given.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .model import Locking

COOKIE = "cookie=1"
ETH_IP, ETH_ARP, ETH_IPV6 = 0x0800, 0x0806, 0x86DD
UDP, ICMPV6 = 17, 58
_DROPPED_ICMPV6 = (134, 137, 146, 147, 151, 152, 153)
# shorthands ovs-ofctl accepts, as the fields they stand for
_PROTOCOLS: dict[str, dict[str, int]] = {
    "ip": {"dl_type": ETH_IP},
    "arp": {"dl_type": ETH_ARP},
    "udp": {"dl_type": ETH_IP, "nw_proto": UDP},
    "tcp": {"dl_type": ETH_IP, "nw_proto": 6},
    "icmp": {"dl_type": ETH_IP, "nw_proto": 1},
    "ipv6": {"dl_type": ETH_IPV6},
    "icmp6": {"dl_type": ETH_IPV6, "nw_proto": ICMPV6},
    "tcp6": {"dl_type": ETH_IPV6, "nw_proto": 6},
    "udp6": {"dl_type": ETH_IPV6, "nw_proto": UDP},
}
_SKIP = ("cookie", "idle_timeout", "hard_timeout", "table", "duration", "n_packets", "n_bytes")


def locking_flows(ofport: int, locking: Locking) -> list[str]:
    """The flows of a VIF on ``ofport`` in ``locking`` (none unless it is locked)."""
    if locking.mode != "locked":
        return []
    port, mac = ofport, locking.mac
    flows = [
        f"in_port={port},priority=8000,dl_type=0x0800,nw_proto=0x11,tp_dst=67,dl_src={mac},"
        "idle_timeout=0,action=normal",
        f"in_port={port},priority=7000,dl_type=0x0806,dl_src={mac},arp_sha={mac},"
        "nw_src=0.0.0.0,idle_timeout=0,action=normal",
    ]
    for ip in locking.ipv4:
        flows += [
            f"in_port={port},priority=7000,dl_type=0x0806,dl_src={mac},arp_sha={mac},"
            f"nw_src={ip},idle_timeout=0,action=normal",
            f"in_port={port},priority=6000,dl_type=0x0800,nw_src={ip},dl_src={mac},"
            "idle_timeout=0,action=normal",
        ]
    for ip in locking.ipv6:
        flows += [
            f"in_port={port},priority=8000,dl_src={mac},icmp6,ipv6_src={ip},icmp_type=135,"
            f"nd_sll={mac},idle_timeout=0,action=normal",
            f"in_port={port},priority=8000,dl_src={mac},icmp6,ipv6_src={ip},icmp_type=136,"
            f"nd_target={ip},idle_timeout=0,action=normal",
            *(
                f"in_port={port},priority=5000,dl_src={mac},ipv6_src={ip},{proto},action=normal"
                for proto in ("icmp6", "tcp6", "udp6")
            ),
        ]
    flows += [f"in_port={port},priority=7000,icmp6,icmp_type={t},action=drop" for t in (135, 136)]
    flows += [
        f"in_port={port},priority=6000,icmp6,icmp_type={t},action=drop" for t in _DROPPED_ICMPV6
    ]
    flows.append(f"in_port={port},priority=4000,idle_timeout=0,action=drop")
    return [f"{COOKIE},{flow}" for flow in flows]


def parse(flow: str) -> tuple[int, dict[str, str], str]:
    """A flow text as (priority, match fields, actions)."""
    text = flow.strip()
    actions = ""
    for key in ("actions=", "action="):
        if key in text:
            text, actions = text.split(key, 1)
            break
    match: dict[str, str] = {}
    priority = 32768
    for item in (p.strip() for p in text.replace(" ", ",").split(",")):
        if not item:
            continue
        name, _, value = item.partition("=")
        if name == "priority":
            priority = int(value)
        elif name in _PROTOCOLS:
            match.update({k: str(v) for k, v in _PROTOCOLS[name].items()})
        elif name not in _SKIP and value:
            match[name] = value
    return priority, match, actions.strip().lower()


def _same(field: str, wanted: str, value: object) -> bool:
    if value is None:
        return False
    if field in ("dl_type", "nw_proto", "tp_dst", "tp_src", "in_port", "icmp_type"):
        return int(wanted, 0) == int(str(value), 0)
    return wanted.lower() == str(value).lower()


def evaluate(flows: Iterable[str], packet: Mapping[str, object]) -> tuple[str, str]:
    """The actions of the highest-priority flow matching ``packet``, and that flow.

    A packet no flow matches is dropped (OpenFlow's table miss with no controller).
    """
    best: tuple[int, str, str] | None = None
    for flow in flows:
        priority, match, actions = parse(flow)
        if all(_same(k, v, packet.get(k)) for k, v in match.items()) and (
            best is None or priority > best[0]
        ):
            best = (priority, actions, flow)
    if best is None:
        return "drop", ""
    return best[1], best[2]


def verdict(actions: str) -> str:
    """``drop`` for a flow that drops (no actions, or ``drop``), else ``forward``."""
    return "drop" if actions in ("", "drop") else "forward"


def dhcp_discover(ofport: int, mac: str) -> dict[str, object]:
    return {
        "in_port": ofport,
        "dl_src": mac,
        "dl_dst": "ff:ff:ff:ff:ff:ff",
        "dl_type": ETH_IP,
        "nw_proto": UDP,
        "nw_src": "0.0.0.0",
        "nw_dst": "255.255.255.255",
        "tp_src": 68,
        "tp_dst": 67,
    }


def arp_request(ofport: int, mac: str, ip: str, target: str) -> dict[str, object]:
    return {
        "in_port": ofport,
        "dl_src": mac,
        "dl_dst": "ff:ff:ff:ff:ff:ff",
        "dl_type": ETH_ARP,
        "arp_sha": mac,
        "nw_src": ip,
        "nw_dst": target,
        "arp_op": 1,
    }


def as_trace_flow(packet: Mapping[str, object]) -> str:
    """``packet`` as the flow text ``ofproto/trace`` takes."""
    fields = dict(packet)
    kind = {ETH_IP: "ip", ETH_ARP: "arp"}.get(int(str(fields.pop("dl_type", 0))), "")
    if kind == "ip" and int(str(fields.get("nw_proto", 0))) == UDP:
        kind = "udp"
        fields.pop("nw_proto")
        for port in ("src", "dst"):
            if f"tp_{port}" in fields:
                fields[f"udp_{port}"] = fields.pop(f"tp_{port}")
    if kind == "arp":
        fields["arp_spa"] = fields.pop("nw_src", "0.0.0.0")
        fields["arp_tpa"] = fields.pop("nw_dst", "0.0.0.0")
    parts = [kind] if kind else []
    parts += [f"{k}={v}" for k, v in fields.items()]
    return ",".join(parts)
