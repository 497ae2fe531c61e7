"""Server functions for the implicit messages, derived from the declaration.

``get_<field>``, ``set_<field>``, ``add_to_<field>``, ``remove_from_<field>``, ``get_record``,
``get_all``, ``get_all_records``, ``get_by_uuid``, ``get_by_name_label``, ``create``, ``destroy``
and the ``get_all_records_where``/``get_all_where`` extras need no code of their own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..core.context import Context
from ..core.objects import create_object
from ..db.where import compile_where
from ..errors import ApiError
from ..idl.model import ClassDef, MessageDef

Handler = Callable[..., Any]


def accessor(cdef: ClassDef, msg: MessageDef) -> Handler | None:
    """The generic server function for an implicit message, or None if it has no pattern."""
    cls, name = cdef.name, msg.name
    fixed = _FIXED.get(name)
    if fixed is not None:
        return fixed(cls)
    for prefix, make in _BY_FIELD:
        if name.startswith(prefix) and name[len(prefix) :] in cdef.fields:
            return make(cdef, name[len(prefix) :])
    for prefix, make in _BY_SET_FIELD:  # sets: add_tags, remove_tags
        field = cdef.fields.get(name[len(prefix) :]) if name.startswith(prefix) else None
        if field is not None and field.type.kind == "set":
            return make(cdef, field.name)
    return None


def _get_record(cls: str) -> Handler:
    return lambda ctx, ref: ctx.db.get(cls, ref)


def _get_all(cls: str) -> Handler:
    return lambda ctx: ctx.db.refs(cls)


def _get_all_records(cls: str) -> Handler:
    return lambda ctx: ctx.db.table(cls).rows


def _get_by_uuid(cls: str) -> Handler:
    return lambda ctx, uuid_: ctx.db.by_uuid(cls, uuid_)


def _get_by_name_label(cls: str) -> Handler:
    return lambda ctx, label: ctx.db.by_name(cls, label)


def _create(cls: str) -> Handler:
    def create(ctx: Context, record: dict[str, Any]) -> str:
        return create_object(ctx, cls, record)

    return create


def _destroy(cls: str) -> Handler:
    def destroy(ctx: Context, ref: str) -> None:
        with ctx.db.transaction() as db:
            db.destroy(cls, ref)

    return destroy


def _where(cls: str) -> Handler:
    def get_all_records_where(ctx: Context, expr: str) -> dict[str, Any]:
        test = compile_where(expr)
        return {ref: row for ref, row in ctx.db.table(cls).rows.items() if test(row)}

    return get_all_records_where


def _where_refs(cls: str) -> Handler:
    def get_all_where(ctx: Context, expr: str) -> list[str]:
        test = compile_where(expr)
        return [ref for ref, row in ctx.db.table(cls).rows.items() if test(row)]

    return get_all_where


_FIXED: dict[str, Callable[[str], Handler]] = {
    "get_record": _get_record,
    "get_all": _get_all,
    "get_all_records": _get_all_records,
    "get_by_uuid": _get_by_uuid,
    "get_by_name_label": _get_by_name_label,
    "create": _create,
    "destroy": _destroy,
    "get_all_records_where": _where,
    "get_all_where": _where_refs,
}


def _getter(cdef: ClassDef, field: str) -> Handler:
    cls = cdef.name
    return lambda ctx, ref: ctx.db.get(cls, ref)[field]


def _setter(cdef: ClassDef, field: str) -> Handler:
    cls = cdef.name

    def set_field(ctx: Context, ref: str, value: Any) -> None:
        with ctx.db.transaction() as db:
            db.set(cls, ref, field, value)

    return set_field


def _add_to(cdef: ClassDef, field: str) -> Handler:
    cls, is_map = cdef.name, cdef.fields[field].type.kind == "map"

    def add_to(ctx: Context, ref: str, *item: Any) -> None:
        row = ctx.db.get(cls, ref)
        current = row[field]
        if is_map:
            key, value = item
            if key in current:
                raise ApiError("MAP_DUPLICATE_KEY", [cls, field, row.get("uuid", ref), key])
            new: Any = {**current, key: value}
        elif item[0] in current:
            return
        else:
            new = [*current, item[0]]
        with ctx.db.transaction() as db:
            db.set(cls, ref, field, new)

    return add_to


def _remove_from(cdef: ClassDef, field: str) -> Handler:
    cls, is_map = cdef.name, cdef.fields[field].type.kind == "map"

    def remove_from(ctx: Context, ref: str, item: Any) -> None:
        current = ctx.db.get(cls, ref)[field]
        if item not in current:
            return
        if is_map:
            new: Any = {k: v for k, v in current.items() if k != item}
        else:
            new = [x for x in current if x != item]
        with ctx.db.transaction() as db:
            db.set(cls, ref, field, new)

    return remove_from


_BY_FIELD: tuple[tuple[str, Callable[[ClassDef, str], Handler]], ...] = (
    ("get_", _getter),
    ("set_", _setter),
    ("add_to_", _add_to),
    ("remove_from_", _remove_from),
)
_BY_SET_FIELD: tuple[tuple[str, Callable[[ClassDef, str], Handler]], ...] = (
    ("add_", _add_to),
    ("remove_", _remove_from),
)
