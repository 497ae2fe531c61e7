"""SR drivers: where a storage repository keeps its VDIs, behind one interface (``driver``).

``filesr`` (local ``ext``/``file``: one ``<vdi-uuid>.vhd`` per VDI), ``shared`` (an NFS-like
shared directory), ``iso`` (a directory of ``*.iso`` files) and ``gc`` (the garbage collector
of hidden VHD nodes). The sizes-only simulated SRs need no driver: they live in the database.
"""

from xenstack.storage.sr.driver import SrDriver, SrDriverError, VdiInfo
from xenstack.storage.sr.filesr import FileSr
from xenstack.storage.sr.iso import IsoSr
from xenstack.storage.sr.shared import SharedSr, shared_directory

__all__ = [
    "FileSr",
    "IsoSr",
    "SharedSr",
    "SrDriver",
    "SrDriverError",
    "VdiInfo",
    "shared_directory",
]
