"""The storage layer's exceptions, all in one place.

``StorageError`` is the root. ``VhdError`` means an image (or an image stream) is invalid,
corrupt, truncated or unsupported: the file is refused and nothing is changed.
``VhdChainError`` narrows it to differencing chains (missing parent, parent UUID mismatch,
loops). ``StreamError`` is a byte stream that does not fit its destination. Callers'
mistakes (negative offsets, writes past the end, shrinking) raise ``ValueError`` as usual.
"""

from __future__ import annotations


class StorageError(Exception):
    """Root of the storage layer's own exceptions."""


class VhdError(StorageError):
    """A VHD file or stream is invalid, corrupt, truncated or unsupported."""


class VhdChainError(VhdError):
    """A differencing chain cannot be resolved: missing parent, wrong parent, loop, too deep."""


class StreamError(StorageError):
    """An import stream does not fit the destination disk (too long, wrong size)."""
