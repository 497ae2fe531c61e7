"""The contract every file-backed SR driver meets.

Drivers know files, not the database: they take and return VDI uuids and sizes. Every method
is blocking; callers run the slow ones off the event loop. Errors are :class:`SrDriverError`
(with the SM error number XAPI would report) or the VHD library's errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class SrDriverError(Exception):
    """An SR operation failed; ``code`` is the SM backend error number (SR_BACKEND_FAILURE_n)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class VdiInfo:
    """What a driver knows of one VDI: its uuid, file name and sizes."""

    uuid: str
    location: str
    virtual_size: int
    physical_utilisation: int
    read_only: bool = False


class SrDriver(Protocol):
    """One SR's storage. ``path(uuid)`` names the file holding the VDI's leaf."""

    directory: str
    read_only: bool

    def attach(self) -> None:
        """Make the SR usable (create its directory when missing)."""

    def detach_and_destroy(self) -> None:
        """Remove the SR's directory and everything in it."""

    def scan(self) -> list[VdiInfo]:
        """The visible VDIs found in the SR (hidden nodes excluded)."""

    def usage(self) -> tuple[int, int]:
        """(bytes used by the SR's files, bytes the underlying filesystem offers)."""

    def path(self, vdi_uuid: str) -> str:
        """The file of a VDI."""

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
