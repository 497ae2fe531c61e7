"""New records from the declaration, and new objects from a client's record (as the generic
``create`` and the classes' own do)."""

from __future__ import annotations

from typing import Any

from ..idl.model import CLASSES
from .context import Context
from .ids import new_ref, new_uuid


def new_record(cls: str, /, **fields: Any) -> dict[str, Any]:
    """A record of ``cls``: every declared field at its declared default, then ``fields``.

    ValueError for a field ``cls`` does not declare: a misspelt name would otherwise make a
    field nobody reads. The record is built, not inserted (``db.create`` or a ``create``
    message does that).
    """
    cdef = CLASSES[cls]
    unknown = sorted(set(fields) - set(cdef.fields))
    if unknown:
        raise ValueError(f"{cls} declares no field {', '.join(unknown)}")
    record = cdef.defaults()
    record.update(fields)
    return record


def create_object(ctx: Context, cls: str, record: dict[str, Any]) -> str:
    """Insert an object from a client's record: constructor fields only, fresh uuid and ref."""
    cdef = ctx.db.table(cls).cdef
    row = {k: v for k, v in record.items() if k in cdef.fields and cdef.fields[k].in_constructor}
    if "uuid" in cdef.fields:
        row["uuid"] = new_uuid()
    with ctx.db.transaction() as db:
        return db.create(cls, new_ref(), row)
