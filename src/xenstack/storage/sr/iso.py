"""ISO library SRs: a directory whose ``*.iso`` files are read-only VDIs (named after them)."""

from __future__ import annotations

import os

from xenstack.storage.sr.driver import SrDriverError, VdiInfo, inside

ERR_NO_LOCATION = 221  # SM: "ISO library location not found / not a directory"
ERR_READ_ONLY = 116


class IsoSr:
    """The ISO files of one directory; a VDI's location is its file name."""

    read_only = True
    holds_data = True

    def __init__(self, directory: str) -> None:
        self.directory = os.path.abspath(directory)

    def attach(self) -> None:
        if not os.path.isdir(self.directory):
            raise SrDriverError(ERR_NO_LOCATION, f"{self.directory} is not a directory")

    def detach_and_destroy(self, sr_uuid: str, locations: list[str]) -> None:
        """An ISO library's files belong to its owner: nothing is removed."""

    def scan(self) -> list[VdiInfo]:
        found = []
        for name in sorted(os.listdir(self.directory)):
            if name.lower().endswith(".iso") and self._file(name):
                size = os.stat(self.path(name)).st_size
                found.append(VdiInfo(name, name, size, size, read_only=True))
        return found

    def usage(self) -> tuple[int, int]:
        used = sum(v.physical_utilisation for v in self.scan())
        return used, used

    def _file(self, name: str) -> bool:
        try:
            return os.path.isfile(self.path(name))
        except SrDriverError:
            return False  # hidden, or a symlink out of the library

    def path(self, vdi_uuid: str) -> str:
        """The ISO file named ``vdi_uuid``, confined to the library (:func:`inside`)."""
        return inside(self.directory, vdi_uuid)

    def info(self, vdi_uuid: str) -> VdiInfo:
        try:
            size = os.stat(self.path(vdi_uuid)).st_size
        except FileNotFoundError:
            raise SrDriverError(46, f"{vdi_uuid} is not in the ISO library") from None
        return VdiInfo(vdi_uuid, vdi_uuid, size, size, read_only=True)

    def _refuse(self) -> SrDriverError:
        return SrDriverError(ERR_READ_ONLY, "The SR is read-only")

    def create(self, vdi_uuid: str, size: int) -> VdiInfo:
        if size <= 0:  # the size is checked first, as for a file SR
            raise SrDriverError(79, "VDI Invalid size")
        raise self._refuse()

    def delete(self, vdi_uuid: str) -> None:
        raise self._refuse()

    def snapshot(self, vdi_uuid: str, new_uuid: str) -> VdiInfo:
        raise self._refuse()

    def resize(self, vdi_uuid: str, size: int) -> VdiInfo:
        raise self._refuse()
