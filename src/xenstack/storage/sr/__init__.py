"""SR drivers: where a storage repository keeps its VDIs, behind one interface (``driver``).

``filesr`` (local ``ext``/``file``: one ``<vdi-uuid>.vhd`` per VDI), ``shared`` (an NFS-like
shared directory), ``iso`` (a directory of ``*.iso`` files) and ``gc`` (the garbage collector
of hidden VHD nodes); ``sizes`` keeps the sizes-only simulated SRs (VDIs that are sizes, no
data). ``registry`` maps each kind to its driver: the toolstack is given one.
"""

from xenstack.storage.sr.driver import SrDriver, SrDriverError, SrFullError, VdiInfo
from xenstack.storage.sr.filesr import FileSr
from xenstack.storage.sr.iso import IsoSr
from xenstack.storage.sr.registry import DEFAULT_DRIVERS, SrDrivers, SrSite
from xenstack.storage.sr.shared import SharedSr, shared_directory
from xenstack.storage.sr.sizes import SizesSr

__all__ = [
    "DEFAULT_DRIVERS",
    "FileSr",
    "IsoSr",
    "SharedSr",
    "SizesSr",
    "SrDriver",
    "SrDriverError",
    "SrDrivers",
    "SrFullError",
    "SrSite",
    "VdiInfo",
    "shared_directory",
]
