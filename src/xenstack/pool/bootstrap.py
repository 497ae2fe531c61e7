"""A fresh install: the pool object, this host and its control domain.

The full simulated XenServer pool (networks, storage, templates) builds on this.
"""

from __future__ import annotations

import socket
from typing import Any

from ..api.accessors import new_ref, new_uuid
from ..api.tasks import now
from ..db.store import Database

PRODUCT_VERSION = "8.4.0"
API_VERSION_MAJOR = 2
API_VERSION_MINOR = 21


def software_version() -> dict[str, str]:
    return {
        "product_version": PRODUCT_VERSION,
        "product_version_text": "8.4",
        "product_version_text_short": "8.4",
        "platform_name": "XCP",
        "platform_version": "3.4.0",
        "product_brand": "XenServer",
        "build_number": "xenstack",
        "hostname": socket.gethostname(),
        "date": "2026-11-21",
        "xapi": "24.0",
        "xen": "4.17.0",
        "linux": "4.19.0+1",
        "xencenter_min": "2.21",
        "xencenter_max": "2.21",
        "network_backend": "openvswitch",
        "db_schema": "5.780",
    }


def create_host(db: Database, label: str, address: str, memory: int = 64 << 30) -> str:
    """A host row with its metrics and its control domain; return the host ref."""
    host, metrics, dom0, dom0_metrics = new_ref(), new_ref(), new_ref(), new_ref()
    db.create(
        "host_metrics",
        metrics,
        {
            "uuid": new_uuid(),
            "memory_total": memory,
            "memory_free": memory - (4 << 30),
            "live": True,
            "last_updated": now(),
        },
    )
    db.create("host", host, _host_record(label, address, metrics, memory))
    db.create(
        "VM_metrics",
        dom0_metrics,
        {
            "uuid": new_uuid(),
            "memory_actual": 4 << 30,
            "VCPUs_number": 4,
            "state": [],
            "start_time": now(),
            "last_updated": now(),
        },
    )
    db.create("VM", dom0, _dom0_record(label, host, dom0_metrics))
    db.set("host", host, "control_domain", dom0)
    return host


def _host_record(label: str, address: str, metrics: str, memory: int) -> dict[str, Any]:
    return {
        "uuid": new_uuid(),
        "name_label": label,
        "name_description": "Default install",
        "hostname": label,
        "address": address,
        "enabled": True,
        "metrics": metrics,
        "API_version_major": API_VERSION_MAJOR,
        "API_version_minor": API_VERSION_MINOR,
        "API_version_vendor": "XenSource",
        "software_version": software_version(),
        "capabilities": ["xen-3.0-x86_64", "hvm-3.0-x86_32", "hvm-3.0-x86_32p", "hvm-3.0-x86_64"],
        "cpu_info": {
            "cpu_count": "8",
            "socket_count": "1",
            "vendor": "GenuineIntel",
            "speed": "2600.000",
            "modelname": "xenstack virtual CPU",
            "family": "6",
            "model": "85",
            "stepping": "7",
            "flags": "fpu de tsc msr pae",
            "features": "",
            "features_pv": "",
            "features_hvm": "",
        },
        "license_params": {
            "restrict_pooling": "false",
            "restrict_vlan": "false",
            "sku_type": "free",
            "expiry": "20380119T03:14:07Z",
        },
        "edition": "xcp-ng",
        "memory_overhead": 0,
        "sched_policy": "credit",
        "external_auth_type": "",
        "other_config": {"agent_start_time": str(now())},
    }


def _dom0_record(host_label: str, host: str, metrics: str) -> dict[str, Any]:
    return {
        "uuid": new_uuid(),
        "name_label": f"Control domain on host: {host_label}",
        "name_description": "The domain which manages physical devices and manages other domains",
        "power_state": "Running",
        "is_control_domain": True,
        "resident_on": host,
        "affinity": host,
        "domid": 0,
        "metrics": metrics,
        "memory_static_max": 4 << 30,
        "memory_dynamic_max": 4 << 30,
        "memory_dynamic_min": 4 << 30,
        "memory_static_min": 4 << 30,
        "memory_target": 4 << 30,
        "VCPUs_max": 4,
        "VCPUs_at_startup": 4,
        "domain_type": "pv",
        "allowed_operations": [],
    }


def create_pool(db: Database, host_label: str = "xenstack", address: str = "127.0.0.1") -> str:
    """The pool object and its master; return the master's ref."""
    with db.transaction():
        host = create_host(db, host_label, address)
        db.create(
            "pool",
            new_ref(),
            {
                "uuid": new_uuid(),
                "name_label": "",
                "master": host,
                "other_config": {},
                "default_SR": "OpaqueRef:NULL",
            },
        )
    return host
