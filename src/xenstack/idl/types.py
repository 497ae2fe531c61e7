"""XenAPI types: parsed from their declaration strings, with the zero value of each.

A type string is what the declaration says: ``string``, ``int``, ``VM ref``,
``enum vm_power_state``, ``VDI ref set``, ``(string -> string) map``, ``VM record``.
Values inside the server are plain Python: str, int, float, bool, :class:`DateTime`, list
(sets), dict (maps and records).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

NULL_REF = "OpaqueRef:NULL"


class DateTime(str):
    """A XenAPI datetime, kept in XAPI's wire form ``YYYYMMDDTHH:MM:SSZ``."""

    __slots__ = ()


EPOCH = DateTime("19700101T00:00:00Z")


class Record(dict[str, Any]):
    """A stored object's fields. The store clears ``wire`` whenever the record changes, so
    encoders may keep the record's encoded form there (one slot per protocol)."""

    __slots__ = ("wire",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.wire: dict[str, bytes | str] | None = None


PRIMITIVES = frozenset({"string", "int", "float", "bool", "datetime", "void"})


@dataclass(frozen=True, slots=True)
class Type:
    """One parsed type. ``kind`` is a primitive name, or ref/enum/set/map/record."""

    kind: str
    name: str = ""  # class of a ref or record, name of an enum
    of: Type | None = None  # element of a set, value of a map
    key: Type | None = None  # key of a map

    def __str__(self) -> str:
        if self.kind in PRIMITIVES:
            return self.kind
        if self.kind == "ref":
            return f"{self.name} ref"
        if self.kind == "enum":
            return f"enum {self.name}"
        if self.kind == "record":
            return f"{self.name} record"
        if self.kind == "set":
            return f"{self.of} set"
        if self.kind == "option":
            return f"{self.of} option"
        return f"({self.key} -> {self.of}) map"


def remap_refs(ty: Type, value: Any, table: dict[str, str]) -> Any:
    """``value`` of type ``ty`` with every reference in it renamed through ``table``: a ref
    not in it becomes NULL; set members and map keys not in it are dropped."""
    if ty.kind == "ref":
        return table.get(value, NULL_REF)
    if ty.kind == "set" and ty.of is not None and ty.of.kind == "ref":
        return [table[v] for v in value if v in table]
    key, of = ty.key, ty.of
    if ty.kind == "map" and key is not None and of is not None and "ref" in (key.kind, of.kind):
        return {
            remap_refs(key, k, table): remap_refs(of, v, table)
            for k, v in value.items()
            if key.kind != "ref" or k in table
        }
    return value


@cache
def parse_type(text: str) -> Type:
    """Parse a declaration type string; raise ValueError on anything unknown."""
    text = text.strip()
    if text in PRIMITIVES:
        return Type(text)
    if text.endswith(" set"):
        return Type("set", of=parse_type(text[:-4]))
    if text.endswith(" option"):
        return Type("option", of=parse_type(text[:-7]))
    if text == "an event batch":
        return Type("record", name="event_batch")
    if text.endswith(" map") and text.startswith("("):
        key, value = _split_map(text[1:-4].strip().removesuffix(")"))
        return Type("map", key=parse_type(key), of=parse_type(value))
    if text.startswith("enum "):
        return Type("enum", name=text[5:])
    if text.endswith(" ref"):
        return Type("ref", name=text[:-4])
    if text.endswith(" record"):
        return Type("record", name=text[:-7])
    raise ValueError(f"unknown XenAPI type: {text!r}")


def _split_map(inner: str) -> tuple[str, str]:
    """Split ``K -> V`` at the top-level arrow (V may itself be a map)."""
    depth = 0
    for i, ch in enumerate(inner):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif depth == 0 and inner.startswith("->", i):
            return inner[:i].strip(), inner[i + 2 :].strip()
    raise ValueError(f"malformed map type: ({inner}) map")


_ZERO: dict[str, Any] = {"string": "", "int": 0, "float": 0.0, "bool": False, "datetime": EPOCH}


def zero_value(ty: Type) -> Any:
    """The value a field of this type holds when nothing sets it."""
    if ty.kind in _ZERO:
        return _ZERO[ty.kind]
    if ty.kind == "ref":
        return NULL_REF
    if ty.kind == "set":
        return []
    if ty.kind in ("map", "record"):
        return {}
    if ty.kind == "option":
        return None
    return ""  # enum: callers supply a declared default where there is one


def parse_default(ty: Type, text: str | None) -> Any:
    """Turn a declared default (XAPI's datamodel notation) into a Python value."""
    if text is None:
        return zero_value(ty)
    if ty.kind == "string":
        return text[1:-1] if text.startswith('"') and text.endswith('"') else text
    if ty.kind == "int":
        return int(text)
    if ty.kind == "float":
        return float(text)
    if ty.kind == "bool":
        return text == "true"
    if ty.kind == "datetime":
        return DateTime(text)
    if ty.kind == "ref":
        return NULL_REF if text in ("Null", "OpaqueRef:NULL") else text
    if ty.kind == "enum":
        return text
    if ty.kind == "set":
        items = [s.strip() for s in text.strip("{}").split(",") if s.strip()]
        assert ty.of is not None
        return [parse_default(ty.of, s) for s in items]
    if ty.kind == "map":
        return _parse_map_default(text)
    return zero_value(ty)


def _parse_map_default(text: str) -> dict[str, str]:
    body = text.strip().strip("{}").strip()
    result: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in body.split(","))):
        key, _, value = pair.partition("->")
        result[key.strip().strip('"')] = value.strip().strip('"')
    return result
