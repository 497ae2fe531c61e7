"""A switch in memory, with Open vSwitch's layout and answers, for hosts without one.

It holds what OVS would hold (bridges with their fake bridges, ports with tags, ofports,
external ids, MTUs, policing, flows) and answers traces by matching its flows, so that
everything except packets behaves as on the real switch: the same tests run on both.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from . import flows as flowlib
from .model import (
    BridgeSpec,
    BridgeState,
    Locking,
    PortState,
    SwitchError,
    TraceResult,
    VifSpec,
    bond_view,
)
from .switch import Switch

DEFAULT_FLOW = "priority=0,actions=NORMAL"


class SimulatedSwitch(Switch):
    kind = "simulated"

    def __init__(self) -> None:
        self._bridges: dict[str, BridgeState] = {}
        self._ports: dict[str, PortState] = {}
        self._flows: dict[str, list[str]] = {}
        self._next_ofport: dict[str, int] = {}
        self.links: dict[str, int] = {}  # host sides of guest interfaces made (name -> mtu)

    def _real(self, bridge: str) -> BridgeState:
        if bridge not in self._bridges:
            raise SwitchError(f"no bridge named {bridge}")
        br = self._bridges[bridge]
        return self._bridges[br.parent] if br.parent else br

    async def bridges(self) -> dict[str, BridgeState]:
        return {
            k: dataclasses.replace(v, external_ids=dict(v.external_ids))
            for k, v in self._bridges.items()
        }

    async def ports(self) -> dict[str, PortState]:
        out = {}
        for name, port in self._ports.items():
            copy = dataclasses.replace(port, external_ids=dict(port.external_ids))
            copy.bridge = self._bridge_of(port)
            out[name] = copy
        return out

    def _bridge_of(self, port: PortState) -> str:
        """The fake bridge a port belongs to when its tag is one's, as ovs-vsctl says."""
        for br in self._bridges.values():
            if br.parent == port.parent and br.tag == port.tag and port.tag >= 0:
                return br.name
        return port.parent

    async def ensure_bridge(self, spec: BridgeSpec) -> None:
        if spec.parent:
            parent = self._bridges.get(spec.parent)
            if parent is None or parent.parent:
                raise SwitchError(f"{spec.parent} is not a real bridge")
        old = self._bridges.get(spec.name)
        ids = dict(old.external_ids) if old else {}
        if spec.network_uuid:
            ids["xs-network-uuids"] = spec.network_uuid
        self._bridges[spec.name] = BridgeState(
            spec.name, spec.parent, spec.tag, spec.mtu, ids, spec.hwaddr
        )
        if not spec.parent:
            self._flows.setdefault(spec.name, [DEFAULT_FLOW])
            self._next_ofport.setdefault(spec.name, 1)

    async def destroy_bridge(self, name: str) -> None:
        br = self._bridges.pop(name, None)
        if br is None:
            return
        if br.parent:
            for port in [p for p in self._ports.values() if self._bridge_of(p) == name]:
                del self._ports[port.name]
            return
        for fake in [b for b in self._bridges.values() if b.parent == name]:
            del self._bridges[fake.name]
        for port in [p for p in self._ports.values() if p.parent == name]:
            del self._ports[port.name]
        self._flows.pop(name, None)

    def _new_port(self, bridge: str, name: str, kind: str, mtu: int) -> PortState:
        real = self._real(bridge)
        fake = self._bridges[bridge]
        if name in self._ports:
            raise SwitchError(f"a port named {name} exists already")
        ofport = self._next_ofport[real.name]
        self._next_ofport[real.name] = ofport + 1
        port = PortState(
            name,
            bridge,
            real.name,
            fake.tag if fake.parent else -1,
            ofport,
            kind,
            mtu=mtu or fake.mtu,
        )
        self._ports[name] = port
        return port

    async def add_port(
        self,
        bridge: str,
        name: str,
        *,
        kind: str = "system",
        mtu: int = 0,
        members: tuple[str, ...] = (),
        options: Mapping[str, str] | None = None,
        external_ids: Mapping[str, str] | None = None,
    ) -> None:
        port = self._new_port(bridge, name, kind, mtu)
        port.members = tuple(sorted(members))
        port.links_up = len(members) or 1
        port.options = bond_view(options or {}) if kind == "bond" else dict(options or {})
        port.external_ids = dict(external_ids or {})

    async def remove_port(self, name: str) -> None:
        port = self._ports.pop(name, None)
        if port is not None:
            self._drop_port_flows(port)

    async def set_port(
        self, name: str, *, tag: int | None = None, options: Mapping[str, str] | None = None
    ) -> None:
        port = self._port(name)
        if tag is not None:
            port.tag = tag
        if options is not None and port.kind == "bond" and "mode" in options:
            port.options = bond_view(options)
        elif options is not None:
            port.options.update(options)

    def _port(self, name: str) -> PortState:
        if name not in self._ports:
            raise SwitchError(f"no port named {name}")
        return self._ports[name]

    def _drop_port_flows(self, port: PortState) -> None:
        flows = self._flows.get(port.parent, [])
        self._flows[port.parent] = [
            f for f in flows if flowlib.parse(f)[1].get("in_port") != str(port.ofport)
        ]

    async def plug_vif(self, spec: VifSpec) -> PortState:
        self._real(spec.bridge)
        await self.unplug_vif(spec.name)
        self.links[spec.name] = spec.mtu
        return await self.attach_vif(spec)

    async def attach_vif(self, spec: VifSpec) -> PortState:
        self._real(spec.bridge)
        await self.remove_port(spec.name)
        if spec.locking.mode == "disabled":
            return PortState(spec.name, "", "", link_up=True, mtu=spec.mtu, kind="tap")
        port = self._new_port(spec.bridge, spec.name, "tap", spec.mtu)
        port.external_ids = dict(spec.external_ids)
        port.policing_kbps = spec.qos_kbps
        port.stats = {"rx_packets": 0, "tx_packets": 0, "rx_bytes": 0, "tx_bytes": 0}
        self._flows[port.parent] += flowlib.locking_flows(port.ofport, spec.locking)
        return dataclasses.replace(port, bridge=self._bridge_of(port))

    async def unplug_vif(self, name: str) -> None:
        await self.remove_port(name)
        self.links.pop(name, None)

    async def set_locking(self, name: str, bridge: str, locking: Locking) -> None:
        port = self._ports.get(name)
        if locking.mode == "disabled":
            if port is not None:
                await self.remove_port(name)
            return
        if port is None:
            port = self._new_port(bridge, name, "tap", self.links.get(name, 0))
        self._drop_port_flows(port)
        self._flows[port.parent] += flowlib.locking_flows(port.ofport, locking)

    async def set_qos(self, name: str, kbps: int) -> None:
        self._port(name).policing_kbps = kbps

    async def set_mtu(self, name: str, mtu: int) -> None:
        if name in self._bridges:
            self._bridges[name].mtu = mtu
        else:
            self._port(name).mtu = mtu

    def count(self, name: str, rx: int = 0, tx: int = 0) -> None:
        """Move a port's packet counters (the simulator has no packets of its own)."""
        stats = self._port(name).stats
        stats["rx_packets"] = stats.get("rx_packets", 0) + rx
        stats["tx_packets"] = stats.get("tx_packets", 0) + tx

    async def flows(self, bridge: str) -> list[str]:
        return list(self._flows[self._real(bridge).name])

    async def add_flow(self, bridge: str, flow: str) -> None:
        flowlib.parse(flow)
        self._flows[self._real(bridge).name].append(flow)

    async def del_flows(self, bridge: str, match: str) -> None:
        real = self._real(bridge).name
        wanted = flowlib.parse(match)[1]
        self._flows[real] = [
            f
            for f in self._flows[real]
            if not all(flowlib.parse(f)[1].get(k) == v for k, v in wanted.items())
        ]

    async def trace(self, bridge: str, packet: Mapping[str, object]) -> TraceResult:
        actions, flow = flowlib.evaluate(self._flows[self._real(bridge).name], packet)
        verdict = flowlib.verdict(actions)
        return TraceResult(
            verdict,
            flow,
            f"Flow: {flowlib.as_trace_flow(packet)}\n"
            f"matched: {flow or '(table miss)'}\nDatapath actions: {actions}",
        )
