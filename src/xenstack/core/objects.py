"""New objects from a client's record, as the generic ``create`` and the classes' own do."""

from __future__ import annotations

from typing import Any

from .context import Context
from .ids import new_ref, new_uuid


def create_object(ctx: Context, cls: str, record: dict[str, Any]) -> str:
    """Insert an object from a client's record: constructor fields only, fresh uuid and ref."""
    cdef = ctx.db.table(cls).cdef
    row = {k: v for k, v in record.items() if k in cdef.fields and cdef.fields[k].in_constructor}
    if "uuid" in cdef.fields:
        row["uuid"] = new_uuid()
    with ctx.db.transaction() as db:
        return db.create(cls, new_ref(), row)
