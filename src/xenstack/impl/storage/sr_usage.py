"""An SR's accounting: usage recomputed from its VDIs or files, space and attachment checks.

Below both the SR and the VDI messages (and the file-backed VDIs), which all keep it current.
"""

from __future__ import annotations

from ...db.store import Database
from ...errors import ApiError
from ...storage.sr import SrDriver, SrDrivers
from .sr_backend import driver_of


def refresh_usage(registry: SrDrivers, db: Database, sr: str) -> None:
    """Recompute an SR's usage as its driver counts it (files, or its VDIs' sizes)."""
    record_usage(db, sr, driver_of(registry, db, db.get("SR", sr)))


def record_usage(db: Database, sr: str, drv: SrDriver) -> None:
    """Record the usage ``drv``, the SR's driver, reports, and the virtual sizes of the VDIs
    clients allocated (managed ones: a base copy's size is its children's already)."""
    vdis = (db.get("VDI", v) for v in db.get("SR", sr)["VDIs"])
    virtual = sum(row["virtual_size"] for row in vdis if row["managed"])
    try:
        used, total = drv.usage()
    except OSError:
        return  # the directory is gone (forgotten, unreachable): keep the last figures
    db.update("SR", sr, physical_utilisation=used, physical_size=total)
    db.update("SR", sr, virtual_allocation=virtual)


def free_space(db: Database, sr: str) -> int:
    row = db.get("SR", sr)
    return int(row["physical_size"]) - int(row["physical_utilisation"])


def assert_space(db: Database, sr: str, needed: int) -> None:
    """Raise SR_FULL [requested, maximum] unless ``needed`` bytes fit in the SR."""
    free = free_space(db, sr)
    if needed > free:
        raise ApiError("SR_FULL", [needed, max(free, 0)])


def assert_plugged(db: Database, sr: str) -> None:
    """SMAPI calls need the SR attached somewhere: SR_HAS_NO_PBDS / SR_NOT_ATTACHED."""
    pbds = db.get("SR", sr)["PBDs"]
    if not pbds:
        raise ApiError("SR_HAS_NO_PBDS", [sr])
    if not any(db.get("PBD", p)["currently_attached"] for p in pbds):
        raise ApiError("SR_NOT_ATTACHED", [sr])
