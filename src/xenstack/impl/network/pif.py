"""PIFs: IP configuration, plug/unplug, introduce/forget/scan of the simulated NICs."""

from __future__ import annotations

import ipaddress
from typing import Any

from ...core.context import Context
from ...core.ids import new_ref, new_uuid
from ...db.store import Database
from ...errors import ApiError
from ...idl.types import NULL_REF
from ...net import SwitchError
from ..install import network as fresh_network
from ..registry import field_setter, implements
from . import pifs as real_pifs
from .pif_devices import real_devices

SUPPORTED_PROPERTIES = {"gro": ("on", "off")}


def assert_managed(db: Database, pif: str) -> dict[str, Any]:
    row = db.get("PIF", pif)
    if not row["managed"]:
        raise ApiError("PIF_UNMANAGED", [pif])
    return row


def assert_no_other_local_pifs(db: Database, host: str, network: str) -> None:
    """A network has at most one PIF per host: NETWORK_ALREADY_CONNECTED."""
    for pif in db.get("network", network)["PIFs"]:
        if db.get("PIF", pif)["host"] == host:
            raise ApiError("NETWORK_ALREADY_CONNECTED", [network, pif])


def new_logical_pif(db: Database, **fields: Any) -> str:
    """A non-physical PIF (VLAN, bond master, tunnel access) with its own metrics."""
    ref = new_ref()
    record = {
        "uuid": new_uuid(),
        "VLAN": -1,
        "physical": False,
        "currently_attached": True,
        "ip_configuration_mode": "None",
        "managed": True,
        "metrics": fresh_network.new_pif_metrics(db),
        **fields,
    }
    db.create("PIF", ref, record)
    return ref


def destroy_pif_row(db: Database, pif: str) -> None:
    metrics = db.get("PIF", pif)["metrics"]
    shared = any(r["metrics"] == metrics for ref, r in db.table("PIF").rows.items() if ref != pif)
    if db.exists("PIF_metrics", metrics) and not shared:
        db.destroy("PIF_metrics", metrics)
    db.destroy("PIF", pif)


def _assert_ip(param: str, value: str, version: int) -> None:
    try:
        ok = ipaddress.ip_address(value).version == version
    except ValueError:
        ok = False
    if not ok:
        raise ApiError("INVALID_IP_ADDRESS_SPECIFIED", [param])


def _dhcp_address(db: Database, pif: str) -> str:
    """A stable simulated DHCP lease on the management subnet."""
    index = sorted(db.refs("PIF")).index(pif)
    return f"{fresh_network.MANAGEMENT_SUBNET}.{100 + index % 150}"


@implements("PIF.reconfigure_ip")
async def reconfigure_ip(
    ctx: Context, self_: str, mode: str, ip: str, netmask: str, gateway: str, dns: str
) -> None:
    db = ctx.db
    row = assert_managed(db, self_)
    if mode == "Static":
        _assert_ip("IP", ip, 4)
        _assert_ip("netmask", netmask, 4)
    for param, value in (("IP", ip), ("netmask", netmask), ("gateway", gateway)):
        if value:
            _assert_ip(param, value, 4)
    if row["management"] and mode == "None" and row["primary_address_type"] == "IPv4":
        raise ApiError("PIF_IS_MANAGEMENT_INTERFACE", [self_])
    real = real_devices(ctx.toolstack)
    if mode == "DHCP" and real:
        try:
            lease = await real_pifs.dhcp_lease(ctx.toolstack, self_)
        except SwitchError as exc:
            raise ApiError("INTERNAL_ERROR", [f"switch: {exc}"]) from None
        # no answer yet: the mode is recorded with no address, as XAPI leaves a PIF waiting
        ip, netmask = lease.get("ip", ""), lease.get("subnet", "")
        gateway = gateway or lease.get("router", "").split(" ")[0]
        dns = dns or ",".join(lease.get("dns", "").split())
    elif mode == "DHCP":
        ip, netmask = _dhcp_address(db, self_), "255.255.255.0"
        gateway = gateway or f"{fresh_network.MANAGEMENT_SUBNET}.1"
    elif mode == "None":
        ip = netmask = gateway = ""
    if mode != "DHCP" or not real:
        cidr = str(ipaddress.ip_interface(f"{ip}/{netmask}")) if mode == "Static" else ""
        await real_pifs.configure_address(ctx.toolstack, self_, mode, cidr)
    with db.transaction():
        db.update(
            "PIF",
            self_,
            ip_configuration_mode=mode,
            IP=ip,
            netmask=netmask,
            gateway=gateway,
            DNS=dns,
        )
        if row["management"] and row["host"] != NULL_REF and mode != "None" and ip:
            db.set("host", row["host"], "address", ip)


@implements("PIF.reconfigure_ipv6")
def reconfigure_ipv6(
    ctx: Context, self_: str, mode: str, ipv6: str, gateway: str, dns: str
) -> None:
    db = ctx.db
    row = assert_managed(db, self_)
    if mode == "Static":
        try:
            ipaddress.ip_interface(ipv6)
        except ValueError:
            raise ApiError("INVALID_CIDR_ADDRESS_SPECIFIED", ["IPv6"]) from None
    if gateway:
        _assert_ip("gateway", gateway, 6)
    if row["management"] and mode == "None" and row["primary_address_type"] == "IPv6":
        raise ApiError("PIF_IS_MANAGEMENT_INTERFACE", [self_])
    with db.transaction():
        db.update(
            "PIF",
            self_,
            ipv6_configuration_mode=mode,
            IPv6=[ipv6] if mode == "Static" else [],
            ipv6_gateway=gateway,
            DNS=dns or row["DNS"],
        )


@implements("PIF.plug")
async def plug(ctx: Context, self_: str) -> None:
    row = ctx.db.get("PIF", self_)
    if row["bond_slave_of"] != NULL_REF:
        raise ApiError("CANNOT_PLUG_BOND_SLAVE", [self_])
    await real_pifs.plug_port(ctx.toolstack, self_)
    with ctx.db.transaction() as db:
        db.set("PIF", self_, "currently_attached", True)


@implements("PIF.unplug")
async def unplug(ctx: Context, self_: str) -> None:
    row = assert_managed(ctx.db, self_)
    if row["disallow_unplug"]:
        raise ApiError("PIF_DOES_NOT_ALLOW_UNPLUG", [self_])
    if row["management"]:
        raise ApiError("PIF_IS_MANAGEMENT_INTERFACE", [self_])
    if row["physical"]:
        await real_pifs.unplug_port(ctx.toolstack, self_)
    with ctx.db.transaction() as db:
        db.set("PIF", self_, "currently_attached", False)


implements("PIF.set_disallow_unplug")(field_setter("PIF", "disallow_unplug"))


@implements("PIF.set_primary_address_type")
def set_primary_address_type(ctx: Context, self_: str, value: str) -> None:
    if ctx.db.get("PIF", self_)["management"]:
        raise ApiError("PIF_IS_MANAGEMENT_INTERFACE", [self_])
    with ctx.db.transaction() as db:
        db.set("PIF", self_, "primary_address_type", value)


@implements("PIF.set_property")
def set_property(ctx: Context, self_: str, name: str, value: str) -> None:
    row = ctx.db.get("PIF", self_)
    if name not in SUPPORTED_PROPERTIES:
        raise ApiError("INVALID_VALUE", ["properties", name])
    if value not in SUPPORTED_PROPERTIES[name]:
        raise ApiError("INVALID_VALUE", [name, value])
    with ctx.db.transaction() as db:
        db.set("PIF", self_, "properties", {**row["properties"], name: value})
