"""VLANs: a tagged PIF, its untagged (VLAN master) PIF on a network, and the pool-wide form."""

from __future__ import annotations

from ...core.context import Context
from ...core.ids import new_ref, new_uuid
from ...core.objects import new_record
from ...db.store import Database
from ...errors import ApiError
from ...idl.types import NULL_REF
from ..registry import implements
from . import ports
from .pif import assert_managed, assert_no_other_local_pifs, destroy_pif_row, new_logical_pif

MAX_TAG = 4094


def _assert_network_managed(db: Database, network: str) -> None:
    if not db.get("network", network)["managed"]:
        raise ApiError("NETWORK_UNMANAGED", [network])


def _assert_taggable(db: Database, pif: str) -> None:
    row = db.get("PIF", pif)
    if row["bond_slave_of"] != NULL_REF:
        raise ApiError("CANNOT_ADD_VLAN_TO_BOND_SLAVE", [pif])
    if row["VLAN_master_of"] != NULL_REF:
        raise ApiError("PIF_IS_VLAN", [pif])
    if row["tunnel_access_PIF_of"]:
        raise ApiError("IS_TUNNEL_ACCESS_PIF", [pif])


def create_vlan(db: Database, tagged_pif: str, tag: int, network: str) -> str:
    """Check as XAPI does, then create the VLAN and its plugged untagged PIF."""
    _assert_network_managed(db, network)
    row = db.get("PIF", tagged_pif)
    assert_no_other_local_pifs(db, row["host"], network)
    assert_managed(db, tagged_pif)
    _assert_taggable(db, tagged_pif)
    if not 0 <= tag <= MAX_TAG:
        raise ApiError("VLAN_TAG_INVALID", [tag])
    for vlan in row["VLAN_slave_of"]:
        if db.get("VLAN", vlan)["tag"] == tag:
            raise ApiError("PIF_VLAN_EXISTS", [row["device"]])
    vlan = new_ref()
    with db.transaction():
        untagged = new_logical_pif(
            db,
            device=row["device"],
            network=network,
            host=row["host"],
            MAC=row["MAC"],
            MTU=row["MTU"],
            VLAN=tag,
            metrics=row["metrics"],
            primary_address_type=row["primary_address_type"],
        )
        db.create(
            "VLAN",
            vlan,
            new_record(
                "VLAN", uuid=new_uuid(), tagged_PIF=tagged_pif, untagged_PIF=untagged, tag=tag
            ),
        )
        db.set("PIF", untagged, "VLAN_master_of", vlan)
    return vlan


def destroy_vlan(db: Database, vlan: str) -> None:
    untagged = db.get("VLAN", vlan)["untagged_PIF"]
    if db.exists("PIF", untagged):
        row = db.get("PIF", untagged)
        if row["management"]:
            raise ApiError("PIF_IS_MANAGEMENT_INTERFACE", [untagged])
        if row["tunnel_transport_PIF_of"]:
            raise ApiError("PIF_TUNNEL_STILL_EXISTS", [untagged])
    with db.transaction():
        if db.exists("PIF", untagged):
            destroy_pif_row(db, untagged)
        db.destroy("VLAN", vlan)


async def _made_here(ctx: Context, network: str, untagged_pifs: list[str]) -> None:
    """Make the VLAN's fake bridge when one of its PIFs is this host's."""
    here = [p for p in untagged_pifs if ctx.db.get("PIF", p)["host"] == ctx.toolstack.this_host]
    if here:
        await ports.sync_network(ctx, network)


@implements("VLAN.create")
async def create(ctx: Context, tagged_pif: str, tag: int, network: str) -> str:
    vlan = create_vlan(ctx.db, tagged_pif, tag, network)
    await _made_here(ctx, network, [ctx.db.get("VLAN", vlan)["untagged_PIF"]])
    return vlan


@implements("VLAN.destroy")
async def destroy(ctx: Context, self_: str) -> None:
    row = ctx.db.get("VLAN", self_)
    untagged = ctx.db.table("PIF").rows.get(row["untagged_PIF"])
    destroy_vlan(ctx.db, self_)
    if untagged is not None and untagged["host"] == ctx.toolstack.this_host:
        await ports.remove_bridge(ctx, ctx.db.get("network", untagged["network"])["bridge"])


def _physical_pif(db: Database, host: str, device: str) -> str:
    for pif in db.get("host", host)["PIFs"]:
        row = db.get("PIF", pif)
        if row["device"] == device and row["VLAN"] == -1 and row["VLAN_master_of"] == NULL_REF:
            return str(pif)
    raise ApiError("INVALID_VALUE", ["device", device])


def create_vlan_on_host(db: Database, device: str, network: str, host: str, tag: int) -> str:
    """``PIF.create_VLAN``: the VLAN on ``device`` of ``host``; return its untagged PIF."""
    db.get("host", host)
    db.get("network", network)
    vlan = create_vlan(db, _physical_pif(db, host, device), tag, network)
    return str(db.get("VLAN", vlan)["untagged_PIF"])


@implements("PIF.create_VLAN")
async def pif_create_vlan(ctx: Context, device: str, network: str, host: str, tag: int) -> str:
    pif = create_vlan_on_host(ctx.db, device, network, host, tag)
    await _made_here(ctx, network, [pif])
    return pif


def _pool_create(db: Database, device: str, network: str, tag: int) -> list[str]:
    """One VLAN per host, all or none."""
    db.get("network", network)
    with db.transaction():
        return [create_vlan_on_host(db, device, network, h, tag) for h in db.refs("host")]


@implements("pool.create_VLAN")
async def pool_create_vlan(ctx: Context, device: str, network: str, tag: int) -> list[str]:
    pifs = _pool_create(ctx.db, device, network, tag)
    await _made_here(ctx, network, pifs)
    return pifs


@implements("pool.create_VLAN_from_PIF")
async def pool_create_vlan_from_pif(ctx: Context, pif: str, network: str, tag: int) -> list[str]:
    pifs = _pool_create(ctx.db, ctx.db.get("PIF", pif)["device"], network, tag)
    await _made_here(ctx, network, pifs)
    return pifs
