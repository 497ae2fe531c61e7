"""PIFs that are kernel devices: adopted at install (``--pif``), metrics from the kernel, their
ports plugged on the switch and their bridge's address configured for real.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any

from ...core.ids import new_ref, new_uuid, now
from ...core.objects import new_record
from ...db.store import Database
from ...errors import ApiError
from ...idl.types import NULL_REF
from ...net import SwitchError
from ...net.command import run
from ...net.links import nic_facts
from .pif_devices import allow_device, allowed_devices, real_devices
from .ports import ensure_network, switch

if TYPE_CHECKING:
    from ...core.context import Services


def metrics_fields(facts: dict[str, str]) -> dict[str, Any]:
    """PIF_metrics fields from what the kernel says of a device."""
    fields: dict[str, Any] = {"carrier": facts.get("carrier") == "1", "last_updated": now()}
    speed = facts.get("speed", "")
    if speed.lstrip("-").isdigit() and int(speed) > 0:
        fields["speed"] = int(speed)
    if facts.get("duplex"):
        fields["duplex"] = facts["duplex"] == "full"
    for key in ("vendor_id", "device_id"):
        if facts.get(key):
            fields[key] = facts[key].removeprefix("0x")
    return fields


def _physical_network(db: Database, index: int, device: str) -> str:
    bridge = f"xenbr{index}"
    for ref, row in db.table("network").rows.items():
        if row["bridge"] == bridge:
            db.set("network", ref, "name_label", f"Pool-wide network associated with {device}")
            return str(ref)
    ref = new_ref()
    db.create(
        "network",
        ref,
        new_record(
            "network",
            uuid=new_uuid(),
            name_label=f"Pool-wide network associated with {device}",
            bridge=bridge,
            MTU=1500,
            managed=True,
        ),
    )
    return ref


def introduce_device(
    services: Services, host: str, device: str, index: int, *, management: bool = False
) -> str:
    """A PIF for the kernel device ``device`` on network ``xenbr<index>``."""
    db = services.db
    facts = nic_facts(device, services.config.netns)
    if not facts:
        raise ApiError("PIF_DEVICE_NOT_FOUND", [])
    allow_device(services, device)
    metrics, ref = new_ref(), new_ref()
    with db.transaction():
        network = _physical_network(db, index, device)
        db.create("PIF_metrics", metrics, {"uuid": new_uuid(), **metrics_fields(facts)})
        db.create(
            "PIF",
            ref,
            new_record(
                "PIF",
                uuid=new_uuid(),
                device=device,
                network=network,
                host=host,
                MAC=facts.get("MAC", ""),
                MTU=int(facts.get("MTU", "1500")),
                VLAN=-1,
                metrics=metrics,
                physical=True,
                currently_attached=True,
                managed=True,
                management=management,
                ip_configuration_mode="None",
                properties={"gro": "on"},
                capabilities=["gro"],
            ),
        )
    return ref


def adopt_pifs(services: Services, host: str, devices: tuple[str, ...]) -> None:
    """At install: this host's PIFs are ``devices`` (the first is the management one), in
    place of the simulated NICs."""
    db = services.db
    with db.transaction():
        for pif in list(db.get("host", host)["PIFs"]):
            metrics = db.get("PIF", pif)["metrics"]
            if db.exists("PIF_metrics", metrics):
                db.destroy("PIF_metrics", metrics)
            db.destroy("PIF", pif)
    for index, device in enumerate(devices):
        introduce_device(services, host, device, index, management=index == 0)


def next_index(db: Database) -> int:
    used = {row["bridge"] for row in db.table("network").rows.values()}
    n = 0
    while f"xenbr{n}" in used and any(
        db.get("network", r)["PIFs"]
        for r in db.table("network").rows
        if db.get("network", r)["bridge"] == f"xenbr{n}"
    ):
        n += 1
    return n


def refresh_metrics(services: Services, pif: str) -> None:
    db = services.db
    row = db.get("PIF", pif)
    facts = nic_facts(row["device"], services.config.netns)
    if facts and db.exists("PIF_metrics", row["metrics"]):
        with db.transaction():
            db.update("PIF_metrics", row["metrics"], **metrics_fields(facts))


async def plug_port(services: Services, pif: str) -> None:
    """Put a physical PIF's device on its bridge (a real switch: only a device it was given)."""
    db = services.db
    row = db.get("PIF", pif)
    if not row["physical"] or row["bond_slave_of"] != NULL_REF:
        await ensure_network(services, row["network"], row["host"])
        return
    if real_devices(services) and row["device"] not in allowed_devices(services):
        raise ApiError("PIF_DEVICE_NOT_FOUND", [])
    try:
        await ensure_network(services, row["network"], row["host"])
        bridge = db.get("network", row["network"])["bridge"]
        await switch(services).add_port(bridge, row["device"], mtu=row["MTU"])
    except SwitchError as exc:
        raise ApiError("INTERNAL_ERROR", [f"switch: {exc}"]) from None


async def unplug_port(services: Services, pif: str) -> None:
    row = services.db.get("PIF", pif)
    try:
        await switch(services).remove_port(row["device"])
    except SwitchError as exc:
        raise ApiError("INTERNAL_ERROR", [f"switch: {exc}"]) from None


LEASE_SCRIPT = """#!/bin/sh
# udhcpc's script for xenstack: print the lease; xenstack configures the interface
[ "$1" = bound ] || [ "$1" = renew ] || exit 0
echo "XS-LEASE ip=$ip subnet=$subnet router=$router dns=$dns"
"""


async def dhcp_lease(services: Services, pif: str) -> dict[str, str]:
    """A DHCP lease for the PIF's bridge (its internal port) from the network beyond the PIF,
    with busybox's udhcpc in the switch's namespace; the address is put on the bridge.
    Empty when no server answered."""
    state = services.state_dir
    if state is None:
        return {}
    db = services.db
    bridge = db.get("network", db.get("PIF", pif)["network"])["bridge"]
    netns = services.config.netns
    script = state / "dhcp" / "udhcpc.script"
    script.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    script.write_text(LEASE_SCRIPT)
    script.chmod(0o700)
    await ensure_network(services, db.get("PIF", pif)["network"])
    ip = ["ip", *(("-n", netns) if netns else ())]
    await run([*ip, "link", "set", "dev", bridge, "up"])
    client = [
        "busybox",
        "udhcpc",
        "-i",
        bridge,
        "-n",
        "-q",
        "-f",
        "-t",
        "4",
        "-T",
        "2",
        "-s",
        str(script),
    ]
    out = await run(["ip", "netns", "exec", netns, *client] if netns else client, check=False)
    for line in out.splitlines():
        if line.startswith("XS-LEASE "):
            lease = dict(p.split("=", 1) for p in line.split()[1:] if "=" in p)
            if lease.get("ip"):
                cidr = str(ipaddress.ip_interface(f"{lease['ip']}/{lease.get('subnet')}"))
                await run([*ip, "addr", "flush", "dev", bridge])
                await run([*ip, "addr", "add", cidr, "dev", bridge])
                return lease
    return {}


async def configure_address(services: Services, pif: str, mode: str, cidr: str) -> None:
    """Give the PIF's bridge (its internal port) the address ``cidr`` (mode Static), or none.
    On a simulated switch there is no interface to configure."""
    if not real_devices(services):
        return
    db = services.db
    bridge = db.get("network", db.get("PIF", pif)["network"])["bridge"]
    netns = services.config.netns
    ip = ["ip", *(("-n", netns) if netns else ())]
    try:
        await ensure_network(services, db.get("PIF", pif)["network"])
        await run([*ip, "addr", "flush", "dev", bridge])
        if mode == "Static" and cidr:
            await run([*ip, "addr", "add", cidr, "dev", bridge])
        await run([*ip, "link", "set", "dev", bridge, "up"])
    except SwitchError as exc:
        raise ApiError("INTERNAL_ERROR", [f"switch: {exc}"]) from None
