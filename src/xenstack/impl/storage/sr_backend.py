"""Which SRs keep real files, and the bridge from the database to their drivers.

An SR is file-backed when its ``sm_config`` names a driver (``xenstack_driver``: ``file``,
``shared`` or ``iso``) and its directory (``xenstack_path``); every other SR is the
sizes-only simulated kind (``sizes``). The choice is made once, when the SR is created or
introduced. Drivers are built through the registry the toolstack was given
(:func:`drivers`), never from a fixed table.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterator
from typing import Any, cast

from ...db.store import Database
from ...errors import ApiError
from ...storage.errors import VhdError
from ...storage.sr import (
    FileSr,
    SrDriver,
    SrDriverError,
    SrDrivers,
    SrFullError,
    SrSite,
    VdiInfo,
    shared_directory,
)
from . import sm

DRIVER_KEY = "xenstack_driver"
PATH_KEY = "xenstack_path"
BACKEND_KEYS = frozenset({DRIVER_KEY, PATH_KEY})  # set by xenstack alone, never by a caller
FILE_TYPES = {"ext", "file"}
SIZE_ROUNDED = {"ext", "nfs", "lvm", "file"}  # VHD-based drivers round to whole blocks
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def storage_root(toolstack: Any) -> str | None:
    """Where file SRs of this toolstack live, or None when its storage is simulated."""
    if toolstack.state_dir is None:
        return None
    if toolstack.persistence.get_meta("storage") != "file":
        return None
    return str(toolstack.state_dir)


def choose(
    root: str | None, sr_type: str, sr_uuid: str, device_config: dict[str, str]
) -> dict[str, str]:
    """The ``sm_config`` entries making a new SR file-backed ({} for a simulated one)."""
    if sr_type in FILE_TYPES and root is not None:
        return {DRIVER_KEY: "file", PATH_KEY: os.path.join(root, "sr", sr_uuid)}
    if sr_type == "nfs":
        export = shared_directory(device_config, os.path.join(root or "", "nfs"))
        if export is not None and (root is not None or device_config.get("path")):
            return {DRIVER_KEY: "shared", PATH_KEY: os.path.join(export, sr_uuid)}
    location = device_config.get("location", "")
    if sr_type == "iso" and location.startswith("/") and os.path.isdir(location):
        return {DRIVER_KEY: "iso", PATH_KEY: os.path.abspath(location)}
    return {}


def plug_backend(
    root: str | None, sr_row: dict[str, Any], device_config: dict[str, str]
) -> dict[str, str]:
    """The ``sm_config`` entries a PBD's ``device_config`` gives its SR when plugged.

    A file SR names its directory as ``location``; a shared-directory SR as ``path`` or
    ``server`` + ``serverpath``; an ISO SR as ``location``. {} when the device_config
    names no storage: the SR keeps the driver it has (or stays simulated).
    """
    sr_type, sr_uuid = sr_row["type"], sr_row["uuid"]
    location = device_config.get("location", "")
    if sr_type in FILE_TYPES and location.startswith("/"):
        return {DRIVER_KEY: "file", PATH_KEY: os.path.abspath(location)}
    if sr_type == "nfs" and shared_directory(device_config, "") is not None:
        return choose(root, sr_type, sr_uuid, device_config)
    if sr_type == "iso":
        return choose(root, sr_type, sr_uuid, device_config)
    return {}


def drivers(services: Any) -> SrDrivers:
    """The SR driver registry of a toolstack (``ctx.toolstack``, or the toolstack itself)."""
    return cast(SrDrivers, services.sr_drivers)


def driver_of(
    registry: SrDrivers, db: Database, row: dict[str, Any], sm_config: dict[str, str] | None = None
) -> SrDriver:
    """The driver of an SR row (as if its ``sm_config`` were ``sm_config``, when given).

    ``row`` needs ``sm_config``, ``type``, ``physical_size`` and ``VDIs`` (the sizes-only
    driver is built from the VDIs' rows in ``db``, read only when that driver is built).
    """
    config = row["sm_config"] if sm_config is None else sm_config
    sm_driver = sm.DRIVERS.get(row["type"])
    site = SrSite(
        path=config.get(PATH_KEY, ""),
        capacity=int(row["physical_size"]),
        thin=sm_driver is None or sm_driver.thin,
        vhd=row["type"] in SIZE_ROUNDED,
        vdis=RecordedVdis(db, row["VDIs"]),
    )
    return registry.build(config.get(DRIVER_KEY), site)


class RecordedVdis:
    """An SR's VDI rows as a sizes-only driver reads them (``storage.sr.sizes.SizesRecords``):
    one lookup or one sum per question, no copy of the rows (an SR may hold 10,000s). Refs
    whose rows are gone since (the driver outlived a destroy) are left out."""

    def __init__(self, db: Database, refs: list[str]) -> None:
        self.db, self.refs = db, refs

    def _rows(self) -> Iterator[dict[str, Any]]:
        rows = self.db.table("VDI").rows
        return (rows[ref] for ref in self.refs if ref in rows)

    def find(self, location: str) -> VdiInfo | None:
        table = self.db.table("VDI")
        ref = table.by_uuid.get(location)  # a location is mostly the VDI's uuid: no scan then
        if ref is not None and ref in self.refs and table.rows[ref]["location"] == location:
            return _info(table.rows[ref])
        return next((_info(r) for r in self._rows() if r["location"] == location), None)

    def used(self) -> int:
        return sum(int(r["physical_utilisation"]) for r in self._rows())

    def all(self) -> list[VdiInfo]:
        return [_info(r) for r in self._rows()]


def _info(vdi_row: dict[str, Any]) -> VdiInfo:
    location = vdi_row["location"]
    return VdiInfo(
        location, location, int(vdi_row["virtual_size"]), int(vdi_row["physical_utilisation"])
    )


def sr_driver(registry: SrDrivers, db: Database, sr: str) -> SrDriver:
    return driver_of(registry, db, db.get("SR", sr))


def file_sr(registry: SrDrivers, db: Database, sr: str) -> FileSr | None:
    """The SR's driver when it keeps VHD files (what exports, transfers and NBD read)."""
    drv = sr_driver(registry, db, sr)
    return drv if isinstance(drv, FileSr) else None


def backend_error(exc: Exception) -> ApiError:
    """The XenAPI error for a driver failure: SR_BACKEND_FAILURE_<n> ["", message, ""]; a
    full SR filesystem is SM's 44 ("There is insufficient space"), a sizes-only SR without
    room SR_FULL [requested, maximum]."""
    if isinstance(exc, SrDriverError):
        return ApiError(f"SR_BACKEND_FAILURE_{exc.code}", ["", exc.message, ""])
    if isinstance(exc, SrFullError):  # as the sizes-only SRs always answered
        return ApiError("SR_FULL", [exc.needed, exc.free])
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return ApiError("SR_BACKEND_FAILURE_44", ["", "There is insufficient space", ""])
    if isinstance(exc, VhdError):
        return ApiError("SR_BACKEND_FAILURE_1200", ["", f"VHD error: {exc}", ""])
    return ApiError("SR_BACKEND_FAILURE_1", ["", f"{type(exc).__name__}: {exc}", ""])


def probe_directories(sr_type: str, device_config: dict[str, str], root: str | None) -> list[str]:
    """SR uuids found in a shared directory (subdirectories named like uuids)."""
    if sr_type != "nfs":
        return []
    export = shared_directory(device_config, os.path.join(root or "", "nfs"))
    if export is None or not os.path.isdir(export):
        return []
    return sorted(n for n in os.listdir(export) if UUID_RE.match(n))
