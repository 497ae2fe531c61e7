"""Start-up repair: make the switch hold what the database says, touching nothing else.

Wanted are the bridges of every network in use on this host (an attached PIF, or an attached
VIF of a running VM) and the ports of those VIFs and PIFs. A bridge or VIF port xenstack made
carries its marks (``xs-network-uuids``, ``xs-vif-uuid``): one whose network or VIF is gone,
or no longer live here, is removed; a missing or drifted one is made again. Bridges and ports
without the marks (another program's) are never touched.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ...idl.types import NULL_REF
from ...net import BridgeSpec, BridgeState, PortState, VifSpec
from .pif_devices import allowed_devices, real_devices
from .ports import bridge_specs, running_domid, switch, vif_spec

if TYPE_CHECKING:
    from ...core.context import Services

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Repairs:
    """What a reconciliation changed, by kind: names of bridges and ports."""

    bridges_made: list[str] = field(default_factory=list)
    bridges_removed: list[str] = field(default_factory=list)
    ports_made: list[str] = field(default_factory=list)
    ports_removed: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any((self.bridges_made, self.bridges_removed, self.ports_made, self.ports_removed))


def wanted(services: Services) -> tuple[dict[str, BridgeSpec], dict[str, VifSpec], dict[str, str]]:
    """(bridges by name, VIF ports by name, PIF devices -> bridge) this host should have."""
    db, host = services.db, services.this_host
    bridges: dict[str, BridgeSpec] = {}
    vifs: dict[str, VifSpec] = {}
    pifs: dict[str, str] = {}
    for pif in db.table("PIF").rows.values():
        if pif["host"] != host or not pif["currently_attached"]:
            continue
        if not db.exists("network", pif["network"]):
            continue
        for spec in bridge_specs(db, host, pif["network"]):
            bridges[spec.name] = spec
        if pif["physical"] and pif["bond_slave_of"] == NULL_REF:
            pifs[pif["device"]] = db.get("network", pif["network"])["bridge"]
    for ref, vif in db.table("VIF").rows.items():
        domid = running_domid(db, vif)
        vm = db.get("VM", vif["VM"])
        if domid < 0 or vm["resident_on"] != host or vm["is_control_domain"]:
            continue
        for spec in bridge_specs(db, host, vif["network"]):
            bridges[spec.name] = spec
        port = vif_spec(db, ref, domid)
        vifs[port.name] = port
    return bridges, vifs, pifs


def _bridge_drifted(spec: BridgeSpec, have: BridgeState) -> bool:
    return (
        have.parent != spec.parent
        or have.tag != spec.tag
        or have.mtu != spec.mtu
        or have.external_ids.get("xs-network-uuids") != spec.network_uuid
        or (bool(spec.hwaddr) and have.hwaddr != spec.hwaddr)
    )


def _port_drifted(spec: VifSpec, have: PortState) -> bool:
    return (
        have.bridge != spec.bridge
        or have.ofport <= 0
        or have.mtu != spec.mtu
        or have.external_ids != dict(spec.external_ids)
        or have.policing_kbps != spec.qos_kbps
    )


async def reconcile(services: Services) -> Repairs:
    sw = switch(services)
    bridges, vifs, pifs = wanted(services)
    if real_devices(services):  # never take a device into a bridge that xenstack was not given
        allowed = allowed_devices(services)
        pifs = {d: b for d, b in pifs.items() if d in allowed}
    known_networks = {row["uuid"] for row in services.db.table("network").rows.values()}
    known_vifs = {row["uuid"] for row in services.db.table("VIF").rows.values()}
    repairs = Repairs()
    have_bridges, have_ports = await sw.state()
    make_bridges: list[BridgeSpec] = []
    for spec in bridges.values():
        have = have_bridges.get(spec.name)
        if have is None or _bridge_drifted(spec, have):
            if have is not None and (have.parent != spec.parent or have.tag != spec.tag):
                repairs.bridges_removed.append(spec.name)
            make_bridges.append(spec)
            repairs.bridges_made.append(spec.name)
    for name, have in have_bridges.items():
        uuid = have.external_ids.get("xs-network-uuids")
        if uuid and name not in bridges and uuid not in known_networks:
            repairs.bridges_removed.append(name)
    gone = set(repairs.bridges_removed)
    for name, port in have_ports.items():
        vif_uuid = port.external_ids.get("xs-vif-uuid")
        if vif_uuid and (name not in vifs or vif_uuid not in known_vifs):
            repairs.ports_removed.append(name)
    make_vifs: list[VifSpec] = []
    drifted: list[str] = []
    for name, vif in vifs.items():
        have_port = have_ports.get(name)
        if vif.locking.mode == "disabled":
            continue
        if have_port is None or have_port.bridge in gone or _port_drifted(vif, have_port):
            if have_port is not None:
                drifted.append(name)
            make_vifs.append(vif)
            repairs.ports_made.append(name)
    make_ports = [
        (b, d) for d, b in pifs.items() if d not in have_ports or have_ports[d].bridge in gone
    ]
    repairs.ports_made += [d for _, d in make_ports]
    await sw.apply(
        remove_ports=[*repairs.ports_removed, *drifted],
        remove_bridges=repairs.bridges_removed,
        bridges=make_bridges,
        vifs=make_vifs,
        ports=make_ports,
    )
    # a dead VM's port: its host side goes too (at once: each is a lookup and a kernel call)
    await asyncio.gather(*(sw.unplug_vif(name) for name in repairs.ports_removed))
    if repairs.changed:
        log.warning("switch repaired at start-up: %s", repairs)
    return repairs
