"""The ``Ref`` parameters that may be ``OpaqueRef:NULL``: dispatch does not check these.

Each is a parameter whose null value means something in XAPI (the comment says what); every
other ``Ref`` parameter of an explicit message must name a live object of its declared class
(HANDLE_INVALID otherwise). Refs inside records and maps are the server function's business.
"""

from __future__ import annotations

NULL_ALLOWED = frozenset(
    {
        ("VM.copy", "sr"),  # null: copy each disk in its own SR (a full clone)
        ("VDI.copy", "base_vdi"),  # null: copy every block, not only those since the base
        ("VDI.copy", "into_vdi"),  # null: make a new VDI in the SR given
        ("VDI.introduce", "metadata_of_pool"),  # null: not a pool-metadata VDI
        ("VDI.introduce", "snapshot_of"),  # null: not a snapshot
        ("host.evacuate", "network"),  # null: migrate over the management network
    }
)
