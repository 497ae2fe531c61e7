"""Which driver keeps an SR: a registry from a driver kind to the factory that builds it.

An SR row names its kind in ``sm_config`` (``xenstack_driver``: ``file``, ``shared``,
``iso``); an SR naming none is of the ``sizes`` kind. The toolstack is given one
:class:`SrDrivers` (by default :data:`DEFAULT_DRIVERS`) and every driver is built through it,
so a new kind (a real LVM or NFS driver) is one more entry, given to the toolstack, and no
code asking for a driver changes. A registry is immutable: :meth:`SrDrivers.with_kind`
makes a new one.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from xenstack.storage.sr.driver import SrDriver
from xenstack.storage.sr.filesr import FileSr
from xenstack.storage.sr.iso import IsoSr
from xenstack.storage.sr.shared import SharedSr
from xenstack.storage.sr.sizes import SizesRecords, SizesSr

SIZES = "sizes"  # the kind of an SR whose sm_config names none


@dataclass(frozen=True)
class SrSite:
    """What a driver is built from: the SR's directory (``""`` when it has none), its
    capacity in bytes, how it provisions, and its VDIs' records (read only when asked)."""

    path: str
    capacity: int
    thin: bool
    vhd: bool
    vdis: SizesRecords


DriverFactory = Callable[[SrSite], SrDriver]


class SrDrivers:
    """An immutable mapping of driver kinds to factories (see the module docstring)."""

    def __init__(self, factories: Mapping[str, DriverFactory]) -> None:
        self._factories = MappingProxyType(dict(factories))

    @property
    def kinds(self) -> list[str]:
        return sorted(self._factories)

    def with_kind(self, kind: str, factory: DriverFactory) -> SrDrivers:
        """A registry like this one, with ``kind`` built by ``factory``."""
        return SrDrivers({**self._factories, kind: factory})

    def build(self, kind: str | None, site: SrSite) -> SrDriver:
        """The driver of ``kind`` for ``site``. An SR naming no kind, or one this registry
        does not know, is kept sizes-only (as SRs always were whose driver was unknown)."""
        factory = self._factories.get(kind or SIZES) or self._factories[SIZES]
        return factory(site)


def _shared(site: SrSite) -> SrDriver:
    return SharedSr(os.path.dirname(site.path), os.path.basename(site.path))


def _sizes(site: SrSite) -> SrDriver:
    return SizesSr(site.vdis, site.capacity, thin=site.thin, vhd=site.vhd)


DEFAULT_DRIVERS = SrDrivers(
    {
        "file": lambda site: FileSr(site.path),
        "shared": _shared,
        "iso": lambda site: IsoSr(site.path),
        SIZES: _sizes,
    }
)
