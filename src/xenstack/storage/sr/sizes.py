"""Sizes-only SRs (``xenstack init --sim-storage``, and every SR no directory backs): VDIs
that are sizes and nothing else, for very large simulated pools.

A :class:`SizesSr` is a view of one SR built from what the database records of it: its VDIs'
sizes, its capacity and how it provisions. Its operations do the space arithmetic a real SR
would (a thin VHD SR's new VDI takes its VHD metadata, a thick one its whole size as well)
and refuse what does not fit with :class:`SrFullError`; they keep no data, so
``holds_data`` is False and there is no file to export, transfer or collect.
"""

from __future__ import annotations

from typing import Protocol

from xenstack.storage.sr.driver import ERR_NO_VDI, SrDriverError, SrFullError, VdiInfo

MiB = 1 << 20
VHD_BLOCK = 2 * MiB
ERR_SIZE = 79  # SM: "VDI Invalid size"


def vhd_overhead(size: int) -> int:
    """The space a fresh dynamic VHD takes: footer, header and block table."""
    bat = ((size + VHD_BLOCK - 1) // VHD_BLOCK) * 4
    return 3 * 512 + 1024 + ((bat + 511) // 512) * 512


class SizesRecords(Protocol):
    """What a sizes-only SR's records hold: one VDI's sizes by location, and the bytes all
    its VDIs take. Asked only when needed (a large SR's records are many)."""

    def find(self, location: str) -> VdiInfo | None: ...

    def used(self) -> int: ...

    def all(self) -> list[VdiInfo]: ...


class Listed:
    """:class:`SizesRecords` from a list of VDIs."""

    def __init__(self, vdis: list[VdiInfo]) -> None:
        self.vdis = {v.location: v for v in vdis}
        self._used = sum(v.physical_utilisation for v in vdis)

    def find(self, location: str) -> VdiInfo | None:
        return self.vdis.get(location)

    def used(self) -> int:
        return self._used

    def all(self) -> list[VdiInfo]:
        return list(self.vdis.values())


class SizesSr:
    """The VDIs of one sizes-only SR (see the module docstring).

    ``vdis``: the SR's VDIs (a list, or :class:`SizesRecords` read when first needed: a
    driver built only to be asked ``holds_data`` reads no records). ``thin``: VDIs take
    space as data is written (else their whole size up front); ``vhd``: the SR keeps VHDs,
    so a new thin VDI takes VHD metadata (else its size). What the driver does is kept over
    the records (it changes none of them: the caller records the results).
    """

    directory = ""
    read_only = False
    holds_data = False

    def __init__(
        self, vdis: list[VdiInfo] | SizesRecords, capacity: int, *, thin: bool, vhd: bool
    ) -> None:
        self._records: SizesRecords = Listed(vdis) if isinstance(vdis, list) else vdis
        self._changed: dict[str, VdiInfo | None] = {}  # made, resized or deleted (None) here
        self._used: int | None = None
        self.capacity = capacity
        self.thin, self.vhd = thin, vhd

    def initial_usage(self, size: int) -> int:
        """Physical space a new VDI of ``size`` bytes takes."""
        if not self.thin:
            return size + vhd_overhead(size)
        return vhd_overhead(size) if self.vhd else size

    def _take(self, needed: int) -> None:
        free = self.capacity - self.usage()[0]
        if needed > free:
            raise SrFullError(needed, max(free, 0))
        self._used = self.usage()[0] + needed

    def attach(self) -> None:
        """Nothing to make usable."""

    def detach_and_destroy(self, sr_uuid: str, locations: list[str]) -> None:
        """Nothing on storage to remove."""

    def scan(self) -> list[VdiInfo]:
        """The recorded VDIs (with what this driver did): there is nothing else to find."""
        found = {v.location: v for v in self._records.all()} | self._changed
        return [v for v in found.values() if v is not None]

    def usage(self) -> tuple[int, int]:
        if self._used is None:
            self._used = self._records.used()
        return self._used, self.capacity

    def path(self, vdi_uuid: str) -> str:
        raise SrDriverError(ERR_NO_VDI, f"VDI {vdi_uuid} is sizes only: it has no file")

    def info(self, vdi_uuid: str) -> VdiInfo:
        if vdi_uuid in self._changed:
            found = self._changed[vdi_uuid]
        else:
            found = self._records.find(vdi_uuid)
        if found is None:
            raise SrDriverError(ERR_NO_VDI, f"The VDI is not available [opterr={vdi_uuid}]")
        return found

    def _add(self, vdi_uuid: str, size: int, physical: int) -> VdiInfo:
        self._take(physical)
        info = VdiInfo(vdi_uuid, vdi_uuid, size, physical)
        self._changed[vdi_uuid] = info
        return info

    def create(self, vdi_uuid: str, size: int) -> VdiInfo:
        if size < 0:
            raise SrDriverError(ERR_SIZE, "VDI Invalid size")
        return self._add(vdi_uuid, size, self.initial_usage(size))

    def delete(self, vdi_uuid: str) -> None:
        """Forget a VDI. Its space comes off what :meth:`usage` counted already; if nothing
        was counted yet, the records (which the caller has updated) are read without it."""
        if self._used is not None:
            try:
                self._used -= self.info(vdi_uuid).physical_utilisation
            except SrDriverError:
                return
        self._changed[vdi_uuid] = None

    def snapshot(self, vdi_uuid: str, new_uuid: str) -> VdiInfo:
        """A new VDI as large as ``vdi_uuid``: thin, or full size on a thick SR."""
        size = self.info(vdi_uuid).virtual_size
        return self._add(new_uuid, size, self.initial_usage(size))

    def resize(self, vdi_uuid: str, size: int) -> VdiInfo:
        """Grow a VDI: a thick SR gives it the added bytes, a thin one the larger VHD table."""
        old = self.info(vdi_uuid)
        grown = size - old.virtual_size
        extra = grown if not self.thin else vhd_overhead(size) - vhd_overhead(old.virtual_size)
        self._take(extra)
        info = VdiInfo(old.uuid, old.location, size, old.physical_utilisation + extra)
        self._changed[vdi_uuid] = info
        return info
