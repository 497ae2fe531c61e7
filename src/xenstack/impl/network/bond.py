"""Bonds: a master PIF over two or more physical PIFs of one host.

Creating a bond moves the primary member's IP configuration (and the management role) to the
bond master; destroying it moves them back.
"""

from __future__ import annotations

from typing import Any

from ...core.context import Context
from ...core.ids import new_ref, new_uuid
from ...core.objects import new_record
from ...db.store import Database
from ...errors import ApiError
from ...idl.types import NULL_REF
from ...net import SwitchError
from ..registry import implements
from . import pifs as real_pifs
from . import ports
from .pif import assert_no_other_local_pifs, destroy_pif_row, new_logical_pif

IP_FIELDS = (
    "ip_configuration_mode",
    "IP",
    "netmask",
    "gateway",
    "DNS",
    "ipv6_configuration_mode",
    "IPv6",
    "ipv6_gateway",
    "primary_address_type",
    "management",
)
_CLEARED: dict[str, Any] = {
    "ip_configuration_mode": "None",
    "IP": "",
    "netmask": "",
    "gateway": "",
    "DNS": "",
    "ipv6_configuration_mode": "None",
    "IPv6": [],
    "ipv6_gateway": "",
    "primary_address_type": "IPv4",
    "management": False,
}
BOND_PROPERTIES = {"hashing_algorithm": "src_mac"}


def _check_members(db: Database, members: list[str]) -> str:
    """Return the members' host after XAPI's checks."""
    if len(members) < 2:
        raise ApiError("PIF_BOND_NEEDS_MORE_MEMBERS", [])
    rows = [db.get("PIF", m) for m in members]
    if len({r["host"] for r in rows}) > 1:
        raise ApiError("PIF_CANNOT_BOND_CROSS_HOST", [])
    for pif, row in zip(members, rows, strict=True):
        if row["bond_slave_of"] != NULL_REF:
            raise ApiError("PIF_ALREADY_BONDED", [pif])
        if row["VLAN_master_of"] != NULL_REF:
            raise ApiError("PIF_IS_VLAN", [pif])
        if not row["physical"]:
            raise ApiError("PIF_IS_NOT_PHYSICAL", [pif])
    if sum(1 for r in rows if r["ip_configuration_mode"] != "None") > 1:
        raise ApiError("PIF_BOND_MORE_THAN_ONE_IP", [])
    return str(rows[0]["host"])


def _primary(db: Database, members: list[str]) -> str:
    """The member whose configuration the bond takes: the management one, else one with IP."""
    for key in ("management", "ip_configuration_mode"):
        for pif in members:
            value = db.get("PIF", pif)[key]
            if value is True or (key == "ip_configuration_mode" and value != "None"):
                return pif
    return members[0]


def _next_bond_device(db: Database, host: str) -> str:
    used = {db.get("PIF", p)["device"] for p in db.get("host", host)["PIFs"]}
    n = 0
    while f"bond{n}" in used:
        n += 1
    return f"bond{n}"


@implements("Bond.create")
async def create(
    ctx: Context, network: str, members: list[str], mac: str, mode: str, properties: dict[str, str]
) -> str:
    db = ctx.db
    net = db.get("network", network)
    host = _check_members(db, members)
    assert_no_other_local_pifs(db, host, network)
    primary = _primary(db, members)
    prow = db.get("PIF", primary)
    bond = new_ref()
    with db.transaction():
        master = new_logical_pif(
            db,
            device=_next_bond_device(db, host),
            network=network,
            host=host,
            MAC=mac or prow["MAC"],
            MTU=net["MTU"],
            **{k: prow[k] for k in IP_FIELDS},
        )
        db.create(
            "Bond",
            bond,
            new_record(
                "Bond",
                uuid=new_uuid(),
                master=master,
                primary_slave=primary,
                mode=mode,
                properties={**BOND_PROPERTIES, **properties},
                links_up=len(members),
                auto_update_mac=not mac,
            ),
        )
        for pif in members:
            db.update("PIF", pif, bond_slave_of=bond, currently_attached=False, **_CLEARED)
    if host == ctx.toolstack.this_host:
        await _make_bond_port(ctx, bond)
    return bond


def _options(row: dict[str, Any]) -> dict[str, str]:
    """The switch's options of a bond: its mode and properties (``hashing_algorithm``,
    ``lacp-time``...), which the switch turns into Open vSwitch's columns."""
    return {**row["properties"], "mode": row["mode"]}


async def _make_bond_port(ctx: Context, bond: str) -> None:
    """The bond as one port of its network's bridge, its members' own ports gone."""
    db = ctx.db
    row = db.get("Bond", bond)
    master = db.get("PIF", row["master"])
    devices = tuple(db.get("PIF", p)["device"] for p in row["slaves"])
    sw = ports.switch(ctx)
    try:
        for device in devices:
            await sw.remove_port(device)
        await ports.ensure_network(ctx.toolstack, master["network"])
        bridge = db.get("network", master["network"])["bridge"]
        await sw.add_port(
            bridge, master["device"], kind="bond", members=devices, options=_options(row)
        )
    except SwitchError as exc:
        raise ApiError("INTERNAL_ERROR", [f"switch: {exc}"]) from None


@implements("Bond.destroy")
async def destroy(ctx: Context, self_: str) -> None:
    db = ctx.db
    row = db.get("Bond", self_)
    master = db.get("PIF", row["master"])
    here = master["host"] == ctx.toolstack.this_host
    slaves = list(row["slaves"])  # the live row's relation empties as the members leave
    if master["VLAN_slave_of"]:
        raise ApiError("PIF_VLAN_STILL_EXISTS", [row["master"]])
    primary = row["primary_slave"] if row["primary_slave"] != NULL_REF else row["slaves"][0]
    with db.transaction():
        for pif in row["slaves"]:
            db.update("PIF", pif, bond_slave_of=NULL_REF, currently_attached=True)
        db.update("PIF", primary, **{k: master[k] for k in IP_FIELDS})
        destroy_pif_row(db, row["master"])
        db.destroy("Bond", self_)
    if here:
        await ports.switch(ctx).remove_port(master["device"])
        for pif in slaves:
            await real_pifs.plug_port(ctx.toolstack, pif)


@implements("Bond.set_mode")
async def set_mode(ctx: Context, self_: str, value: str) -> None:
    with ctx.db.transaction() as db:
        db.set("Bond", self_, "mode", value)
    master = ctx.db.get("PIF", ctx.db.get("Bond", self_)["master"])
    if master["host"] == ctx.toolstack.this_host:
        sw = ports.switch(ctx)
        if master["device"] in await sw.ports():
            await sw.set_port(master["device"], options=_options(ctx.db.get("Bond", self_)))


@implements("Bond.set_property")
async def set_property(ctx: Context, self_: str, name: str, value: str) -> None:
    row = ctx.db.get("Bond", self_)
    if name not in ("hashing_algorithm", "lacp-time", "lacp-aggregation-key", "lacp-fallback-ab"):
        raise ApiError("INVALID_VALUE", ["properties", name])
    with ctx.db.transaction() as db:
        db.set("Bond", self_, "properties", {**row["properties"], name: value})
    master = ctx.db.get("PIF", row["master"])
    if master["host"] == ctx.toolstack.this_host:  # the switch's bond follows
        sw = ports.switch(ctx)
        if master["device"] in await sw.ports():
            await sw.set_port(master["device"], options=_options(ctx.db.get("Bond", self_)))
