"""A pure-Python VHD library: fixed, dynamic and differencing disks.

Modules, from representation up: ``format`` (structures, encode/decode), ``bitmap``
(sector bitmaps as ints), ``layout`` (validating one file), ``layer`` (one open file),
``chain`` (parents and reads through a chain), ``image`` (a disk: read/write),
``create``/``ops``/``coalesce`` (operations), ``export``/``importer`` (streams).
"""

from xenstack.storage.errors import StreamError, VhdChainError, VhdError
from xenstack.storage.vhd.coalesce import coalesce, recover
from xenstack.storage.vhd.create import create_dynamic, create_fixed
from xenstack.storage.vhd.export import (
    ExportStream,
    changed_blocks,
    export_raw_chunks,
    export_raw_file,
    export_vhd_file,
    export_vhd_stream,
    iter_raw,
)
from xenstack.storage.vhd.format import DEFAULT_BLOCK_SIZE, MAX_VIRTUAL_SIZE, DiskType
from xenstack.storage.vhd.image import VhdImage
from xenstack.storage.vhd.importer import ByteSource, import_raw, import_raw_file, import_vhd
from xenstack.storage.vhd.layer import VhdLayer, read_footer
from xenstack.storage.vhd.ops import compact, resize, set_parent

__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "MAX_VIRTUAL_SIZE",
    "ByteSource",
    "DiskType",
    "ExportStream",
    "StreamError",
    "VhdChainError",
    "VhdError",
    "VhdImage",
    "VhdLayer",
    "changed_blocks",
    "coalesce",
    "compact",
    "create_dynamic",
    "create_fixed",
    "export_raw_chunks",
    "export_raw_file",
    "export_vhd_file",
    "export_vhd_stream",
    "import_raw",
    "import_raw_file",
    "import_vhd",
    "iter_raw",
    "read_footer",
    "recover",
    "resize",
    "set_parent",
]
