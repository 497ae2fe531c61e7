"""XenStore's errors: the ``xsd_errors`` names of ``xs_wire.h``, answered as ``XS_ERROR``."""

from __future__ import annotations

import errno

# The names xenstored answers with (xs_wire.h's xsd_errors), and their errno numbers.
NAMES = (
    "EINVAL", "EACCES", "EEXIST", "EISDIR", "ENOENT", "ENOMEM", "ENOSPC", "EIO",
    "ENOTEMPTY", "ENOSYS", "EROFS", "EBUSY", "EAGAIN", "EISCONN", "E2BIG", "EPERM",
)  # fmt: skip


class XsError(Exception):
    """A XenStore operation refused with ``name`` (one of :data:`NAMES`)."""

    def __init__(self, name: str) -> None:
        assert name in NAMES, name
        super().__init__(name)
        self.name = name

    @property
    def errno(self) -> int:
        return int(getattr(errno, self.name))

    @classmethod
    def from_name(cls, name: str) -> XsError:
        return cls(name if name in NAMES else "EINVAL")
