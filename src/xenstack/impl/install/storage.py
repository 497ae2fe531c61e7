"""The storage of a fresh install.

Pool-wide: the "XenServer Tools" ISO SR (with ``guest-tools.iso``) and, when asked, a shared
NFS SR. Per host: "Local storage" (ext, the pool's default SR on the master) and "DVD drives"
(udev). Shared SRs get one attached PBD per host. With a state directory (and without
``--sim-storage``) :func:`use_real_local_storage` turns every Local storage into a file SR
keeping one VHD per VDI in ``<state_dir>/sr/<sr-uuid>/``.
"""

from __future__ import annotations

import os

from ...core.ids import new_ref, new_uuid
from ...core.objects import new_record
from ...db.store import Database
from ...storage.sr import DEFAULT_DRIVERS, SrDrivers
from ..storage import sm
from ..storage.sr import new_pbd, new_sr
from ..storage.sr_backend import choose, driver_of
from ..storage.sr_usage import refresh_usage

GiB = 1 << 30
LOCAL_SR_SIZE = 500 * GiB
SHARED_SR_SIZE = 2048 * GiB
TOOLS_ISO_SIZE = 62 << 20
TOOLS_SR_LABEL = "XenServer Tools"


def create_sm_drivers(db: Database) -> None:
    sm.create_sm_drivers(db)


def create_pool_storage(db: Database, *, shared_sr: bool) -> None:
    """The SRs every host sees: the tools ISO library and, optionally, shared NFS."""
    tools = new_sr(
        db,
        name_label=TOOLS_SR_LABEL,
        name_description="XenServer Tools ISOs",
        type="iso",
        content_type="iso",
        shared=True,
        physical_size=TOOLS_ISO_SIZE,
        is_tools_sr=True,
        other_config={
            "xenserver_tools_sr": "true",
            "xensource_internal": "true",
            "i18n-key": "xenserver-tools",
            "i18n-original-value-name_label": TOOLS_SR_LABEL,
        },
        sm_config={},
    )
    db.create(
        "VDI",
        new_ref(),
        new_record(
            "VDI",
            uuid=new_uuid(),
            name_label="guest-tools.iso",
            name_description="XenServer Tools for Windows and Linux guests",
            SR=tools,
            virtual_size=TOOLS_ISO_SIZE,
            physical_utilisation=TOOLS_ISO_SIZE,
            type="user",
            read_only=True,
            sharable=True,
            location="guest-tools.iso",
            managed=True,
            is_tools_iso=True,
            allowed_operations=["forget", "update"],
        ),
    )
    refresh_usage(DEFAULT_DRIVERS, db, tools)  # sizes-only (its sm_config names no driver)
    if shared_sr:
        new_sr(
            db,
            name_label="NFS storage",
            name_description="Shared NFS storage",
            type="nfs",
            content_type="user",
            shared=True,
            physical_size=SHARED_SR_SIZE,
            sm_config={},
            other_config={"auto-scan": "false"},
        )


def create_host_storage(db: Database, host: str, index: int) -> str:
    """Local storage and DVD drives of one host, and its PBDs to the shared SRs."""
    local = new_sr(
        db,
        name_label="Local storage",
        name_description="",
        type="ext",
        content_type="user",
        shared=False,
        physical_size=LOCAL_SR_SIZE,
        other_config={
            "i18n-key": "local-storage",
            "i18n-original-value-name_label": "Local storage",
        },
        sm_config={"devserial": f"scsi-xenstack-disk-{index}"},
    )
    new_pbd(db, host, local, {"device": "/dev/sda3"})
    dvd = new_sr(
        db,
        name_label="DVD drives",
        name_description="Physical DVD drives",
        type="udev",
        content_type="iso",
        shared=False,
        physical_size=0,
        other_config={
            "i18n-key": "local-hotplug-cd",
            "i18n-original-value-name_label": "DVD drives",
        },
        sm_config={"type": "cd"},
    )
    new_pbd(db, host, dvd, {"location": "/dev/xapi/cd"})
    for sr, row in list(db.table("SR").rows.items()):
        if row["shared"]:
            new_pbd(db, host, sr, _shared_device_config(row["type"]))
    return local


def _shared_device_config(sr_type: str) -> dict[str, str]:
    if sr_type == "nfs":
        return {"server": "10.0.0.2", "serverpath": "/exports/xenstack"}
    if sr_type == "iso":
        return {"location": "/opt/xensource/packages/iso", "legacy_mode": "true"}
    return {}


def use_real_local_storage(db: Database, state_dir: str, registry: SrDrivers) -> None:
    """Make every "Local storage" SR a file SR, and the shared NFS SR a shared directory,
    under ``state_dir`` (in a transaction); ``registry`` builds their drivers."""
    for sr, row in list(db.table("SR").rows.items()):
        if row["sm_config"].get("xenstack_driver"):
            continue
        if row["type"] == "ext" and not row["shared"]:
            backend = choose(state_dir, "ext", row["uuid"], {})
        elif row["type"] == "nfs" and row["shared"]:
            backend = choose(state_dir, "nfs", row["uuid"], _shared_device_config("nfs"))
        else:
            continue
        os.makedirs(backend["xenstack_path"], exist_ok=True)
        db.set("SR", sr, "sm_config", row["sm_config"] | backend)
        assert driver_of(registry, db, db.get("SR", sr)).holds_data
        refresh_usage(registry, db, sr)
