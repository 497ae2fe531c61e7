"""Check and convert call arguments against their declared types.

Wire values arrive loosely typed (XAPI's XML-RPC sends ints as strings); this module turns them
into the server's values or raises ``FIELD_TYPE_ERROR [name]``. Enums are checked against their
declared values. A string that XML cannot carry, which the decoders mark
:class:`~xenstack.core.xmltext.Unstorable` wherever it sits (a parameter, a map's key or value, a
set's member, a record's field), is refused with ``INVALID_VALUE [name, value]``, the value
spelled with escapes, so that nothing is stored that an XML-RPC client could not read back.
"""

from __future__ import annotations

import math
from typing import Any

from ..errors import ApiError
from ..idl.model import CLASSES, ENUMS
from ..idl.types import DateTime, Type
from .xmltext import Unstorable, visible


def coerce(ty: Type, value: Any, name: str) -> Any:
    """Return ``value`` converted to ``ty``, or raise FIELD_TYPE_ERROR naming ``name``."""
    if type(value) is Unstorable:
        raise unstorable(name, value)
    try:
        return _CONVERT[ty.kind](ty, value, name)
    except (ValueError, TypeError, OverflowError, RecursionError):
        raise ApiError("FIELD_TYPE_ERROR", [name]) from None


def unstorable(name: str, value: str) -> ApiError:
    """The refusal of a string XML cannot carry."""
    return ApiError("INVALID_VALUE", [name, visible(value)])


def _string(ty: Type, v: Any, name: str) -> str:
    if type(v) is str:
        return v
    raise TypeError


def _int(ty: Type, v: Any, name: str) -> int:
    if type(v) is int:
        return v
    if type(v) is str and len(v) < 24:
        return int(v)
    if type(v) is float and v.is_integer():
        return int(v)
    raise TypeError


def _float(ty: Type, v: Any, name: str) -> float:
    if type(v) in (int, float) or (type(v) is str and len(v) < 64):
        f = float(v)
        if math.isfinite(f):
            return f
    raise TypeError


def _bool(ty: Type, v: Any, name: str) -> bool:
    if type(v) is bool:
        return v
    if v in ("true", "false"):
        return bool(v == "true")
    raise TypeError


def _datetime(ty: Type, v: Any, name: str) -> DateTime:
    if isinstance(v, str) and 8 <= len(v) <= 32:
        return DateTime(v)
    raise TypeError


def _enum(ty: Type, v: Any, name: str) -> str:
    values = ENUMS.get(ty.name)
    if type(v) is str:
        if values is None or v in values:
            return v
        lowered = {x.lower(): x for x in values}
        if v.lower() in lowered:
            return lowered[v.lower()]
    raise TypeError


def _set(ty: Type, v: Any, name: str) -> list[Any]:
    if type(v) is not list:
        raise TypeError
    assert ty.of is not None
    return [coerce(ty.of, item, name) for item in v]


def _map(ty: Type, v: Any, name: str) -> dict[Any, Any]:
    if type(v) is not dict:
        raise TypeError
    assert ty.key is not None and ty.of is not None
    return {coerce(ty.key, k, name): coerce(ty.of, item, name) for k, item in v.items()}


def _record(ty: Type, v: Any, name: str) -> dict[str, Any]:
    if type(v) is not dict:
        raise TypeError
    cdef = CLASSES.get(ty.name)
    if cdef is None:
        return {k: _plain(item, k) for k, item in v.items()}
    out: dict[str, Any] = {}
    for key, item in v.items():
        fdef = cdef.fields.get(key)
        if fdef is not None:
            out[key] = coerce(fdef.type, item, key)
    return out


def _plain(v: Any, name: str) -> Any:
    """An undeclared value, refused if it holds a string XML cannot carry."""
    if type(v) is Unstorable:
        raise unstorable(name, v)
    if type(v) is list:
        return [_plain(item, name) for item in v]
    if type(v) is dict:
        return {_plain(k, name): _plain(item, name) for k, item in v.items()}
    return v


def _option(ty: Type, v: Any, name: str) -> Any:
    assert ty.of is not None
    return None if v is None else coerce(ty.of, v, name)


def _void(ty: Type, v: Any, name: str) -> None:
    return None


_CONVERT = {
    "string": _string,
    "int": _int,
    "float": _float,
    "bool": _bool,
    "datetime": _datetime,
    "ref": _string,
    "enum": _enum,
    "set": _set,
    "map": _map,
    "record": _record,
    "option": _option,
    "void": _void,
}
