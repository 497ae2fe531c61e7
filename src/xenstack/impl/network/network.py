"""Networks: create (bridges ``xapiN`` for private networks), destroy, purposes, locking."""

from __future__ import annotations

from typing import Any

from ...core.context import Context
from ...core.ids import new_ref, new_uuid
from ...core.objects import new_record
from ...db.store import Database
from ...errors import ApiError
from ..registry import implements
from . import ports

BRIDGE_STEM = "xapi"
RESERVED_BRIDGE_PREFIXES = ("xen", "xapi", "vif", "tap", "eth")
MAX_BRIDGE_NAME = 15
INTERNAL_KEY = "is_host_internal_management_network"


def bridges(db: Database) -> set[str]:
    return {row["bridge"] for row in db.table("network").rows.values()}


def choose_bridge(db: Database) -> str:
    """The first free ``xapiN`` bridge name."""
    used = bridges(db)
    n = 0
    while f"{BRIDGE_STEM}{n}" in used:
        n += 1
    return f"{BRIDGE_STEM}{n}"


def new_network(db: Database, record: dict[str, Any]) -> str:
    """Insert a network; ``bridge`` "" picks the next ``xapiN``; MTU <= 0 means 1500."""
    bridge = record.get("bridge", "")
    if not bridge:
        bridge = choose_bridge(db)
    elif len(bridge) > MAX_BRIDGE_NAME or bridge.startswith(RESERVED_BRIDGE_PREFIXES):
        raise ApiError("INVALID_VALUE", ["bridge", bridge])
    elif bridge in bridges(db):
        raise ApiError("BRIDGE_NAME_EXISTS", [bridge])
    mtu = int(record.get("MTU", 0))
    ref = new_ref()
    with db.transaction():
        db.create(
            "network",
            ref,
            new_record(
                "network",
                uuid=new_uuid(),
                name_label=record.get("name_label", ""),
                name_description=record.get("name_description", ""),
                MTU=mtu if mtu > 0 else 1500,
                other_config=dict(record.get("other_config", {})),
                bridge=bridge,
                managed=record.get("managed", True),
                tags=list(record.get("tags", [])),
            ),
        )
    return ref


@implements("network.create")
def create(ctx: Context, record: dict[str, Any]) -> str:
    return new_network(ctx.db, record)


@implements("network.destroy")
async def destroy(ctx: Context, self_: str) -> None:
    db = ctx.db
    row = db.get("network", self_)
    connected = [v for v in row["VIFs"] if db.get("VIF", v)["currently_attached"]]
    if connected:
        raise ApiError("NETWORK_CONTAINS_VIF", connected)
    if row["PIFs"]:
        raise ApiError("NETWORK_CONTAINS_PIF", row["PIFs"])
    if row["other_config"].get(INTERNAL_KEY, "").lower() == "true":
        raise ApiError("CANNOT_DESTROY_SYSTEM_NETWORK", [self_])
    with db.transaction():
        for vif in row["VIFs"]:
            metrics = db.get("VIF", vif)["metrics"]
            if db.exists("VIF_metrics", metrics):
                db.destroy("VIF_metrics", metrics)
            db.destroy("VIF", vif)
        db.destroy("network", self_)
    await ports.remove_bridge(ctx, row["bridge"])


@implements("network.add_purpose")
def add_purpose(ctx: Context, self_: str, value: str) -> None:
    current = ctx.db.get("network", self_)["purpose"]
    if value in current:
        return
    conflicting = {"nbd": "insecure_nbd", "insecure_nbd": "nbd"}.get(value)
    if conflicting in current:
        raise ApiError("NETWORK_INCOMPATIBLE_PURPOSES", [value, conflicting])
    with ctx.db.transaction() as db:
        db.set("network", self_, "purpose", [*current, value])


@implements("network.remove_purpose")
def remove_purpose(ctx: Context, self_: str, value: str) -> None:
    current = ctx.db.get("network", self_)["purpose"]
    with ctx.db.transaction() as db:
        db.set("network", self_, "purpose", [p for p in current if p != value])


@implements("network.set_default_locking_mode")
async def set_default_locking_mode(ctx: Context, network: str, value: str) -> None:
    with ctx.db.transaction() as db:
        db.set("network", network, "default_locking_mode", value)
    for vif in ctx.db.get("network", network)["VIFs"]:
        if ctx.db.get("VIF", vif)["locking_mode"] == "network_default":
            await ports.refresh(ctx, vif)
