"""Many switch changes in two OVSDB transactions (start-up repairs on a big host).

Each transaction waits for ``ovs-vswitchd`` to apply it, and on a host with a thousand ports
that wait is what costs: removals go in one transaction, bridges and ports in a second, and
the new ports' locking flows in one ``ovs-ofctl add-flows`` per bridge. Rows made in the
second transaction are found through what this module made, not through reads of the
replica, which shows a transaction's pending changes only in part.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from .. import flows as flowlib
from ..model import BridgeSpec, SwitchError, VifSpec

OvsSwitch = Any  # the driver (.driver imports this module: no import back)

MAX_OFPORT = 0xFF00


async def apply(
    sw: OvsSwitch,
    remove_ports: Sequence[str],
    remove_bridges: Sequence[str],
    bridges: Sequence[BridgeSpec],
    vifs: Sequence[VifSpec],
    ports: Sequence[tuple[str, str]],
) -> None:
    live = [v for v in vifs if v.locking.mode != "disabled"]
    made_names = {v.name for v in live} | {d for _, d in ports} | {b.name for b in bridges}
    # names removed and made again need two transactions (OVSDB checks a name's uniqueness
    # against what the transaction leaves); otherwise one does it all
    apart = bool(made_names & ({*remove_ports, *remove_bridges}))
    await _drop_flows(sw, remove_ports)
    if sw.daemons.datapath == "netdev":  # as add_port does for a system port
        for _, device in ports:
            await sw.links.quiet(device)
    if apart:
        await asyncio.to_thread(sw.db.transact, _removals(sw, remove_ports, remove_bridges), True)
    if not (bridges or live or ports):
        if not apart:
            await asyncio.to_thread(
                sw.db.transact, _removals(sw, remove_ports, remove_bridges), True
            )
        return
    requested: dict[str, tuple[str, int]] = {}

    def edit(txn: Any) -> None:
        if not apart:
            _removals(sw, remove_ports, remove_bridges)(txn)
        made = _bridges(sw, txn, bridges)
        where = _placement(sw, bridges)
        numbers: dict[str, int] = {}
        for vif in live:
            parent_name, tag = where(vif.bridge)
            parent = made.get(parent_name) or sw._bridge_row(parent_name)
            if parent is None:
                raise SwitchError(f"no bridge named {vif.bridge}")
            if parent_name not in numbers:
                numbers[parent_name] = 0 if parent_name in made else _highest(parent)
            numbers[parent_name] += 1
            port, iface = sw._new_port(txn, vif.name, "tap", vif.mtu)
            iface.external_ids = dict(vif.external_ids)
            iface.ofport_request = numbers[parent_name]
            if vif.qos_kbps > 0:
                iface.ingress_policing_rate = vif.qos_kbps
                iface.ingress_policing_burst = max(vif.qos_kbps // 10, 1)
            if tag >= 0:
                port.tag = tag
            _attach(parent, port, parent_name in made)
            requested[vif.name] = (parent_name, numbers[parent_name])
        for bridge, device in ports:
            parent_name, tag = where(bridge)
            parent = made.get(parent_name) or sw._bridge_row(parent_name)
            if parent is None:
                raise SwitchError(f"no bridge named {bridge}")
            port, _ = sw._new_port(txn, device, "system", 0)
            if tag >= 0:
                port.tag = tag
            _attach(parent, port, parent_name in made)

    await asyncio.to_thread(sw.db.transact, edit, True)
    await _flows(sw, live, requested)


async def _drop_flows(sw: OvsSwitch, ports: Sequence[str]) -> None:
    """Delete the locking flows of ports about to go (only those that have flows of ours)."""
    if not ports:
        return
    have = await asyncio.to_thread(sw.numbers, ports)
    by_bridge: dict[str, set[int]] = {}
    for bridge, number in have.values():
        if number > 0:
            by_bridge.setdefault(bridge, set()).add(number)
    for bridge, numbers in by_bridge.items():
        ours = {
            flowlib.parse(f)[1].get("in_port") for f in await sw.flows(bridge) if "cookie=0x1," in f
        }
        for number in sorted(n for n in numbers if str(n) in ours):
            await sw._del_flows_of(bridge, number)


def _removals(sw: OvsSwitch, ports: Sequence[str], bridges: Sequence[str]) -> Any:
    def edit(txn: Any) -> None:
        for name in ports:
            found = sw._port_row(name)
            if found is not None:
                found[0].delvalue("ports", found[1].uuid)
        for name in bridges:
            sw._destroy_bridge_edit(name)

    return edit


def _bridges(sw: OvsSwitch, txn: Any, specs: Sequence[BridgeSpec]) -> dict[str, Any]:
    """Make or update the bridges (real ones first); the rows inserted, by name."""
    made: dict[str, Any] = {}
    for spec in sorted(specs, key=lambda b: bool(b.parent)):
        if spec.parent and spec.parent in made:
            port, _ = sw._new_port(txn, spec.name, "internal", spec.mtu)
            port.fake_bridge = True
            port.tag = spec.tag
            if spec.network_uuid:
                port.external_ids = {"fake-bridge-xs-network-uuids": spec.network_uuid}
            _attach(made[spec.parent], port, True)
        elif spec.parent:
            sw._ensure_fake(txn, spec)
        else:
            row = sw._ensure_real(txn, spec)
            if row is not None:
                made[spec.name] = row
    return made


def _placement(sw: OvsSwitch, specs: Sequence[BridgeSpec]) -> Any:
    """bridge name -> (real bridge, tag), from the specs being made, else the switch."""
    planned = {s.name: (s.parent or s.name, s.tag if s.parent else -1) for s in specs}

    def where(bridge: str) -> tuple[str, int]:
        if bridge in planned:
            return planned[bridge]
        row, tag = sw._parent_of(bridge)
        return str(row.name), tag

    return where


def _highest(parent: Any) -> int:
    used = [0]
    for port in parent.ports:
        for iface in port.interfaces:
            try:
                columns = (iface.ofport, iface.ofport_request)
            except AttributeError:  # a row this transaction inserted
                continue
            for column in columns:
                value = column[0] if isinstance(column, list) and column else column
                if isinstance(value, int) and 0 < value < MAX_OFPORT:
                    used.append(value)
    return max(used)


def _attach(parent: Any, port: Any, new: bool) -> None:
    if new:  # a row inserted in this transaction: its column is written whole
        parent.ports = [*parent.ports, port]
    else:
        parent.addvalue("ports", port.uuid)


async def _flows(sw: OvsSwitch, vifs: Sequence[VifSpec], requested: dict[str, Any]) -> None:
    by_bridge: dict[str, list[str]] = {}
    for vif in vifs:
        parent, number = requested[vif.name]
        by_bridge.setdefault(parent, []).extend(flowlib.locking_flows(number, vif.locking))
    for bridge, flows in by_bridge.items():
        if flows:
            await sw._add_flows(bridge, flows)
    have = await asyncio.to_thread(sw.numbers, [v.name for v in vifs])
    for vif in vifs:  # a number taken meanwhile: that port's flows again
        parent, number = requested[vif.name]
        got = have.get(vif.name, (parent, -1))[1]
        if got > 0 and got != number:
            await sw._del_flows_of(parent, number)
            await sw._apply_flows(parent, got, vif.locking)
