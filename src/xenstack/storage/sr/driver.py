"""The contract every SR driver meets (file-backed, or sizes-only: ``sizes``).

Drivers know files, not the database: they take and return VDI uuids and sizes. Every method
is blocking; callers run the slow ones off the event loop. Errors are :class:`SrDriverError`
(with the SM error number XAPI would report), :class:`SrFullError` (no room for a sizes-only
VDI) or the VHD library's errors.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Protocol

ERR_NO_VDI = 46  # SM: "The VDI is not available"
NAME_MAX = 255  # bytes in one file name (Linux)


class SrDriverError(Exception):
    """An SR operation failed; ``code`` is the SM backend error number (SR_BACKEND_FAILURE_n)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class SrFullError(Exception):
    """``needed`` bytes do not fit in the ``free`` bytes an SR has left (XAPI's SR_FULL)."""

    def __init__(self, needed: int, free: int) -> None:
        super().__init__(f"{needed} bytes needed, {free} free")
        self.needed = needed
        self.free = free


def inside(directory: str, name: str) -> str:
    """The path of the file ``name`` in ``directory``: the one check every path an SR
    derives from a record (a VDI's location) goes through.

    ``name`` must be one plain file name: not empty, no ``/`` or NUL, not starting with a dot
    (so neither ``.`` nor ``..`` nor the SR's own hidden files), at most NAME_MAX bytes; and
    the file, symlinks resolved, must be in ``directory`` itself. Anything else is
    SrDriverError 46 ("The VDI is not available"), what SM answers for a location that is
    not one of the SR's VDIs.
    """
    plain = (
        bool(name)
        and "/" not in name
        and "\0" not in name
        and not name.startswith(".")
        and len(name.encode("utf-8", "surrogateescape")) <= NAME_MAX
    )
    if not plain:
        raise SrDriverError(
            ERR_NO_VDI, f"The VDI is not available [opterr={name!r} is not a VDI of this SR]"
        )
    path = os.path.join(directory, name)
    if os.path.dirname(os.path.realpath(path)) != os.path.realpath(directory):
        raise SrDriverError(
            ERR_NO_VDI, f"The VDI is not available [opterr={name!r} leads out of the SR]"
        )
    return path


@dataclass(frozen=True)
class VdiInfo:
    """What a driver knows of one VDI: its uuid, file name and sizes; ``parent``, the uuid
    of the VHD node its leaf differs from ("" for a whole disk), as SM's ``vhd-parent``;
    ``hidden``, a node no client uses (a snapshot's or clone's read-only base: XenServer's
    "base copy")."""

    uuid: str
    location: str
    virtual_size: int
    physical_utilisation: int
    read_only: bool = False
    parent: str = ""
    hidden: bool = False


class SrDriver(Protocol):
    """One SR's storage. ``path(uuid)`` names the file holding the VDI's leaf.

    ``holds_data``: the VDIs have contents (files); a sizes-only SR's have none, so they
    cannot be exported, transferred or collected, and scanning finds only the records.
    """

    directory: str
    read_only: bool
    holds_data: bool

    def attach(self) -> None:
        """Make the SR usable (create its directory when missing)."""

    def detach_and_destroy(self, sr_uuid: str, locations: list[str]) -> None:
        """Remove the SR's own files: those of ``locations`` (its VDIs' records) and those
        named as the SR names its files; nothing else. The directory goes only when it is
        then empty and the SR's own (named after ``sr_uuid``)."""

    def scan(self) -> list[VdiInfo]:
        """The VDIs found in the SR, hidden nodes (base copies) among them, marked so; not
        the nodes a snapshot or a GC merge is making at that moment."""

    def usage(self) -> tuple[int, int]:
        """(bytes used by the SR's files, bytes the underlying filesystem offers)."""

    def path(self, vdi_uuid: str) -> str:
        """The file of a VDI, confined to the SR (:func:`inside`)."""

    def info(self, vdi_uuid: str) -> VdiInfo:
        """The sizes of one VDI; SrDriverError 46 if its file is missing."""

    def create(self, vdi_uuid: str, size: int) -> VdiInfo:
        """A new empty VDI of ``size`` bytes."""

    def delete(self, vdi_uuid: str) -> None:
        """Remove a VDI's leaf file (its hidden parents are the GC's business)."""

    def snapshot(self, vdi_uuid: str, new_uuid: str) -> VdiInfo:
        """A new VDI sharing ``vdi_uuid``'s contents, in constant time."""

    def resize(self, vdi_uuid: str, size: int) -> VdiInfo:
        """Grow a VDI to ``size`` bytes."""
