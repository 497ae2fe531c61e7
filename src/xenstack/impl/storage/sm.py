"""The storage manager (SM) drivers of the simulated pool, as data.

Each driver declares its capabilities (the SMAPIv1 feature names, some with a version) and
configuration keys. SR and VDI operations consult these tables: an SR whose driver lacks
``VDI_SNAPSHOT`` refuses ``VDI.snapshot``, and its ``allowed_operations`` say so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ...core.ids import new_ref, new_uuid
from ...core.objects import new_record
from ...db.store import Database
from ...errors import ApiError

_VHD_FEATURES = (
    "SR_PROBE",
    "SR_SCAN",
    "SR_UPDATE",
    "SR_SUPPORTS_LOCAL_CACHING",
    "VDI_CREATE",
    "VDI_DELETE",
    "VDI_ATTACH",
    "VDI_DETACH",
    "VDI_UPDATE",
    "VDI_CLONE",
    "VDI_SNAPSHOT",
    "VDI_RESIZE",
    "VDI_MIRROR",
    "VDI_GENERATE_CONFIG",
    "VDI_RESET_ON_BOOT/2",
    "VDI_CONFIG_CBT",
    "VDI_ACTIVATE",
    "VDI_DEACTIVATE",
    "VDI_READ_CACHING",
    "ATOMIC_PAUSE",
)
_ISO_FEATURES = (
    "SR_SCAN",
    "SR_ATTACH",
    "SR_DETACH",
    "VDI_CREATE",
    "VDI_DELETE",
    "VDI_ATTACH",
    "VDI_DETACH",
    "VDI_INTRODUCE",
)


@dataclass(frozen=True)
class Driver:
    """One SM driver: what it is called, what it can do, what it needs to attach."""

    type: str
    name: str
    description: str
    features: tuple[str, ...]
    configuration: dict[str, str] = field(default_factory=dict)
    thin: bool = True  # thin provisioned: VDIs take physical space as data is written
    shared_capable: bool = False

    def has(self, feature: str) -> bool:
        return feature in self.feature_map()

    def feature_map(self) -> dict[str, int]:
        out = {}
        for item in self.features:
            name, _, version = item.partition("/")
            out[name] = int(version or "1")
        return out


DRIVERS: dict[str, Driver] = {
    d.type: d
    for d in (
        Driver(
            "ext",
            "Local EXT3 VHD",
            "SR plugin which represents disks as VHD files stored on a local EXT3 filesystem",
            (*_VHD_FEATURES, "THIN_PROVISIONING"),
            {"device": "local device path (required) (e.g. /dev/sda3)"},
        ),
        Driver(
            "nfs",
            "NFS VHD",
            "SR plugin which stores disks as VHD files on a remote NFS filesystem",
            (*_VHD_FEATURES, "SR_CACHING", "THIN_PROVISIONING"),
            {
                "server": "hostname or IP address of the NFS server (required)",
                "serverpath": "path on the remote server (required)",
                "nfsversion": "NFS protocol version: 3, 4, 4.0, 4.1 (optional)",
            },
            shared_capable=True,
        ),
        Driver(
            "lvm",
            "Local LVM",
            "SR plugin which represents disks as VHD-formatted logical volumes on a local disk",
            _VHD_FEATURES,
            {"device": "local device path (required) (e.g. /dev/sda3)"},
            thin=False,
        ),
        Driver(
            "file",
            "Local Path VHD",
            "SR plugin which represents disks as VHD files in a local directory",
            (*_VHD_FEATURES, "THIN_PROVISIONING"),
            {"location": "local directory path (required)"},
        ),
        Driver(
            "iso",
            "ISO",
            "Handles CD images stored as files in iso format",
            _ISO_FEATURES,
            {
                "location": "path to mount (required) (e.g. server:/path)",
                "options": "extra options to pass to mount (deprecated) (e.g. '-o ro')",
                "type": "cifs or nfs_iso",
            },
            shared_capable=True,
        ),
        Driver(
            "udev",
            "Local removable devices",
            "SR plugin which represents removable devices (CD drives, USB disks) on a host",
            ("SR_UPDATE", "VDI_INTRODUCE", "VDI_ATTACH", "VDI_DETACH", "VDI_UPDATE"),
            {"location": "path to the device directory (required)"},
        ),
        Driver(
            "dummy",
            "dummy",
            "SR plugin which keeps nothing: for tests",
            (*_VHD_FEATURES, "VDI_INTRODUCE", "THIN_PROVISIONING"),
            {},
            shared_capable=True,
        ),
    )
}

#: SR operations a driver must support, keyed by the operation name.
SR_OP_FEATURE = {
    "scan": "SR_SCAN",
    "update": "SR_UPDATE",
    "vdi_create": "VDI_CREATE",
    "vdi_introduce": "VDI_INTRODUCE",
    "vdi_destroy": "VDI_DELETE",
    "vdi_resize": "VDI_RESIZE",
    "vdi_clone": "VDI_CLONE",
    "vdi_snapshot": "VDI_SNAPSHOT",
    "vdi_mirror": "VDI_MIRROR",
    "vdi_enable_cbt": "VDI_CONFIG_CBT",
    "vdi_disable_cbt": "VDI_CONFIG_CBT",
    "vdi_data_destroy": "VDI_CONFIG_CBT",
    "vdi_list_changed_blocks": "VDI_CONFIG_CBT",
    "vdi_set_on_boot": "VDI_RESET_ON_BOOT",
}
_ALWAYS = ("destroy", "forget", "plug", "unplug", "pbd_create", "pbd_destroy")


def driver(sr_type: str) -> Driver:
    """The driver of an SR type, or SR_UNKNOWN_DRIVER."""
    found = DRIVERS.get(sr_type)
    if found is None:
        raise ApiError("SR_UNKNOWN_DRIVER", [sr_type])
    return found


def sr_allowed_operations(sr_type: str) -> list[str]:
    """The storage operations an SR of this type offers when nothing else is going on."""
    drv = DRIVERS.get(sr_type)
    if drv is None:
        return list(_ALWAYS)
    ops = [op for op, feature in SR_OP_FEATURE.items() if drv.has(feature)]
    return [*ops, *_ALWAYS]


def assert_supports(db: Database, sr: str, op: str) -> None:
    """Raise SR_OPERATION_NOT_SUPPORTED unless the SR's driver offers ``op``."""
    feature = SR_OP_FEATURE.get(op)
    drv = DRIVERS.get(db.get("SR", sr)["type"])
    if feature is not None and (drv is None or not drv.has(feature)):
        raise ApiError("SR_OPERATION_NOT_SUPPORTED", [sr])


def create_sm_drivers(db: Database) -> None:
    """One SM row per driver (a fresh install registers them at first start)."""
    for drv in DRIVERS.values():
        features = drv.feature_map()
        db.create(
            "SM",
            new_ref(),
            new_record(
                "SM",
                uuid=new_uuid(),
                name_label=drv.name,
                name_description=drv.description,
                type=drv.type,
                vendor="xenstack",
                copyright="(C) xenstack contributors",
                version="1.0",
                required_api_version="1.0",
                configuration=dict(drv.configuration),
                capabilities=sorted(features),
                features=features,
                driver_filename=f"/opt/xensource/sm/{drv.type.upper()}SR",
                required_cluster_stack=[],
            ),
        )
