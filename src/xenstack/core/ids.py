"""New object references and uuids, and the clock's ``now`` as XenAPI dates it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from ..idl.types import DateTime


def new_ref() -> str:
    return f"OpaqueRef:{uuid.uuid4()}"


def new_uuid() -> str:
    return str(uuid.uuid4())


def now() -> DateTime:
    return DateTime(datetime.now(UTC).strftime("%Y%m%dT%H:%M:%SZ"))
