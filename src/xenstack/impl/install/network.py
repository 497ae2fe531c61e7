"""The networks and PIFs of a fresh install.

Every host has two NICs, eth0 (the management interface, with an address on the simulated
10.0.0.0/24 subnet) and eth1 (unconfigured). Each NIC joins the pool-wide network on bridge
``xenbrN``; the host internal management network (bridge ``xenapi``) has no PIFs.
"""

from __future__ import annotations

from typing import Any

from ...core.ids import new_ref, new_uuid, now
from ...core.objects import new_record
from ...db.store import Database

NICS = ("eth0", "eth1")
MANAGEMENT_SUBNET = "10.0.0"
INTERNAL_BRIDGE = "xenapi"
INTERNAL_MANAGEMENT_CONFIG = {
    "is_guest_installer_network": "true",
    "is_host_internal_management_network": "true",
    "ip_begin": "169.254.0.1",
    "ip_end": "169.254.255.254",
    "netmask": "255.255.0.0",
}


def host_ip(index: int) -> str:
    """The management address of the ``index``-th host (1-based)."""
    return f"{MANAGEMENT_SUBNET}.{10 + index}"


def nic_mac(index: int, nic: int) -> str:
    """A stable, unique MAC per host and NIC."""
    return f"00:16:3e:{(index >> 8) & 0xFF:02x}:{index & 0xFF:02x}:{nic:02x}"


def physical_networks(db: Database) -> dict[str, str]:
    """Bridge name -> network ref of the pool-wide physical networks (xenbr0, xenbr1)."""
    wanted = {f"xenbr{n}" for n in range(len(NICS))}
    found = {}
    for ref, row in db.table("network").rows.items():
        if row["bridge"] in wanted:
            found[row["bridge"]] = ref
    return found


def create_pool_networks(db: Database) -> None:
    """The physical networks and the host internal management network."""
    for n, nic in enumerate(NICS):
        db.create(
            "network",
            new_ref(),
            new_record(
                "network",
                uuid=new_uuid(),
                name_label=f"Pool-wide network associated with {nic}",
                name_description="",
                bridge=f"xenbr{n}",
                MTU=1500,
                managed=True,
                other_config={},
            ),
        )
    db.create(
        "network",
        new_ref(),
        new_record(
            "network",
            uuid=new_uuid(),
            name_label="Host internal management network",
            name_description="Network on which guests will be assigned a private "
            "link-local IP address which can be used to talk XenAPI",
            bridge=INTERNAL_BRIDGE,
            MTU=1500,
            managed=True,
            other_config=dict(INTERNAL_MANAGEMENT_CONFIG),
        ),
    )


def create_host_pifs(db: Database, host: str, index: int, address: str) -> None:
    """eth0 and eth1 of one host, on the pool-wide networks."""
    networks = physical_networks(db)
    for n, nic in enumerate(NICS):
        metrics = new_ref()
        db.create("PIF_metrics", metrics, _pif_metrics(nic))
        record = _pif_record(host, nic, networks[f"xenbr{n}"], nic_mac(index, n), metrics)
        if n == 0:
            record.update(_management_config(index))
        db.create("PIF", new_ref(), record)


def _pif_record(host: str, device: str, network: str, mac: str, metrics: str) -> dict[str, Any]:
    return {
        "uuid": new_uuid(),
        "device": device,
        "network": network,
        "host": host,
        "MAC": mac,
        "MTU": 1500,
        "VLAN": -1,
        "metrics": metrics,
        "physical": True,
        "currently_attached": True,
        "ip_configuration_mode": "None",
        "managed": True,
        "properties": {"gro": "on"},
        "capabilities": ["gro"],
        "primary_address_type": "IPv4",
        "ipv6_configuration_mode": "None",
        "other_config": {},
    }


def _management_config(index: int) -> dict[str, Any]:
    return {
        "management": True,
        "disallow_unplug": False,
        "ip_configuration_mode": "Static",
        "IP": host_ip(index),
        "netmask": "255.255.255.0",
        "gateway": f"{MANAGEMENT_SUBNET}.1",
        "DNS": f"{MANAGEMENT_SUBNET}.1",
    }


def _pif_metrics(device: str) -> dict[str, Any]:
    return {
        "uuid": new_uuid(),
        "carrier": True,
        "vendor_id": "8086",
        "vendor_name": "Intel Corporation",
        "device_id": "10d3",
        "device_name": "82574L Gigabit Network Connection",
        "speed": 1000,
        "duplex": True,
        "pci_bus_path": f"0000:0{NICS.index(device) + 1}:00.0",
        "last_updated": now(),
    }


def new_pif_metrics(db: Database) -> str:
    """A metrics row for a logical PIF (VLAN, bond, tunnel): no carrier data of its own."""
    ref = new_ref()
    db.create("PIF_metrics", ref, {"uuid": new_uuid(), "carrier": True, "last_updated": now()})
    return ref
