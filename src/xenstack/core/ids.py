"""New object references and uuids, and the clock's ``now`` as XenAPI dates it."""

from __future__ import annotations

import uuid

from ..idl.types import DateTime
from .clock import SystemClock

_SYSTEM = SystemClock()


def new_ref() -> str:
    return f"OpaqueRef:{uuid.uuid4()}"


def new_uuid() -> str:
    return str(uuid.uuid4())


def now() -> DateTime:
    """The system clock's date; code holding a context uses ``ctx.toolstack.clock`` instead."""
    return _SYSTEM.now()
