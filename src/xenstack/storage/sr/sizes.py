"""Sizes-only SRs (``xenstack init --sim-storage``, and every SR no directory backs): VDIs
that are sizes and nothing else, for very large simulated pools.

A :class:`SizesSr` is a view of one SR built from what the database records of it: its VDIs'
sizes, its capacity and how it provisions. Its operations do the space arithmetic a real SR
would (a thin VHD SR's new VDI takes its VHD metadata, a thick one its whole size as well)
and refuse what does not fit with :class:`SrFullError`; they keep no data, so
``holds_data`` is False and there is no file to export, transfer or collect.
"""

from __future__ import annotations

from collections.abc import Callable

from xenstack.storage.sr.driver import ERR_NO_VDI, SrDriverError, SrFullError, VdiInfo

MiB = 1 << 20
VHD_BLOCK = 2 * MiB
ERR_SIZE = 79  # SM: "VDI Invalid size"


def vhd_overhead(size: int) -> int:
    """The space a fresh dynamic VHD takes: footer, header and block table."""
    bat = ((size + VHD_BLOCK - 1) // VHD_BLOCK) * 4
    return 3 * 512 + 1024 + ((bat + 511) // 512) * 512


class SizesSr:
    """The VDIs of one sizes-only SR (see the module docstring).

    ``vdis``: the SR's VDIs, or a function giving them (called once, when first needed: a
    driver built only to be asked ``holds_data`` reads no records). ``thin``: VDIs take
    space as data is written (else their whole size up front); ``vhd``: the SR keeps VHDs,
    so a new thin VDI takes VHD metadata (else its size).
    """

    directory = ""
    read_only = False
    holds_data = False

    def __init__(
        self,
        vdis: list[VdiInfo] | Callable[[], list[VdiInfo]],
        capacity: int,
        *,
        thin: bool,
        vhd: bool,
    ) -> None:
        self._source = vdis
        self._known: dict[str, VdiInfo] | None = None
        self._used = 0
        self.capacity = capacity
        self.thin, self.vhd = thin, vhd

    def _records(self) -> dict[str, VdiInfo]:
        if self._known is None:
            found = self._source() if callable(self._source) else self._source
            self._known = {v.location: v for v in found}
            self._used = sum(v.physical_utilisation for v in found)  # rows may share a location
        return self._known

    def initial_usage(self, size: int) -> int:
        """Physical space a new VDI of ``size`` bytes takes."""
        if not self.thin:
            return size + vhd_overhead(size)
        return vhd_overhead(size) if self.vhd else size

    def _take(self, needed: int) -> None:
        free = self.capacity - self.usage()[0]
        if needed > free:
            raise SrFullError(needed, max(free, 0))

    def attach(self) -> None:
        """Nothing to make usable."""

    def detach_and_destroy(self, sr_uuid: str, locations: list[str]) -> None:
        """Nothing on storage to remove."""

    def scan(self) -> list[VdiInfo]:
        return list(self._records().values())

    def usage(self) -> tuple[int, int]:
        self._records()
        return self._used, self.capacity

    def path(self, vdi_uuid: str) -> str:
        raise SrDriverError(ERR_NO_VDI, f"VDI {vdi_uuid} is sizes only: it has no file")

    def info(self, vdi_uuid: str) -> VdiInfo:
        found = self._records().get(vdi_uuid)
        if found is None:
            raise SrDriverError(ERR_NO_VDI, f"The VDI is not available [opterr={vdi_uuid}]")
        return found

    def _add(self, vdi_uuid: str, size: int, physical: int) -> VdiInfo:
        self._take(physical)
        info = VdiInfo(vdi_uuid, vdi_uuid, size, physical)
        self._records()[vdi_uuid] = info
        self._used += physical
        return info

    def create(self, vdi_uuid: str, size: int) -> VdiInfo:
        if size < 0:
            raise SrDriverError(ERR_SIZE, "VDI Invalid size")
        return self._add(vdi_uuid, size, self.initial_usage(size))

    def delete(self, vdi_uuid: str) -> None:
        gone = self._records().pop(vdi_uuid, None)
        if gone is not None:
            self._used -= gone.physical_utilisation

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
        self._records()[vdi_uuid] = info
        self._used += extra
        return info
