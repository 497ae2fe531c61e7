"""The network doctor: the seed's debugging session on one VIF, as checks with findings.

Given what the database says a VIF's port must be (:class:`Expected`) and the switch, each
check looks at one thing an administrator would (``ovs-vsctl``, ``ovs-ofctl dump-flows``,
``ofproto/trace``, the port's counters, the DHCP server's leases) and says what is wrong and
the command that fixes it. ``error`` findings make the doctor fail; ``warning`` ones are
worth a look; ``ok`` ones say what was verified.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field

from . import flows as flowlib
from .model import Locking, PortState
from .switch import Switch

ERROR, WARNING, OK = "error", "warning", "ok"


@dataclass(frozen=True, slots=True)
class Expected:
    """One VIF as the database has it."""

    vif_uuid: str
    vm: str  # the VM's name
    device: str
    port: str  # vif<domid>.<device>
    bridge: str  # its network's bridge (a fake bridge for a VLAN)
    parent: str  # the real bridge
    tag: int  # the network's VLAN, -1 for none
    mac: str
    mtu: int
    external_ids: dict[str, str]
    locking: Locking
    network: str  # the network's name
    pif: str = ""  # the physical device under the bridge, if any
    dhcp: DhcpFacts | None = None


@dataclass(frozen=True, slots=True)
class DhcpFacts:
    """The DHCP server xenstack runs for a network: whether it runs, what it answered."""

    running: bool
    leased_macs: tuple[str, ...]
    command: str  # how to start it by hand


@dataclass(frozen=True, slots=True)
class Finding:
    severity: str
    check: str
    message: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(slots=True)
class Report:
    subject: str
    findings: list[Finding] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not any(f.severity == ERROR for f in self.findings)

    def add(self, severity: str, check: str, message: str, fix: str = "") -> None:
        self.findings.append(Finding(severity, check, message, fix))


def _vsctl(*args: str) -> str:
    return "ovs-vsctl " + " ".join(args)


def _replug(e: Expected) -> str:
    return f"xe vif-unplug uuid={e.vif_uuid} && xe vif-plug uuid={e.vif_uuid}"


async def diagnose(
    switch: Switch,
    e: Expected,
    *,
    interval: float = 1.0,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> Report:
    report = Report(f"VIF {e.device} of VM {e.vm} ({e.port}, network {e.network})")
    if e.locking.mode == "disabled":
        report.add(
            WARNING,
            "locking",
            f"{e.port} is locking mode 'disabled': it is on no "
            "bridge and passes nothing, by design",
            f"xe vif-param-set uuid={e.vif_uuid} locking-mode=network_default",
        )
        return report
    ports = await switch.ports()
    port = ports.get(e.port)
    if port is None:
        report.add(
            ERROR,
            "port",
            f"{e.port} is not a port of any bridge (expected on {e.bridge})",
            f"{_vsctl('add-port', e.bridge, e.port)}  (or {_replug(e)})",
        )
        return report
    _placement(report, e, port)
    _ids(report, e, port)
    await _mtu(report, switch, e, port, ports)
    await _traces(report, switch, e, port)
    await _counters(report, switch, e, port, interval, sleep)
    _dhcp(report, e)
    return report


def _placement(report: Report, e: Expected, port: PortState) -> None:
    if port.parent != e.parent:
        report.add(
            ERROR,
            "bridge",
            f"{e.port} is on bridge {port.bridge}, but network {e.network} is bridge {e.bridge}",
            _vsctl("--", "del-port", e.port, "--", "add-port", e.bridge, e.port),
        )
    elif port.tag != e.tag:
        have = "no VLAN tag" if port.tag < 0 else f"VLAN tag {port.tag}"
        want = "no tag" if e.tag < 0 else f"tag {e.tag}"
        fix = (
            _vsctl("set", "port", e.port, f"tag={e.tag}")
            if e.tag >= 0
            else _vsctl("remove", "port", e.port, "tag", str(port.tag))
        )
        report.add(
            ERROR,
            "vlan",
            f"{e.port} has {have}, but network {e.network} is "
            f"VLAN {e.tag} (bridge {e.bridge}): its traffic goes to the wrong VLAN, "
            f"and DHCP answers never reach it; it needs {want}",
            fix,
        )
    else:
        report.add(
            OK,
            "bridge",
            f"{e.port} is on {e.bridge}" + (f" (VLAN {e.tag} on {e.parent})" if e.tag >= 0 else ""),
        )
    if port.ofport <= 0:
        report.add(
            ERROR,
            "ofport",
            f"{e.port} has no OpenFlow port ({port.ofport}): the switch could not open the device",
            _replug(e),
        )
    else:
        report.add(OK, "ofport", f"{e.port} is OpenFlow port {port.ofport}")
    if not port.link_up:
        report.add(
            ERROR,
            "link",
            f"{e.port}'s link is down: nothing holds the guest's side "
            "(is the VM's device model running?)",
            _replug(e),
        )


def _ids(report: Report, e: Expected, port: PortState) -> None:
    wrong = {k: v for k, v in e.external_ids.items() if port.external_ids.get(k) != v}
    if wrong:
        sets = " ".join(f'external_ids:{k}="{v}"' for k, v in sorted(wrong.items()))
        report.add(
            ERROR,
            "external_ids",
            f"{e.port}'s external_ids differ from the VIF's "
            f"({', '.join(sorted(wrong))}): neutron's agent would not find it",
            _vsctl("set", "interface", e.port, sets),
        )
    else:
        report.add(OK, "external_ids", f"{e.port}'s external_ids match VIF {e.vif_uuid}")


async def _mtu(
    report: Report, switch: Switch, e: Expected, port: PortState, ports: dict[str, PortState]
) -> None:
    bridges = await switch.bridges()
    path = [(e.port, port.mtu)]
    if e.bridge in bridges:
        path.append((e.bridge, bridges[e.bridge].mtu))
    if e.pif and e.pif in ports:
        path.append((e.pif, ports[e.pif].mtu))
    bad = [(name, mtu) for name, mtu in path if mtu and mtu != e.mtu]
    if bad:
        for name, mtu in bad:
            report.add(
                ERROR,
                "mtu",
                f"{name} has MTU {mtu}, but network {e.network} has MTU "
                f"{e.mtu}: frames larger than {min(mtu, e.mtu)} bytes are dropped",
                _vsctl("set", "interface", name, f"mtu_request={e.mtu}"),
            )
    else:
        report.add(OK, "mtu", "MTU " + str(e.mtu) + " along " + " -> ".join(n for n, _ in path))


async def _traces(report: Report, switch: Switch, e: Expected, port: PortState) -> None:
    probes = [("DHCP discover", flowlib.dhcp_discover(port.ofport, e.mac))]
    for ip in e.locking.ipv4 or ("0.0.0.0",):
        probes.append((f"ARP from {ip}", flowlib.arp_request(port.ofport, e.mac, ip, ip)))
    for label, packet in probes:
        result = await switch.trace(e.parent, packet)
        if result.verdict == "drop":
            ours = "cookie 0x1" in result.flow or "cookie=0x1" in result.flow
            fix = (
                (
                    f"xe vif-param-set uuid={e.vif_uuid} locking-mode=unlocked  (or allow the "
                    "address: xe vif-param-add ... ipv4-allowed)"
                )
                if ours
                else (f'ovs-ofctl del-flows {e.parent} "{_match_of(result.flow)}"')
            )
            report.add(
                ERROR,
                "flows",
                f"a flow drops {label} from {e.port} on {e.parent}: "
                f"{result.flow or 'no flow matches'}",
                fix,
            )
        else:
            where = _datapath_actions(result.text)
            report.add(
                OK,
                "flows",
                f"{label} from {e.port} passes ({result.flow})"
                + (f"; datapath actions: {where}" if where else ""),
            )


def _datapath_actions(text: str) -> str:
    """Where the packet went, as the trace's last line says (output ports, or drop)."""
    for line in reversed(text.splitlines()):
        if line.startswith("Datapath actions:"):
            return line.split(":", 1)[1].strip()
    return ""


def _match_of(flow: str) -> str:
    """The match part of a flow as ofproto/trace prints it (``in_port=3,..., priority 9``)."""
    parts = [p.strip() for p in flow.split(",")]
    keep = [p for p in parts if "=" in p and not p.startswith(("cookie", "priority"))]
    keep += [p for p in parts if p in ("ip", "arp", "udp", "tcp", "icmp")]
    return ",".join(keep)


async def _counters(
    report: Report,
    switch: Switch,
    e: Expected,
    port: PortState,
    interval: float,
    sleep: Callable[[float], Awaitable[object]],
) -> None:
    before = port.stats
    await sleep(interval)
    after = (await switch.ports()).get(e.port)
    if after is None:
        return
    moved = {k: after.stats.get(k, 0) - before.get(k, 0) for k in ("rx_packets", "tx_packets")}
    if any(moved.values()):
        report.add(OK, "counters", f"{e.port} counters moved: {moved}")
    else:
        report.add(
            WARNING,
            "counters",
            f"{e.port} passed no packets in {interval:g} s "
            f"(rx {after.stats.get('rx_packets', 0)}, tx "
            f"{after.stats.get('tx_packets', 0)} in all)",
        )


def _dhcp(report: Report, e: Expected) -> None:
    if e.dhcp is None:
        report.add(
            OK,
            "dhcp",
            f"network {e.network} has no DHCP server of xenstack's (an "
            "outside server's answers are not seen here)",
        )
        return
    if not e.dhcp.running:
        report.add(
            ERROR,
            "dhcp",
            f"the DHCP server of network {e.network} is not running: guests get no address",
            e.dhcp.command,
        )
    elif e.mac.lower() in (m.lower() for m in e.dhcp.leased_macs):
        report.add(OK, "dhcp", f"a DHCP answer came back: {e.mac} has a lease")
    else:
        report.add(WARNING, "dhcp", f"no DHCP lease for {e.mac} yet (has the guest asked?)")


def render(reports: list[Report]) -> str:
    lines = []
    for report in reports:
        lines.append(f"{report.subject}: {'healthy' if report.healthy else 'PROBLEMS FOUND'}")
        for f in report.findings:
            mark = {"error": "FAIL", "warning": "WARN", "ok": " ok "}[f.severity]
            lines.append(f"  [{mark}] {f.check}: {f.message}")
            if f.fix and f.severity != OK:
                lines.append(f"         fix: {f.fix}")
    return "\n".join(lines)
