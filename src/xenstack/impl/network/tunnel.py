"""Tunnels (GRE or VXLAN): an access PIF on a private network over a configured transport PIF."""

from __future__ import annotations

from ...core.context import Context
from ...core.ids import new_ref, new_uuid
from ...core.objects import new_record
from ...errors import ApiError
from ...idl.types import NULL_REF
from ...net import SwitchError
from ..devices.vif import random_mac
from ..registry import implements
from . import ports
from .pif import assert_no_other_local_pifs, destroy_pif_row, new_logical_pif


@implements("tunnel.create")
async def create(ctx: Context, transport_pif: str, network: str, protocol: str) -> str:
    db = ctx.db
    transport = db.get("PIF", transport_pif)
    if transport["bond_slave_of"] != NULL_REF:
        raise ApiError("CANNOT_ADD_TUNNEL_TO_BOND_SLAVE", [transport_pif])
    if transport["tunnel_access_PIF_of"]:
        raise ApiError("IS_TUNNEL_ACCESS_PIF", [transport_pif])
    if (
        transport["ip_configuration_mode"] == "None"
        and transport["ipv6_configuration_mode"] == "None"
    ):
        raise ApiError("TRANSPORT_PIF_NOT_CONFIGURED", [transport_pif])
    host = transport["host"]
    assert_no_other_local_pifs(db, host, network)
    used = {db.get("PIF", p)["device"] for p in db.get("host", host)["PIFs"]}
    n = 0
    while f"tunnel{n}" in used:
        n += 1
    tunnel = new_ref()
    with db.transaction():
        access = new_logical_pif(
            db, device=f"tunnel{n}", network=network, host=host, MAC=random_mac(), MTU=1500
        )
        db.create(
            "tunnel",
            tunnel,
            new_record(
                "tunnel",
                uuid=new_uuid(),
                access_PIF=access,
                transport_PIF=transport_pif,
                status={"active": "true"},
                protocol=protocol,
            ),
        )
    if host == ctx.toolstack.this_host:
        await _make_tunnel_port(ctx, tunnel)
    return tunnel


async def _make_tunnel_port(ctx: Context, tunnel: str) -> None:
    """A GRE or VXLAN port on the network's bridge, to the remote the network's
    ``other_config:remote_ip`` names (``key`` too, when set)."""
    db = ctx.db
    row = db.get("tunnel", tunnel)
    access = db.get("PIF", row["access_PIF"])
    net = db.get("network", access["network"])
    options = {"remote_ip": net["other_config"].get("remote_ip", "flow")}
    if net["other_config"].get("key"):
        options["key"] = net["other_config"]["key"]
    try:
        await ports.ensure_network(ctx.toolstack, access["network"])
        await ports.switch(ctx).add_port(
            net["bridge"], access["device"], kind=row["protocol"], options=options
        )
    except SwitchError as exc:
        raise ApiError("INTERNAL_ERROR", [f"switch: {exc}"]) from None


@implements("tunnel.destroy")
async def destroy(ctx: Context, self_: str) -> None:
    db = ctx.db
    row = db.get("tunnel", self_)
    access = db.table("PIF").rows.get(row["access_PIF"])
    if access is not None and access["host"] == ctx.toolstack.this_host:
        await ports.switch(ctx).remove_port(access["device"])
    with db.transaction():
        if db.exists("PIF", row["access_PIF"]):
            destroy_pif_row(db, row["access_PIF"])
        db.destroy("tunnel", self_)
