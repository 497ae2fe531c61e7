"""A fresh XenServer install: the pool object, its hosts, networks, storage and templates.

``create_pool(db, hosts=N)`` builds what a freshly installed pool of N hosts holds:
pool-wide networks first, then the SM drivers and pool-wide SRs, then each host (metrics, CPUs,
control domain, PIFs, local storage, DVD drives), then the default templates.
``create_host(db, label, address)`` adds one complete host to an existing pool.
"""

from __future__ import annotations

import hashlib
import socket
from typing import Any

from ...core.ids import new_ref, new_uuid, now
from ...core.objects import new_record
from ...db.store import Database
from ...idl.types import NULL_REF
from . import network as fresh_network
from . import storage as fresh_storage
from . import templates

PRODUCT_VERSION = "8.4.0"
API_VERSION_MAJOR = 2
API_VERSION_MINOR = 21
HOST_CPUS = 8
DOM0_MEMORY = 4 << 30
DOM0_VCPUS = 4


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
        "xapi_build": "24.0.0",
        "xen": "4.17.0",
        "linux": "4.19.0+1",
        "xencenter_min": "2.21",
        "xencenter_max": "2.21",
        "network_backend": "openvswitch",
        "db_schema": "5.780",
    }


def create_host(db: Database, label: str, address: str, memory: int = 64 << 30) -> str:
    """A complete host: metrics, CPUs, control domain, and (in a pool) PIFs and storage.

    The PIFs and SRs are made only once the pool-wide networks exist (see ``create_pool``).
    """
    with db.transaction():
        host, metrics = new_ref(), new_ref()
        db.create("host_metrics", metrics, _host_metrics(memory))
        db.create("host", host, _host_record(label, address, metrics, memory))
        for number in range(HOST_CPUS):
            db.create("host_cpu", new_ref(), _cpu_record(host, number))
        db.set("host", host, "control_domain", _create_dom0(db, label, host, address))
        if fresh_network.physical_networks(db):
            index = len(db.refs("host"))
            fresh_network.create_host_pifs(db, host, index, address)
            local_sr = fresh_storage.create_host_storage(db, host, index)
            db.update("host", host, suspend_image_sr=local_sr, crash_dump_sr=local_sr)
    return host


def _host_metrics(memory: int) -> dict[str, Any]:
    return new_record(
        "host_metrics",
        uuid=new_uuid(),
        memory_total=memory,
        memory_free=memory - DOM0_MEMORY,
        live=True,
        last_updated=now(),
    )


def _host_record(label: str, address: str, metrics: str, memory: int) -> dict[str, Any]:
    iqn = f"iqn.2026-01.com.example:{hashlib.sha1(label.encode()).hexdigest()[:8]}"
    return new_record(
        "host",
        uuid=new_uuid(),
        name_label=label,
        name_description="Default install",
        hostname=label,
        address=address,
        enabled=True,
        metrics=metrics,
        API_version_major=API_VERSION_MAJOR,
        API_version_minor=API_VERSION_MINOR,
        API_version_vendor="XenSource",
        software_version={**software_version(), "hostname": label},
        capabilities=["xen-3.0-x86_64", "hvm-3.0-x86_32", "hvm-3.0-x86_32p", "hvm-3.0-x86_64"],
        cpu_info=_cpu_info(),
        cpu_configuration={},
        license_params={
            "restrict_pooling": "false",
            "restrict_vlan": "false",
            "sku_type": "free",
            "expiry": "20380119T03:14:07Z",
        },
        edition="xcp-ng",
        editions=["xcp-ng"],
        memory_overhead=0,
        sched_policy="credit",
        supported_bootloaders=["pygrub", "eliloader"],
        external_auth_type="",
        iscsi_iqn=iqn,
        bios_strings={"bios-vendor": "xenstack", "system-manufacturer": "xenstack"},
        chipset_info={"iommu": "true"},
        logging={},
        allowed_operations=["provision", "evacuate", "reboot", "shutdown", "vm_start"],
        other_config={"agent_start_time": str(now()), "iscsi_iqn": iqn},
    )


def _cpu_info() -> dict[str, str]:
    return {
        "cpu_count": str(HOST_CPUS),
        "socket_count": "1",
        "threads_per_core": "1",
        "vendor": "GenuineIntel",
        "speed": "2600.000",
        "modelname": "xenstack virtual CPU",
        "family": "6",
        "model": "85",
        "stepping": "7",
        "flags": "fpu de tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat clflush mmx fxsr sse",
        "features": "",
        "features_pv": "",
        "features_hvm": "",
        "features_pv_host": "",
        "features_hvm_host": "",
    }


def _cpu_record(host: str, number: int) -> dict[str, Any]:
    info = _cpu_info()
    return new_record(
        "host_cpu",
        uuid=new_uuid(),
        host=host,
        number=number,
        vendor=info["vendor"],
        speed=2600,
        modelname=info["modelname"],
        family=6,
        model=85,
        stepping="7",
        flags=info["flags"],
        features="",
        utilisation=0.0,
    )


def _create_dom0(db: Database, host_label: str, host: str, address: str) -> str:
    dom0, metrics = new_ref(), new_ref()
    stamp = now()
    dom0_metrics = new_record(
        "VM_metrics",
        uuid=new_uuid(),
        memory_actual=DOM0_MEMORY,
        VCPUs_number=DOM0_VCPUS,
        state=[],
        start_time=stamp,
        install_time=stamp,
        last_updated=stamp,
        current_domain_type="pv",
    )
    db.create("VM_metrics", metrics, dom0_metrics)
    db.create("VM", dom0, _dom0_record(host_label, host, metrics))
    console_uuid = new_uuid()
    location = f"https://{address}/console?uuid={console_uuid}"
    console = new_record("console", uuid=console_uuid, protocol="rfb", location=location, VM=dom0)
    db.create("console", new_ref(), console)
    return dom0


def _dom0_record(host_label: str, host: str, metrics: str) -> dict[str, Any]:
    return new_record(
        "VM",
        uuid=new_uuid(),
        name_label=f"Control domain on host: {host_label}",
        name_description="The domain which manages physical devices and manages other domains",
        power_state="Running",
        is_control_domain=True,
        resident_on=host,
        affinity=host,
        domid=0,
        metrics=metrics,
        memory_static_max=DOM0_MEMORY,
        memory_dynamic_max=DOM0_MEMORY,
        memory_dynamic_min=DOM0_MEMORY,
        memory_static_min=DOM0_MEMORY,
        memory_target=DOM0_MEMORY,
        VCPUs_max=DOM0_VCPUS,
        VCPUs_at_startup=DOM0_VCPUS,
        domain_type="pv",
        user_version=1,
        allowed_operations=[],
    )


def host_labels(hosts: int, host_label: str | None) -> list[str]:
    """XenServer-like host names: ``host1``..``hostN`` unless a label is given."""
    if host_label is None:
        return [f"host{i}" for i in range(1, hosts + 1)]
    if hosts == 1:
        return [host_label]
    return [f"{host_label}{i}" for i in range(1, hosts + 1)]


def create_pool(
    db: Database,
    host_label: str | None = None,
    address: str = "127.0.0.1",
    *,
    hosts: int = 1,
    shared_sr: bool = False,
) -> str:
    """A fresh pool of ``hosts`` hosts; return the master's ref.

    The master's address is ``address`` (where clients reach it); the others get
    addresses on the simulated management subnet.
    """
    if hosts < 1:
        raise ValueError("a pool has at least one host")
    with db.transaction():
        fresh_network.create_pool_networks(db)
        fresh_storage.create_sm_drivers(db)
        fresh_storage.create_pool_storage(db, shared_sr=shared_sr)
        pool = new_ref()
        db.create("pool", pool, _pool_record())
        members = [
            create_host(db, label, address if i == 0 else fresh_network.host_ip(i + 1))
            for i, label in enumerate(host_labels(hosts, host_label))
        ]
        master = members[0]
        local_sr = db.get("host", master)["suspend_image_sr"]
        db.update(
            "pool",
            pool,
            master=master,
            default_SR=local_sr,
            suspend_image_SR=local_sr,
            crash_dump_SR=local_sr,
        )
        templates.create_templates(db)
    return master


def _pool_record() -> dict[str, Any]:
    return {
        "uuid": new_uuid(),
        "name_label": "",
        "name_description": "",
        "master": NULL_REF,
        "default_SR": NULL_REF,
        "other_config": {"memory-ratio-hvm": "0.25", "memory-ratio-pv": "0.25"},
        "restrictions": {"restrict_vlan": "false", "restrict_pooling": "false"},
        "cpu_info": {"cpu_count": str(HOST_CPUS), "socket_count": "1", "vendor": "GenuineIntel"},
    }
