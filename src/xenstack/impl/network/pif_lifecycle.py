"""PIF records coming and going: introduce, scan, forget, destroy, db_introduce/db_forget."""

from __future__ import annotations

from typing import Any

from ...core.context import Context
from ...core.ids import new_ref, new_uuid
from ...core.objects import new_record
from ...db.store import Database
from ...errors import ApiError
from ...idl.model import CLASSES
from ...idl.types import NULL_REF
from ..install import network as fresh_network
from ..registry import implements
from . import pifs as real_pifs
from .pif import destroy_pif_row
from .pif_devices import allowed_devices, real_devices
from .vlan import destroy_vlan


def _host_index(db: Database, host: str) -> int:
    return sorted(db.refs("host"), key=lambda h: db.get("host", h)["name_label"]).index(host) + 1


def _pif_on(db: Database, host: str, device: str) -> str | None:
    for pif in db.get("host", host)["PIFs"]:
        row = db.get("PIF", pif)
        if row["device"] == device and row["VLAN"] == -1:
            return str(pif)
    return None


def _introduce_nic(db: Database, host: str, nic: int, mac: str, managed: bool) -> str:
    networks = fresh_network.physical_networks(db)
    metrics = new_ref()
    ref = new_ref()
    with db.transaction():
        db.create("PIF_metrics", metrics, {"uuid": new_uuid(), "carrier": True, "speed": 1000})
        db.create(
            "PIF",
            ref,
            new_record(
                "PIF",
                uuid=new_uuid(),
                device=fresh_network.NICS[nic],
                network=networks.get(f"xenbr{nic}", NULL_REF),
                host=host,
                MAC=mac,
                MTU=1500,
                VLAN=-1,
                metrics=metrics,
                physical=True,
                currently_attached=False,
                managed=managed,
                properties={"gro": "on"},
                capabilities=["gro"],
            ),
        )
    return ref


@implements("PIF.introduce")
def introduce(ctx: Context, host: str, mac: str, device: str, managed: bool) -> str:
    db = ctx.db
    if real_devices(ctx.toolstack):
        # an administrator names a kernel device: it may become a PIF from now on
        if _pif_on(db, host, device) is not None:
            raise ApiError("DUPLICATE_PIF_DEVICE_NAME", [device])
        return real_pifs.introduce_device(ctx.toolstack, host, device, real_pifs.next_index(db))
    if device not in fresh_network.NICS:
        raise ApiError("PIF_DEVICE_NOT_FOUND", [])
    if _pif_on(db, host, device) is not None:
        raise ApiError("DUPLICATE_PIF_DEVICE_NAME", [device])
    nic = fresh_network.NICS.index(device)
    mac = mac or fresh_network.nic_mac(_host_index(db, host), nic)
    return _introduce_nic(db, host, nic, mac, managed)


@implements("PIF.scan")
def scan(ctx: Context, host: str) -> None:
    """Introduce any NIC of the host that has no PIF: on a real switch, only among the
    devices xenstack was given (``--pif``, ``PIF.introduce``) that the kernel has."""
    db = ctx.db
    if real_devices(ctx.toolstack):
        for device in sorted(allowed_devices(ctx.toolstack)):
            if _pif_on(db, host, device) is None:
                try:
                    real_pifs.introduce_device(
                        ctx.toolstack, host, device, real_pifs.next_index(db)
                    )
                except ApiError:
                    continue  # given once, gone from the kernel now
            else:
                real_pifs.refresh_metrics(ctx.toolstack, _pif_on(db, host, device) or "")
        return
    for nic, device in enumerate(fresh_network.NICS):
        if _pif_on(db, host, device) is None:
            _introduce_nic(db, host, nic, fresh_network.nic_mac(_host_index(db, host), nic), True)


def _forget(db: Database, pif: str) -> None:
    row = db.get("PIF", pif)
    if row["management"]:
        raise ApiError("PIF_IS_MANAGEMENT_INTERFACE", [pif])
    if row["VLAN_slave_of"]:
        raise ApiError("PIF_VLAN_STILL_EXISTS", [pif])
    if row["tunnel_transport_PIF_of"]:
        raise ApiError("PIF_TUNNEL_STILL_EXISTS", [pif])
    with db.transaction():
        if row["VLAN_master_of"] != NULL_REF and db.exists("VLAN", row["VLAN_master_of"]):
            db.destroy("VLAN", row["VLAN_master_of"])
        destroy_pif_row(db, pif)


@implements("PIF.forget")
def forget(ctx: Context, self_: str) -> None:
    _forget(ctx.db, self_)


@implements("PIF.destroy")
def destroy(ctx: Context, self_: str) -> None:
    """Only VLAN masters can be destroyed (the message is XAPI's deprecated VLAN removal)."""
    row = ctx.db.get("PIF", self_)
    if row["physical"]:
        raise ApiError("PIF_IS_PHYSICAL", [self_])
    if row["VLAN_master_of"] == NULL_REF:
        raise ApiError("PIF_IS_NOT_PHYSICAL", [self_])
    destroy_vlan(ctx.db, row["VLAN_master_of"])


@implements("PIF.db_introduce")
def db_introduce(ctx: Context, *args: Any) -> str:
    names = [p.name for p in CLASSES["PIF"].messages["db_introduce"].params[1:]]
    record = dict(zip(names, args, strict=True))
    fields = CLASSES["PIF"].fields
    ref = new_ref()
    with ctx.db.transaction() as db:
        db.create(
            "PIF",
            ref,
            {k: v for k, v in record.items() if k in fields} | {"uuid": new_uuid()},
        )
    return ref


@implements("PIF.db_forget")
def db_forget(ctx: Context, self_: str) -> None:
    with ctx.db.transaction() as db:
        destroy_pif_row(db, self_)
